// torch.distributed.checkpoint folders written as FileSystemWriter writes a single rank's
// (dcp.hpp).
//
// What torch 2.x's dcp.save writes with one rank (no process group), FileSystemWriter's defaults
// (single_file_per_rank, one thread, TORCH_SAVE format):
// - the state dict flattened by flatten_state_dict (_traverse.traverse_state_dict): dicts are
//   walked with str(key) path parts; a list is walked (int parts) only when it holds a tensor, a
//   dict or a list that is itself walked (_is_terminal), otherwise it is one value; a tuple is
//   always one value; an empty dict contributes nothing. The flat key is the parts joined by '.'.
// - one file __0_0.distcp: first every non-tensor item's torch.save blob (BYTE_IO items, in the
//   flat order), then every tensor's (the serial loader keeps the plan's order on a CPU-only
//   machine), each blob starting where the last ended, no padding.
// - .metadata, pickle.dump of Metadata(state_dict_metadata in the flat order, planner_data =
//   {flat key: path tuple}, storage_data = {MetadataIndex: _StorageInfo} in the file's order,
//   StorageMeta(checkpoint_id=Path(dir), save_id=uuid4 text), version "1.0.0"), written to
//   .metadata.tmp and renamed.
#include "dcp_write.h"

#include <zstd.h>

#include <array>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <unordered_set>
#include <utility>

#include "pthio/error.hpp"
#include "pthio/io.hpp"
#include "pthio/pickle.hpp"
#include "torch/internal.h"

namespace pthio {

namespace {

constexpr std::string_view metadata_module = "torch.distributed.checkpoint.metadata";
// filesystem.CURRENT_DCP_VERSION in torch 2.4 to 2.15.
constexpr std::string_view dcp_version = "1.0.0";

struct flat_item {
  std::string fqn;
  std::vector<value> path;  // str and int parts
  const value* leaf = nullptr;
};

// traverse_state_dict's _is_terminal (keep_traversing: "is a tensor"): a list is walked when an
// entry is a tensor, a dict, or a list that is walked itself; anything but a dict or list is a
// leaf (tuples included, whatever they hold).
bool is_terminal(const value& v) {
  if (v.is_dict()) return false;
  if (!v.is_list()) return true;
  for (const value& e : v.as_list().items) {
    if (e.is_dict() || e.is_tensor()) return false;
    if (e.is_list() && !is_terminal(e)) return false;
  }
  return true;
}

class flattener {
 public:
  std::vector<flat_item> items;

  void walk(std::vector<value>& path, const value& v) {
    if (v.is_dict()) {
      for (const auto& [k, c] : v.as_dict().entries()) {
        path.emplace_back(key_text(k));
        walk(path, c);
        path.pop_back();
      }
    } else if (is_terminal(v)) {
      add(path, v);
    } else {
      const auto& list = v.as_list().items;
      for (std::size_t i = 0; i < list.size(); ++i) {
        path.emplace_back(static_cast<std::int64_t>(i));
        walk(path, list[i]);
        path.pop_back();
      }
    }
  }

 private:
  std::unordered_set<std::string> seen_;

  void add(const std::vector<value>& path, const value& leaf) {
    std::string fqn;
    for (std::size_t i = 0; i < path.size(); ++i) {
      if (i) fqn += '.';
      fqn += path[i].is_str() ? path[i].as_str() : std::to_string(path[i].as_int());
    }
    // flatten_state_dict refuses this too ("duplicated flatten key"): two paths, one key.
    if (!seen_.insert(fqn).second)
      throw error(errc::invalid_argument,
                  "save_dcp: two values flatten to the key '" + fqn +
                      "' (torch's flatten_state_dict joins path parts with '.')");
    items.push_back({std::move(fqn), path, &leaf});
  }
};

// A blob's bytes go to the data file; position() counts from the blob's first byte, so a
// torch.save zip's 64-byte alignment is relative to the blob, as torch.save into a stream gives.
class blob_sink final : public sink {
 public:
  explicit blob_sink(sink& out) : out_(out), base_(out.position()) {}
  void write(const void* data, std::size_t n) override { out_.write(data, n); }
  std::uint64_t position() const override { return out_.position() - base_; }

