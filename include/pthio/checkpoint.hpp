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

#include <bit>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pthio/export.hpp"
#include "pthio/io.hpp"
#include "pthio/pickle.hpp"
#include "pthio/slice.hpp"
#include "pthio/value.hpp"
#include "pthio/zip.hpp"

namespace pthio {

enum class checkpoint_format { zip, legacy, torchscript, safetensors, pickle, dcp, pt2 };
// "zip", "legacy", "torchscript", "safetensors", "pickle", "dcp", "pt2"
PTHIO_API std::string_view format_name(checkpoint_format f) noexcept;

enum class load_mode {
  eager,  // storages copied into owned host memory (CRC-32 verified when present)
  mmap,   // storages are views into a private memory map of the file (zero-copy when aligned)
  // The pickle only: every tensor has its dtype, shape, strides and offset, checked against its
  // storage's record, but its storage is a placeholder on the meta device (no bytes; data() is
  // null; the saved location stays in the storage value). No record is read: names, dtypes and
  // shapes are listed without touching data. checkpoint::load_tensor() then reads one tensor's
  // record, checkpoint::materialize() all of them. Zip and TorchScript archives, safetensors
  // files and sharded indexes over them are lazy; legacy files (one stream, storages after the
  // pickle) and bare pickles load eagerly in this mode.
  lazy,
};

// Where storages go, from the location tag they were saved with.
class PTHIO_API map_location {
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
  // Threads copying an eager load's records into host memory, with their CRC-32s, after the
  // pickle is read: 0, one per core (at most 8) when the records come to 8 MiB or more, else the
  // calling thread alone; N, that many (the calling thread one of them).
  unsigned threads = 0;
  // Pickle limits. limits.max_memory is the fixed allowance for the objects a pickle builds;
  // load() adds 64 bytes per byte of the pickle itself, since real pickles expand ~30x
  // (a 2-byte memo reference becomes a value).
  unpickle_limits limits;
  zip_read_options zip;
};

namespace detail {
struct lazy_records;  // where a lazy checkpoint's storages are, and the file kept open for them
}

struct PTHIO_API checkpoint {
  value root;
  checkpoint_format format = checkpoint_format::zip;
  std::string archive_name;  // the zip's top folder ("archive", "model"); empty otherwise
  // The byte order of the tensor data in the file (torch's byteorder record; big for files saved
  // on big-endian machines). Loaded tensors are always in host order.
  std::endian byte_order = std::endian::little;

  // True when loaded with load_mode::lazy and not materialized: tensors of `root` are
  // placeholders (meta device) until loaded.
  bool is_lazy() const noexcept { return records_ != nullptr; }

  // The tensor at key path `key` (visit_tensors' spelling: "layer.0.weight",
  // "optimizer.state.0.exp_avg") with its bytes. For a lazy checkpoint, reads that tensor's
  // storage record alone (CRC-32 verified when load_options::verify_crc), byte-swapped if the file
  // is big-endian, onto the device load_options::map_location gave; the result does not share
  // bytes with tensors returned by other calls. Otherwise returns the tensor as loaded.
  // Throws invalid_argument when no tensor has that key path, and the reader's corrupt_zip /
  // corrupt_checkpoint error when the record is damaged. Thread-safe: calls may run concurrently.
  tensor load_tensor(std::string_view key) const;
  // The same for a tensor of this checkpoint's root (a placeholder or a loaded tensor).
  tensor load_tensor(const tensor& t) const;
  // The device a storage's bytes are on, or for a lazy placeholder the device load_tensor() would
  // put them on (where map_location sends the saved location): what an eager load would show,
  // without reading anything.
  device load_device(const storage& s) const;
  // The elements `s` selects (slice.hpp) of the tensor at key path `key`: a new contiguous tensor
  // equal to torch's t[s].contiguous(), in its own storage, with the tensor's dtype and
  // requires_grad, on the device load_options::map_location gave (meta: no bytes read). The
  // tensor's strides and storage offset are honoured (a view in the file reads the view's
  // elements), a big-endian file's elements are byte-swapped, and the sub-byte packed dtypes
  // slice by whole bytes, as torch counts their elements. For a lazy checkpoint only the bytes the
  // slice needs are read, straight from the file: a range of leading rows is one read, a range of
  // columns one read per row (adjacent ones merged), a strided selection of
  // short pieces (under 256 bytes) reads the spans covering them in bounded pieces. The record's
  // CRC-32 cannot be checked on part of it and is not: `verify` (or an eager load) checks whole
  // records. A deflated zip record (not torch's own writing) cannot be read at an offset: it is
  // inflated whole, CRC-32 checked, and sliced in memory. Eager and mmap checkpoints (and legacy
  // files, eager by nature) slice in memory. Throws invalid_argument naming the key, the dimension
  // and the bound for a slice that does not fit the shape, and for a key path no tensor has; the
  // reader's errors for a damaged record. Thread-safe: calls may run concurrently (with each other
  // and with load_tensor).
  tensor load_slice(std::string_view key, const pthio::slice& s) const;
  // The same for a tensor of this checkpoint's root (a placeholder or a loaded tensor); `key`
  // only names it in errors.
  tensor load_slice(const tensor& t, const pthio::slice& s, std::string_view key = {}) const;
  // The elements of a tensor of this checkpoint, each read once per call and no more than twice
  // its size: for a lazy checkpoint, a view covering at least half its record reads the record
  // (load_tensor: CRC-32 checked), a smaller view only its own elements (load_slice of all of
  // it: contiguous, no CRC-32), so that many small views of one large storage (a flat parameter)
  // do not each read all of it. For a loaded checkpoint, the tensor as it is. What the streaming
  // commands (ls --json, diff, convert to safetensors) read tensors with.
  tensor load_elements(const tensor& t) const;
  // Reads every storage not yet read (storages shared by several tensors once, still shared), in
  // place: `root` becomes what an eager load returns, and is_lazy() false.
  void materialize();

