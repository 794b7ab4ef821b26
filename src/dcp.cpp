// torch.distributed.checkpoint folders: the metadata, checked, and the tensors assembled from
// their chunks (dcp.hpp). Torch's reader is torch/distributed/checkpoint/filesystem.py
// (FileSystemReader), the conversion it is compared with format_utils.dcp_to_torch_save, which
// builds the state dict with default_planner._EmptyStateDictLoadPlanner and _traverse.set_element.
#include "pthio/dcp.hpp"

#include <zstd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "json_reader.h"
#include "pthio/safetensors.hpp"
#include "pthio/scan.hpp"
#include "pthio/sharded.hpp"
#include "torch/internal.h"

namespace pthio {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view meta_module = "torch.distributed.checkpoint.metadata";
// Up to torch 2.3 TensorProperties (and its memory-format enum) lived here.
constexpr std::string_view old_meta_module = "torch.distributed._shard.sharded_tensor.metadata";
constexpr std::string_view fs_module = "torch.distributed.checkpoint.filesystem";
constexpr std::string_view zstd_descriptor = "stream.zstd/1";
// Deeper nesting than this is no state dict (and set_element would recurse that far).
constexpr std::size_t max_path_length = 256;
constexpr std::size_t max_dims = 64;
// A tensor chunk's torch.save blob holds its elements plus a pickle and zip structure this size
// at most: a zstd frame decompressing to more is no chunk of that size.
constexpr std::uint64_t zstd_slack = 4u << 20;
// A non-tensor value's zstd blob may hold anything torch.save can (tensors in a tuple): at most
// this, or 64 times its compressed size.
std::uint64_t value_cap(std::uint64_t compressed) {
  return std::max<std::uint64_t>(1ull << 30, compressed * 64);
}
// Pairs of chunks compared for overlap in one tensor before giving up.
constexpr std::uint64_t max_overlap_comparisons = 100'000'000;

// The globals a .metadata pickle may name: torch's metadata dataclasses, torch.Size, dtypes,
// torch.strided (pickled through torch.serialization._get_layout) and the pathlib path of
// StorageMeta.checkpoint_id. Only torch.Size has a handler (a tuple); the rest build inert
// objects this file reads.
const global_table& dcp_globals() {
  static const global_table table = [] {
    global_table g;
    for (const char* n :
         {"Metadata", "TensorStorageMetadata", "ChunkStorageMetadata", "BytesStorageMetadata",
          "MetadataIndex", "TensorProperties", "_MEM_FORMAT_ENCODING", "StorageMeta"})
      g.add(std::string(meta_module), n);
    g.add(std::string(old_meta_module), "TensorProperties");
    g.add(std::string(old_meta_module), "MEM_FORMAT_ENCODING");
    g.add(std::string(fs_module), "_StorageInfo");
    g.add("torch", "Size", *torch_globals().find("torch", "Size"));
    for (std::size_t i = 0; i < dtype_count; ++i)
      g.add("torch", std::string(dtype_name(static_cast<dtype>(i))));
    for (const char* alias :
         {"float", "double", "half", "long", "int", "short", "cfloat", "cdouble", "chalf"})
      g.add("torch", alias);
    g.add("torch", "strided");
    g.add("torch.serialization", "_get_layout");
    for (const char* p : {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"})
      g.add("pathlib", p);
    return g;
  }();
  return table;
}

std::optional<dtype> dtype_of_global(const global_ref& g) {
  if (g.module != "torch") return std::nullopt;
  static const std::pair<const char*, dtype> aliases[] = {
      {"float", dtype::float32},    {"double", dtype::float64},     {"half", dtype::float16},
      {"long", dtype::int64},       {"int", dtype::int32},          {"short", dtype::int16},
      {"cfloat", dtype::complex64}, {"cdouble", dtype::complex128}, {"chalf", dtype::complex32}};
  for (const auto& [name, t] : aliases)
    if (g.name == name) return t;
  return dtype_from_name(g.name);
}

// Reads the unpickled Metadata object tree, failing with corrupt_checkpoint on anything torch's
// dataclasses would not hold.
class meta_reader {
 public:
  explicit meta_reader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void fail(const std::string& why) const {
    throw error(errc::corrupt_checkpoint, why, name_);
  }

  const opaque_object& object(const value& v, std::string_view cls, const std::string& what,
                              std::string_view alt_module = {}) const {
    if (!v.is_object())
      fail(what + " must be a " + std::string(cls) + " object, not " + std::string(v.type_name()));
    const opaque_object& o = v.as_object();
    const bool module_ok = o.type.module == meta_module || o.type.module == fs_module ||
                           (!alt_module.empty() && o.type.module == alt_module);
    if (!module_ok || o.type.name != cls)
      fail(what + " must be a " + std::string(cls) + ", not a " + o.type.qualified());
    return o;
  }

  // A dataclass's fields: BUILD's dict (a (dict, slots) pair for classes with __slots__).
  const dict_object& fields(const opaque_object& o, const std::string& what) const {
    const value* st = &o.state;
    if (st->is_tuple() && st->items().size() == 2 && st->items()[1].is_dict()) st = &st->items()[1];
    if (!o.has_state || !st->is_dict()) fail(what + " has no fields");
    return st->as_dict();
  }

  const value& field(const dict_object& d, const char* name, const std::string& what) const {
    const value* v = d.get(name);
    if (!v) fail(what + " has no field '" + name + "'");
    return *v;
  }

  shape_t dims(const value& v, const std::string& what) const {
    if (!v.is_tuple() && !v.is_list())
      fail(what + " must be a sequence of sizes, not " + std::string(v.type_name()));
    if (v.items().size() > max_dims)
      fail(what + " has " + std::to_string(v.items().size()) + " dimensions (at most " +
           std::to_string(max_dims) + ")");
    shape_t out;
    for (const value& x : v.items()) {
      if (!x.is_int() || x.as_int() < 0) fail(what + " must hold non-negative integers");
      out.push_back(x.as_int());
    }
    return out;
  }

  std::uint64_t count(const value& v, const std::string& what) const {
    if (!v.is_int() || v.as_int() < 0) fail(what + " must be a non-negative integer");
    return static_cast<std::uint64_t>(v.as_int());
  }

  const std::string& text(const value& v, const std::string& what) const {
    if (!v.is_str()) fail(what + " must be a str, not " + std::string(v.type_name()));
    return v.as_str();
  }

 private:
  std::string name_;
};

std::string storage_key(const std::string& fqn, const shape_t* offsets) {
  std::string k = fqn;
  k.push_back('\0');
  if (offsets)
    for (std::int64_t o : *offsets) k += std::to_string(o) + ",";
  else
    k += "-";
  return k;
}

// `budget`: the bytes the result may take. The pickle's memo lets one chunk object be named a
// million times at two bytes each; each naming becomes a chunk of its own here.
dcp_metadata interpret_metadata(const value& root, const std::string& name, std::uint64_t budget) {
  meta_reader r(name);
  std::uint64_t used = 0;
  auto charge = [&](std::uint64_t bytes) {
    used += bytes;
    if (used > budget)
      throw error(errc::limit_exceeded,
                  "the metadata describes more than " + std::to_string(budget) +
                      " bytes of items and chunks (shared objects named again and again)",
                  name);
  };
  const opaque_object& meta = r.object(root, "Metadata", "the .metadata pickle's root");
  const dict_object& mf = r.fields(meta, "Metadata");
  dcp_metadata out;
  out.metadata_files.push_back(name);
  if (const value* v = mf.get("version"); v && !v->is_none()) out.version = r.text(*v, "version");

  // storage_data: MetadataIndex(fqn, offset) -> _StorageInfo.
  std::unordered_map<std::string, dcp_storage> storages;
  const value& sd = r.field(mf, "storage_data", "Metadata");
  if (!sd.is_dict())
    r.fail("Metadata.storage_data must be a dict, not " + std::string(sd.type_name()));
  for (const auto& [k, v] : sd.as_dict().entries()) {
    const dict_object& ki =
        r.fields(r.object(k, "MetadataIndex", "a storage_data key"), "MetadataIndex");
    const std::string& fqn = r.text(r.field(ki, "fqn", "MetadataIndex"), "MetadataIndex.fqn");
    std::optional<shape_t> offsets;
    if (const value* o = ki.get("offset"); o && !o->is_none())
      offsets = r.dims(*o, "MetadataIndex.offset of " + detail::show_name(fqn));
    const std::string what = "the storage data of " + detail::show_name(fqn);
    const dict_object& si = r.fields(r.object(v, "_StorageInfo", what), what);
    dcp_storage s;
    s.relative_path = r.text(r.field(si, "relative_path", what), what + ": relative_path");
    if (std::string why = detail::relative_path_problem(s.relative_path); !why.empty())
      r.fail(what + ": relative_path " + detail::show_name(s.relative_path) + " " + why +
             "; data files are named relative to the checkpoint's folder");
    s.offset = r.count(r.field(si, "offset", what), what + ": offset");
    s.length = r.count(r.field(si, "length", what), what + ": length");
    if (const value* t = si.get("transform_descriptors"); t && !t->is_none()) {
      if (!t->is_list() && !t->is_tuple())
        r.fail(what + ": transform_descriptors must be a list of str");
      for (const value& d : t->items())
        s.transforms.push_back(r.text(d, what + ": a transform descriptor"));
    }
    charge(sizeof(dcp_storage) + 64 + fqn.size() * 2 + s.relative_path.size() +
           (offsets ? offsets->size() * 8 : 0));
    storages[storage_key(fqn, offsets ? &*offsets : nullptr)] = std::move(s);
  }

  // planner_data: flat key -> the nested path (a tuple of str and int parts).
  std::unordered_map<std::string, std::vector<value>> paths;
  if (const value* pd = mf.get("planner_data"); pd && !pd->is_none()) {
    if (!pd->is_dict())
      r.fail("Metadata.planner_data must be a dict, not " + std::string(pd->type_name()));
    for (const auto& [k, v] : pd->as_dict().entries()) {
      if (!k.is_str()) continue;  // not a flat key: never looked up, as in torch
      if (!v.is_tuple() && !v.is_list())
        r.fail("the planner_data path of " + detail::show_name(k.as_str()) + " must be a tuple");
      if (v.items().empty() || v.items().size() > max_path_length)
        r.fail("the planner_data path of " + detail::show_name(k.as_str()) + " has " +
               std::to_string(v.items().size()) + " parts (1 to " +
               std::to_string(max_path_length) + ")");
      for (const value& part : v.items())
        if (!part.is_str() && !(part.is_int() && part.as_int() >= 0))
          r.fail("the planner_data path of " + detail::show_name(k.as_str()) +
                 " must hold str keys and non-negative int indices");
      charge(64 + k.as_str().size() + v.items().size() * sizeof(value));
      paths[k.as_str()] = std::vector<value>(v.items().begin(), v.items().end());
    }
  }

  const value& sdm = r.field(mf, "state_dict_metadata", "Metadata");
  if (!sdm.is_dict())
    r.fail("Metadata.state_dict_metadata must be a dict, not " + std::string(sdm.type_name()));
  for (const auto& [k, v] : sdm.as_dict().entries()) {
    dcp_item it;
    it.fqn = r.text(k, "a state_dict_metadata key");
    charge(sizeof(dcp_item) + it.fqn.size());
    const std::string what = "the metadata of " + detail::show_name(it.fqn);
    if (auto p = paths.find(it.fqn); p != paths.end()) it.path = p->second;
    if (!v.is_object()) r.fail(what + " must be a TensorStorageMetadata or BytesStorageMetadata");
    if (v.as_object().type.name == "BytesStorageMetadata") {
      r.object(v, "BytesStorageMetadata", what);
      auto s = storages.find(storage_key(it.fqn, nullptr));
      if (s == storages.end())
        r.fail("value " + detail::show_name(it.fqn) + " has no storage data (no MetadataIndex(" +
               detail::show_name(it.fqn) + ") in storage_data)");
      it.chunks.push_back({{}, {}, s->second});
      out.items.push_back(std::move(it));
      continue;
    }
    const dict_object& tf = r.fields(r.object(v, "TensorStorageMetadata", what), what);
    it.is_tensor = true;
    // TensorProperties: its __getstate__ tuple (dtype, layout, requires_grad, memory format,
    // pin_memory[, strides]), or a plain field dict.
    const opaque_object& props = r.object(r.field(tf, "properties", what), "TensorProperties",
                                          what + ": properties", old_meta_module);
    const value* dt = nullptr;
    const value* layout = nullptr;
    const value* grad = nullptr;
    if (props.state.is_tuple()) {
      auto s = props.state.items();
      if (s.size() != 5 && s.size() != 6)
        r.fail(what + ": TensorProperties state has " + std::to_string(s.size()) +
               " items (5 or 6)");
      dt = &s[0];
      layout = &s[1];
      grad = &s[2];
    } else {
      const dict_object& pf = r.fields(props, what + ": TensorProperties");
      dt = pf.get("dtype");
      layout = pf.get("layout");
      grad = pf.get("requires_grad");
    }
    std::optional<dtype> t;
    if (dt && dt->is_global()) t = dtype_of_global(dt->as_global());
    if (!t) r.fail(what + ": TensorProperties.dtype is not a torch dtype");
    it.dtype = *t;
    if (layout && !layout->is_none()) {
      bool strided = false;
      if (layout->is_global())
        strided = layout->as_global().qualified() == "torch.strided";
      else if (layout->is_object())
        strided = layout->as_object().type.qualified() == "torch.serialization._get_layout" &&
                  layout->as_object().args.is_tuple() &&
                  layout->as_object().args.items().size() == 1 &&
                  layout->as_object().args.items()[0].is_str() &&
                  layout->as_object().args.items()[0].as_str() == "torch.strided";
      if (!strided)
        throw error(errc::unsupported,
                    what + ": only strided (dense) tensors are supported, not this layout", name);
    }
    if (grad && grad->is_bool()) it.requires_grad = grad->as_bool();
    it.size = r.dims(r.field(tf, "size", what), what + ": size");
    const value& chunks = r.field(tf, "chunks", what);
    if (!chunks.is_list() && !chunks.is_tuple()) r.fail(what + ": chunks must be a list");
    for (std::size_t i = 0; i < chunks.items().size(); ++i) {
      const std::string cw = "chunk " + std::to_string(i) + " of " + detail::show_name(it.fqn);
      const dict_object& cf = r.fields(r.object(chunks.items()[i], "ChunkStorageMetadata", cw), cw);
      dcp_chunk c;
      c.offsets = r.dims(r.field(cf, "offsets", cw), cw + ": offsets");
      c.sizes = r.dims(r.field(cf, "sizes", cw), cw + ": sizes");
      if (c.offsets.size() != it.size.size() || c.sizes.size() != it.size.size())
        r.fail(cw + " has offsets " + shape_string(c.offsets) + " and sizes " +
               shape_string(c.sizes) + " for a tensor of " + std::to_string(it.size.size()) +
               " dimensions");
      auto s = storages.find(storage_key(it.fqn, &c.offsets));
      if (s == storages.end())
        r.fail(cw + " (offsets " + shape_string(c.offsets) +
               ") has no storage data (no matching MetadataIndex in storage_data)");
      c.storage = s->second;
      charge(sizeof(dcp_chunk) + c.offsets.size() * 16 + c.storage.relative_path.size());
      it.chunks.push_back(std::move(c));
    }
    out.items.push_back(std::move(it));
  }
  return out;
}

// Chunks must tile the tensor: each inside it, none overlapping another, together covering it.
void check_tiling(const dcp_item& it, const std::string& name) {
  auto fail = [&](const std::string& why) {
    throw error(errc::corrupt_checkpoint, "tensor " + detail::show_name(it.fqn) + ": " + why, name);
  };
  std::uint64_t numel = 1;
  for (std::int64_t d : it.size)
    if (!detail::checked_mul(numel, static_cast<std::uint64_t>(d), numel))
      fail("its size " + shape_string(it.size) + " overflows");
  std::uint64_t bytes = 0;
  if (!detail::checked_mul(numel, element_size(it.dtype), bytes) || bytes > (1ull << 62))
    fail("its size " + shape_string(it.size) + " is too large");
  std::uint64_t covered = 0;
  std::vector<std::size_t> nonempty;
  for (std::size_t i = 0; i < it.chunks.size(); ++i) {
    const dcp_chunk& c = it.chunks[i];
    std::uint64_t vol = 1;
    for (std::size_t d = 0; d < it.size.size(); ++d) {
      if (c.offsets[d] > it.size[d] || c.sizes[d] > it.size[d] - c.offsets[d])
        fail("chunk " + std::to_string(i) + " (offsets " + shape_string(c.offsets) + ", sizes " +
             shape_string(c.sizes) + ", in " + c.storage.relative_path +
             ") lies outside the tensor's size " + shape_string(it.size));
      vol *= static_cast<std::uint64_t>(c.sizes[d]);  // <= numel: inside the tensor
    }
    covered += vol;  // at most chunks x numel: no overflow before the check below
    if (vol > 0) nonempty.push_back(i);
    if (covered > numel && it.chunks.size() < (1u << 20)) break;  // overlap found below
  }
  // Overlap: sweep along the dimension with the most distinct offsets.
  if (it.size.empty()) {
    if (nonempty.size() > 1)
      fail("chunks " + std::to_string(nonempty[0]) + " and " + std::to_string(nonempty[1]) +
           " overlap (a 0-d tensor has one element)");
  } else if (nonempty.size() > 1) {
    std::size_t dim = 0, best = 0;
    for (std::size_t d = 0; d < it.size.size(); ++d) {
      std::unordered_set<std::int64_t> distinct;
      for (std::size_t i : nonempty) distinct.insert(it.chunks[i].offsets[d]);
      if (distinct.size() > best) best = distinct.size(), dim = d;
    }
    std::sort(nonempty.begin(), nonempty.end(), [&](std::size_t a, std::size_t b) {
      return it.chunks[a].offsets[dim] < it.chunks[b].offsets[dim];
    });
    std::uint64_t compared = 0;
    for (std::size_t x = 0; x < nonempty.size(); ++x) {
      const dcp_chunk& a = it.chunks[nonempty[x]];
      for (std::size_t y = x + 1; y < nonempty.size(); ++y) {
        const dcp_chunk& b = it.chunks[nonempty[y]];
        if (b.offsets[dim] >= a.offsets[dim] + a.sizes[dim]) break;
        if (++compared > max_overlap_comparisons)
          throw error(errc::limit_exceeded,
                      "tensor " + detail::show_name(it.fqn) +
                          " has too many overlapping chunk ranges to "
                          "check (" +
                          std::to_string(it.chunks.size()) + " chunks)",
                      name);
        bool meet = true;
        for (std::size_t d = 0; d < it.size.size() && meet; ++d)
          meet =
              a.offsets[d] < b.offsets[d] + b.sizes[d] && b.offsets[d] < a.offsets[d] + a.sizes[d];
        if (meet)
          fail("chunks " + std::to_string(nonempty[x]) + " (offsets " + shape_string(a.offsets) +
               ", sizes " + shape_string(a.sizes) + ", in " + a.storage.relative_path + ") and " +
               std::to_string(nonempty[y]) + " (offsets " + shape_string(b.offsets) + ", sizes " +
               shape_string(b.sizes) + ", in " + b.storage.relative_path + ") overlap");
      }
    }
  }
  if (covered != numel)
    fail("its chunks cover " + std::to_string(covered) + " of its " + std::to_string(numel) +
         " elements (a gap: a rank's chunk is missing)");
}

// ----------------------------------------------------------------------------------------------
// The folder.

bool is_rank_metadata_name(const std::string& f, std::uint64_t* rank = nullptr) {
  // __R.metadata
  constexpr std::string_view suffix = ".metadata";
  if (f.size() <= 2 + suffix.size() || f.compare(0, 2, "__") != 0 ||
      f.compare(f.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  std::string_view digits(f.data() + 2, f.size() - 2 - suffix.size());
  std::uint64_t r = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), r);
  if (ec != std::errc() || p != digits.data() + digits.size()) return false;
  if (rank) *rank = r;
  return true;
}

struct folder {
  enum class kind { none, pickle, ranks, index, safetensors } k = kind::none;
  fs::path dir;
  std::vector<fs::path> files;  // the metadata files, index or safetensors files, in order
};

folder find_folder(const fs::path& path) {
  folder f;
  std::error_code ec;
  fs::path dir = path;
  if (!fs::is_directory(path, ec)) {
    const std::string name = path.filename().string();
    if (name != ".metadata" && !is_rank_metadata_name(name)) return f;
    dir = path.parent_path();
    if (dir.empty()) dir = ".";
  }
  f.dir = dir;
  if (fs::is_regular_file(dir / ".metadata", ec)) {
    f.k = folder::kind::pickle;
    f.files.push_back(dir / ".metadata");
    return f;
  }
  std::vector<std::pair<std::uint64_t, fs::path>> ranks;
  std::vector<fs::path> indexes, safetensors;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::uint64_t rank = 0;
    if (is_rank_metadata_name(name, &rank))
      ranks.emplace_back(rank, it->path());
    else if (name.size() > 11 && name.ends_with(".index.json"))
      indexes.push_back(it->path());
    else if (name.size() > 12 && name.ends_with(".safetensors"))
      safetensors.push_back(it->path());
  }
  if (!ranks.empty()) {
    std::sort(ranks.begin(), ranks.end());
    f.k = folder::kind::ranks;
    for (auto& [r, p] : ranks) f.files.push_back(p);
  } else if (!indexes.empty()) {
    std::sort(indexes.begin(), indexes.end());
    f.k = folder::kind::index;
    f.files = std::move(indexes);
  } else if (!safetensors.empty()) {
    std::sort(safetensors.begin(), safetensors.end());
    f.k = folder::kind::safetensors;
    f.files = std::move(safetensors);
  }
  return f;
}

dcp_metadata read_metadata_file(const fs::path& p) {
  byte_source src = byte_source::map_file(p);
  try {
    return read_dcp_metadata(src.bytes(), p.filename().string());
  } catch (const error& e) {
    throw e.with_outer_context(p.parent_path().string());
  }
}

// Per-rank metadata (use_collectives=False): each rank's items, merged. A tensor several ranks
// hold whole (replicated) is described by each of them: identical chunks count once.
dcp_metadata merge_ranks(const folder& f) {
  // Every rank from 0 up has its file: a missing one would silently drop what only it described
  // (values, replicated tensors).
  std::uint64_t expect = 0;
  for (const fs::path& p : f.files) {
    std::uint64_t rank = 0;
    is_rank_metadata_name(p.filename().string(), &rank);
    if (rank != expect)
      throw error(errc::corrupt_checkpoint,
                  "__" + std::to_string(expect) + ".metadata is missing (the folder has " +
                      p.filename().string() + ")",
                  f.dir.string());
    ++expect;
  }
  std::error_code ec;
  for (fs::directory_iterator it(f.dir, ec), end; !ec && it != end; it.increment(ec)) {
    // __R_I.distcp: rank R's data, whose metadata must be here.
    const std::string name = it->path().filename().string();
    std::uint64_t rank = 0;
    if (!name.starts_with("__") || !name.ends_with(".distcp")) continue;
    const auto us = name.find('_', 2);
    if (us == std::string::npos) continue;
    auto [ptr, err] = std::from_chars(name.data() + 2, name.data() + us, rank);
    if (err == std::errc() && ptr == name.data() + us && rank >= expect)
      throw error(errc::corrupt_checkpoint,
                  "data file " + name + " has no __" + std::to_string(rank) + ".metadata",
                  f.dir.string());
  }

  dcp_metadata out;
  std::unordered_map<std::string, std::size_t> at;
  std::vector<std::string> first_file;  // which metadata file first described each item
  // The chunks earlier files described, per item: a chunk a later rank describes identically (a
  // replicated tensor each rank saved) counts once; duplicates within one file stay, for the
  // tiling check to refuse.
  std::vector<std::unordered_set<std::string>> seen;
  auto chunk_key = [](const dcp_chunk& c) {
    return shape_string(c.offsets) + shape_string(c.sizes);
  };
  for (const fs::path& p : f.files) {
    const std::string file = p.filename().string();
    dcp_metadata m = read_metadata_file(p);
    if (out.version.empty()) out.version = m.version;
    out.metadata_files.push_back(file);
    std::vector<std::pair<std::size_t, std::string>> added;  // into `seen` after this file
    for (dcp_item& it : m.items) {
      auto [pos, fresh] = at.emplace(it.fqn, out.items.size());
      const std::size_t k = pos->second;
      if (fresh) {
        for (const dcp_chunk& c : it.chunks) added.emplace_back(k, chunk_key(c));
        out.items.push_back(std::move(it));
        first_file.push_back(file);
        seen.emplace_back();
        continue;
      }
      dcp_item& have = out.items[k];
      auto differ = [&](const std::string& what) {
        throw error(errc::corrupt_checkpoint,
                    detail::show_name(it.fqn) + " is described differently by " + first_file[k] +
                        " and " + file + " (" + what + ")",
                    f.dir.string());
      };
      if (have.is_tensor != it.is_tensor) differ("a tensor and a value");
      if (!have.is_tensor) continue;  // a value every rank saved: the first rank's
      if (have.dtype != it.dtype) differ("dtype");
      if (have.size != it.size) differ("size");
      for (dcp_chunk& c : it.chunks) {
        std::string key = chunk_key(c);
        if (seen[k].count(key)) continue;
        have.chunks.push_back(std::move(c));
        added.emplace_back(k, std::move(key));
      }
    }
    for (auto& [k, key] : added) seen[k].insert(std::move(key));
  }
  return out;
}

// A folder of safetensors files as torch's HuggingFaceStorageReader reads it: every tensor of
// every file is a chunk, placed by DCP_SHARDING_INFO's saved_offsets (at 0 without them).
dcp_metadata safetensors_folder_metadata(const folder& f) {
  dcp_metadata out;
  out.safetensors_blobs = true;
  std::unordered_map<std::string, std::size_t> at;
  for (const fs::path& p : f.files) {
    const std::string rel = p.filename().string();
    try {
      byte_source src = byte_source::map_file(p);
      safetensors_header h = read_safetensors_header(src.bytes());
      std::unordered_map<std::string, shape_t> saved;
      if (h.metadata)
        for (const auto& [k, v] : *h.metadata) {
          if (k != "DCP_SHARDING_INFO") continue;
          std::span<const std::byte> text(reinterpret_cast<const std::byte*>(v.data()), v.size());
          detail::json_reader j(text, errc::corrupt_checkpoint, "__metadata__ DCP_SHARDING_INFO",
                                0);
          j.object("DCP_SHARDING_INFO", [&](const std::string& tensor, std::size_t) {
            j.object("a tensor's sharding info", [&](const std::string& key, std::size_t) {
              if (key != "saved_offsets") return j.skip_value();
              shape_t offs;
              j.array("saved_offsets", [&](std::size_t) {
                std::uint64_t o = j.uint("an offset");
                if (o > (1ull << 62) || offs.size() >= max_dims) j.fail("bad saved_offsets");
                offs.push_back(static_cast<std::int64_t>(o));
              });
              saved[tensor] = std::move(offs);
            });
          });
          j.expect_end();
        }
      std::vector<const safetensors_entry*> by_name;
      for (const auto& e : h.tensors) by_name.push_back(&e);
      std::sort(
          by_name.begin(), by_name.end(),
          [](const safetensors_entry* a, const safetensors_entry* b) { return a->name < b->name; });
      for (const safetensors_entry* e : by_name) {
        if (!e->type || element_size(*e->type) == 0 || *e->type == dtype::float4_e2m1fn_x2)
          throw error(errc::unsupported,
                      "tensor " + detail::show_name(e->name) + " has dtype " + e->dtype_name +
                          ", which DCP folders do not hold",
                      rel);
        dcp_chunk c;
        c.sizes = e->shape;
        auto s = saved.find(e->name);
        c.offsets = s != saved.end() ? s->second : shape_t(e->shape.size(), 0);
        if (c.offsets.size() != c.sizes.size())
          throw error(errc::corrupt_checkpoint,
                      "tensor " + detail::show_name(e->name) + ": saved_offsets " +
                          shape_string(c.offsets) + " for shape " + shape_string(c.sizes),
                      rel);
        c.storage = {rel, h.data_offset() + e->begin, e->end - e->begin, {}};
        auto [pos, fresh] = at.emplace(e->name, out.items.size());
        if (fresh) {
          dcp_item it;
          it.fqn = e->name;
          it.is_tensor = true;
          it.dtype = *e->type;
          it.size.assign(c.sizes.size(), 0);
          out.items.push_back(std::move(it));
        }
        dcp_item& it = out.items[pos->second];
        if (it.dtype != *e->type || it.size.size() != c.sizes.size())
          throw error(errc::corrupt_checkpoint,
                      "tensor " + detail::show_name(e->name) +
                          " has another dtype or rank than in " +
                          it.chunks.front().storage.relative_path,
                      rel);
        for (std::size_t d = 0; d < c.sizes.size(); ++d) {
          if (c.offsets[d] > (1ll << 62) - c.sizes[d])
            throw error(errc::corrupt_checkpoint, "saved_offsets too large", rel);
          it.size[d] = std::max(it.size[d], c.offsets[d] + c.sizes[d]);
        }
        it.chunks.push_back(std::move(c));
      }
    } catch (const error& e) {
      throw e.with_outer_context(f.dir.string());
    }
  }
  return out;
}

// ----------------------------------------------------------------------------------------------
// Blobs.

// A zstd frame's content, at most `cap` bytes (more is `over`: corrupt_checkpoint where the cap
// is what the blob must hold, limit_exceeded where it is a limit), as a source that owns it. The
// buffer grows (realloc, never zero-filled) with the output actually produced: a size the frame
// declares is checked against the cap but never allocated on its word alone.
byte_source unzstd(std::span<const std::byte> in, std::uint64_t cap, errc over,
                   const std::string& what) {
  auto fail = [&](const std::string& why) {
    throw error(errc::corrupt_checkpoint, what + ": " + why);
  };
  auto too_big = [&](const std::string& why) { throw error(over, what + ": " + why); };
  const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) fail("not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > cap)
    too_big("its zstd frame declares " + std::to_string(declared) + " bytes, more than the " +
            std::to_string(cap) + " it may hold");
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) throw error(errc::limit_exceeded, what + ": cannot create a zstd context");
  struct freer {
    void operator()(void* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, freer> buf;
  std::size_t size = 0;
  auto grow = [&](std::uint64_t want) {
    void* p = std::realloc(buf.get(), static_cast<std::size_t>(std::max<std::uint64_t>(want, 1)));
    if (!p) throw std::bad_alloc();
    (void)buf.release();
    buf.reset(static_cast<std::byte*>(p));
    size = static_cast<std::size_t>(want);
  };
  constexpr std::uint64_t first_step = 64u << 20;
  const std::uint64_t guess = declared != ZSTD_CONTENTSIZE_UNKNOWN
                                  ? declared
                                  : std::max<std::uint64_t>(in.size() * 4, 1 << 16);
  grow(std::min({guess, cap, first_step}));
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::size_t produced = 0;
  for (;;) {
    if (produced == size) {
      if (size >= cap) {
        // Room is exhausted: anything more is past the cap.
        std::byte probe[1];
        ZSTD_outBuffer pb{probe, 1, 0};
        const std::size_t r = ZSTD_decompressStream(ctx.get(), &pb, &ib);
        if (ZSTD_isError(r)) fail(std::string("zstd: ") + ZSTD_getErrorName(r));
        if (pb.pos > 0)
          too_big("its zstd frame holds more than the " + std::to_string(cap) + " bytes it may");
        if (r == 0) break;
        if (ib.pos == ib.size) fail("its zstd frame is truncated");
        continue;
      }
      // Doubling, but not past a declared size (a frame holding more than it declares is an
      // error zstd reports).
      std::uint64_t next = size * 2 + 4096;
      if (declared != ZSTD_CONTENTSIZE_UNKNOWN)
        next = std::max<std::uint64_t>(size + 1, std::min<std::uint64_t>(next, declared));
      grow(std::min(cap, next));
    }
    ZSTD_outBuffer ob{buf.get(), size, produced};
    const std::size_t r = ZSTD_decompressStream(ctx.get(), &ob, &ib);
    if (ZSTD_isError(r)) fail(std::string("zstd: ") + ZSTD_getErrorName(r));
    produced = ob.pos;
    if (r == 0) break;  // frame complete
    if (ib.pos == ib.size && ob.pos < ob.size) fail("its zstd frame is truncated");
  }
  if (ib.pos != ib.size) fail("bytes follow its zstd frame");
  std::shared_ptr<std::byte> owner(buf.release(), freer{});
  return byte_source::adopt(std::shared_ptr<const void>(owner, owner.get()),
                            {owner.get(), produced}, what);
}

// Whether bytes at `offset` open a safetensors file: a u64 header size that fits what follows,
// then '{'.
bool looks_like_safetensors(std::span<const std::byte> file, std::uint64_t offset) {
  if (offset > file.size() || file.size() - offset < 10) return false;
  const std::byte* p = file.data() + offset;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(p[i]);
  return n >= 2 && n <= file.size() - offset - 8 && static_cast<char>(p[8]) == '{';
}

bool has_zstd(const dcp_storage& s, const std::string& what) {
  if (s.transforms.empty()) return false;
  if (s.transforms.size() == 1 && s.transforms[0] == zstd_descriptor) return true;
  std::string list;
  for (const auto& t : s.transforms) list += (list.empty() ? "" : ", ") + detail::show_name(t);
  throw error(errc::unsupported,
              what + ": transform " + list + " (pthio knows " + std::string(zstd_descriptor) + ")");
}

}  // namespace

namespace detail {

// A folder's data files. They are opened (mapped) only while a read needs them, not for the
// checkpoint's lifetime: a job of a thousand ranks leaves thousands of files.
struct dcp_files {
  struct entry {
    std::filesystem::path path;
    std::string rel;  // as the metadata names it
  };
  std::vector<entry> files;
};

// The data files one read (or the load) uses, mapped while it runs; at most 16 at a time.
class open_files {
 public:
  explicit open_files(const dcp_files& f) : files_(f) {}
  // The file, mapped: a copy, which keeps its map alive whatever happens to this cache.
  byte_source get(std::uint32_t i) {
    auto it = open_.find(i);
    if (it != open_.end()) return it->second;
    if (open_.size() >= 16) open_.clear();
    byte_source whole = byte_source::map_file(files_.files[i].path);
    return open_.emplace(i, whole.sub(0, whole.size(), files_.files[i].rel)).first->second;
  }

 private:
  const dcp_files& files_;
  std::unordered_map<std::uint32_t, byte_source> open_;
};

// A DCP tensor as its lazy record describes it: where each chunk's bytes are.
struct dcp_tensor {
  struct piece {
    std::uint32_t file = 0;  // in files
    std::uint64_t offset = 0, length = 0;
    bool zstd = false;
    bool raw = false;  // the elements themselves (a safetensors blob's tensor)
    shape_t offsets, sizes;
  };
  std::shared_ptr<const dcp_files> files;
  std::string fqn;
  std::string folder;  // for messages
  dtype t = dtype::float32;
  shape_t size;
  std::vector<piece> chunks;
  load_options blob_options;  // how a chunk's blob is loaded (limits, CRC, strict)
  bool view_map = false;      // mmap mode: a single stored chunk may view the file's map
};

namespace {

std::string chunk_context(const dcp_tensor& d, std::size_t i) {
  const auto& p = d.chunks[i];
  return d.files->files[p.file].rel + ": chunk " + std::to_string(i) + " of " +
         detail::show_name(d.fqn) + " (bytes " + std::to_string(p.offset) + " to " +
         std::to_string(p.offset + p.length) + ")";
}

// Copies a contiguous chunk (sizes at offsets) into a contiguous tensor of `size`.
void copy_box(std::byte* dst, const shape_t& size, std::size_t es, const shape_t& offsets,
              const shape_t& sizes, const std::byte* src) {
  const std::size_t n = size.size();
  if (n == 0) {
    std::memcpy(dst, src, es);
    return;
  }
  for (std::int64_t s : sizes)
    if (s == 0) return;
  const shape_t strides = contiguous_strides(size);
  // Dimensions after k span the whole tensor: a run of sizes[k] x (their extent) elements is
  // contiguous in both.
  std::size_t k = n - 1;
  while (k > 0 && sizes[k] == size[k]) --k;
  std::size_t run = static_cast<std::size_t>(sizes[k]);
  for (std::size_t d = k + 1; d < n; ++d) run *= static_cast<std::size_t>(size[d]);
  const std::size_t run_bytes = run * es;
  std::vector<std::int64_t> idx(k, 0);
  for (;;) {
    std::int64_t off = offsets[k] * strides[k];
    for (std::size_t d = 0; d < k; ++d) off += (offsets[d] + idx[d]) * strides[d];
    std::memcpy(dst + static_cast<std::size_t>(off) * es, src, run_bytes);
    src += run_bytes;
    std::size_t d = k;
    while (d > 0) {
      --d;
      if (++idx[d] < sizes[d]) break;
      idx[d] = 0;
      if (d == 0) return;
    }
    if (k == 0) return;
  }
}

// A chunk's blob, opened: its pickle read (lazy: no bytes yet; a zstd blob is decompressed and
// viewed) and checked to hold a tensor of the chunk's dtype and sizes. Safetensors pieces (raw)
// have nothing to open.
struct opened_blob {
  checkpoint ck;
  tensor t;
};

opened_blob open_blob(open_files& files, const dcp_tensor& d, std::size_t i) {
  const auto& p = d.chunks[i];
  opened_blob out;
  if (p.raw) return out;
  try {
    load_options o = d.blob_options;
    byte_source blob;
    std::uint64_t chunk_bytes = element_size(d.t);
    for (std::int64_t s : p.sizes) chunk_bytes *= static_cast<std::uint64_t>(s);
    if (p.zstd) {
      std::vector<std::byte> packed(static_cast<std::size_t>(p.length));
      files.get(p.file).copy_out(p.offset, packed);
      // A torch.save blob of the chunk: its bytes, the pickle and the zip structure.
      blob = unzstd(packed, chunk_bytes + zstd_slack, errc::corrupt_checkpoint, "zstd blob");
      o.mode = load_mode::mmap;  // views the decompressed buffer
    } else {
      blob = files.get(p.file).sub(p.offset, p.length, "blob");
      o.mode = d.view_map && d.chunks.size() == 1 ? load_mode::mmap : load_mode::lazy;
    }
    out.ck = load_checkpoint(std::move(blob), o);
    const value& root = out.ck.root;
    if (!root.is_tensor())
      throw error(errc::corrupt_checkpoint,
                  "the blob holds a " + std::string(root.type_name()) + ", not a tensor");
    const tensor& t = root.as_tensor();
    if (t.dtype() != d.t || t.shape() != p.sizes)
      throw error(errc::corrupt_checkpoint,
                  "the blob holds a " + std::string(dtype_name(t.dtype())) + " tensor of " +
                      shape_string(t.shape()) + ", the metadata a " + std::string(dtype_name(d.t)) +
                      " chunk of " + shape_string(p.sizes));
    out.t = t;
  } catch (const error& e) {
    throw e.with_outer_context(chunk_context(d, i)).with_outer_context(d.folder);
  }
  return out;
}

// A chunk that is one contiguous block of the whole tensor (a range of leading rows, as Shard(0)
// and FSDP save them) whose blob stores exactly its elements: read from the file straight into
// its place. False when it is not such a chunk (the caller copies).
bool read_in_place(open_files& files, const dcp_tensor& d, std::size_t i, opened_blob& blob,
                   storage& whole) {
  const auto& p = d.chunks[i];
  for (std::size_t k = 1; k < d.size.size(); ++k)
    if (p.sizes[k] != d.size[k] || p.offsets[k] != 0) return false;
  const std::size_t es = element_size(d.t);
  std::size_t bytes = es, at = 0;
  for (std::int64_t s : p.sizes) bytes *= static_cast<std::size_t>(s);
  if (!d.size.empty()) {
    std::size_t row = es;
    for (std::size_t k = 1; k < d.size.size(); ++k) row *= static_cast<std::size_t>(d.size[k]);
    at = static_cast<std::size_t>(p.offsets[0]) * row;
  }
  std::span<std::byte> out(whole.data() + at, bytes);
  try {
    if (p.raw) {
      files.get(p.file).copy_out(p.offset, out);
      return true;
    }
    const tensor& t = blob.t;
    if (!t.is_contiguous() || t.storage_offset() != 0 || t.nbytes() != bytes) return false;
    const auto& records = lazy_records::of(blob.ck);
    if (!records) return false;
    const lazy_records::record* r = records->find(t.get_storage());
    return r && records->read_into(*r, out);
  } catch (const error& e) {
    throw e.with_outer_context(chunk_context(d, i)).with_outer_context(d.folder);
  }
}

}  // namespace

storage read_dcp_tensor(const dcp_tensor& d, const device& target) {
  open_files files(*d.files);
  std::uint64_t numel = 1;
  for (std::int64_t s : d.size) numel *= static_cast<std::uint64_t>(s);  // checked at load
  const std::size_t es = element_size(d.t);
  const std::size_t nbytes = static_cast<std::size_t>(numel * es);
  if (target.type() == device_type::meta) return storage::borrow(nullptr, nbytes, target);
  if (!target.is_cpu() && !target.is_cuda())
    throw error(errc::unsupported, "cannot load storages to device " + target.str() +
                                       "; map them to \"cpu\" or \"cuda:N\" with map_location");

  // Every chunk's blob is opened (its pickle read, nothing else) and checked against the
  // metadata before the tensor's memory is allocated: a size the metadata claims is only trusted
  // once the blobs hold it.
  std::vector<opened_blob> blobs(d.chunks.size());
  for (std::size_t i = 0; i < d.chunks.size(); ++i) blobs[i] = open_blob(files, d, i);

  auto chunk_tensor = [&](std::size_t i) -> tensor {
    const auto& p = d.chunks[i];
    try {
      if (p.raw) {
        storage s = storage::allocate_for_overwrite(static_cast<std::size_t>(p.length));
        files.get(p.file).copy_out(p.offset, {s.data(), s.nbytes()});
        return tensor(s, d.t, p.sizes, contiguous_strides(p.sizes), 0, false);
      }
      return blobs[i].ck.load_tensor(blobs[i].t).contiguous();
    } catch (const error& e) {
      throw e.with_outer_context(chunk_context(d, i)).with_outer_context(d.folder);
    }
  };

  storage whole;
  const bool single = d.chunks.size() == 1 && d.chunks[0].sizes == d.size;
  if (single) {
    tensor t = chunk_tensor(0);
    if (t.storage_offset() == 0 && t.get_storage().nbytes() == nbytes)
      whole = t.get_storage();
    else
      whole = t.clone().get_storage();
  } else {
    whole = storage::allocate_for_overwrite(nbytes);
    for (std::size_t i = 0; i < d.chunks.size(); ++i) {
      if (read_in_place(files, d, i, blobs[i], whole)) {
        blobs[i] = {};
        continue;
      }
      const tensor c = chunk_tensor(i);
      blobs[i] = {};  // the chunk's bytes go as soon as they are placed
      if (c.numel() > 0)
        copy_box(whole.data(), d.size, es, d.chunks[i].offsets, d.chunks[i].sizes, c.raw_data());
    }
  }
  if (target.is_cpu()) return whole;
  device_upload uploads;
  storage s = place_storage({whole.data(), whole.nbytes()}, d.t, target, false, nullptr, uploads);
  uploads.finish();
  return s;
}

tensor read_dcp_slice(const dcp_tensor& d, const std::vector<resolved_dim>& dims,
                      const device& target) {
  open_files files(*d.files);
  // The selection, every dimension kept: count positions start, start + step, ... per dimension.
  shape_t counts;
  for (const resolved_dim& r : dims) counts.push_back(r.count);
  shape_t kept;
  for (std::size_t k = 0; k < dims.size(); ++k)
    if (dims[k].keep) kept.push_back(dims[k].count);
  const std::size_t es = element_size(d.t);
  if (target.type() == device_type::meta)
    return tensor(
        storage::borrow(nullptr, static_cast<std::size_t>(shape_numel(kept)) * es, target), d.t,
        kept, contiguous_strides(kept), 0, false);
  tensor out = tensor::zeros(d.t, counts);
  // Each chunk the selection meets: the positions j of dimension k with off <= start + j * step
  // < off + size, read from the chunk's blob as a slice of its own (only those bytes, for a
  // stored blob) and placed at j.
  for (std::size_t i = 0; i < d.chunks.size() && shape_numel(counts) > 0; ++i) {
    const auto& p = d.chunks[i];
    shape_t first(dims.size()), n(dims.size());
    std::vector<slice_item> items;
    bool meets = true;
    for (std::size_t k = 0; k < dims.size() && meets; ++k) {
      const resolved_dim& r = dims[k];
      auto ceil_div = [](std::int64_t a, std::int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; };
      const std::int64_t lo = std::min(r.count, ceil_div(p.offsets[k] - r.start, r.step));
      const std::int64_t hi =
          std::min(r.count, ceil_div(p.offsets[k] + p.sizes[k] - r.start, r.step));
      meets = lo < hi;
      first[k] = lo;
      n[k] = hi - lo;
      slice_item it;
      it.start = r.start + lo * r.step - p.offsets[k];
      it.stop = *it.start + (n[k] - 1) * r.step + 1;
      it.step = r.step;
      items.push_back(it);
    }
    if (!meets) continue;
    tensor part;
    try {
      if (p.raw) {
        // The elements in the file: read as a raw record of their own, only the slice's bytes.
        lazy_records raw;
        raw.files.push_back({files.get(p.file), nullptr, false, false});
        storage ph = raw.placeholder(
            {d.fqn, nullptr, p.offset, p.length, d.t, device(device_type::cpu), 0, {}});
        const tensor whole(ph, d.t, p.sizes, contiguous_strides(p.sizes), 0, false);
        part = raw.read_slice(*raw.find(ph), whole, pthio::slice(items).resolve(p.sizes));
      } else {
        opened_blob b = open_blob(files, d, i);
        part = b.ck.load_slice(b.t, pthio::slice(items));
      }
    } catch (const error& e) {
      throw e.with_outer_context(chunk_context(d, i)).with_outer_context(d.folder);
    }
    copy_box(out.raw_data(), counts, es, first, n, part.contiguous().raw_data());
  }
  out = out.reshape(kept);
  return target.is_cpu() ? out : out.to(target);
}

}  // namespace detail

// ----------------------------------------------------------------------------------------------
// Public API.

dcp_metadata read_dcp_metadata(std::span<const std::byte> bytes, const std::string& name) {
  unpickle_options u;
  u.globals = &dcp_globals();
  u.strict = true;
  u.context = name;
  // A .metadata pickle is ~100 bytes per chunk; its objects expand some 30 times.
  u.limits.max_memory = std::max<std::uint64_t>(u.limits.max_memory, bytes.size() * 64);
  value root;
  try {
    root = unpickle(bytes, u).root;
  } catch (const error& e) {
    if (e.kind() != errc::unsafe_global) throw;
    // Data, never code: a global outside torch's metadata classes is no DCP metadata. (The
    // unpickler names it as "global MODULE.NAME is not allowed ...".)
    std::string global = e.message();
    if (auto at = global.find("global "); at != std::string::npos) {
      global = global.substr(at + 7);
      global = global.substr(0, global.find(' '));
    }
    throw error(errc::corrupt_checkpoint,
                "global " + global +
                    " is none of the names a DCP .metadata pickle holds (torch.distributed."
                    "checkpoint's metadata classes, torch.Size, dtypes, pathlib paths)",
                e.context(), e.offset());
  }
  return interpret_metadata(root, name, u.limits.max_memory);
}

bool is_dcp_metadata_global(std::string_view module, std::string_view name) {
  return dcp_globals().contains(module, name);
}

std::vector<dcp_blob> dcp_blobs(const dcp_metadata& m) {
  std::vector<dcp_blob> out;
  for (const dcp_item& it : m.items) {
    if (!it.is_tensor) {
      const dcp_storage& s = it.chunks.front().storage;
      out.push_back({"value " + detail::show_name(it.fqn), it.fqn, false, s, value_cap(s.length)});
      continue;
    }
    for (std::size_t i = 0; i < it.chunks.size(); ++i) {
      std::uint64_t bytes = element_size(it.dtype);
      for (std::int64_t d : it.chunks[i].sizes)
        if (!detail::checked_mul(bytes, static_cast<std::uint64_t>(d), bytes)) bytes = 1ull << 62;
      out.push_back({"chunk " + std::to_string(i) + " of " + detail::show_name(it.fqn), it.fqn,
                     true, it.chunks[i].storage,
                     std::min<std::uint64_t>(bytes, 1ull << 62) + zstd_slack});
    }
  }
  return out;
}

byte_source read_dcp_blob(const std::filesystem::path& folder, const dcp_blob& b) {
  const dcp_storage& s = b.storage;
  if (std::string why = detail::relative_path_problem(s.relative_path); !why.empty())
    throw error(errc::corrupt_checkpoint,
                "data file " + detail::show_name(s.relative_path) + " " + why, folder.string());
  const fs::path p = folder / s.relative_path;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec))
    throw error(errc::corrupt_checkpoint,
                "data file " + detail::show_name(s.relative_path) + " is missing", folder.string());
  byte_source src = byte_source::map_file(p);
  if (s.offset > src.size() || s.length > src.size() - s.offset)
    throw error(errc::corrupt_checkpoint,
                "bytes " + std::to_string(s.offset) + " to " + std::to_string(s.offset) + " + " +
                    std::to_string(s.length) + " lie outside the file (" +
                    std::to_string(src.size()) + " bytes)",
                p.string());
  const std::string name = s.relative_path + "@" + std::to_string(s.offset);
  if (!has_zstd(s, name)) return src.sub(s.offset, s.length, name);
  std::vector<std::byte> packed(static_cast<std::size_t>(s.length));
  src.copy_out(s.offset, packed);
  return unzstd(packed, b.max_bytes, b.tensor ? errc::corrupt_checkpoint : errc::limit_exceeded,
                name);
}

