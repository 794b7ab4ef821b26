// Fuzz target: the whole load path from memory -- format detection, then zip checkpoints,
// TorchScript archives, legacy streams and bare pickles -- eagerly from a heap buffer and in
// mmap mode from a real private mapping (a memfd), so zero-copy storages are exercised too.
// Whatever loads is rendered as `pthio dump --json` / `ls --json` would render it. A pickle is
// also read as a torch.distributed.checkpoint .metadata file (read_dcp_metadata: the DCP classes
// only, every field checked).
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "torch/internal.h"

namespace {

// The input as a mapped file: map_file() is the only way to a byte_source that is_mapped().
pthio::byte_source mapped_copy(const std::uint8_t* data, std::size_t size) {
  static int fd = ::memfd_create("pthio-fuzz", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) __builtin_trap();
  for (std::size_t done = 0; done < size;) {
    ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) __builtin_trap();
    done += static_cast<std::size_t>(n);
  }
  return pthio::byte_source::map_file("/proc/self/fd/" + std::to_string(fd));
}

bool load_one(pthio::byte_source src, pthio::load_mode mode, bool strict, std::string* dump,
              unsigned threads = 0, std::string* failure = nullptr) {
  pthio::load_options o;
  o.mode = mode;
  o.strict = strict;
  o.threads = threads;
  o.map_location = pthio::map_location("cpu");
  o.zip.max_inflated_size = std::uint64_t{256} << 20;
  const std::string name = src.name();
  try {
    pthio::checkpoint ck = pthio::load_checkpoint(std::move(src), o);
    std::string d = pthio_fuzz::exercise(ck.root);
    if (!d.empty()) (void)pthio::cli::ls_json(ck, "fuzz.pth");
    if (dump) *dump = std::move(d);
    return true;
  } catch (const pthio::error& e) {
    if (std::string(e.what()).find(name) == std::string::npos) __builtin_trap();  // names the file
    if (failure) *failure = e.what();
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto bytes = pthio_fuzz::as_bytes(data, size);
  std::string eager, mapped, failure;
  const bool ok = load_one(pthio::byte_source::borrow(bytes, "fuzz.pth"), pthio::load_mode::eager,
                           false, &eager, 0, &failure);
  // torch's tensor records take the unpickler's fast path, which must give what the general path
  // gives: the same value, or the same error at the same offset.
  {
    std::string general, general_failure;
    pthio::detail::tensor_record_fast_path() = false;
    const bool ok_general = load_one(pthio::byte_source::borrow(bytes, "fuzz.pth"),
                                     pthio::load_mode::eager, false, &general, 0, &general_failure);
    pthio::detail::tensor_record_fast_path() = true;
    if (ok != ok_general || general != eager || general_failure != failure) __builtin_trap();
  }
  // Weights-only mode refuses more, never loads something else.
  std::string strict;
  if (ok &&
      load_one(pthio::byte_source::borrow(bytes, "fuzz.pth"), pthio::load_mode::eager, true,
               &strict) &&
      strict != eager)
    __builtin_trap();
  if (pthio::detect_format(bytes) == pthio::checkpoint_format::pickle) {
    try {
      pthio::dcp_metadata m = pthio::read_dcp_metadata(bytes, "fuzz.metadata");
      // Every blob it names, as verify and scan list them.
      for (const auto& b : pthio::dcp_blobs(m))
        if (b.storage.relative_path.empty()) __builtin_trap();  // refused by the reader
    } catch (const pthio::error& e) {
      if (std::string(e.what()).find("fuzz.metadata") == std::string::npos) __builtin_trap();
    }
  }
  // Only zip checkpoints load differently in mmap mode (zero-copy storages), or with their records
  // copied by several threads after the pickle (these inputs are under load_options::threads'
  // automatic 8 MiB, so the eager load above used one).
  if (pthio::detect_format(bytes) != pthio::checkpoint_format::zip) return 0;
  std::string threaded;
  const bool ok_threaded = load_one(pthio::byte_source::borrow(bytes, "fuzz.pth"),
                                    pthio::load_mode::eager, false, &threaded, 3);
  if (ok != ok_threaded || (ok && eager != threaded)) __builtin_trap();
  // The same file: the mmap path may differ in where bytes live, never in what loads.
  pthio::byte_source m = mapped_copy(data, size);
  const bool ok_mapped = load_one(m, pthio::load_mode::mmap, false, &mapped);
  // mmap mode skips only the storages' CRC-32 check, so whatever loads eagerly loads mapped.
  if (ok && !ok_mapped) __builtin_trap();
  if (ok && eager != mapped) __builtin_trap();
  return 0;
}
