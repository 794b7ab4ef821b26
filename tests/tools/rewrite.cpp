// Test tool: loads any checkpoint pthio reads (storages mapped to the CPU) and saves it again.
//   pthio_rewrite IN OUT [--legacy] [--layout 1.13|2] [--no-crc]
#include <cstdio>
#include <cstring>
#include <string>

#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: pthio_rewrite IN OUT [--legacy] [--layout 1.13|2] [--no-crc]\n");
    return 2;
  }
  pthio::save_options so;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--legacy")
      so.format = pthio::checkpoint_format::legacy;
    else if (a == "--no-crc")
      so.compute_crc32 = false;
    else if (a == "--layout" && i + 1 < argc)
      so.layout =
          std::string(argv[++i]) == "1.13" ? pthio::torch_layout::v1_13 : pthio::torch_layout::v2;
    else {
      std::fprintf(stderr, "pthio_rewrite: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    pthio::load_options lo;
    lo.map_location = pthio::map_location("cpu");
    pthio::save(argv[2], pthio::load(argv[1], lo), so);
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "pthio_rewrite: %s\n", e.what());
    return 3;
  }
  return 0;
}
