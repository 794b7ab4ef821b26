// safetensors reading and writing, checked as the reference crate checks
// (safetensors/src/tensor.rs: read_metadata, Metadata::validate) and written as its serializer
// writes (prepare()).
#include "pthio/safetensors.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "byte_reader.h"
#include "cuda/device_copy.h"
#include "json_reader.h"
#include "pthio/cuda.hpp"
#include "torch/internal.h"

namespace pthio {

namespace {

using detail::checked_add;
using detail::checked_mul;

// tensor.rs: MAX_HEADER_SIZE.
constexpr std::uint64_t max_header_size = 100'000'000;
// Not in the reference: keeps a hostile shape from allocating more than this many dimensions.
constexpr std::size_t max_rank = 1024;
const std::string header_context = "safetensors header";

struct st_dtype {
  std::string_view name;
  unsigned bits;
  int rank;  // position in the crate's `enum Dtype` ("increasing alignment order"); the writer
             // sorts on it
  std::optional<dtype> type;
};

constexpr st_dtype st_dtypes[] = {
    {"BOOL", 8, 0, dtype::bool_},
    {"F4", 4, 1, dtype::float4_e2m1fn_x2},
    {"F6_E2M3", 6, 2, std::nullopt},
    {"F6_E3M2", 6, 3, std::nullopt},
    {"U8", 8, 4, dtype::uint8},
    {"I8", 8, 5, dtype::int8},
    {"F8_E5M2", 8, 6, dtype::float8_e5m2},
    {"F8_E4M3", 8, 7, dtype::float8_e4m3fn},
    {"F8_E8M0", 8, 8, dtype::float8_e8m0fnu},
    {"F8_E4M3FNUZ", 8, 9, dtype::float8_e4m3fnuz},
    {"F8_E5M2FNUZ", 8, 10, dtype::float8_e5m2fnuz},
    {"I16", 16, 11, dtype::int16},
    {"U16", 16, 12, dtype::uint16},
    {"F16", 16, 13, dtype::float16},
    {"BF16", 16, 14, dtype::bfloat16},
    {"I32", 32, 15, dtype::int32},
    {"U32", 32, 16, dtype::uint32},
    {"F32", 32, 17, dtype::float32},
    {"C64", 64, 18, dtype::complex64},
    {"F64", 64, 19, dtype::float64},
    {"I64", 64, 20, dtype::int64},
    {"U64", 64, 21, dtype::uint64},
};

const st_dtype* find_st(std::string_view name) noexcept {
  for (const auto& d : st_dtypes)
    if (d.name == name) return &d;
  return nullptr;
}

const st_dtype* find_st(dtype t) noexcept {
  for (const auto& d : st_dtypes)
    if (d.type == t) return &d;
  return nullptr;
}

std::string show_name(const std::string& name) {
  return detail::json_quote(name.size() > 200 ? name.substr(0, 200) + "..." : name);
}

// serde_json's compact string form: '"', '\\' and control characters escaped (\b \f \n \r \t,
// else \u00xx in lowercase hex); everything else, non-ASCII included, as it is.
void append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

bool is_utf8(std::string_view s) {
  return !detail::find_invalid_utf8({reinterpret_cast<const std::byte*>(s.data()), s.size()});
}

// Values that are neither tensors nor containers leading to tensors, by key path (the rules of
// visit_tensors).
void collect_dropped(const value& v, std::string& path, int depth,
                     std::vector<std::pair<std::string, std::string>>& out) {
  if (v.is_tensor()) return;
  bool any = false;
  const bool container =
      detail::for_each_key_path_child(v, [&](const std::string& part, const value& c) {
        any = true;
        std::size_t keep = path.size();
        if (depth > 0) path += ".";
        path += part;
        collect_dropped(c, path, depth + 1, out);
        path.resize(keep);
      });
  if (!container) {
    out.emplace_back(path, std::string(v.type_name()));
  } else if (v.is_object()) {
    const auto& o = v.as_object();
    if (!any || (o.has_state && !o.state.is_dict())) out.emplace_back(path, o.type.qualified());
  } else if (!any && depth > 0) {
    out.emplace_back(path, std::string(v.type_name()));
  }
}

std::optional<std::vector<std::pair<std::string, std::string>>> root_metadata(const value& root) {
  if (!root.is_dict()) return std::nullopt;
  const value* m = root.as_dict().attr("__metadata__");
  if (!m || !m->is_dict()) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : m->as_dict().entries()) {
    if (!k.is_str() || !v.is_str()) return std::nullopt;
    out.emplace_back(k.as_str(), v.as_str());
  }
  return out;
}

}  // namespace