 private:
  sink& out_;
  std::uint64_t base_;
};

// One zstd frame around a blob ("stream.zstd/1"), as zstandard's ZstdCompressor().stream_writer
// makes it (level 3, its default), streamed: bounded memory whatever the blob's size.
class zstd_sink final : public sink {
 public:
  explicit zstd_sink(sink& out) : out_(out), ctx_(ZSTD_createCCtx(), &ZSTD_freeCCtx) {
    if (!ctx_) throw error(errc::limit_exceeded, "save_dcp: cannot allocate a zstd context");
    check(ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_compressionLevel, 3));
    buf_.resize(ZSTD_CStreamOutSize());
  }
  void write(const void* data, std::size_t n) override {
    ZSTD_inBuffer in{data, n, 0};
    while (in.pos < in.size) pump(in, ZSTD_e_continue);
    written_ += n;
  }
  std::uint64_t position() const override { return written_; }
  void finish() {
    ZSTD_inBuffer in{nullptr, 0, 0};
    while (pump(in, ZSTD_e_end) != 0) {}
  }

 private:
  sink& out_;
  std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> ctx_;
  std::vector<std::byte> buf_;
  std::uint64_t written_ = 0;

  static std::size_t check(std::size_t r) {
    if (ZSTD_isError(r))
      throw error(errc::invalid_argument, std::string("save_dcp: zstd: ") + ZSTD_getErrorName(r));
    return r;
  }
  std::size_t pump(ZSTD_inBuffer& in, ZSTD_EndDirective mode) {
    ZSTD_outBuffer o{buf_.data(), buf_.size(), 0};
    const std::size_t left = check(ZSTD_compressStream2(ctx_.get(), &o, &in, mode));
    if (o.pos) out_.write(buf_.data(), o.pos);
    return left;
  }
};

std::string uuid4() {
  std::random_device rd;
  std::array<unsigned char, 16> b{};
  for (std::size_t i = 0; i < b.size(); i += 4) {
    const unsigned r = rd();
    for (std::size_t k = 0; k < 4; ++k) b[i + k] = static_cast<unsigned char>(r >> (8 * k));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  std::string s;
  char hex[3];
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    std::snprintf(hex, sizeof hex, "%02x", b[i]);
    s += hex;
  }
  return s;
}

// --- the .metadata objects, as pickle.dump writes them ------------------------------------------

// A dataclass instance: copyreg.__newobj__ (NEWOBJ with no arguments), then BUILD with its
// __dict__ (or, for TensorProperties, the tuple its __getstate__ returns).
value dataclass(std::string_view module, std::string_view name, value state) {
  value v = value::make_object({std::string(module), std::string(name)}, value::make_tuple());
  opaque_object& o = v.as_object();
  o.created_by_new = true;
  o.state = std::move(state);
  o.has_state = true;
  return v;
}

// A call, written as REDUCE: torch.Size((2, 3)), _get_layout("torch.strided"), ...
value call(std::string_view module, std::string_view name, std::vector<value> args) {
  return value::make_object({std::string(module), std::string(name)},
                            value::make_tuple(std::move(args)));
}

value torch_size(const std::vector<std::int64_t>& dims) {
  std::vector<value> items(dims.begin(), dims.end());
  return call("torch", "Size", {value::make_tuple(std::move(items))});
}

value str_dict(std::initializer_list<std::pair<const char*, value>> entries) {
  value d = value::make_dict();
  for (const auto& [k, v] : entries) d.as_dict().set(value(k), v);
  return d;
}

value tensor_properties(dtype dt, bool requires_grad) {
  // TensorProperties.__getstate__: (dtype, layout, requires_grad, memory format encoding,
  // pin_memory[, strides]). torch 2.15 appends strides; torch up to 2.12 unpacks exactly five
  // items, and 2.15's __setstate__ takes five as strides=None: five are written.
  return dataclass(metadata_module, "TensorProperties",
                   value::make_tuple({
                       value::make_global("torch", std::string(dtype_name(dt))),
                       call("torch.serialization", "_get_layout", {value("torch.strided")}),
                       value(requires_grad),
                       call(metadata_module, "_MEM_FORMAT_ENCODING", {value(0)}),  // contiguous
                       value(false),
                   }));
}

value storage_info(const std::string& file, std::uint64_t offset, std::uint64_t length, bool zstd) {
  // _StorageInfo.__getstate__ leaves out None fields: transform_descriptors only when set.
  value state = str_dict({{"relative_path", value(file)},
                          {"offset", value(static_cast<std::int64_t>(offset))},
                          {"length", value(static_cast<std::int64_t>(length))}});
  if (zstd)
    state.as_dict().set(value("transform_descriptors"), value::make_list({value("stream.zstd/1")}));
  return dataclass("torch.distributed.checkpoint.filesystem", "_StorageInfo", std::move(state));
}

value storage_meta(const std::filesystem::path& dir) {
  // checkpoint_id is the folder as FileSystemWriter was given it, a pathlib path; PosixPath
  // pickles as PosixPath(*parts).
  // pathlib drops "." parts and a trailing separator: Path("./a/").parts == ("a",).
  std::vector<value> parts;
  for (const auto& p : dir) {
    std::string s = p.string();
    if (s.empty() || s == ".") continue;
    parts.emplace_back(std::move(s));
  }
  return dataclass(metadata_module, "StorageMeta",
                   str_dict({{"checkpoint_id", call("pathlib", "PosixPath", std::move(parts))},
                             {"save_id", value(uuid4())},
                             {"load_id", value()},
                             {"modules", value::make_list()}}));
}

struct written {
  const flat_item* item;
  // Tensors: what the metadata says of the tensor written (its bytes are gone with the blob).
  pthio::dtype dtype = dtype::float32;
  std::vector<std::int64_t> shape;
  bool requires_grad = false;
  std::uint64_t offset = 0, length = 0;
};

void check_data_file(const std::string& name) {
  const bool plain = !name.empty() && name != "." && name != ".." &&
                     name.find_first_of("/\\") == std::string::npos &&
                     name.find('\0') == std::string::npos;
  if (!plain || name.ends_with(".metadata") || name.ends_with(".metadata.tmp"))
    throw error(errc::invalid_argument,
                "save_dcp: data_file '" + name +
                    "' must be a plain file name (no folder) and not a .metadata name");
}

void remove_file(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::remove(p, ec);
  if (ec) throw error(errc::io, "cannot remove " + p.string() + ": " + ec.message());
}

// The files of an earlier checkpoint in `dir`: .metadata first, so that from here on the folder
// is no checkpoint until the new .metadata is in place; then the per-rank __R.metadata files and
// every *.distcp data file.
void remove_stale(const std::filesystem::path& dir) {
  remove_file(dir / ".metadata");
  std::error_code ec;
  std::vector<std::filesystem::path> stale;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if ((name.starts_with("__") && name.ends_with(".metadata")) || name.ends_with(".distcp"))
      stale.push_back(it->path());
  }
  if (ec) throw error(errc::io, "cannot list " + dir.string() + ": " + ec.message());
  for (const auto& p : stale) remove_file(p);
}

}  // namespace

