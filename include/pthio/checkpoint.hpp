// pthio — load and save torch checkpoints.
//
// Formats read: the zip format (torch >= 1.6: <archive>/data.pkl + <archive>/data/<key> records),
// the legacy stream (torch < 1.6: magic, protocol, sys_info, object pickle, key list, raw
// storages), TorchScript archives (torch.jit.save; the module tree's parameters and buffers), and a
// bare pickle stream (scan/dump only: no storages). Formats written: zip (as torch 2.x or 1.13
// lays it out) and legacy.
//
// A tensor is rebuilt from (storage, storage_offset, size, stride, requires_grad, hooks[, dtype]);
// its storage is the record named by the persistent id ('storage', class, key, location, numel).
// Storages named by several tensors are loaded once and shared. Every view is checked to lie
// inside its storage's record; a record shorter than numel * element size is an error.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pthio/io.hpp"
#include "pthio/pickle.hpp"
#include "pthio/value.hpp"
#include "pthio/zip.hpp"

namespace pthio {

enum class checkpoint_format { zip, legacy, torchscript, safetensors, pickle };
std::string_view format_name(checkpoint_format f) noexcept;  // "zip", "legacy", ...

enum class load_mode {
  eager,  // storages copied into owned host memory (CRC-32 verified when present)
  mmap,   // storages are views into a private memory map of the file (zero-copy when aligned)
};

// Where storages go, from the location tag they were saved with.
class map_location {
 public:
  map_location() = default;  // keep the saved location
  map_location(const device& to) : fn_([to](const device&) { return to; }) {}
  map_location(std::string_view tag) : map_location(device::parse(tag)) {}
  map_location(const char* tag) : map_location(std::string_view(tag)) {}
  // Saved tag -> target tag ("cuda:1" -> "cuda:0"); tags not listed stay.
  static map_location mapping(std::vector<std::pair<std::string, std::string>> pairs);
  static map_location function(std::function<device(const device& saved)> fn);

  device apply(const device& saved) const { return fn_ ? fn_(saved) : saved; }
  bool is_identity() const noexcept { return !fn_; }

 private:
  std::function<device(const device&)> fn_;
};

struct load_options {
  load_mode mode = load_mode::eager;
  pthio::map_location map_location;
  // Weights-only: refuse any global outside torch's weights-only allowlist.
  bool strict = false;
  // Verify each storage record's CRC-32 (eager mode; CRC 0 counts as absent).
  bool verify_crc = true;
  // Pickle limits. limits.max_memory is the fixed allowance for the objects a pickle builds;
  // load() adds 64 bytes per byte of the pickle itself, since real pickles expand ~30x
  // (a 2-byte memo reference becomes a value).
  unpickle_limits limits;
  zip_read_options zip;
};

struct checkpoint {
  value root;
  checkpoint_format format = checkpoint_format::zip;
  std::string archive_name;  // the zip's top folder ("archive", "model"); empty otherwise
  std::string byte_order = "little";
};

checkpoint load_checkpoint(const std::filesystem::path& path, const load_options& options = {});
checkpoint load_checkpoint(byte_source source, const load_options& options = {});
// The root object only.
value load(const std::filesystem::path& path, const load_options& options = {});

// The globals pthio resolves for torch files (rebuild functions, storage classes, dtypes,
// torch.Size/device, numpy scalars and arrays), i.e. torch's weights-only allowlist.
const global_table& torch_globals();

// What kind of file `bytes` holds, from its first bytes; nullopt when unrecognised.
std::optional<checkpoint_format> detect_format(std::span<const std::byte> bytes) noexcept;

enum class torch_layout {
  v2,     // records current torch 2.x writes (byteorder, .data/serialization_id, .format_version, ...)
  v1_13,  // exactly what torch 1.13 writes
};

struct save_options {
  checkpoint_format format = checkpoint_format::zip;  // zip or legacy
  torch_layout layout = torch_layout::v2;
  // The zip's top folder; empty: the file name's stem ("model.pth" -> "model"), "archive" in memory.
  std::string archive_name;
  // 40 decimal digits for .data/serialization_id; empty: random.
  std::string serialization_id;
};

// Saves atomically: a temporary beside `path`, fsync'd, renamed over it.
void save(const std::filesystem::path& path, const value& root, const save_options& options = {});
void save(sink& out, const value& root, const save_options& options = {});

// Visits every tensor reachable from `root` depth first, in the file's order, with its key path
// (dict keys as text, list/tuple indices in decimal, object state keys, joined by '.'; "" for a
// root tensor).
void visit_tensors(const value& root,
                   const std::function<void(const std::string& key, const value& tensor)>& fn);
// The key-path spelling of a dict key: a str as it is, an int in decimal, None/True/False.
std::string key_text(const value& key);

}  // namespace pthio
