// README, "Save from C++": a state dict and a training checkpoint written as torch.save writes
// them, loadable with torch.load(path, weights_only=True).
//   readme_save OUT_DIR
// The README shows save_model() verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <pthio/eigen.hpp>
#include <pthio/pthio.hpp>

void save_model(const std::filesystem::path& out) {
  Eigen::MatrixXf w = Eigen::MatrixXf::Constant(3, 4, 0.5f);  // the engine's own weights
  Eigen::VectorXf b = Eigen::VectorXf::LinSpaced(3, -1.0f, 1.0f);

  pthio::state_dict sd;                           // ordered, like model.state_dict()
  sd.set("fc.weight", pthio::from_eigen(w));      // a copy: float32 [3, 4], row-major
  sd.set("fc.bias", pthio::from_eigen(b));        // a copy: float32 [3]
  pthio::save(out / "model.pth", sd.to_value());  // torch.save(model.state_dict(), ...)

  pthio::tensor scale = pthio::tensor::from_values<float>({1.0f, 2.0f, 4.0f}, {3});
  scale.set_requires_grad(true);
  pthio::value ckpt = pthio::value::make_dict();
  ckpt.as_dict().set("epoch", pthio::value(7));
  ckpt.as_dict().set("loss", pthio::value(0.25));
  ckpt.as_dict().set("scale", pthio::value(scale, /*parameter=*/true));  // an nn.Parameter
  ckpt.as_dict().set("model_state_dict", sd.to_value());
  // Atomic: a temporary beside the target, fsync'd, renamed over it only when complete.
  pthio::save(out / "ckpt.pth", ckpt);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_save OUT_DIR\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(argv[1]);
    std::filesystem::path out = argv[1];
    save_model(out);

    pthio::state_dict sd = pthio::extract_state_dict(pthio::load(out / "model.pth"));
    pthio::load_options weights_only;
    weights_only.strict = true;
    pthio::value ckpt = pthio::load(out / "ckpt.pth", weights_only);
    const pthio::tensor& bias = sd.at("fc.bias");
    std::cout << "model.pth: " << sd.size() << " tensors, fc.bias[2] = " << bias.at<float>({2})
              << '\n';
    std::cout << "ckpt.pth: epoch " << ckpt.find("epoch")->as_int()
              << ", scale is a parameter: " << ckpt.find("scale")->is_parameter() << '\n';
    if (sd.at("fc.weight").at<float>({2, 3}) != 0.5f || bias.at<float>({0}) != -1.0f ||
        !ckpt.find("scale")->as_tensor().requires_grad())
      return 1;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_save: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_save: ok\n";
}