namespace detail {

dcp_write_result save_dcp(const std::filesystem::path& dir, const value& root,
                          const dcp_save_options& options, const checkpoint* source) {
  if (!root.is_dict())
    throw error(errc::invalid_argument, "save_dcp: the root must be a dict (a state dict), not a " +
                                            std::string(root.type_name()));
  check_data_file(options.data_file);
  flattener flat;
  {
    std::vector<value> path;
    flat.walk(path, root);
  }
  const bool lazy = source && source->is_lazy();
  lazy_records* records = lazy ? lazy_records::of(*source).get() : nullptr;

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw error(errc::io, "cannot create the folder " + dir.string() +
                              (ec ? ": " + ec.message() : std::string(": not a folder")));
  remove_stale(dir);

  dcp_write_result res;
  // FileSystemWriter's order in the file: the BYTE_IO items, then the tensors.
  std::vector<written> order;
  for (const auto& it : flat.items)
    if (!it.leaf->is_tensor())
      order.push_back(written{.item = &it, .dtype = dtype::float32, .shape = {}});
  for (const auto& it : flat.items)
    if (it.leaf->is_tensor())
      order.push_back(written{.item = &it, .dtype = dtype::float32, .shape = {}});

  const std::filesystem::path data_path = dir / options.data_file;
  try {
    file_sink out(data_path);
    if (options.on_progress) out.on_write = options.on_progress;
    save_options so;
    so.archive_name = "archive";  // torch.save into a stream
    for (auto& w : order) {
      w.offset = out.position();
      blob_sink raw(out);
      std::unique_ptr<zstd_sink> z;
      if (options.zstd) z = std::make_unique<zstd_sink>(raw);
      sink& blob = z ? static_cast<sink&>(*z) : raw;
      try {
        if (w.item->leaf->is_tensor()) {
          tensor t = w.item->leaf->as_tensor();
          if (lazy) t = source->load_elements(t);
          const bool requires_grad = t.requires_grad();
          // _SerialCpuLoader: detached, and cloned when its storage holds more than it.
          t = t.contiguous();
          if (t.storage_offset() != 0 || t.get_storage().nbytes() != t.nbytes()) t = t.clone();
          t.set_requires_grad(false);
          save_zip_streaming(blob, value(t), so, nullptr);
          w.dtype = t.dtype();
          w.shape.assign(t.shape().begin(), t.shape().end());
          w.requires_grad = requires_grad;
          ++res.tensors;
        } else {
          save_zip_streaming(blob, *w.item->leaf, so, records);
          ++res.values;
        }
      } catch (const error& e) {
        throw e.with_outer_context(w.item->fqn);
      }
      if (z) z->finish();
      w.length = out.position() - w.offset;
    }
    out.commit();
  } catch (const error& e) {
    throw e.with_outer_context(data_path.string());
  }
  res.files.push_back(data_path);

  value sdm = value::make_dict();
  value planner = value::make_dict();
  std::unordered_map<const flat_item*, const written*> by_item;
  for (const auto& w : order) by_item.emplace(w.item, &w);
  for (const auto& it : flat.items) {
    const written& w = *by_item.at(&it);
    value md;
    if (it.leaf->is_tensor()) {
      const std::vector<std::int64_t> zeros(w.shape.size(), 0);
      value chunk =
          dataclass(metadata_module, "ChunkStorageMetadata",
                    str_dict({{"offsets", torch_size(zeros)}, {"sizes", torch_size(w.shape)}}));
      md = dataclass(metadata_module, "TensorStorageMetadata",
                     str_dict({{"properties", tensor_properties(w.dtype, w.requires_grad)},
                               {"size", torch_size(w.shape)},
                               {"chunks", value::make_list({chunk})}}));
    } else {
      md = dataclass(metadata_module, "BytesStorageMetadata", value::make_dict());
    }
    sdm.as_dict().set(value(it.fqn), md);
    planner.as_dict().set(value(it.fqn), value::make_tuple(it.path));
  }
  value storage_data = value::make_dict();
  for (const auto& w : order) {
    // MetadataIndex's __init__ sets fqn, index, then offset only when given: a BYTE_IO item's
    // state is {fqn, index: None}; a chunk's {fqn, index: 0, offset: torch.Size(zeros)}.
    value state = str_dict({{"fqn", value(w.item->fqn)}});
    if (w.item->leaf->is_tensor()) {
      state.as_dict().set(value("index"), value(0));
      state.as_dict().set(value("offset"),
                          torch_size(std::vector<std::int64_t>(w.shape.size(), 0)));
    } else {
      state.as_dict().set(value("index"), value());
    }
    storage_data.as_dict().set(dataclass(metadata_module, "MetadataIndex", std::move(state)),
                               storage_info(options.data_file, w.offset, w.length, options.zstd));
  }
  value metadata = dataclass(metadata_module, "Metadata",
                             str_dict({{"state_dict_metadata", sdm},
                                       {"planner_data", planner},
                                       {"storage_data", storage_data},
                                       {"storage_meta", storage_meta(dir)},
                                       {"version", value(std::string(dcp_version))}}));
  const std::vector<std::byte> pkl = pickler().dump(metadata);
  const std::filesystem::path md_path = dir / ".metadata";
  try {
    file_sink out(md_path);
    out.write(pkl.data(), pkl.size());
    out.commit();
  } catch (const error& e) {
    throw e.with_outer_context(md_path.string());
  }
  res.files.push_back(md_path);
  return res;
}

}  // namespace detail

void save_dcp(const std::filesystem::path& dir, const value& root,
              const dcp_save_options& options) {
  detail::save_dcp(dir, root, options, nullptr);
}

}  // namespace pthio
