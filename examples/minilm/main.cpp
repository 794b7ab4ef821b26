// Sentence embeddings of all-MiniLM-L6-v2 (or any BERT encoder of its kind), from its checkpoint,
// in C++: pthio reads the weights, minilm::tokenizer splits the text as the model's tokenizer does,
// minilm::bert runs the encoder on Eigen (or with cuBLAS on cuda:N).
//
//   example_minilm [OPTIONS] MODEL_DIR [SENTENCE...]
//
// MODEL_DIR holds config.json and vocab.txt, and the weights unless --weights names them: the
// first of model.safetensors, model.safetensors.index.json, pytorch_model.bin,
// pytorch_model.bin.index.json there. Without SENTENCE arguments, each line of standard input is a
// sentence. Prints one line per sentence, in order: the JSON array of its embedding (the mean of
// the last hidden states over its tokens, L2-normalised: sentence-transformers' recipe).
//
//   --weights FILE      the weights, in any format pthio reads (.safetensors, a .pth or .bin of
//                       torch.save(model.state_dict()), a sharded *.index.json, ...)
//   --device DEV        cpu (default) or cuda:N
//   --threads N         threads for the CPU (default: every core)
//   --batch N           sentences per forward pass (default 32)
//   --max-length N      tokens per sentence at most, [CLS] and [SEP] included (default 512, as
//                       the model's tokenizer; sentence-transformers cuts this model at 256, its
//                       sentence_bert_config.json: --max-length 256 gives its output for longer
//                       sentences)
//   --ids               print each sentence's token ids instead (no weights are read)
//   --repeat N          after each forward pass, N more timed ones: the mean and best time per
//                       pass on stderr (benchmarking)
//
// Exit status: 0 done, 1 an error (on stderr; a CUDA failure during the work too), 2 a usage
// error, 3 the CUDA device asked for is not usable here (checked before any work).
#include <Eigen/Core>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bert.hpp"
#include "pthio/cuda.hpp"
#include "tokenizer.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: example_minilm [--weights FILE] [--device cpu|cuda:N] [--threads N] "
               "[--batch N] [--max-length N] [--ids] [--repeat N] MODEL_DIR [SENTENCE...]\n");
  return 2;
}

bool parse_count(const char* text, long min, long& out) {
  const char* end = text + std::char_traits<char>::length(text);
  auto [p, ec] = std::from_chars(text, end, out);
  return ec == std::errc() && p == end && out >= min;
}

// Standard output flushed and free of write errors (a full disk, a closed pipe): 0, else 1.
int finish() {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "example_minilm: writing the output failed\n");
    return 1;
  }
  return 0;
}

