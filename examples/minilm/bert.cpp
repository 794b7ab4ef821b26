#include "bert.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <stdexcept>
#include <unsupported/Eigen/SpecialFunctions>

#include "pthio/cuda.hpp"
#include "pthio/eigen.hpp"

namespace minilm {

namespace {

using Eigen::Index;
using cmap = Eigen::Map<const matrix>;
using cvec = Eigen::Map<const row_vector>;

cmap view(const pthio::tensor& t) { return {t.data<float>(), t.size(0), t.size(1)}; }
cvec view_vec(const pthio::tensor& t) { return {t.data<float>(), t.size(0)}; }

// softmax of each row, in place, the row's maximum subtracted first.
void softmax_rows(matrix& p) {
  for (Index i = 0; i < p.rows(); ++i) {
    auto row = p.row(i).array();
    row = (row - row.maxCoeff()).exp();
    row /= row.sum();
  }
}

std::int64_t positive(const nlohmann::json& j, const char* name, const std::string& file) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_integer() || it->get<std::int64_t>() <= 0)
    throw std::runtime_error(file + ": \"" + name + "\" must be a positive integer");
  return it->get<std::int64_t>();
}

}  // namespace

config config::read(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(file.string() + ": " + e.what());
  }
  const std::string name = file.string();
  try {
    return from_json(j, name);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type
    throw std::runtime_error(name + ": " + e.what());
  }
}

config config::from_json(const nlohmann::json& j, const std::string& name) {
  config c;
  c.vocab_size = positive(j, "vocab_size", name);
  c.hidden_size = positive(j, "hidden_size", name);
  c.num_hidden_layers = positive(j, "num_hidden_layers", name);
  c.num_attention_heads = positive(j, "num_attention_heads", name);
  c.intermediate_size = positive(j, "intermediate_size", name);
  c.max_position_embeddings = positive(j, "max_position_embeddings", name);
  c.type_vocab_size = positive(j, "type_vocab_size", name);
  if (auto eps = j.find("layer_norm_eps"); eps != j.end()) {
    if (!eps->is_number() || !(eps->get<double>() > 0))
      throw std::runtime_error(name + ": \"layer_norm_eps\" must be a positive number");
    c.layer_norm_eps = eps->get<double>();
  }
  // Only what this encoder computes: the exact (erf) GELU and absolute positions.
  if (std::string act = j.value("hidden_act", "gelu"); act != "gelu")
    throw std::runtime_error(name + ": hidden_act \"" + act + "\" is not supported (only gelu)");
  if (std::string pos = j.value("position_embedding_type", "absolute"); pos != "absolute")
    throw std::runtime_error(name + ": position_embedding_type \"" + pos +
                             "\" is not supported (only absolute)");
  if (c.hidden_size % c.num_attention_heads != 0)
    throw std::runtime_error(name + ": hidden_size " + std::to_string(c.hidden_size) +
                             " is not a multiple of num_attention_heads " +
                             std::to_string(c.num_attention_heads));
  return c;
}

bert::bert(const config& c, const pthio::device& dev) : cfg_(c), dev_(dev) {
  if (dev_.is_cuda() && !pthio::cuda_available())
    throw pthio::error(pthio::errc::cuda,
                       dev_.str() + " is not usable: " + pthio::cuda_unavailable_reason());
  if (!dev_.is_cpu() && !dev_.is_cuda())
    throw std::invalid_argument("device " + dev_.str() + ": only cpu and cuda:N");
  const std::int64_t h = c.hidden_size, in = c.intermediate_size;
  auto add = [&](const std::string& name, pthio::shape_t shape) {
    params_.set(name, pthio::tensor::zeros(pthio::dtype::float32, std::move(shape)));
  };
  add("embeddings.word_embeddings.weight", {c.vocab_size, h});
  add("embeddings.position_embeddings.weight", {c.max_position_embeddings, h});
  add("embeddings.token_type_embeddings.weight", {c.type_vocab_size, h});
  add("embeddings.LayerNorm.weight", {h});
  add("embeddings.LayerNorm.bias", {h});
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      add(p + "attention.self." + qkv + ".weight", {h, h});
      add(p + "attention.self." + qkv + ".bias", {h});
    }
    add(p + "attention.output.dense.weight", {h, h});
    add(p + "attention.output.dense.bias", {h});
    add(p + "attention.output.LayerNorm.weight", {h});
    add(p + "attention.output.LayerNorm.bias", {h});
    add(p + "intermediate.dense.weight", {in, h});
    add(p + "intermediate.dense.bias", {in});
    add(p + "output.dense.weight", {h, in});
    add(p + "output.dense.bias", {h});
    add(p + "output.LayerNorm.weight", {h});
    add(p + "output.LayerNorm.bias", {h});
  }
}

