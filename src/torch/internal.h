// Pieces shared by the torch checkpoint loaders and savers (not part of the public API): the
// rebuild helpers, persistent ids, where a storage's bytes go, lazy records and the value walks.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "../cuda/device_copy.h"
#include "pthio/checkpoint.hpp"
#include "pthio/pt2.hpp"
#include "pthio/safetensors.hpp"

namespace pthio {
struct scan_report;
}

namespace pthio::detail {

// globals.cpp: argument checks for torch's rebuild functions and the numpy globals.
[[noreturn]] void bad_args(const char* fn, const std::string& why);
void need_args(std::span<const value> a, std::size_t lo, std::size_t hi, const char* fn);
std::vector<std::int64_t> int_sequence(const value& v, const char* fn, const char* what);
bool truthy(const value& v);  // Python's truth of a bool, int or None

// numpy.cpp: numpy.core.multiarray.scalar (a number), and numpy arrays (`_reconstruct` objects
// with their BUILD state) turned into tensors in place after unpickling.
value numpy_scalar(std::span<const value> a);
void convert_numpy_arrays(value& root);

// persistent_id.cpp: what a persistent id ('storage', storage_type, key, location, numel[,
// view_metadata]) names.
struct storage_spec {
  dtype t = dtype::uint8;
  std::uint64_t numel = 0;
  std::uint64_t nbytes = 0;
  std::string key;
  device location;
};

// What the last persistent id of a load named as its storage type and location, and what they
// mean: a state_dict names the same ones for every tensor.
struct pid_memory {
  global_ref type;
  dtype t = dtype::uint8;
  std::string location_text;
  device location;
};

// The zip format's five fields, or the legacy format's six (the sixth, view metadata, is left to
// the caller).
storage_spec parse_pid(const value& pid, bool legacy, pid_memory& last);
// Told the bytes a lazy record read has copied so far, in pieces of 64 MiB, while a scope is open
// on this thread (the command's progress line for a large `cat`; the record's CRC-32 is still
// checked whole).
class read_observer_scope {
 public:
  explicit read_observer_scope(std::function<void(std::uint64_t bytes)> f);
  ~read_observer_scope();
  read_observer_scope(const read_observer_scope&) = delete;
  read_observer_scope& operator=(const read_observer_scope&) = delete;
  static const std::function<void(std::uint64_t)>* current() noexcept;

 private:
  std::function<void(std::uint64_t)> f_;
  const std::function<void(std::uint64_t)>* saved_;
};

// Whether zip loads read torch's tensor records through unpickle_options::load_tensor_record
// (on unless switched off, for tests and fuzzing that compare the two paths; per thread).
bool& tensor_record_fast_path() noexcept;
// Tensor records read that way on this thread so far (for tests).
std::uint64_t& tensor_records_read() noexcept;

// The same from the fields of a zip-format id (what unpickle_options::load_tensor_record gets).
storage_spec parse_pid_fields(const global_ref& type, std::string_view key,
                              std::string_view location, std::int64_t numel, pid_memory& last);

// place.cpp: where a storage's bytes go.

// Big-endian storages to this machine's order, in place.
void swap_bytes(std::byte* p, std::size_t n, dtype t);

// Refuses a storage saved on `saved` and mapped to a CUDA device that is not there.
void check_target(const device& target, const device& saved);

// One storage's bytes (elements of `t`) as a storage on `target`, the decision the zip and legacy
// loaders and lazy reads share: meta, a placeholder with no bytes; cpu, a view of `bytes` kept
// alive by `view_owner` when one is given and the bytes are aligned for `t`, else a copy
// (byte-swapped when `swap`); cuda, an upload through `uploads` (unless swapped, `bytes` must stay
// valid until uploads.finish(), which checks `crc`; `file` says where they also lie in a file, to
// be read from there). Other devices are refused.
storage place_storage(std::span<const std::byte> bytes, dtype t, const device& target, bool swap,
                      const std::shared_ptr<const void>& view_owner, device_upload& uploads,
                      std::optional<device_upload::crc_check> crc = std::nullopt,
                      std::optional<device_upload::in_file> file = std::nullopt);

struct dcp_tensor;  // dcp.cpp: where a torch.distributed.checkpoint tensor's chunks are

// lazy.cpp: a lazy checkpoint's storages: where each placeholder's bytes are, and the files kept
// open for them (one for a checkpoint, one per shard for a sharded index).
struct lazy_records {
  struct file {
    byte_source source;
    std::shared_ptr<const zip_reader> zip;  // zip and TorchScript archives
    bool swap = false;                      // big-endian storages
    bool verify_crc = true;
  };
  struct record {
    std::string key;                   // the storage key (record name under data/, tensor name)
    const zip_entry* entry = nullptr;  // zip and TorchScript: the record
    std::uint64_t offset = 0;          // otherwise: the bytes in the source
    std::uint64_t nbytes = 0;
    dtype t = dtype::uint8;  // element type, for a big-endian file's byte swap
    device target;           // where map_location sends it
    std::uint32_t file = 0;  // index in files
    // A torch.distributed.checkpoint tensor: assembled from its chunks (the fields above but
    // key, nbytes, t and target unused).
    std::shared_ptr<const dcp_tensor> dcp;
  };