std::string_view safetensors_dtype_name(dtype t) noexcept {
  const st_dtype* d = find_st(t);
  return d ? d->name : std::string_view();
}

std::optional<dtype> dtype_from_safetensors_name(std::string_view name) noexcept {
  const st_dtype* d = find_st(name);
  return d ? d->type : std::nullopt;
}

safetensors_header read_safetensors_header(std::span<const std::byte> file) {
  detail::byte_reader r(file, errc::corrupt_safetensors, header_context);
  if (file.size() < 8)
    r.fail_at(0, "the file holds " + std::to_string(file.size()) +
                     " bytes, fewer than the 8 of the header size");
  const std::uint64_t n = r.le64();
  if (n > max_header_size)
    r.fail_at(0, "header size " + std::to_string(n) + " exceeds the limit of " +
                     std::to_string(max_header_size) + " bytes");
  if (n > file.size() - 8)
    r.fail_at(0, "header size " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(file.size() - 8) + " bytes follow the size)");
  const auto text = file.subspan(8, static_cast<std::size_t>(n));
  if (auto bad = detail::find_invalid_utf8(text))
    r.fail_at(8 + *bad, "the header is not valid UTF-8");

  safetensors_header h;
  h.header_size = n;
  detail::json_reader j(text, errc::corrupt_safetensors, header_context, 8);
  std::unordered_map<std::string, std::size_t> names;
  bool metadata_seen = false;
  if (j.peek() == '[') j.fail("the header must be a JSON object, not an array");
  j.object("the header", [&](const std::string& key, std::size_t key_pos) {
    if (key == "__metadata__") {
      if (metadata_seen) j.fail_at(key_pos, "__metadata__ is given twice");
      metadata_seen = true;
      if (j.is_null()) return;
      std::vector<std::pair<std::string, std::string>> m;
      std::unordered_set<std::string> keys;
      j.object("__metadata__", [&](const std::string& k, std::size_t kp) {
        if (!keys.insert(k).second)
          j.fail_at(kp, "__metadata__ key " + show_name(k) + " is given twice");
        if (j.peek() != '"') j.fail("__metadata__ value of " + show_name(k) + " must be a string");
        m.emplace_back(k, j.string());
      });
      h.metadata = std::move(m);
      return;
    }
    const std::string who = "tensor " + show_name(key);
    if (auto [it, fresh] = names.emplace(key, h.tensors.size()); !fresh)
      j.fail_at(key_pos, who + " is given twice (first at offset " +
                             std::to_string(h.tensors[it->second].header_offset) + ")");
    safetensors_entry e;
    e.name = key;
    e.header_offset = 8 + key_pos;
    if (j.peek() == '[')
      j.fail(who +
             ": the array form of a tensor entry is not supported (an object with \"dtype\", "
             "\"shape\" and "
             "\"data_offsets\" is)");
    bool has_dtype = false, has_shape = false, has_offsets = false;
    j.object(who.c_str(), [&](const std::string& field, std::size_t fp) {
      auto once = [&](bool& seen) {
        if (seen) j.fail_at(fp, who + " has two \"" + field + "\" fields");
        seen = true;
      };
      if (field == "dtype") {
        once(has_dtype);
        if (j.peek() != '"') j.fail(who + ": dtype must be a string");
        std::size_t vp = j.pos();
        std::string name = j.string();
        const st_dtype* d = find_st(name);
        if (!d) j.fail_at(vp, who + ": unknown dtype " + show_name(name));
        e.dtype_name = std::string(d->name);
        e.type = d->type;
      } else if (field == "shape") {
        once(has_shape);
        j.array((who + " shape").c_str(), [&](std::size_t i) {
          if (i >= max_rank)
            j.fail(who + ": shape has more than " + std::to_string(max_rank) + " dimensions");
          std::size_t vp = j.pos();
          std::uint64_t d = j.uint("a shape dimension");
          if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            j.fail_at(vp, who + ": dimension " + std::to_string(d) + " exceeds 2^63 - 1");
          e.shape.push_back(static_cast<std::int64_t>(d));
        });
      } else if (field == "data_offsets") {
        once(has_offsets);
        std::uint64_t v[2] = {0, 0};
        std::size_t count = 0;
        const std::size_t array_pos = j.pos();
        j.array((who + " data_offsets").c_str(), [&](std::size_t i) {
          if (i >= 2) j.fail(who + ": data_offsets must hold two integers, [begin, end]");
          v[i] = j.uint("a data offset");
          count = i + 1;
        });
        if (count != 2)
          j.fail_at(array_pos, who + ": data_offsets must hold two integers, [begin, end]");
        e.begin = v[0];
        e.end = v[1];
      } else {
        j.skip_value();  // serde ignores fields it does not know
      }
    });
    if (!has_dtype) j.fail_at(key_pos, who + " has no \"dtype\"");
    if (!has_shape) j.fail_at(key_pos, who + " has no \"shape\"");
    if (!has_offsets) j.fail_at(key_pos, who + " has no \"data_offsets\"");
    h.tensors.push_back(std::move(e));
  });
  j.expect_end();

  // Metadata::validate: in offset order, each tensor starts where the previous one ended and holds
  // exactly numel x bits / 8 bytes; the last one ends at the end of the file.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const safetensors_entry& a, const safetensors_entry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  std::uint64_t start = 0;
  for (const auto& e : h.tensors) {
    const std::string who = "tensor " + show_name(e.name);
    const std::string span = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.end < e.begin)
      r.fail_at(e.header_offset, who + ": data_offsets " + span + " end before they begin");
    if (e.begin != start)
      r.fail_at(e.header_offset, who + ": data_offsets " + span +
                                     (e.begin > start ? " leave a gap after" : " overlap") +
                                     " the bytes before them, which end at " +
                                     std::to_string(start));
    start = e.end;
    std::uint64_t numel = 1, bits = 0;
    for (std::int64_t d : e.shape)
      if (!checked_mul(numel, static_cast<std::uint64_t>(d), numel))
        r.fail_at(e.header_offset, who + ": shape " + shape_string(e.shape) + " overflows");
    if (!checked_mul(numel, find_st(e.dtype_name)->bits, bits))
      r.fail_at(e.header_offset,
                who + ": shape " + shape_string(e.shape) + " of " + e.dtype_name + " overflows");
    if (bits % 8 != 0)
      r.fail_at(e.header_offset, who + ": " + std::to_string(numel) + " elements of " +
                                     e.dtype_name + " do not fill whole bytes");
    if (e.end - e.begin != bits / 8)
      r.fail_at(e.header_offset, who + ": data_offsets " + span + " hold " +
                                     std::to_string(e.end - e.begin) + " bytes but shape " +
                                     shape_string(e.shape) + " of " + e.dtype_name + " needs " +
                                     std::to_string(bits / 8));
  }
  const std::uint64_t data_len = file.size() - 8 - n;
  if (start != data_len)
    r.fail_at(8 + n + std::min(start, data_len), "the tensors cover " + std::to_string(start) +
                                                     " bytes but the data section holds " +
                                                     std::to_string(data_len));
  return h;
}

