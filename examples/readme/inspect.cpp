// README, "Inspect a checkpoint": what a file holds, without knowing its layout in advance.
//   readme_inspect CHECKPOINT        (CTest runs it on fixtures/t2/ckpt_adam.pth)
// The README shows the function inspect() below verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <iostream>
#include <string>

#include <pthio/eigen.hpp>
#include <pthio/pthio.hpp>

void inspect(const char* path) {
  pthio::load_options opts;
  opts.mode = pthio::load_mode::mmap;  // tensors view the mapped file: nothing is copied
  opts.map_location = "cpu";           // a file saved on cuda:0 loads on a machine without a GPU
  pthio::checkpoint ck = pthio::load_checkpoint(path, opts);
  std::cout << pthio::format_name(ck.format) << " checkpoint\n";

  // Every tensor, depth first in the file's order, with the key path `pthio ls` prints.
  pthio::visit_tensors(ck.root, [](const std::string& key, const pthio::value& v) {
    const pthio::tensor& t = v.as_tensor();
    std::cout << key << ' ' << pthio::dtype_name(t.dtype()) << ' ' << pthio::shape_string(t.shape())
              << ' ' << t.dev().str() << '\n';
  });

  // Python values are values too: find() looks a str key up in a dict (nullptr when absent).
  if (const pthio::value* epoch = ck.root.find("epoch"))
    std::cout << "epoch " << epoch->as_int() << '\n';
  const pthio::value* sd = ck.root.find("model_state_dict");
  if (sd && sd->find("0.weight")) {
    const pthio::tensor& w = sd->find("0.weight")->as_tensor();
    auto m = pthio::map_matrix<float>(w);  // a strided Eigen view (throws unless float32, 2-D)
    std::cout << "0.weight is " << m.rows() << 'x' << m.cols() << ", [0, 0] = " << m(0, 0) << '\n';
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_inspect CHECKPOINT\n");
    return 2;
  }
  try {
    inspect(argv[1]);
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_inspect: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_inspect: ok\n";
}