  std::vector<file> files;

  // A placeholder (meta, no bytes) for `r`'s bytes, registered.
  storage placeholder(record r);
  // The record of a placeholder; nullptr for any other storage.
  const record* find(const storage& s) const;
  // The record's bytes now, on its target device. Thread-safe.
  storage read(const record& r);
  // A stored little-endian record of a mapped file, read straight into `out` (which must be its
  // size) and CRC-32 checked; false, with nothing read, for any other record (deflated, swapped,
  // a DCP tensor, another size). Saves a copy where the caller has the bytes' final place.
  bool read_into(const record& r, std::span<std::byte> out) const;
  // slice_read.cpp: the elements of `t` (a view of r's placeholder) that `dims` selects, read
  // from the file, on r's target device. Thread-safe.
  tensor read_slice(const record& r, const tensor& t, const std::vector<resolved_dim>& dims);
  // The tensor at a key path of `root` (indexed on the first call); nullptr if none.
  const tensor* by_key(const value& root, const std::string& key);
  bool empty() const noexcept { return by_storage.empty(); }
  // Takes over `other`'s files and placeholders (a sharded load gathers its shards' records).
  void absorb(const lazy_records& other);

  static void attach(checkpoint& ck, std::shared_ptr<lazy_records> r) {
    ck.records_ = std::move(r);
  }
  static const std::shared_ptr<lazy_records>& of(const checkpoint& ck) { return ck.records_; }

 private:
  std::unordered_map<const void*, record> by_storage;  // placeholder storage id -> its record
  std::vector<storage> placeholders;                   // keeps the ids above unique
  std::mutex inflate_mutex;  // zip_reader keeps inflated copies of deflated records in a cache
  std::once_flag index_once;
  std::unordered_map<std::string, tensor> index;
};

// sharded.cpp: names from files in error messages (JSON-quoted, cut at 200 bytes), and why a
// path a file names (a shard, a DCP data file) would leave its folder ("" when it stays inside:
// relative, no '..' part, no NUL).
std::string show_name(const std::string& s);
std::string relative_path_problem(const std::string& path);

// dcp.cpp: a DCP tensor's chunks read, checked and assembled, on `target`. Thread-safe.
storage read_dcp_tensor(const dcp_tensor& d, const device& target);
// The elements `dims` selects of a DCP tensor, read from the chunks the selection meets (each
// chunk's part alone, for a stored blob), on `target`. Thread-safe.
tensor read_dcp_slice(const dcp_tensor& d, const std::vector<resolved_dim>& dims,
                      const device& target);

// unpickle.cpp: the unpickler as the torch loaders run it.
unpickle_options pickle_options_for(const load_options& opt, std::string context);
// Runs the unpickler and turns numpy arrays into tensors; `consumed` (when given) gets the bytes
// used.
value run_unpickle(std::span<const std::byte> bytes, unpickle_options& u, std::size_t* consumed);

// host_copy.cpp: eager loads to the CPU (zip records, safetensors data). Each storage is
// allocated when the file names it; its bytes are copied, CRC-32 checked and byte-swapped once the
// whole file has been read, in pieces of at most 4 MiB spread over several threads
// (load_options::threads): the copies, and the page faults of the fresh memory they land in, are
// most of an eager load's time, and one core does them at half the speed of two. Nothing reads a
// storage's bytes before.
class host_copies {
 public:
  // Queues the copy of `src` (record `e` of `zip`, stored) into `dst`, its elements of type `t`
  // byte-swapped when `swap`, its CRC-32 compared with the central directory's when `verify`.
  void add(const zip_reader& zip, const zip_entry& e, std::span<const std::byte> src,
           std::byte* dst, dtype t, bool swap, bool verify);
  // Queues the copy of `src`, bytes of `source`, into `dst`: no checksum, no swap.
  void add(const byte_source& source, std::span<const std::byte> src, std::byte* dst);
  // Runs every queued copy on up to `threads` threads (load_options::threads: 0, one per core, at
  // most 8, for 8 MiB or more in all), then throws the reader's CRC-32 error for the first
  // record, in the order added, whose bytes do not match.
  void finish(unsigned threads);

