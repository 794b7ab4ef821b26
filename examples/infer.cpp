// Runs a classifier PyTorch trained, on the CPU with Eigen, and checks it against PyTorch.
//
//   infer CHECKPOINT IO_FILE
//
// CHECKPOINT is torch.save(model.state_dict()) of
//   nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
// held as `self.net` (keys net.0.weight, net.0.bias, net.2.*, net.4.*), or a training checkpoint
// with it under "model_state_dict", "state_dict", "model", ... IO_FILE is torch.save({"input": x,
// "logits": model(x)}). fixtures/infer/make.py writes both with real PyTorch.
//
// The model is built in C++ with its parameters as pthio tensors; pthio::load_state_dict copies
// the checkpoint into them, strictly (a missing, unexpected or mis-shaped key is an error worded
// as torch words it). Prints the largest |C++ logit - PyTorch logit| and exits 1 when it exceeds
// 1e-5.
#include <cmath>
#include <cstdio>

#include "mlp.hpp"
#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: infer CHECKPOINT IO_FILE\n");
    return 2;
  }
  constexpr double tolerance = 1e-5;
  try {
    pthio::load_options opts;
    opts.map_location = "cpu";  // a GPU-saved checkpoint loads on the CPU
    opts.strict = true;         // weights only: any global outside torch's allowlist is refused

    mlp::model net({4, 16, 16, 3}, {"net.0", "net.2", "net.4"});
    pthio::state_dict params = net.named_parameters();  // shares storage with net
    pthio::load_state_dict_options lo;
    lo.model_name = "Classifier";
    pthio::load_report report =
        pthio::load_state_dict(params, pthio::extract_state_dict(pthio::load(argv[1], opts)), lo);
    std::printf("loaded %zu tensors from %s\n", report.loaded.size(), argv[1]);

    pthio::value io = pthio::load(argv[2], opts);
    const pthio::value* input = io.find("input");
    const pthio::value* logits = io.find("logits");
    if (!input || !input->is_tensor() || !logits || !logits->is_tensor()) {
      std::fprintf(stderr, "infer: %s needs tensors \"input\" and \"logits\"\n", argv[2]);
      return 1;
    }
    // Eigen maps honour the saved strides; the product copies into a dense matrix.
    mlp::matrix x = pthio::map_matrix<float>(input->as_tensor().to(pthio::dtype::float32));
    mlp::matrix expected = pthio::map_matrix<float>(logits->as_tensor().to(pthio::dtype::float32));
    mlp::matrix got = net.forward(x);
    if (got.rows() != expected.rows() || got.cols() != expected.cols()) {
      std::fprintf(stderr, "infer: logits are %lldx%lld, PyTorch's %lldx%lld\n",
                   static_cast<long long>(got.rows()), static_cast<long long>(got.cols()),
                   static_cast<long long>(expected.rows()),
                   static_cast<long long>(expected.cols()));
      return 1;
    }

    double max_diff = 0;
    int same_class = 0;
    for (Eigen::Index i = 0; i < got.rows(); ++i) {
      Eigen::Index a = 0, b = 0;
      got.row(i).maxCoeff(&a);
      expected.row(i).maxCoeff(&b);
      same_class += a == b;
      for (Eigen::Index j = 0; j < got.cols(); ++j)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(got(i, j) - expected(i, j))));
      if (i < 4)
        std::printf(
            "sample %lld: class %lld, logits [%9.5f %9.5f %9.5f] (PyTorch [%9.5f %9.5f %9.5f])\n",
            static_cast<long long>(i), static_cast<long long>(a), got(i, 0), got(i, 1), got(i, 2),
            expected(i, 0), expected(i, 1), expected(i, 2));
    }
    std::printf(
        "%lld samples, %d with PyTorch's class; max |logit - PyTorch logit| = %.3e (tolerance "
        "%g)\n",
        static_cast<long long>(got.rows()), same_class, max_diff, tolerance);
    if (!(max_diff <= tolerance)) {
      std::printf("FAILED: the logits differ from PyTorch's by more than %g\n", tolerance);
      return 1;
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "infer: %s\n", e.what());
    return 1;
  }
  return 0;
}