namespace detail {

checkpoint load_safetensors(const byte_source& src, const load_options& options) {
  const safetensors_header h = read_safetensors_header(src.bytes());
  const auto data = src.bytes().subspan(static_cast<std::size_t>(h.data_offset()));
  const device target = options.map_location.apply(cpu_device);
  if (target.is_cuda() && !cuda_available())
    throw error(errc::cuda, "tensors are mapped to " + target.str() +
                                " but no CUDA device is available (" + cuda_unavailable_reason() +
                                "); load with map_location \"cpu\"");
  const bool zero_copy = options.mode == load_mode::mmap && src.owner() != nullptr;
  host_copies copies;  // eager host copies, on several threads once every tensor is placed
  std::shared_ptr<lazy_records> lazy;
  if (options.mode == load_mode::lazy) {
    lazy = std::make_shared<lazy_records>();
    lazy->files.push_back({src, nullptr, false, false});  // safetensors has no checksums
  }

  checkpoint ck;
  ck.format = checkpoint_format::safetensors;
  ck.root = value::make_ordered_dict();
  dict_object& d = ck.root.as_dict();
  for (const auto& e : h.tensors) {
    const std::string who = "tensor " + show_name(e.name);
    if (!e.type)
      throw error(errc::unsupported,
                  who + " has dtype " + e.dtype_name + ", which pthio has no type for",
                  header_context, e.header_offset);
    shape_t shape = e.shape;
    if (*e.type == dtype::float4_e2m1fn_x2) {
      // The header counts 4-bit elements; float4_e2m1fn_x2 holds two per element.
      if (shape.empty() || shape.back() % 2 != 0)
        throw error(errc::unsupported,
                    who + ": F4 shape " + shape_string(shape) +
                        " has no even last dimension, so it is not a float4_e2m1fn_x2 tensor",
                    header_context, e.header_offset);
      shape.back() /= 2;
    }
    auto bytes =
        data.subspan(static_cast<std::size_t>(e.begin), static_cast<std::size_t>(e.end - e.begin));
    const std::size_t es = element_size(*e.type);
    storage s;
    if (lazy) {
      s = lazy->placeholder(
          {e.name, nullptr, h.data_offset() + e.begin, bytes.size(), *e.type, target, 0, {}});
    } else if (target.type() == device_type::meta) {
      s = storage::borrow(nullptr, bytes.size(), target);
    } else if (target.is_cpu()) {
      if (zero_copy && !bytes.empty() && reinterpret_cast<std::uintptr_t>(bytes.data()) % es == 0) {
        s = storage::wrap(src.owner(), const_cast<std::byte*>(bytes.data()), bytes.size());
      } else {
        s = storage::allocate_for_overwrite(bytes.size());  // filled by copies.finish()
        if (!bytes.empty()) copies.add(src, bytes, s.data());
      }
    } else if (target.is_cuda()) {
      s = copy_to_device(bytes, target);
    } else {
      throw error(errc::unsupported, "cannot load tensors to device " + target.str() +
                                         "; map them to \"cpu\" or \"cuda:N\" with map_location");
    }
    shape_t strides = contiguous_strides(shape);
    d.set(value(e.name),
          value(tensor(std::move(s), *e.type, std::move(shape), std::move(strides))));
  }
  copies.finish(options.threads);
  if (h.metadata) {
    value m = value::make_dict();
    for (const auto& [k, v] : *h.metadata) m.as_dict().set(value(k), value(v));
    d.attrs.emplace_back("__metadata__", std::move(m));
  }
  if (lazy && !lazy->empty()) lazy_records::attach(ck, std::move(lazy));
  return ck;
}

void save_safetensors(sink& out, const value& root, const save_options&) {
  pthio::save_safetensors(out, root, safetensors_save_options{});
}

}  // namespace detail

