// README, "Load one tensor at a time": list a checkpoint without reading its data, then read the
// tensors one by one (each reads its own record only).
//   readme_lazy CHECKPOINT        (CTest runs it on fixtures/t2/ckpt_adam.pth)
// The README shows the function stream() below verbatim; tests/readme_check.py keeps it so.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <pthio/pthio.hpp>

std::size_t stream(const char* path) {
  pthio::load_options opts;
  opts.mode = pthio::load_mode::lazy;  // parse the pickle only: no storage record is read
  opts.map_location = "cpu";
  pthio::checkpoint ck = pthio::load_checkpoint(path, opts);

  // Names, dtypes and shapes are there; the tensors are placeholders on the meta device.
  std::vector<std::string> keys;
  pthio::visit_tensors(ck.root,
                       [&](const std::string& key, const pthio::value&) { keys.push_back(key); });

  std::size_t bytes = 0;
  for (const std::string& key : keys) {
    // Reads this tensor's record alone (CRC-32 checked) into memory of its own; it is freed when
    // `t` goes, so at most one tensor is in memory at a time.
    pthio::tensor t = ck.load_tensor(key);
    bytes += t.nbytes();
  }
  return bytes;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: readme_lazy CHECKPOINT\n");
    return 2;
  }
  try {
    // The same bytes as an eager load: the check behind the "ok" line.
    const std::size_t got = stream(argv[1]);
    std::size_t want = 0;
    pthio::load_options o;
    o.map_location = "cpu";
    pthio::visit_tensors(pthio::load(argv[1], o), [&](const std::string&, const pthio::value& v) {
      want += v.as_tensor().nbytes();
    });
    std::cout << "read " << got << " bytes one tensor at a time\n";
    if (got != want || got == 0) {
      std::fprintf(stderr, "readme_lazy: %zu bytes, an eager load has %zu\n", got, want);
      return 1;
    }
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_lazy: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_lazy: ok\n";
}