std::vector<std::string> bert::load(const std::filesystem::path& weights) {
  pthio::load_options lo;
  lo.mode = pthio::load_mode::mmap;  // read from the page cache, copied once into params_
  lo.map_location = "cpu";           // a GPU-saved checkpoint loads too
  lo.strict = true;                  // weights only: no global outside torch's allowlist
  const pthio::state_dict source = pthio::extract_state_dict(pthio::load(weights, lo));

  // BertModel's keys may sit under a prefix: "bert." in BertForMaskedLM and its siblings.
  pthio::load_state_dict_options opts;
  opts.strict = false;  // unused keys (heads, the pooler) are reported below, not refused
  opts.convert_dtypes = true;
  opts.model_name = "BertModel";
  const std::string anchor = "embeddings.word_embeddings.weight";
  if (!source.contains(anchor))
    for (const auto& [key, t] : source)
      if (key.size() > anchor.size() && key.ends_with("." + anchor)) {
        opts.remap.strip_prefix = key.substr(0, key.size() - anchor.size());
        break;
      }
  pthio::load_report report = pthio::load_state_dict(params_, source, opts);
  // Keys outside the encoder (a task head, the pooler, the position_ids buffer) are not its
  // business; an embeddings or encoder key it lacks means the config and the checkpoint disagree
  // (a 6-layer checkpoint and a 5-layer config): refused with the rest.
  std::vector<std::string> unused, unexpected;
  for (const std::string& key : report.unexpected) {
    const std::string k = opts.remap.apply(key);
    if (k == "embeddings.position_ids" || k.starts_with("pooler.")) continue;
    (k.starts_with("embeddings.") || k.starts_with("encoder.") ? unexpected : unused)
        .push_back(key);
  }
  report.unexpected = std::move(unexpected);
  if (!report.ok())
    throw pthio::error(pthio::errc::mismatch,
                       weights.string() + ": " + report.message(opts.model_name));

  const std::int64_t h = cfg_.hidden_size;
  layers_.assign(static_cast<std::size_t>(cfg_.num_hidden_layers), {});
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "encoder.layer." + std::to_string(i) + ".";
    layer& l = layers_[i];
    matrix wqkv(3 * h, h);
    row_vector bqkv(3 * h);
    Index row = 0;
    for (const char* part : {"query", "key", "value"}) {
      wqkv.middleRows(row, h) = view(params_.at(p + "attention.self." + part + ".weight"));
      bqkv.segment(row, h) = view_vec(params_.at(p + "attention.self." + part + ".bias"));
      row += h;
    }
    l.wqkv = pthio::from_eigen(wqkv);
    l.bqkv = pthio::from_eigen(bqkv);
    l.wo = params_.at(p + "attention.output.dense.weight");
    l.bo = params_.at(p + "attention.output.dense.bias");
    l.ln1_g = params_.at(p + "attention.output.LayerNorm.weight");
    l.ln1_b = params_.at(p + "attention.output.LayerNorm.bias");
    l.wi = params_.at(p + "intermediate.dense.weight");
    l.bi = params_.at(p + "intermediate.dense.bias");
    l.wout = params_.at(p + "output.dense.weight");
    l.bout = params_.at(p + "output.dense.bias");
    l.ln2_g = params_.at(p + "output.LayerNorm.weight");
    l.ln2_b = params_.at(p + "output.LayerNorm.bias");
    if (dev_.is_cuda()) {
      l.d_wqkv = l.wqkv.to(dev_);
      l.d_wo = l.wo.to(dev_);
      l.d_wi = l.wi.to(dev_);
      l.d_wout = l.wout.to(dev_);
    }
  }
  return unused;
}

