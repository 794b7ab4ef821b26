// Trains a small MLP with Adam in C++ (Eigen for the arithmetic) and saves a training checkpoint
// after every epoch in exactly the layout a PyTorch training loop writes:
//
//   torch.save({"model_state_dict": model.state_dict(),
//               "optimizer_state_dict": optimizer.state_dict(),
//               "epoch": epoch, "loss": loss, "best_val": best_val}, path)
//
// so PyTorch can resume a run this program started, and this program can resume a run PyTorch
// started: examples/torch/train_resume.py is the same training loop in PyTorch, step for step.
//
//   train_resume --epochs N --out CKPT [--resume CKPT]
//
// --epochs N runs N more epochs (after the saved ones when resuming). The model is
// 8 -> 16 -> ReLU -> 16 -> ReLU -> 3 in float32, the loss cross-entropy, the optimizer
// torch.optim.Adam(lr=0.01, foreach=False). Data and initial weights come from closed-form
// formulas both programs compute identically (see below), and minibatches are taken in order.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "mlp.hpp"
#include "pthio/pthio.hpp"

namespace {

constexpr int n_train = 256, n_val = 64, batch_size = 32;
constexpr int n_features = 8, n_hidden = 16, n_classes = 3;
constexpr double learning_rate = 0.01;

// Sample i (train: 0..255, validation: 256..319): feature j = sin((i * (2j + 3) + 8j) / 8),
// computed in double and rounded to float32. The argument is an integer over 8, so it is exact
// whatever the compiler contracts; sin is the C library's, the one Python's math.sin calls. Label:
// the index of the largest of features 0, 1, 2.
void make_data(int first, int count, mlp::matrix& x, std::vector<std::int64_t>& labels) {
  x.resize(count, n_features);
  labels.resize(static_cast<std::size_t>(count));
  for (int r = 0; r < count; ++r) {
    const int i = first + r;
    for (int j = 0; j < n_features; ++j)
      x(r, j) = static_cast<float>(std::sin(static_cast<double>(i * (2 * j + 3) + 8 * j) / 8.0));
    std::int64_t best = 0;
    for (int c = 1; c < 3; ++c)
      if (x(r, c) > x(r, best)) best = c;
    labels[static_cast<std::size_t>(r)] = best;
  }
}

// Layer k's weight [o][i] = sin(7 * (o * fan_in + i) + 3k + 1) / sqrt(fan_in), bias [o] =
// sin(5o + 11k + 2) / sqrt(fan_in): in double, rounded to float32 (integer arguments to sin, so
// again exact inputs).
void init_weights(mlp::model& net) {
  for (std::size_t k = 0; k < net.layers.size(); ++k) {
    auto& l = net.layers[k];
    const std::int64_t fan_in = l.in_features();
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    auto w = pthio::map_matrix<float>(l.weight);
    for (std::int64_t o = 0; o < l.out_features(); ++o)
      for (std::int64_t i = 0; i < fan_in; ++i)
        w(o, i) = static_cast<float>(
            bound * std::sin(static_cast<double>(7 * (o * fan_in + i) +
                                                 3 * static_cast<std::int64_t>(k) + 1)));
    auto b = pthio::map_vector<float>(l.bias);
    for (std::int64_t o = 0; o < l.out_features(); ++o)
      b(o) = static_cast<float>(
          bound * std::sin(static_cast<double>(5 * o + 11 * static_cast<std::int64_t>(k) + 2)));
  }
}

int usage() {
  std::fprintf(stderr, "usage: train_resume --epochs N --out CKPT [--resume CKPT]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = -1;
  std::string out, resume;
  for (int a = 1; a < argc; ++a) {
    std::string arg = argv[a];
    if (a + 1 >= argc) return usage();
    if (arg == "--epochs") {
      char* end = nullptr;
      long n = std::strtol(argv[++a], &end, 10);
      if (*end || n < 0 || n > 100000) return usage();
      epochs = static_cast<int>(n);
    } else if (arg == "--out") {
      out = argv[++a];
    } else if (arg == "--resume") {
      resume = argv[++a];
    } else {
      return usage();
    }
  }
  if (epochs < 0 || out.empty()) return usage();

  try {
    mlp::model net({n_features, n_hidden, n_hidden, n_classes}, {"fc1", "fc2", "fc3"});
    init_weights(net);
    pthio::state_dict params = net.named_parameters();  // shares storage with net
    std::vector<pthio::tensor> param_list;
    for (const auto& [name, t] : params) param_list.push_back(t);
    pthio::adam_options adam_opts;
    adam_opts.lr = learning_rate;
    mlp::adam optimizer(param_list, adam_opts);

    std::int64_t epoch = 0;
    double best_val = std::numeric_limits<double>::infinity();
    if (!resume.empty()) {
      pthio::load_options lo;
      lo.map_location = "cpu";
      lo.strict = true;  // weights only, as torch.load(..., weights_only=True)
      pthio::value ck = pthio::load(resume, lo);
      // model.load_state_dict(ckpt["model_state_dict"]): strict, copies into net's tensors.
      pthio::load_state_dict(params, pthio::extract_state_dict(ck, "model_state_dict"));
      const pthio::value* opt_state = ck.find("optimizer_state_dict");
      const pthio::value* saved_epoch = ck.find("epoch");
      const pthio::value* saved_best = ck.find("best_val");
      if (!opt_state || !saved_epoch || !saved_best)
        throw pthio::error(pthio::errc::mismatch, resume + ": not a train_resume checkpoint");
      optimizer.load_state_value(*opt_state);
      epoch = saved_epoch->as_int();
      best_val = saved_best->as_float();
      std::printf("resumed %s at epoch %lld (best_val %.6f)\n", resume.c_str(),
                  static_cast<long long>(epoch), best_val);
    }

    mlp::matrix x_train, x_val;
    std::vector<std::int64_t> y_train, y_val;
    make_data(0, n_train, x_train, y_train);
    make_data(n_train, n_val, x_val, y_val);

    for (int e = 0; e < epochs; ++e) {
      double total = 0;
      const int n_batches = n_train / batch_size;
      for (int b = 0; b < n_batches; ++b) {
        mlp::matrix xb = x_train.middleRows(b * batch_size, batch_size);
        std::vector<std::int64_t> yb(y_train.begin() + b * batch_size,
                                     y_train.begin() + (b + 1) * batch_size);
        mlp::activations acts;
        mlp::matrix logits = net.forward(xb, acts);
        mlp::matrix dlogits;
        float loss = mlp::cross_entropy(logits, yb, &dlogits);
        optimizer.step(net.backward(acts, dlogits));
        total += loss;  // loss.item()
      }
      double train_loss = total / n_batches;
      double val_loss = mlp::cross_entropy(net.forward(x_val), y_val);
      best_val = std::min(best_val, val_loss);
      ++epoch;

      pthio::value ckpt = pthio::value::make_dict();
      auto& d = ckpt.as_dict();
      d.set("model_state_dict", net.state_dict().to_value());
      d.set("optimizer_state_dict", optimizer.state_value());
      d.set("epoch", pthio::value(epoch));
      d.set("loss", pthio::value(train_loss));
      d.set("best_val", pthio::value(best_val));
      pthio::save(out, ckpt);
      std::printf("epoch %lld  loss %.6f  val %.6f  best %.6f\n", static_cast<long long>(epoch),
                  train_loss, val_loss, best_val);
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "train_resume: %s\n", e.what());
    return 1;
  }
  return 0;
}
