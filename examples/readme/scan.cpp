// README, "Scan an untrusted file": load weights only, and see what a file would have run.
//   readme_scan SAFE_FILE UNSAFE_FILE
// (CTest runs it on fixtures/t2/linear.pth and fixtures/t2/pyvalues.pth, whose argparse.Namespace
// is outside torch's weights-only allowlist.) The README shows load_untrusted() verbatim;
// tests/readme_check.py keeps it so.
#include <cstdio>
#include <iostream>
#include <optional>

#include <pthio/pthio.hpp>

// Weights only: the file may name torch's rebuild functions, storages, dtypes and plain
// containers, nothing else. pthio never executes anything even without strict, but a file that
// needs other classes is not a plain checkpoint.
std::optional<pthio::value> load_untrusted(const char* path) {
  pthio::load_options opts;
  opts.strict = true;
  opts.map_location = "cpu";
  try {
    return pthio::load(path, opts);
  } catch (const pthio::error& e) {
    if (e.kind() != pthio::errc::unsafe_global)
      throw;                                       // corrupt or unreadable: a different problem
    std::cerr << "refused: " << e.what() << '\n';  // names the global and its offset in data.pkl
    return std::nullopt;
  }
}

// Or ask first: the scan reads the pickles, not the tensor data.
bool scan_says_safe(const char* path) {
  const pthio::scan_report r = pthio::scan_file(path);
  for (const auto& name : r.dangerous) std::cerr << "runs code: " << name << '\n';
  return r.verdict() == pthio::scan_verdict::safe;  // unsafe, or unknown: not read in full
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: readme_scan SAFE_FILE UNSAFE_FILE\n");
    return 2;
  }
  try {
    if (!scan_says_safe(argv[1]) || scan_says_safe(argv[2])) return 1;
    if (!load_untrusted(argv[1])) return 1;
    if (load_untrusted(argv[2])) return 1;
    std::cerr.flush();
    // Without strict, the same file loads; the unknown class stays an inert object.
    pthio::value v = pthio::load(argv[2]);
    const pthio::value* ns = v.find("namespace");
    if (!ns || !ns->is_object()) return 1;
    std::cout << "without strict: \"namespace\" is an inert " << ns->as_object().type.qualified()
              << '\n';
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "readme_scan: %s\n", e.what());
    return 1;
  }
  std::cout << "readme_scan: ok\n";
}