bool is_dcp(const std::filesystem::path& path) {
  folder f = find_folder(path);
  return f.k == folder::kind::pickle || f.k == folder::kind::ranks ||
         f.k == folder::kind::safetensors;
}

dcp_metadata read_dcp_folder_metadata(const std::filesystem::path& path) {
  folder f = find_folder(path);
  switch (f.k) {
    case folder::kind::pickle: {
      dcp_metadata m = read_metadata_file(f.files.front());
      return m;
    }
    case folder::kind::ranks: return merge_ranks(f);
    case folder::kind::safetensors: return safetensors_folder_metadata(f);
    case folder::kind::index:
    case folder::kind::none: break;
  }
  throw error(errc::corrupt_checkpoint,
              "not a checkpoint folder (no .metadata, __R.metadata, *.index.json or "
              "*.safetensors files)",
              path.string());
}

namespace {

// set_element (torch/distributed/checkpoint/_traverse.py): `leaf` at `path` of `root`, dicts made
// for str keys and lists (padded with None) for int keys on the way.
// `slots` counts the list slots made so far: each holds at least one of the checkpoint's items in a
// state dict torch wrote, so more slots than items (lists padded far past their items) are
// refused, in total as well as per list.
void set_element(value& root, const std::vector<value>& path, value leaf, std::size_t max_index,
                 std::size_t& slots, const std::string& fqn, const std::string& name) {
  auto fail = [&](const std::string& why) {
    throw error(errc::corrupt_checkpoint,
                "the planner_data path of " + detail::show_name(fqn) + " " + why, name);
  };
  auto list_slot = [&](list_object& l, const value& key) -> value& {
    if (!key.is_int()) fail("indexes a list with a str");
    const auto i = static_cast<std::size_t>(key.as_int());
    if (i >= max_index) fail("has a list index past the checkpoint's items");
    if (l.items.size() <= i) {
      slots += i + 1 - l.items.size();
      if (slots > max_index) fail("makes lists with more slots than the checkpoint has items");
      l.items.resize(i + 1);
    }
    return l.items[i];
  };
  value cur = root;
  for (std::size_t i = 1; i < path.size(); ++i) {
    const value& prev = path[i - 1];
    value fresh = path[i].is_str() ? value::make_dict() : value::make_list();
    if (cur.is_dict()) {
      dict_object& d = cur.as_dict();
      const value* have = d.get(prev);
      if (!have) {
        d.set(prev, fresh);
        cur = fresh;
      } else {
        cur = *have;
      }
    } else if (cur.is_list()) {
      value& slot = list_slot(cur.as_list(), prev);
      if (slot.is_none()) slot = fresh;
      cur = slot;
    } else {
      fail("goes through a " + std::string(cur.type_name()) + " another key put there");
    }
  }
  const value& last = path.back();
  if (cur.is_dict())
    cur.as_dict().set(last, std::move(leaf));
  else if (cur.is_list())
    list_slot(cur.as_list(), last) = std::move(leaf);
  else
    fail("goes through a " + std::string(cur.type_name()) + " another key put there");
}

checkpoint load_dcp_folder(const std::filesystem::path& path, const load_options& options) {
  folder f = find_folder(path);
  if (f.k == folder::kind::index) {
    if (f.files.size() > 1)
      throw error(errc::invalid_argument,
                  "the folder holds several *.index.json files; name the one to load",
                  path.string());
    return load_sharded(f.files.front(), options).merged;
  }
  dcp_metadata meta = read_dcp_folder_metadata(path);
  const std::string name = f.dir.string();

  checkpoint ck;
  ck.format = checkpoint_format::dcp;
  auto lazy = std::make_shared<detail::lazy_records>();
  // Data files: named once each, their sizes known; opened only while something is read from
  // them (a few while loading, then by each read).
  auto files = std::make_shared<detail::dcp_files>();
  std::vector<std::uint64_t> sizes;
  detail::open_files opened(*files);
  std::unordered_map<std::string, std::uint32_t> file_no;
  auto open_file = [&](const std::string& rel, const std::string& what) -> std::uint32_t {
    auto [it, fresh] = file_no.emplace(rel, static_cast<std::uint32_t>(files->files.size()));
    if (fresh) {
      std::error_code ec;
      const fs::path p = f.dir / rel;
      const auto size = fs::is_regular_file(p, ec) ? fs::file_size(p, ec) : 0;
      if (!fs::is_regular_file(p) || ec)
        throw error(errc::corrupt_checkpoint,
                    what + ": its data file " + detail::show_name(rel) + " is missing", name);
      files->files.push_back({p, rel});
      sizes.push_back(size);
    }
    return it->second;
  };
  auto check_range = [&](const dcp_storage& s, std::uint32_t file, const std::string& what) {
    const std::uint64_t size = sizes[file];
    if (s.offset > size || s.length > size - s.offset)
      throw error(errc::corrupt_checkpoint,
                  what + ": bytes " + std::to_string(s.offset) + " to " + std::to_string(s.offset) +
                      " + " + std::to_string(s.length) + " lie outside " +
                      detail::show_name(s.relative_path) + " (" + std::to_string(size) + " bytes)",
                  name);
  };
  // SAFETENSORS serialization: a chunk's storage points at the safetensors blob that holds it
  // (the blob runs to the end of its file); its tensor is found there by name.
  struct st_blob {
    safetensors_header h;
    std::unordered_map<std::string, std::size_t> by_name;
    std::unordered_map<std::string, shape_t> saved;
  };
  std::unordered_map<std::string, st_blob> st_blobs;
  auto safetensors_at = [&](std::uint32_t file, std::uint64_t offset) -> st_blob& {
    const std::string key = std::to_string(file) + ":" + std::to_string(offset);
    auto it = st_blobs.find(key);
    if (it != st_blobs.end()) return it->second;
    const byte_source src = opened.get(file);
    st_blob b;
    try {
      b.h = read_safetensors_header(src.bytes().subspan(static_cast<std::size_t>(offset)));
    } catch (const error& e) {
      throw e
          .with_outer_context(src.name() + ": the safetensors blob at offset " +
                              std::to_string(offset))
          .with_outer_context(name);
    }
    for (std::size_t i = 0; i < b.h.tensors.size(); ++i) b.by_name[b.h.tensors[i].name] = i;
    return st_blobs.emplace(key, std::move(b)).first->second;
  };

  const std::size_t max_index = meta.items.size() + 1;
  std::size_t list_slots = 0;
  ck.root = value::make_dict();
  for (const dcp_item& it : meta.items) {
    std::vector<value> item_path = it.path.empty() ? std::vector<value>{value(it.fqn)} : it.path;
    if (!it.is_tensor) {
      const dcp_storage& s = it.chunks.front().storage;
      const std::string what = "value " + detail::show_name(it.fqn);
      const std::uint32_t file = open_file(s.relative_path, what);
      check_range(s, file, what);
      const byte_source src = opened.get(file);
      // Read lazily (its pickle only) unless compressed: tensors a value holds (a tuple of them)
      // become placeholders read like the folder's own.
      load_options o = options;
      o.mode = load_mode::lazy;
      value v;
      try {
        byte_source blob;
        if (has_zstd(s, what)) {
          o.mode = load_mode::mmap;  // its tensors view the decompressed buffer
          std::vector<std::byte> packed(static_cast<std::size_t>(s.length));
          src.copy_out(s.offset, packed);
          blob = unzstd(packed, value_cap(s.length), errc::limit_exceeded, "zstd blob");
        } else {
          blob = src.sub(s.offset, s.length, "blob");
        }
        checkpoint vck = load_checkpoint(std::move(blob), o);
        if (const auto& records = detail::lazy_records::of(vck)) lazy->absorb(*records);
        v = std::move(vck.root);
      } catch (const error& e) {
        throw e
            .with_outer_context(src.name() + ": " + what + " (bytes " + std::to_string(s.offset) +
                                " to " + std::to_string(s.offset + s.length) + ")")
            .with_outer_context(name);
      }
      set_element(ck.root, item_path, std::move(v), max_index, list_slots, it.fqn, name);
      continue;
    }
    check_tiling(it, name);
    auto plan = std::make_shared<detail::dcp_tensor>();
    plan->files = files;
    plan->fqn = it.fqn;
    plan->folder = name;
    plan->t = it.dtype;
    plan->size = it.size;
    plan->blob_options.verify_crc = options.verify_crc;
    plan->blob_options.limits = options.limits;
    plan->blob_options.zip = options.zip;
    plan->blob_options.strict = true;  // torch loads chunks with weights_only=True
    plan->view_map = options.mode == load_mode::mmap;
    for (std::size_t i = 0; i < it.chunks.size(); ++i) {
      const dcp_chunk& c = it.chunks[i];
      const std::string what = "chunk " + std::to_string(i) + " of " + detail::show_name(it.fqn);
      detail::dcp_tensor::piece p;
      p.file = open_file(c.storage.relative_path, what);
      check_range(c.storage, p.file, what);
      p.offset = c.storage.offset;
      p.length = c.storage.length;
      p.zstd = has_zstd(c.storage, what);
      p.offsets = c.offsets;
      p.sizes = c.sizes;
      std::uint64_t chunk_bytes = element_size(it.dtype);
      for (std::int64_t s : c.sizes) chunk_bytes *= static_cast<std::uint64_t>(s);
      const byte_source src = opened.get(p.file);
      // A torch.save blob, unless its first bytes open a safetensors file (SAFETENSORS
      // serialization): a damaged blob is reported when its chunk is read, not here.
      const bool zip_blob = p.zstd || !looks_like_safetensors(src.bytes(), p.offset);
      if (meta.safetensors_blobs) {
        p.raw = true;  // the ranges point at the elements themselves
      } else if (!zip_blob) {
        st_blob& b = safetensors_at(p.file, p.offset);
        auto e = b.by_name.find(it.fqn);
        if (e == b.by_name.end())
          throw error(errc::corrupt_checkpoint,
                      what + ": the safetensors blob at offset " + std::to_string(p.offset) +
                          " of " + detail::show_name(c.storage.relative_path) + " has no tensor " +
                          detail::show_name(it.fqn),
                      name);
        const safetensors_entry& se = b.h.tensors[e->second];
        if (se.type != it.dtype || se.shape != c.sizes)
          throw error(errc::corrupt_checkpoint,
                      what + ": the safetensors blob holds a " + se.dtype_name + " tensor of " +
                          shape_string(se.shape) + ", the metadata a " +
                          std::string(dtype_name(it.dtype)) + " chunk of " + shape_string(c.sizes),
                      name);
        p.raw = true;
        p.offset += b.h.data_offset() + se.begin;
        p.length = se.end - se.begin;
      }
      if (p.raw && p.length != chunk_bytes)
        throw error(errc::corrupt_checkpoint,
                    what + ": " + std::to_string(p.length) + " bytes for a " +
                        std::string(dtype_name(it.dtype)) + " chunk of " + shape_string(c.sizes) +
                        " (" + std::to_string(chunk_bytes) + " bytes)",
                    name);
      plan->chunks.push_back(std::move(p));
    }
    std::uint64_t nbytes = element_size(it.dtype);
    for (std::int64_t s : it.size) nbytes *= static_cast<std::uint64_t>(s);
    detail::lazy_records::record r;
    r.key = it.fqn;
    r.nbytes = nbytes;
    r.t = it.dtype;
    r.target = options.map_location.apply(device(device_type::cpu));
    detail::check_target(r.target, device(device_type::cpu));
    r.dcp = std::move(plan);
    storage ph = lazy->placeholder(std::move(r));
    tensor t(ph, it.dtype, it.size, contiguous_strides(it.size), 0, false);
    set_element(ck.root, item_path, value(std::move(t)), max_index, list_slots, it.fqn, name);
  }
  if (!lazy->empty()) detail::lazy_records::attach(ck, std::move(lazy));
  if (options.mode != load_mode::lazy) ck.materialize();
  return ck;
}

}  // namespace

checkpoint load_dcp(const std::filesystem::path& path, const load_options& options) {
  checkpoint ck = load_dcp_folder(path, options);
  // Weights-only: the folder as the static scanner sees it (the metadata by torch's metadata
  // classes, every blob's pickles) must be safe too.
  if (options.strict && is_dcp(path)) {
    try {
      detail::require_scan_safe(scan_file(path));
    } catch (const error& e) {
      throw e.with_outer_context(path.string());
    }
  }
  return ck;
}

}  // namespace pthio