checkpoint load_safetensors(byte_source source, const load_options& options) {
  try {
    return detail::load_safetensors(source, options);
  } catch (const error& e) {
    throw e.with_outer_context(source.name());
  }
}

checkpoint load_safetensors(const std::filesystem::path& path, const load_options& options) {
  return load_safetensors(byte_source::map_file(path), options);
}

safetensors_plan plan_safetensors(const value& root) {
  safetensors_plan p;
  visit_tensors(root, [&](const std::string& key, const value& t) {
    p.tensors.emplace_back(key, t.as_tensor());
  });
  std::string path;
  collect_dropped(root, path, 0, p.dropped);
  std::unordered_map<const void*, std::size_t> group_of;
  std::vector<std::vector<std::string>> groups;
  for (const auto& [name, t] : p.tensors) {
    const storage& s = t.get_storage();
    if (!s.defined() || s.nbytes() == 0 || t.numel() == 0) continue;
    auto [it, fresh] = group_of.emplace(s.id(), groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(name);
  }
  for (auto& g : groups)
    if (g.size() > 1) p.shared.push_back(std::move(g));
  p.metadata = root_metadata(root);
  return p;
}

void save_safetensors(sink& out, const value& root, const safetensors_save_options& options) {
  detail::write_safetensors(out, root, options, {});
}

void detail::write_safetensors(sink& out, const value& root,
                               const safetensors_save_options& options,
                               const std::function<tensor(const tensor&)>& fetch) {
  safetensors_plan plan = plan_safetensors(root);
  if (!options.drop_non_tensors && !plan.dropped.empty()) {
    std::string list;
    for (std::size_t i = 0; i < plan.dropped.size() && i < 5; ++i)
      list += (i ? ", " : "") +
              (plan.dropped[i].first.empty() ? std::string("\"\"") : plan.dropped[i].first) + " (" +
              plan.dropped[i].second + ")";
    if (plan.dropped.size() > 5) list += ", ...";
    throw error(errc::invalid_argument,
                "safetensors stores only tensors, and " + std::to_string(plan.dropped.size()) +
                    (plan.dropped.size() == 1 ? " value is not one: " : " values are not: ") +
                    list +
                    "; save the state dict alone, or leave them out with save_safetensors' "
                    "drop_non_tensors");
  }
  const auto& metadata = options.metadata ? options.metadata : plan.metadata;

  struct item {
    const std::string* name;
    const tensor* t;
    const st_dtype* st;
    shape_t shape;  // as the header records it
    std::uint64_t nbytes;
  };
  std::vector<item> items;
  items.reserve(plan.tensors.size());
  std::unordered_set<std::string_view> names;
  for (const auto& [name, t] : plan.tensors) {
    const std::string who = "tensor " + show_name(name);
    if (!is_utf8(name))
      throw error(errc::invalid_argument, who + ": a safetensors name must be UTF-8");
    if (!names.insert(name).second)
      throw error(errc::invalid_argument, "two tensors have the key path " + show_name(name) +
                                              "; safetensors names must be unique");
    const st_dtype* st = find_st(t.dtype());
    if (!st)
      throw error(errc::unsupported, who + " has dtype " + std::string(dtype_name(t.dtype())) +
                                         ", which safetensors cannot store");
    if (t.dev().type() == device_type::meta && !fetch)
      throw error(errc::unsupported, who + " is on the meta device and has no data to write");
    shape_t shape = t.shape();
    if (t.dtype() == dtype::float4_e2m1fn_x2) {
      if (shape.empty())
        throw error(errc::unsupported, who + ": a 0-d float4_e2m1fn_x2 tensor has no F4 shape");
      std::uint64_t doubled;
      if (!checked_mul(static_cast<std::uint64_t>(shape.back()), 2, doubled))
        throw error(errc::invalid_argument, who + ": shape overflows");
      shape.back() = static_cast<std::int64_t>(doubled);
    }
    items.push_back({&name, &t, st, std::move(shape), t.nbytes()});
  }
  // prepare(): decreasing dtype alignment, then by name (bytewise).
  std::stable_sort(items.begin(), items.end(), [](const item& a, const item& b) {
    if (a.st->rank != b.st->rank) return a.st->rank > b.st->rank;
    return *a.name < *b.name;
  });

  std::string header = "{";
  bool first = true;
  if (metadata) {
    header += "\"__metadata__\":{";
    for (std::size_t i = 0; i < metadata->size(); ++i) {
      const auto& [k, v] = (*metadata)[i];
      if (!is_utf8(k) || !is_utf8(v))
        throw error(errc::invalid_argument, "__metadata__ must be UTF-8");
      if (i) header += ',';
      append_json_string(header, k);
      header += ':';
      append_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto& it : items) {
    if (!first) header += ',';
    first = false;
    append_json_string(header, *it.name);
    header += ":{\"dtype\":\"";
    header += it.st->name;
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < it.shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(it.shape[i]);
    }
    std::uint64_t end;
    if (!checked_add(offset, it.nbytes, end))
      throw error(errc::limit_exceeded, "tensor data overflows 64 bits");
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  header += '}';
  header.resize((header.size() + 7) / 8 * 8, ' ');
  if (header.size() > max_header_size)
    throw error(errc::limit_exceeded,
                "the safetensors header would take " + std::to_string(header.size()) +
                    " bytes, more than the limit of " + std::to_string(max_header_size));

  std::byte size_le[8];
  for (int i = 0; i < 8; ++i)
    size_le[i] = static_cast<std::byte>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
  out.write(size_le, 8);
  out.write(header.data(), header.size());
  for (const auto& it : items) {
    if (it.nbytes == 0) continue;
    // Fetched (a lazy checkpoint's tensor read now), written, and released before the next one.
    tensor h = fetch ? fetch(*it.t) : *it.t;
    if (h.dev().type() == device_type::meta)
      throw error(errc::unsupported, "tensor " + show_name(*it.name) +
                                         " is on the meta device and has no data to write");
    if (!h.dev().is_cpu()) h = h.to(cpu_device);
    if (!h.is_contiguous()) h = h.contiguous();
    out.write(h.raw_data(), static_cast<std::size_t>(it.nbytes));
  }
}

void save_safetensors(const std::filesystem::path& path, const value& root,
                      const safetensors_save_options& options) {
  try {
    file_sink out(path);
    save_safetensors(out, root, options);
    out.commit();
  } catch (const error& e) {
    throw e.with_outer_context(path.string());
  }
}

}  // namespace pthio