// y = x wᵀ + b, w [out, in] as the checkpoint stores it.
matrix bert::linear(const matrix& x, const pthio::tensor& w, const pthio::tensor& w_dev,
                    const pthio::tensor& b) const {
  if (dev_.is_cuda()) {
    // The bias rows are the initial c, and the product is added to them (beta = 1).
    matrix y = view_vec(b).replicate(x.rows(), 1);
    pthio::tensor xd = pthio::from_eigen(x).to(dev_);
    pthio::tensor yd = pthio::from_eigen(y).to(dev_);
    pthio::cuda::gemm(xd, w_dev.transpose(0, 1), yd, 1.0f, 1.0f);
    return pthio::to_eigen<matrix>(yd.to(pthio::cpu_device));
  }
  const cmap wm = view(w);
  matrix y(x.rows(), wm.rows());
  y.noalias() = x * wm.transpose();
  y.rowwise() += view_vec(b);
  return y;
}

// Scaled dot-product attention of each sentence (rows start[s] .. start[s + 1]) and head.
void bert::attention(const matrix& qkv, const std::vector<Index>& start, matrix& ctx) const {
  const Index h = cfg_.hidden_size, heads = cfg_.num_attention_heads, d = h / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const Index sentences = static_cast<Index>(start.size()) - 1;
  // A small batch runs on one thread, where waking the others costs more than it saves.
#pragma omp parallel for schedule(dynamic) if (start.back() >= 64)
  for (Index job = 0; job < sentences * heads; ++job) {
    const Index s = job / heads, head = job % heads;
    const Index r0 = start[static_cast<std::size_t>(s)];
    const Index len = start[static_cast<std::size_t>(s) + 1] - r0;
    auto q = qkv.block(r0, head * d, len, d);
    auto k = qkv.block(r0, h + head * d, len, d);
    auto v = qkv.block(r0, 2 * h + head * d, len, d);
    matrix p(len, len);
    p.noalias() = (q * k.transpose()) * scale;
    softmax_rows(p);
    ctx.block(r0, head * d, len, d).noalias() = p * v;
  }
}

// The same with both products on the device. Per sentence, every head's scores q kᵀ (scaled) go
// into one [heads · len, len] device matrix, come to the host once for the softmax, go back once,
// and each head's probabilities · v lands in its place in the device's context matrix.
void bert::attention_cuda(const matrix& qkv, const std::vector<Index>& start, matrix& ctx) const {
  const std::int64_t h = cfg_.hidden_size, heads = cfg_.num_attention_heads, d = h / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const pthio::tensor qkv_d = pthio::from_eigen(qkv).to(dev_);
  pthio::tensor ctx_d = pthio::tensor::zeros(pthio::dtype::float32, {ctx.rows(), h}, dev_);
  for (std::size_t s = 0; s + 1 < start.size(); ++s) {
    const std::int64_t r0 = start[s], len = start[s + 1] - r0;
    const pthio::tensor rows = qkv_d.narrow(0, r0, len);
    pthio::tensor scores = pthio::tensor::zeros(pthio::dtype::float32, {heads * len, len}, dev_);
    for (std::int64_t head = 0; head < heads; ++head) {
      pthio::tensor block = scores.narrow(0, head * len, len);
      pthio::cuda::gemm(rows.narrow(1, head * d, d),
                        rows.narrow(1, h + head * d, d).transpose(0, 1), block, scale, 0.0f);
    }
    matrix p = pthio::to_eigen<matrix>(scores.to(pthio::cpu_device));  // waits for the products
    softmax_rows(p);
    const pthio::tensor probs = pthio::from_eigen(p).to(dev_);
    for (std::int64_t head = 0; head < heads; ++head) {
      pthio::tensor out = ctx_d.narrow(0, r0, len).narrow(1, head * d, d);
      pthio::cuda::gemm(probs.narrow(0, head * len, len), rows.narrow(1, 2 * h + head * d, d), out,
                        1.0f, 0.0f);
    }
    // gemm returns before the device is done: the operands this iteration owns (scores, probs)
    // must outlive the products that read them.
    pthio::cuda::synchronize(dev_);
  }
  ctx = pthio::to_eigen<matrix>(ctx_d.to(pthio::cpu_device));
}

