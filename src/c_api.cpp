#include "pthio/pthio.h"
#include "pthio/safetensors.hpp"

#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "byte_reader.h"
#include "pthio/checkpoint.hpp"
#include "pthio/dcp.hpp"
#include "pthio/dlpack.hpp"
#include "pthio/state_dict.hpp"

#ifndef PTHIO_VERSION_STRING
#define PTHIO_VERSION_STRING "unknown"
#endif

// pthio_dtype mirrors pthio::dtype value for value.
static_assert(PTHIO_FLOAT64 == static_cast<int>(pthio::dtype::float64));
static_assert(PTHIO_BOOL == static_cast<int>(pthio::dtype::bool_));
static_assert(PTHIO_QINT8 == static_cast<int>(pthio::dtype::qint8));
static_assert(PTHIO_FLOAT8_E4M3FN == static_cast<int>(pthio::dtype::float8_e4m3fn));
static_assert(PTHIO_FLOAT4_E2M1FN_X2 == static_cast<int>(pthio::dtype::float4_e2m1fn_x2));
static_assert(PTHIO_BITS8 == static_cast<int>(pthio::dtype::bits8));
static_assert(PTHIO_BCOMPLEX32 + 1 == static_cast<int>(pthio::dtype_count));

namespace {

// Failures the C API reports that have no pthio::errc (an absent key, an index past the end).
struct c_error {
  pthio_status status;
  std::string message;
};

thread_local std::string last_error;

pthio_status status_of(pthio::errc kind) noexcept {
  switch (kind) {
    case pthio::errc::io: return PTHIO_ERR_IO;
    case pthio::errc::corrupt_zip: return PTHIO_ERR_CORRUPT_ZIP;
    case pthio::errc::corrupt_pickle: return PTHIO_ERR_CORRUPT_PICKLE;
    case pthio::errc::corrupt_checkpoint: return PTHIO_ERR_CORRUPT_CHECKPOINT;
    case pthio::errc::corrupt_safetensors: return PTHIO_ERR_CORRUPT_SAFETENSORS;
    case pthio::errc::unsupported: return PTHIO_ERR_UNSUPPORTED;
    case pthio::errc::unsafe_global: return PTHIO_ERR_UNSAFE_GLOBAL;
    case pthio::errc::limit_exceeded: return PTHIO_ERR_LIMIT_EXCEEDED;
    case pthio::errc::mismatch: return PTHIO_ERR_MISMATCH;
    case pthio::errc::invalid_argument: return PTHIO_ERR_INVALID_ARGUMENT;
    case pthio::errc::cuda: return PTHIO_ERR_CUDA;
  }
  return PTHIO_ERR_INTERNAL;
}

// Runs `f`, turning every exception into a status and the thread's message; nothing escapes
// into C callers.
template <class F>
pthio_status guarded(F&& f) noexcept {
  try {
    last_error.clear();
    f();
    return PTHIO_OK;
  } catch (const c_error& e) {
    try {
      last_error = e.message;
    } catch (...) {}
    return e.status;
  } catch (const pthio::error& e) {
    try {
      last_error = e.what();
    } catch (...) {}
    return status_of(e.kind());
  } catch (const std::bad_alloc&) {
    try {
      last_error = "out of memory";
    } catch (...) {}
    return PTHIO_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    try {
      last_error = std::string("internal error: ") + e.what();
    } catch (...) {}
    return PTHIO_ERR_INTERNAL;
  } catch (...) {
    try {
      last_error = "internal error: unknown exception";
    } catch (...) {}
    return PTHIO_ERR_INTERNAL;
  }
}

void require(bool ok, const char* what) {
  if (!ok) throw c_error{PTHIO_ERR_INVALID_ARGUMENT, what};
}

// A C caller may pass any int where an enum is declared; in C++ reading an enum object outside
// its enumerators' range is undefined, so the value is read through its bytes.
template <class E>
int raw_value(const E& e) noexcept {
  static_assert(sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

bool valid_dtype(int d) noexcept { return d >= 0 && d < static_cast<int>(pthio::dtype_count); }

// NUL-terminated dtype names with static lifetime.
const char* dtype_cstr(pthio::dtype t) {
  static const auto names = [] {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < pthio::dtype_count; ++i)
      v.emplace_back(pthio::dtype_name(static_cast<pthio::dtype>(i)));
    return v;
  }();
  return names[static_cast<std::size_t>(t)].c_str();
}

// Device tags handed out as C strings, kept as long as the handle (node-based: stable addresses).
using device_names = std::set<std::string, std::less<>>;

void fill_info(pthio_tensor_info* out, const std::string& key, const pthio::tensor& t,
               device_names& devices) {
  pthio_tensor_info info{};
  info.key = key.c_str();
  info.dtype_name = dtype_cstr(t.dtype());
  info.dtype = static_cast<pthio_dtype>(t.dtype());
  info.ndim = static_cast<std::int32_t>(t.dim());
  info.shape = t.shape().empty() ? nullptr : t.shape().data();
  info.strides = t.strides().empty() ? nullptr : t.strides().data();
  info.storage_offset = t.storage_offset();
  info.numel = t.numel();
  info.element_size = t.element_size();
  info.nbytes = t.nbytes();
  // A meta tensor has no bytes: no address either.
  info.data = t.get_storage().data() ? static_cast<void*>(t.raw_data()) : nullptr;
  info.device = devices.insert(t.dev().str()).first->c_str();
  info.requires_grad = t.requires_grad() ? 1 : 0;
  info.is_contiguous = t.is_contiguous() ? 1 : 0;
  *out = info;
}

}  // namespace

struct pthio_checkpoint {
  struct entry {
    std::string key;
    pthio::tensor t;
  };
  pthio::checkpoint ck;
  std::string format;
  std::vector<entry> tensors;
  std::map<std::string, std::size_t, std::less<>> index;  // key -> first tensor with it
  device_names devices;
};

struct pthio_state_dict {
  pthio::state_dict sd;
  device_names devices;
};

struct pthio_tensor {
  std::string key;
  pthio::tensor t;
  device_names devices;
};

extern "C" {

const char* pthio_version(void) { return PTHIO_VERSION_STRING; }

const char* pthio_last_error(void) { return last_error.c_str(); }

const char* pthio_status_name(pthio_status status) {
  switch (raw_value(status)) {
    case PTHIO_OK: return "ok";
    case PTHIO_ERR_IO: return "io";
    case PTHIO_ERR_CORRUPT_ZIP: return "corrupt zip";
    case PTHIO_ERR_CORRUPT_PICKLE: return "corrupt pickle";
    case PTHIO_ERR_CORRUPT_CHECKPOINT: return "corrupt checkpoint";
    case PTHIO_ERR_CORRUPT_SAFETENSORS: return "corrupt safetensors";
    case PTHIO_ERR_UNSUPPORTED: return "unsupported";
    case PTHIO_ERR_UNSAFE_GLOBAL: return "unsafe global";
    case PTHIO_ERR_LIMIT_EXCEEDED: return "limit exceeded";
    case PTHIO_ERR_MISMATCH: return "mismatch";
    case PTHIO_ERR_INVALID_ARGUMENT: return "invalid argument";
    case PTHIO_ERR_CUDA: return "cuda";
    case PTHIO_ERR_NOT_FOUND: return "not found";
    case PTHIO_ERR_OUT_OF_MEMORY: return "out of memory";
    case PTHIO_ERR_INTERNAL: return "internal";
  }
  return "unknown status";
}

const char* pthio_dtype_name(pthio_dtype dtype) {
  const int d = raw_value(dtype);
  if (!valid_dtype(d)) return nullptr;
  try {
    return dtype_cstr(static_cast<pthio::dtype>(d));
  } catch (...) {
    return nullptr;
  }
}

size_t pthio_dtype_element_size(pthio_dtype dtype) {
  const int d = raw_value(dtype);
  return valid_dtype(d) ? pthio::element_size(static_cast<pthio::dtype>(d)) : 0;
}

pthio_status pthio_dtype_from_name(const char* name, pthio_dtype* out) {
  return guarded([&] {
    require(name && out, "pthio_dtype_from_name: name and out must not be NULL");
    auto t = pthio::dtype_from_name(name);
    if (!t)
      throw c_error{PTHIO_ERR_INVALID_ARGUMENT, std::string("unknown dtype \"") + name + "\""};
    *out = static_cast<pthio_dtype>(*t);
  });
}

void pthio_load_options_init(pthio_load_options* options) {
  if (!options) return;
  *options = pthio_load_options{};
  options->verify_crc = 1;
}

pthio_status pthio_checkpoint_open(const char* path, const pthio_load_options* options,
                                   pthio_checkpoint** out) {
  return guarded([&] {
    require(path && out, "pthio_checkpoint_open: path and out must not be NULL");
    pthio_load_options o;
    pthio_load_options_init(&o);
    if (options) o = *options;
    pthio::load_options lo;
    lo.mode = o.lazy   ? pthio::load_mode::lazy
              : o.mmap ? pthio::load_mode::mmap
                       : pthio::load_mode::eager;
    if (o.map_location && *o.map_location) lo.map_location = pthio::map_location(o.map_location);
    lo.strict = o.strict != 0;
    lo.verify_crc = o.verify_crc != 0;
    auto h = std::make_unique<pthio_checkpoint>();
    h->ck = pthio::load_checkpoint(path, lo);
    h->format = std::string(pthio::format_name(h->ck.format));
    pthio::visit_tensors(h->ck.root, [&](const std::string& key, const pthio::value& v) {
      h->index.emplace(key, h->tensors.size());
      h->tensors.push_back({key, v.as_tensor()});
    });
    for (const auto& e : h->tensors) h->devices.insert(e.t.dev().str());
    *out = h.release();
  });
}

void pthio_checkpoint_free(pthio_checkpoint* checkpoint) { delete checkpoint; }

const char* pthio_checkpoint_format(const pthio_checkpoint* checkpoint) {
  return checkpoint ? checkpoint->format.c_str() : "";
}

size_t pthio_checkpoint_tensor_count(const pthio_checkpoint* checkpoint) {
  return checkpoint ? checkpoint->tensors.size() : 0;
}

pthio_status pthio_checkpoint_tensor(const pthio_checkpoint* checkpoint, size_t index,
                                     pthio_tensor_info* out) {
  return guarded([&] {
    require(checkpoint && out, "pthio_checkpoint_tensor: checkpoint and out must not be NULL");
    if (index >= checkpoint->tensors.size())
      throw c_error{PTHIO_ERR_NOT_FOUND,
                    "tensor index " + std::to_string(index) + " out of range: the checkpoint has " +
                        std::to_string(checkpoint->tensors.size()) + " tensors"};
    const auto& e = checkpoint->tensors[index];
    // Every device tag was interned at open: the const handle is not modified here.
    fill_info(out, e.key, e.t, const_cast<device_names&>(checkpoint->devices));
  });
}

pthio_status pthio_checkpoint_find(const pthio_checkpoint* checkpoint, const char* key,
                                   pthio_tensor_info* out) {
  return guarded([&] {
    require(checkpoint && key && out,
            "pthio_checkpoint_find: checkpoint, key and out must not be NULL");
    auto it = checkpoint->index.find(std::string_view(key));
    if (it == checkpoint->index.end())
      throw c_error{PTHIO_ERR_NOT_FOUND, std::string("no tensor with key \"") + key + "\""};
    const auto& e = checkpoint->tensors[it->second];
    fill_info(out, e.key, e.t, const_cast<device_names&>(checkpoint->devices));
  });
}

pthio_status pthio_checkpoint_to_dlpack(const pthio_checkpoint* checkpoint, size_t index,
                                        struct DLManagedTensorVersioned** out) {
  return guarded([&] {
    require(checkpoint && out, "pthio_checkpoint_to_dlpack: checkpoint and out must not be NULL");
    if (index >= checkpoint->tensors.size())
      throw c_error{PTHIO_ERR_NOT_FOUND,
                    "tensor index " + std::to_string(index) + " out of range: the checkpoint has " +
                        std::to_string(checkpoint->tensors.size()) + " tensors"};
    // pthio::dlpack's struct is DLPack's, declared by pthio: the same layout under another name.
    *out = reinterpret_cast<struct DLManagedTensorVersioned*>(
        pthio::to_dlpack_versioned(checkpoint->tensors[index].t));
  });
}

pthio_status pthio_load_slice(const pthio_checkpoint* checkpoint, const char* key,
                              const char* slice, pthio_tensor** out) {
  return guarded([&] {
    require(checkpoint && key && slice && out,
            "pthio_load_slice: checkpoint, key, slice and out must not be NULL");
    const pthio::slice s = pthio::slice::parse(slice);
    auto it = checkpoint->index.find(std::string_view(key));
    if (it == checkpoint->index.end())
      throw c_error{PTHIO_ERR_NOT_FOUND, std::string("no tensor with key \"") + key + "\""};
    auto h = std::make_unique<pthio_tensor>();
    h->key = key;
    h->t = checkpoint->ck.load_slice(checkpoint->tensors[it->second].t, s, key);
    h->devices.insert(h->t.dev().str());
    *out = h.release();
  });
}

pthio_status pthio_tensor_get_info(const pthio_tensor* tensor, pthio_tensor_info* out) {
  return guarded([&] {
    require(tensor && out, "pthio_tensor_get_info: tensor and out must not be NULL");
    // The device tag was interned when the handle was made: nothing is modified here.
    fill_info(out, tensor->key, tensor->t, const_cast<device_names&>(tensor->devices));
  });
}

void pthio_tensor_free(pthio_tensor* tensor) { delete tensor; }

pthio_status pthio_state_dict_new(pthio_state_dict** out) {
  return guarded([&] {
    require(out, "pthio_state_dict_new: out must not be NULL");
    *out = new pthio_state_dict();
  });
}

pthio_status pthio_state_dict_from_checkpoint(const pthio_checkpoint* checkpoint, const char* key,
                                              pthio_state_dict** out) {
  return guarded([&] {
    require(checkpoint && out,
            "pthio_state_dict_from_checkpoint: checkpoint and out must not be NULL");
    auto h = std::make_unique<pthio_state_dict>();
    h->sd = pthio::extract_state_dict(checkpoint->ck.root,
                                      key ? std::string_view(key) : std::string_view());
    *out = h.release();
  });
}

void pthio_state_dict_free(pthio_state_dict* state_dict) { delete state_dict; }

size_t pthio_state_dict_size(const pthio_state_dict* state_dict) {
  return state_dict ? state_dict->sd.size() : 0;
}

pthio_status pthio_state_dict_tensor(const pthio_state_dict* state_dict, size_t index,
                                     pthio_tensor_info* out) {
  return guarded([&] {
    require(state_dict && out, "pthio_state_dict_tensor: state_dict and out must not be NULL");
    const auto& entries = state_dict->sd.entries();
    if (index >= entries.size())
      throw c_error{PTHIO_ERR_NOT_FOUND, "entry index " + std::to_string(index) +
                                             " out of range: the state dict has " +
                                             std::to_string(entries.size()) + " entries"};
    // The device-name cache is the only thing that changes; callers use a handle from one
    // thread at a time.
    fill_info(out, entries[index].first, entries[index].second,
              const_cast<device_names&>(state_dict->devices));
  });
}

pthio_status pthio_state_dict_add(pthio_state_dict* state_dict, const char* name, pthio_dtype dtype,
                                  int32_t ndim, const int64_t* shape, const int64_t* strides,
                                  const void* data, size_t nbytes, unsigned flags) {
  return guarded([&] {
    require(state_dict && name, "pthio_state_dict_add: state_dict and name must not be NULL");
    const int raw_dtype = raw_value(dtype);
    require(valid_dtype(raw_dtype), "pthio_state_dict_add: dtype is not a pthio_dtype");
    require(ndim >= 0 && ndim <= 64, "pthio_state_dict_add: ndim must be 0 to 64");
    require(ndim == 0 || shape, "pthio_state_dict_add: shape must not be NULL when ndim > 0");
    require(flags == PTHIO_COPY || flags == PTHIO_BORROW,
            "pthio_state_dict_add: flags must be PTHIO_COPY or PTHIO_BORROW");
    const auto t = static_cast<pthio::dtype>(raw_dtype);
    const auto nd = static_cast<std::size_t>(ndim);
    pthio::shape_t sh(shape, shape + nd);
    for (auto d : sh)
      if (d < 0)
        throw c_error{PTHIO_ERR_INVALID_ARGUMENT,
                      "pthio_state_dict_add: negative extent in shape " + pthio::shape_string(sh)};
    pthio::shape_t st =
        strides ? pthio::shape_t(strides, strides + nd) : pthio::contiguous_strides(sh);
    for (auto s : st)
      if (s < 0)
        throw c_error{PTHIO_ERR_INVALID_ARGUMENT,
                      "pthio_state_dict_add: negative stride in " + pthio::shape_string(st)};
    // Bytes the view reaches: (sum((n_i - 1) * s_i) + 1) * element size, checked.
    std::uint64_t reach = 0;
    if (pthio::shape_numel(sh) > 0) {
      std::uint64_t last = 0;
      bool ok = true;
      for (std::size_t i = 0; i < nd && ok; ++i) {
        std::uint64_t span;
        ok = pthio::detail::checked_mul(static_cast<std::uint64_t>(sh[i] - 1),
                                        static_cast<std::uint64_t>(st[i]), span) &&
             pthio::detail::checked_add(last, span, last);
      }
      ok = ok && pthio::detail::checked_add(last, 1, reach) &&
           pthio::detail::checked_mul(reach, pthio::element_size(t), reach);
      if (!ok)
        throw c_error{PTHIO_ERR_LIMIT_EXCEEDED, "pthio_state_dict_add: shape and strides overflow"};
    }
    if (reach > nbytes)
      throw c_error{PTHIO_ERR_INVALID_ARGUMENT,
                    std::string("pthio_state_dict_add: \"") + name + "\": shape " +
                        pthio::shape_string(sh) + " and strides " + pthio::shape_string(st) +
                        " reach " + std::to_string(reach) + " bytes but the buffer has " +
                        std::to_string(nbytes)};
    require(reach == 0 || data, "pthio_state_dict_add: data must not be NULL");
    pthio::storage s;
    if (flags == PTHIO_BORROW) {
      // Saving only reads the bytes; the C signature promises the caller's buffer is not written.
      s = pthio::storage::borrow(const_cast<void*>(data), static_cast<std::size_t>(reach));
    } else {
      s = pthio::storage::allocate(static_cast<std::size_t>(reach));
      if (reach) std::memcpy(s.data(), data, static_cast<std::size_t>(reach));
    }
    state_dict->sd.set(name, pthio::tensor(std::move(s), t, std::move(sh), std::move(st), 0));
  });
}

pthio_status pthio_state_dict_remove(pthio_state_dict* state_dict, const char* name) {
  return guarded([&] {
    require(state_dict && name, "pthio_state_dict_remove: state_dict and name must not be NULL");
    if (!state_dict->sd.erase(name))
      throw c_error{PTHIO_ERR_NOT_FOUND, std::string("no entry named \"") + name + "\""};
  });
}

void pthio_save_options_init(pthio_save_options* options) {
  if (options) *options = pthio_save_options{};
}

pthio_status pthio_state_dict_save(const pthio_state_dict* state_dict, const char* path,
                                   const pthio_save_options* options) {
  return guarded([&] {
    require(state_dict && path, "pthio_state_dict_save: state_dict and path must not be NULL");
    pthio_save_options o;
    pthio_save_options_init(&o);
    if (options) o = *options;
    pthio::save_options so;
    so.format = o.legacy_format ? pthio::checkpoint_format::legacy : pthio::checkpoint_format::zip;
    so.layout = o.torch_1_13_layout ? pthio::torch_layout::v1_13 : pthio::torch_layout::v2;
    if (o.archive_name) so.archive_name = o.archive_name;
    pthio::save(path, state_dict->sd.to_value(), so);
  });
}

pthio_status pthio_state_dict_save_safetensors(const pthio_state_dict* state_dict,
                                               const char* path) {
  return guarded([&] {
    require(state_dict && path,
            "pthio_state_dict_save_safetensors: state_dict and path must not be NULL");
    pthio::save_safetensors(path, state_dict->sd.to_value());
  });
}

pthio_status pthio_state_dict_save_dcp(const pthio_state_dict* state_dict, const char* dir,
                                       int zstd) {
  return guarded([&] {
    require(state_dict && dir, "pthio_state_dict_save_dcp: state_dict and dir must not be NULL");
    pthio::dcp_save_options o;
    o.zstd = zstd != 0;
    pthio::save_dcp(dir, state_dict->sd.to_value(), o);
  });
}

}  // extern "C"
