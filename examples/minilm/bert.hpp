// A BERT encoder (BertModel without its pooler) on Eigen, with its weights loaded by pthio from any
// checkpoint format pthio reads, and sentence embeddings as sentence-transformers makes them.
//
// The sentences of a batch are packed one after another, without padding: the linear layers are
// one matrix product over every token of the batch, and self-attention runs per sentence and head.
// On a CUDA device the weights live there and every matrix product (the linear layers and both
// products of the attention) goes through pthio::cuda::gemm; the element-wise steps (biases of the
// attention, softmax, LayerNorm, GELU, pooling) run on the host.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "pthio/pthio.hpp"

namespace minilm {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_vector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

// The fields of a Hugging Face config.json that a BERT encoder needs. read() throws
// std::runtime_error naming the file and the field for a missing or unsupported one (an activation
// other than "gelu", relative position embeddings, a hidden size the heads do not divide).
struct config {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t max_position_embeddings = 0;
  std::int64_t type_vocab_size = 0;
  double layer_norm_eps = 1e-12;

  static config read(const std::filesystem::path& file);
  // The same from config.json's parsed text; `name` names it in errors.
  static config from_json(const nlohmann::json& j, const std::string& name);
};

class bert {
 public:
  // Zero weights of the shapes `c` gives, on the host; `dev` is where the matrix products run
  // (cpu, or cuda:N: throws pthio::error(cuda) when that device is not usable).
  bert(const config& c, const pthio::device& dev);

  // Loads the weights from a checkpoint of any format pthio reads (safetensors, a .pth of
  // torch.save(model.state_dict()), a sharded index, ...), weights-only. Keys are BertModel's
  // ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", ...),
  // found under any common prefix ("bert." of BertForMaskedLM and the like). Every parameter of
  // the encoder must be there with its shape, in any floating dtype (converted to float32);
  // otherwise throws pthio::error(mismatch) worded as torch's load_state_dict, as it does for an
  // embeddings or encoder key the config has no place for (more layers than num_hidden_layers).
  // Keys outside the encoder (a task head) are returned; the pooler and the position_ids buffer
  // are not counted.
  std::vector<std::string> load(const std::filesystem::path& weights);

  // One sentence embedding per sequence of token ids ([CLS] ... [SEP] as tokenizer::encode gives
  // them): the mean of the last hidden states over the sequence, L2-normalised. Rows in order.
  // Throws std::invalid_argument for an id outside the vocabulary, an empty sequence, or one
  // longer than the position embeddings.
  matrix embed(const std::vector<std::vector<std::int32_t>>& batch) const;

  const config& cfg() const { return cfg_; }

 private:
  struct layer {
    pthio::tensor wqkv, bqkv;  // query, key and value stacked: [3 hidden, hidden], [3 hidden]
    pthio::tensor wo, bo, ln1_g, ln1_b, wi, bi, wout, bout, ln2_g, ln2_b;
    pthio::tensor d_wqkv, d_wo, d_wi, d_wout;  // on a CUDA device: the weights there
  };

  // y = x wᵀ + b, w [out, in] as the checkpoint stores it (on a CUDA device, w_dev there).
  matrix linear(const matrix& x, const pthio::tensor& w, const pthio::tensor& w_dev,
                const pthio::tensor& b) const;
  void attention(const matrix& qkv, const std::vector<Eigen::Index>& start, matrix& ctx) const;
  void attention_cuda(const matrix& qkv, const std::vector<Eigen::Index>& start, matrix& ctx) const;
  void layer_norm(matrix& x, const pthio::tensor& g, const pthio::tensor& b) const;

  config cfg_;
  pthio::device dev_;
  pthio::state_dict params_;  // BertModel's names, the tensors the checkpoint is loaded into
  std::vector<layer> layers_;
};

}  // namespace minilm