// Per row: (x - mean) / sqrt(var + eps) * g + b, the variance biased, as torch's LayerNorm.
void bert::layer_norm(matrix& x, const pthio::tensor& g, const pthio::tensor& b) const {
  const cvec gv = view_vec(g), bv = view_vec(b);
  const float eps = static_cast<float>(cfg_.layer_norm_eps);
  const float n = static_cast<float>(x.cols());
#pragma omp parallel for if (x.rows() >= 64)
  for (Index i = 0; i < x.rows(); ++i) {
    auto r = x.row(i).array();
    const float mean = r.sum() / n;
    r -= mean;
    const float inv = 1.0f / std::sqrt(r.square().sum() / n + eps);
    r = r * inv * gv.array() + bv.array();
  }
}

matrix bert::embed(const std::vector<std::vector<std::int32_t>>& batch) const {
  if (layers_.empty()) throw std::logic_error("bert::embed before bert::load");
  const Index h = cfg_.hidden_size;
  std::vector<Index> start{0};
  for (const auto& ids : batch) {
    if (static_cast<std::int64_t>(ids.size()) > cfg_.max_position_embeddings)
      throw std::invalid_argument(std::to_string(ids.size()) + " tokens, more than the " +
                                  std::to_string(cfg_.max_position_embeddings) +
                                  " position embeddings");
    if (ids.empty()) throw std::invalid_argument("an empty token sequence (no [CLS] or [SEP])");
    start.push_back(start.back() + static_cast<Index>(ids.size()));
  }
  const Index tokens = start.back();

  // Embeddings: word + position + token type 0 (one segment), then LayerNorm.
  const cmap word = view(params_.at("embeddings.word_embeddings.weight"));
  const cmap pos = view(params_.at("embeddings.position_embeddings.weight"));
  const cmap type = view(params_.at("embeddings.token_type_embeddings.weight"));
  matrix x(tokens, h);
  for (std::size_t s = 0; s < batch.size(); ++s)
    for (std::size_t i = 0; i < batch[s].size(); ++i) {
      const std::int32_t id = batch[s][i];
      if (id < 0 || id >= cfg_.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(id) + " outside the vocabulary");
      x.row(start[s] + static_cast<Index>(i)) =
          word.row(id) + pos.row(static_cast<Index>(i)) + type.row(0);
    }
  layer_norm(x, params_.at("embeddings.LayerNorm.weight"), params_.at("embeddings.LayerNorm.bias"));

  matrix ctx(tokens, h);
  for (const layer& l : layers_) {
    const matrix qkv = linear(x, l.wqkv, l.d_wqkv, l.bqkv);
    if (dev_.is_cuda())
      attention_cuda(qkv, start, ctx);
    else
      attention(qkv, start, ctx);
    matrix a = linear(ctx, l.wo, l.d_wo, l.bo);
    a += x;
    layer_norm(a, l.ln1_g, l.ln1_b);
    x = std::move(a);

    // The exact GELU: x Φ(x) = x (1 + erf(x / √2)) / 2.
    matrix inner = linear(x, l.wi, l.d_wi, l.bi);
    const float inv_sqrt2 = 1.0f / std::numbers::sqrt2_v<float>;
#pragma omp parallel for if (inner.rows() >= 16)
    for (Index i = 0; i < inner.rows(); ++i) {
      auto r = inner.row(i).array();
      r = 0.5f * r * (1.0f + (r * inv_sqrt2).erf());
    }
    matrix o = linear(inner, l.wout, l.d_wout, l.bout);
    o += x;
    layer_norm(o, l.ln2_g, l.ln2_b);
    x = std::move(o);
  }

  // sentence-transformers: the mean over the attention mask (every token here: no padding), then
  // x / max(‖x‖₂, 1e-12).
  matrix out(static_cast<Index>(batch.size()), h);
  for (std::size_t s = 0; s < batch.size(); ++s) {
    const Index len = start[s + 1] - start[s];
    row_vector mean = x.middleRows(start[s], len).colwise().sum() / static_cast<float>(len);
    out.row(static_cast<Index>(s)) = mean / std::max(mean.norm(), 1e-12f);
  }
  return out;
}

}  // namespace minilm
