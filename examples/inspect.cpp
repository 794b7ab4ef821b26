// Lists a checkpoint's tensors and prints the first values of one of them.
//   inspect FILE [KEY]
#include <cstdio>

#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: inspect FILE [KEY]\n");
    return 2;
  }
  try {
    pthio::load_options opts;
    opts.map_location = "cpu";  // GPU-saved files load on the CPU
    pthio::checkpoint ck = pthio::load_checkpoint(argv[1], opts);
    pthio::visit_tensors(ck.root, [](const std::string& key, const pthio::value& v) {
      const pthio::tensor& t = v.as_tensor();
      std::printf("%-40s %-10s %s\n", key.c_str(),
                  std::string(pthio::dtype_name(t.dtype())).c_str(),
                  pthio::shape_string(t.shape()).c_str());
    });
    if (argc > 2) {
      pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
        if (key != argv[2]) return;
        pthio::tensor t = v.as_tensor().to(pthio::dtype::float32).contiguous();
        for (std::int64_t i = 0; i < std::min<std::int64_t>(t.numel(), 8); ++i)
          std::printf("%g ", t.data<float>()[i]);
        std::printf("\n");
      });
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
