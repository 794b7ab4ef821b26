// Test tool: pthio::convert to a DCP folder with dcp_save_options::zstd, which the command does
// not expose (its flags are a contract).
//   pthio_dcp_zstd IN DIR
#include <cstdio>

#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: pthio_dcp_zstd IN DIR\n");
    return 2;
  }
  try {
    pthio::convert_options co;
    co.to = pthio::checkpoint_format::dcp;
    co.dcp.zstd = true;
    pthio::load_options lo;
    lo.map_location = pthio::map_location("cpu");
    const auto r = pthio::convert(argv[1], argv[2], co, lo);
    std::printf("wrote %s (dcp, zstd, %zu tensors)\n", argv[2], r.tensors);
    return 0;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "pthio_dcp_zstd: %s\n", e.what());
    return 3;
  }
}
