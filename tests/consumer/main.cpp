// A C++ consumer: loads nn.Linear(4, 3)'s state dict, checks it through Eigen and DLPack, saves a
// copy and loads it back. Usage: consumer_cpp FIXTURE OUT_DIR.
#include <cmath>
#include <cstdio>
#include <string>

#include <pthio/dlpack.hpp>
#include <pthio/eigen.hpp>
#include <pthio/pthio.hpp>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  try {
    pthio::checkpoint ck = pthio::load_checkpoint(argv[1]);
    pthio::state_dict sd = pthio::extract_state_dict(ck.root);
    const pthio::tensor& w = sd.at("weight");
    if (w.shape() != pthio::shape_t{3, 4}) return 1;
    Eigen::MatrixXf m = pthio::to_eigen<float, Eigen::ColMajor>(w);
    if (std::abs(m(0, 0) - 0.2576316f) > 1e-6f) return 1;
    auto* dl = pthio::to_dlpack_versioned(w);
    const bool dl_ok = dl->dl_tensor.ndim == 2 && dl->dl_tensor.shape[1] == 4;
    dl->deleter(dl);
    if (!dl_ok) return 1;
    sd.set("doubled", pthio::from_eigen(m * 2.0f));
    std::string out = std::string(argv[2]) + "/consumer_cpp.pth";
    pthio::save(out, sd.to_value());
    auto back = pthio::extract_state_dict(pthio::load(out));
    if (pthio::to_eigen<Eigen::Matrix<float, 3, 4>>(back.at("doubled"))(1, 2) != 2 * m(1, 2))
      return 1;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "consumer_cpp: %s\n", e.what());
    return 1;
  }
  std::puts("consumer_cpp: ok");
  return 0;
}
