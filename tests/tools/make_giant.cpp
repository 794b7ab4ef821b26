// Test tool: writes checkpoints past the classic zip limits with pthio::save.
//   pthio_make_giant OUT records N   state dict {"t0": [0.], ..., "t{N-1}": [N-1.]} (N records)
//   pthio_make_giant OUT big BYTES   {"big": float32 tensor of BYTES/4 zeros with 1, 3, 2 at
//                                     the first, middle and last element}
#include <cstdio>
#include <cstdlib>
#include <string>

#include "pthio/pthio.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: pthio_make_giant OUT records N | OUT big BYTES\n");
    return 2;
  }
  try {
    std::string mode = argv[2];
    long long n = std::atoll(argv[3]);
    pthio::value sd = pthio::value::make_ordered_dict();
    if (mode == "records") {
      for (long long i = 0; i < n; ++i) {
        std::string key(1, 't');
        key += std::to_string(i);
        sd.as_dict().set(pthio::value(key),
                         pthio::value(pthio::tensor::from_values<float>({float(i)}, {1})));
      }
    } else {
      std::int64_t count = n / 4;
      pthio::tensor t = pthio::tensor::zeros(pthio::dtype::float32, {count});
      t.data<float>()[0] = 1.0f;
      t.data<float>()[count / 2] = 3.0f;
      t.data<float>()[count - 1] = 2.0f;
      sd.as_dict().set(pthio::value("big"), pthio::value(t));
    }
    pthio::save(argv[1], sd);
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 3;
  }
  return 0;
}