 private:
  friend struct detail::lazy_records;
  std::shared_ptr<detail::lazy_records> records_;
};

// Loads a checkpoint of any format detect_format() recognises (a path may also name a safetensors
// file or a Hugging Face *.index.json). Every failure is a pthio::error whose message starts with
// the file's name and, where it applies, names the record and the byte offset: io (cannot open,
// map or read), corrupt_zip, corrupt_pickle, corrupt_safetensors, corrupt_checkpoint (well-formed
// containers describing an impossible checkpoint: a view outside its storage, a missing or short
// record, a CRC-32 mismatch in eager mode), unsupported (a valid feature pthio lacks, named),
// unsafe_global (options.strict met a global outside the allowlist), limit_exceeded
// (options.limits: depth, memo, memory) and cuda (storages mapped to a GPU that is not there).
// Nothing from the file is ever executed. A byte_source that borrows memory must outlive the
// checkpoint in mmap and lazy modes (its tensors view or read that memory).
PTHIO_API checkpoint load_checkpoint(const std::filesystem::path& path,
                                     const load_options& options = {});
PTHIO_API checkpoint load_checkpoint(byte_source source, const load_options& options = {});
// The root object only.
PTHIO_API value load(const std::filesystem::path& path, const load_options& options = {});

// The globals pthio resolves for torch files (rebuild functions, storage classes, dtypes,
// torch.Size/device, numpy scalars and arrays), i.e. torch's weights-only allowlist.
PTHIO_API const global_table& torch_globals();

// What kind of file `bytes` holds, from its first bytes; nullopt when unrecognised.
PTHIO_API std::optional<checkpoint_format> detect_format(std::span<const std::byte> bytes) noexcept;

enum class torch_layout {
  v2,  // records current torch 2.x writes (byteorder, .data/serialization_id, .format_version, ...)
  v1_13,  // exactly what torch 1.13 writes
};

struct save_options {
  checkpoint_format format = checkpoint_format::zip;  // zip or legacy
  torch_layout layout = torch_layout::v2;
  // The zip's top folder; empty: the file name's stem ("model.pth" -> "model"), "archive" in
  // memory.
  std::string archive_name;
  // 40 decimal digits for .data/serialization_id; empty: random.
  std::string serialization_id;
  // CRC-32 of every record (zip format). false writes CRC 0, as torch 2.5+ does after
  // torch.serialization.set_crc32_options(False): torch loads such files, pthio takes 0 as
  // "absent" (load and `pthio verify` skip the check), but `unzip -t` reports CRC errors.
  bool compute_crc32 = true;
};

// Saves atomically: a temporary beside `path`, fsync'd, renamed over it; on any failure the
// temporary is removed and a file already at `path` is left as it was. Throws io (cannot create,
// write, fsync or rename), unsupported (a value the format cannot hold: quantized tensors, GPU
// tensors without CUDA to copy them back, a non-tensor in a safetensors save), invalid_argument
// (bad options, such as a malformed serialization_id) and cuda. The sink overload writes the same
// bytes to `out` (nothing is atomic there: the sink decides).
PTHIO_API void save(const std::filesystem::path& path, const value& root,
                    const save_options& options = {});
PTHIO_API void save(sink& out, const value& root, const save_options& options = {});

// Visits every tensor reachable from `root` depth first, in the file's order, with its key path
// (dict keys as text, list/tuple indices in decimal, object state keys, joined by '.'; "" for a
// root tensor).
PTHIO_API void visit_tensors(
    const value& root, const std::function<void(const std::string& key, const value& tensor)>& fn);
// The key-path spelling of a dict key: a str as it is, an int in decimal, None/True/False.
PTHIO_API std::string key_text(const value& key);

}  // namespace pthio