// Shortest text that reads back as the same float.
void append_float(std::string& out, float v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? p : buf);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path weights;
  std::string device_tag = "cpu";
  long threads = 0, batch_size = 32, max_length = 512, repeat = 0;
  bool ids_only = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--weights" && (v = next()))
      weights = v;
    else if (a == "--device" && (v = next()))
      device_tag = v;
    else if (a == "--threads" && (v = next()) && parse_count(v, 1, threads)) {
    } else if (a == "--batch" && (v = next()) && parse_count(v, 1, batch_size)) {
    } else if (a == "--max-length" && (v = next()) && parse_count(v, 2, max_length)) {
    } else if (a == "--repeat" && (v = next()) && parse_count(v, 1, repeat)) {
    } else if (a == "--ids")
      ids_only = true;
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (a == "--") {
      args.insert(args.end(), argv + i + 1, argv + argc);
      break;
    } else if (a.starts_with("--"))
      return usage();
    else
      args.push_back(a);
  }
  if (args.empty()) return usage();
  pthio::device dev;
  try {
    dev = pthio::device::parse(device_tag);
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "example_minilm: --device: %s\n", e.what());
    return usage();
  }
  if (!dev.is_cpu() && !dev.is_cuda()) {
    std::fprintf(stderr, "example_minilm: --device %s: only cpu and cuda:N\n", device_tag.c_str());
    return usage();
  }
  const std::filesystem::path dir = args.front();
  std::vector<std::string> sentences(args.begin() + 1, args.end());

  try {
    // The model folder first: a wrong folder is reported before standard input is read.
    const minilm::config cfg = minilm::config::read(dir / "config.json");
    if (max_length > cfg.max_position_embeddings) {
      std::fprintf(stderr, "example_minilm: --max-length %ld: the model has %lld positions\n",
                   max_length, static_cast<long long>(cfg.max_position_embeddings));
      return 2;
    }
    const minilm::tokenizer tok(dir / "vocab.txt");
    if (sentences.empty())
      for (std::string line; std::getline(std::cin, line);) sentences.push_back(line);
    std::vector<std::vector<std::int32_t>> ids;
    ids.reserve(sentences.size());
    for (const std::string& s : sentences)
      ids.push_back(tok.encode(s, static_cast<std::size_t>(max_length)));
    std::string line;
    if (ids_only) {
      for (const auto& seq : ids) {
        line = "[";
        for (std::size_t i = 0; i < seq.size(); ++i)
          line += (i ? "," : "") + std::to_string(seq[i]);
        line += "]\n";
        std::fwrite(line.data(), 1, line.size(), stdout);
      }
      return finish();
    }

    if (threads > 0) {
#ifdef _OPENMP
      omp_set_num_threads(static_cast<int>(threads));
#endif
      Eigen::setNbThreads(static_cast<int>(threads));
    }
    if (dev.is_cuda() && !pthio::cuda_available()) {  // exit 3 means this, and only this
      std::fprintf(stderr, "example_minilm: %s is not usable: %s\n", dev.str().c_str(),
                   pthio::cuda_unavailable_reason().c_str());
      return 3;
    }
    if (weights.empty()) {
      for (const char* name : {"model.safetensors", "model.safetensors.index.json",
                               "pytorch_model.bin", "pytorch_model.bin.index.json"})
        if (std::filesystem::exists(dir / name)) {
          weights = dir / name;
          break;
        }
      if (weights.empty())
        throw std::runtime_error(dir.string() + ": no model.safetensors or pytorch_model.bin " +
                                 "(name the weights with --weights)");
    }
    minilm::bert model(cfg, dev);
    for (const std::string& key : model.load(weights))
      std::fprintf(stderr, "example_minilm: %s: unused by the encoder\n", key.c_str());

    for (std::size_t first = 0; first < ids.size(); first += static_cast<std::size_t>(batch_size)) {
      const std::size_t last = std::min(ids.size(), first + static_cast<std::size_t>(batch_size));
      const std::vector<std::vector<std::int32_t>> batch(ids.begin() + static_cast<long>(first),
                                                         ids.begin() + static_cast<long>(last));
      minilm::matrix emb = model.embed(batch);
      if (repeat > 0) {  // the first pass above warms up; the next `repeat` are timed
        double total = 0, best = 0;
        for (long r = 0; r < repeat; ++r) {
          const auto t0 = std::chrono::steady_clock::now();
          emb = model.embed(batch);
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          total += ms;
          best = r ? std::min(best, ms) : ms;
        }
        std::fprintf(stderr,
                     "example_minilm: %zu sentences: %.3f ms per forward pass (mean of %ld, "
                     "best %.3f)\n",
                     batch.size(), total / static_cast<double>(repeat), repeat, best);
      }
      for (Eigen::Index i = 0; i < emb.rows(); ++i) {
        line = "[";
        for (Eigen::Index j = 0; j < emb.cols(); ++j) {
          if (j) line += ',';
          append_float(line, emb(i, j));
        }
        line += "]\n";
        std::fwrite(line.data(), 1, line.size(), stdout);
      }
      std::fflush(stdout);  // the first embeddings are out before the next batch runs
    }
    return finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example_minilm: %s\n", e.what());
    return 1;
  }
}
