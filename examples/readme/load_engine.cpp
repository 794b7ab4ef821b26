// README, "Load into an inference engine": a layer whose weights come straight from a state dict,
// computed with Eigen over the checkpoint's own bytes.
//   readme_load_engine STATE_DICT     (CTest runs it on fixtures/t2/linear.pth, nn.Linear(4, 3))
// The README shows linear_layer and load_layer() verbatim; tests/readme_check.py keeps it so.
#include <cmath>
#include <cstdio>
#include <iostream>

#include <pthio/eigen.hpp>
#include <pthio/pthio.hpp>

// y = W x + b, as torch.nn.Linear computes it. The tensors are handles: they keep the file's
// mapping alive as long as the layer lives.
struct linear_layer {
  pthio::tensor weight;  // float32 [out, in]
  pthio::tensor bias;    // float32 [out]

  Eigen::VectorXf forward(const Eigen::VectorXf& x) const {
    return pthio::map_matrix<float>(weight) * x + pthio::map_vector<float>(bias);
  }
};

linear_layer load_layer(const char* path) {
  pthio::load_options opts;
  opts.mode = pthio::load_mode::mmap;  // zero-copy: the weights stay in the page cache
  opts.strict = true;                  // weights only: refuse any global outside torch's allowlist
  pthio::state_dict sd = pthio::extract_state_dict(pthio::load(path, opts));
  // at() throws pthio::error(mismatch) naming a missing key; to() is a no-op when already float32
  // and a converted copy otherwise (a float16 or bfloat16 checkpoint).
  return {sd.at("weight").to(pthio::dtype::float32), sd.at("bias").to(pthio::dtype::float32)};
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_load_engine STATE_DICT\n");
    return 2;
  }
  try {
    linear_layer layer = load_layer(argv[1]);
    Eigen::VectorXf x(4);
    x << 1.0f, 2.0f, 3.0f, 4.0f;
    Eigen::VectorXf y = layer.forward(x);

    // The same product, element by element through bounds-checked access.
    for (std::int64_t i = 0; i < layer.weight.size(0); ++i) {
      float expected = layer.bias.at<float>({i});
      for (std::int64_t j = 0; j < layer.weight.size(1); ++j)
        expected += layer.weight.at<float>({i, j}) * x(static_cast<Eigen::Index>(j));
      std::cout << "y[" << i << "] = " << y(static_cast<Eigen::Index>(i)) << '\n';
      if (std::fabs(expected - y(static_cast<Eigen::Index>(i))) > 1e-5f) {
        std::cout << "readme_load_engine: y[" << i << "] should be " << expected << '\n';
        return 1;
      }
    }
    // An engine that wants a raw row-major buffer: contiguous() is the tensor itself when it
    // already is, and the pointer stays valid while any handle to the storage lives.
    pthio::tensor w = layer.weight.contiguous();
    const float* raw = w.data<float>();
    if (raw[1 * 4 + 2] != layer.weight.at<float>({1, 2})) return 1;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_load_engine: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_load_engine: ok\n";
}
