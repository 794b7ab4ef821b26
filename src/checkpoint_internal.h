// Pieces shared by the checkpoint loaders and savers (not part of the public API).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "pthio/checkpoint.hpp"

namespace pthio::detail {

[[noreturn]] void bad_args(const char* fn, const std::string& why);
std::vector<std::int64_t> int_sequence(const value& v, const char* fn, const char* what);

// Replaces, in place, every value for which fn returns a replacement (iterative walk; shared
// containers visited once; replaced values are not descended into).
void transform_values(value& root, const std::function<std::optional<value>(const value&)>& fn);

// A lazy checkpoint's storages: where each placeholder's bytes are, and the file kept open.
struct lazy_records {
  struct record {
    std::string key;                   // the storage key (record name under data/, tensor name)
    const zip_entry* entry = nullptr;  // zip and TorchScript: the record
    std::uint64_t offset = 0;          // otherwise: the bytes in the source
    std::uint64_t nbytes = 0;
    dtype t = dtype::uint8;            // element type, for a big-endian file's byte swap
    device target;                     // where map_location sends it
  };

  byte_source source;
  std::shared_ptr<const zip_reader> zip;
  bool swap = false;
  bool verify_crc = true;

  // A placeholder (meta, no bytes) for `r`'s bytes, registered.
  storage placeholder(record r);
  // The record of a placeholder; nullptr for any other storage.
  const record* find(const storage& s) const;
  // The record's bytes now, on its target device. Thread-safe.
  storage read(const record& r);
  // The tensor at a key path of `root` (indexed on the first call); nullptr if none.
  const tensor* by_key(const value& root, const std::string& key);
  bool empty() const noexcept { return by_storage.empty(); }

  static void attach(checkpoint& ck, std::shared_ptr<lazy_records> r) { ck.records_ = std::move(r); }

 private:
  std::unordered_map<const void*, record> by_storage;  // placeholder storage id -> its record
  std::vector<storage> placeholders;                   // keeps the ids above unique
  std::mutex inflate_mutex;  // zip_reader keeps inflated copies of deflated records in a cache
  std::once_flag index_once;
  std::unordered_map<std::string, tensor> index;
};

// The children of `v` that key paths descend into, with the part each adds to the path (visit_tensors'
// spelling: dict keys as key_text, list/tuple/object-item indices in decimal, an object's state
// dict entries, then its list and dict items). Returns false for a value that is no container.
bool for_each_key_path_child(const value& v, const std::function<void(const std::string&, const value&)>& fn);

// Key paths and `dump --json` write shared containers out in full, once per reference: a few
// hundred bytes of pickle can nest (x, x) sixty times. Refuses (limit_exceeded, naming `what`) a
// value whose expansion exceeds 16 times the values it holds plus 100,000, and a cyclic one.
void check_expansion(const value& root, const char* what);

// Host bytes to a storage on `target` (cpu: a copy).
storage copy_to_device(std::span<const std::byte> bytes, const device& target);

checkpoint load_safetensors(const byte_source& src, const load_options& options);
void save_safetensors(sink& out, const value& root, const save_options& options);

}  // namespace pthio::detail