 private:
  struct record {
    const byte_source* source;
    const zip_reader* zip;  // with `entry`, for the CRC-32 error; null outside a zip
    const zip_entry* entry;
    std::uint64_t offset;  // of the bytes in *source
    std::size_t length;
    std::byte* dst;
    dtype type;
    bool swap;
    bool verify;
  };
  std::vector<record> records_;
  std::uint64_t bytes_ = 0;
};

// load_zip.cpp: what one zip record becomes as a storage (the zip, TorchScript and .pt2 loaders):
// a lazy placeholder (no read), or its bytes, read and CRC-32 checked (eager), placed on the
// target device; viewed in place when zero_copy (mmap mode over a mapped little-endian file).
struct zip_storages {
  const zip_reader& zip;
  const load_options& opt;
  bool swap;
  bool zero_copy;
  lazy_records* lazy;     // lazy mode: placeholders only
  device_upload uploads;  // storages bound for a GPU: in flight until finish()
  // Eager host copies deferred to copies.finish() (load_zip); off, each is made in make().
  bool defer_copies;
  host_copies copies;

  storage make(const zip_entry& e, const std::string& key, dtype t, const device& target);
};
// How a zip's records become storages, the same for the zip, TorchScript and .pt2 loaders: byte
// swapped when the archive is big-endian; viewed in place in mmap mode over a mapped or owned
// source (memory a caller lent, perhaps read-only, is copied); in lazy mode, placeholders whose
// records name the source and its zip, kept open.
struct zip_placement {
  bool swap = false;
  bool zero_copy = false;
  std::shared_ptr<lazy_records> lazy;
};
zip_placement plan_placement(const byte_source& src, std::shared_ptr<const zip_reader> zip,
                             std::endian order, const load_options& opt);
// The byte order <prefix>byteorder says (little when absent); corrupt_checkpoint for another text.
std::endian read_byteorder(const zip_reader& zip, const std::string& prefix,
                           const load_options& opt);

// pt2.cpp: a torch.export archive (pt2.hpp), given the zip it is.
checkpoint load_pt2(const byte_source& src, std::shared_ptr<const zip_reader> zip,
                    const pt2_info& info, const load_options& options);

// The loaders load_checkpoint dispatches to.
// zip and TorchScript; with allow_pt2, also a torch.export archive (told by its records, before
// any data.pkl is looked for).
checkpoint load_zip(const byte_source& src, const load_options& options, bool allow_pt2 = true);
checkpoint load_legacy(const byte_source& src, const load_options& options);  // torch < 1.6

// load.cpp: a weights-only load's last check: throws unsafe_global (the first unsafe import)
// or corrupt_checkpoint (the scan's first error) unless the report's verdict is safe.
void require_scan_safe(const scan_report& r);
checkpoint load_pickle(const byte_source& src, const load_options& options);  // a bare pickle
checkpoint load_safetensors(const byte_source& src, const load_options& options);
void save_safetensors(sink& out, const value& root, const save_options& options);
// safetensors.cpp: save_safetensors, each tensor's bytes taken from fetch(tensor) when it is set
// (a streaming convert reads one tensor at a time), else from the tensor itself.
void write_safetensors(sink& out, const value& root, const safetensors_save_options& options,
                       const std::function<tensor(const tensor&)>& fetch);
// save.cpp: the zip format as save() writes it, reading each placeholder storage of `lazy` just
// before its record is written and releasing it after (`lazy` may be null: save() itself).
void save_zip_streaming(sink& out, const value& root, const save_options& options,
                        lazy_records* lazy);

// walk.cpp: walks over a loaded value, and Python's repr (and str) of a float: the shortest
// digits that round-trip, laid out as CPython does ("0.1", "2.0", "1e+16", "nan", "-inf").
std::string python_float_repr(double d);
std::string python_float_repr(float f);

// Replaces, in place, every value for which fn returns a replacement (iterative walk; shared
// containers visited once; replaced values are not descended into).
void transform_values(value& root, const std::function<std::optional<value>(const value&)>& fn);

// The children of `v` that key paths descend into, with the part each adds to the path
// (visit_tensors' spelling: dict keys as key_text, list/tuple/object-item indices in decimal, an
// object's state dict entries, then its list and dict items). Returns false for a value that is no
// container.
bool for_each_key_path_child(const value& v,
                             const std::function<void(const std::string&, const value&)>& fn);

// Key paths and `dump --json` write shared containers out in full, once per reference: a few
// hundred bytes of pickle can nest (x, x) sixty times. Refuses (limit_exceeded, naming `what`) a
// value whose expansion exceeds 16 times the values it holds plus 100,000, and a cyclic one.
void check_expansion(const value& root, const char* what);

}  // namespace pthio::detail
