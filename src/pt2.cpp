// torch.export archives (.pt2): the layouts (pt2.hpp), their configs checked, and the program's
// state dict and constants loaded from raw records or torch.save blobs. Torch's reader is
// torch/export/pt2_archive/_package.py (load_pt2, _load_state_dict, _load_constants,
// _build_file_map) over the schema of torch/_export/serde/schema.py; the torch 2.1-2.7 export zip
// is read by torch.export.load's fallback in torch/export/__init__.py.
#include "pthio/pt2.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "json_reader.h"
#include "torch/internal.h"

namespace pthio {

namespace {

using detail::json_quote;
using detail::json_reader;
using detail::show_name;

constexpr std::string_view export_zip_program = "serialized_exported_program.json";
constexpr std::size_t max_dims = 64;

// The export schema's ScalarType codes (schema.py), every one it defines.
std::optional<dtype> dtype_of_code(std::int64_t code) {
  switch (code) {
    case 1: return dtype::uint8;
    case 2: return dtype::int8;
    case 3: return dtype::int16;
    case 4: return dtype::int32;
    case 5: return dtype::int64;
    case 6: return dtype::float16;
    case 7: return dtype::float32;
    case 8: return dtype::float64;
    case 9: return dtype::complex32;
    case 10: return dtype::complex64;
    case 11: return dtype::complex128;
    case 12: return dtype::bool_;
    case 13: return dtype::bfloat16;
    case 28: return dtype::uint16;
    case 29: return dtype::float8_e4m3fn;
    case 30: return dtype::float8_e5m2;
    case 31: return dtype::float8_e4m3fnuz;
    case 32: return dtype::float8_e5m2fnuz;
    case 33: return dtype::float8_e8m0fnu;
    case 34: return dtype::uint32;
    case 35: return dtype::uint64;
    default: return std::nullopt;
  }
}

const char* layout_name(std::int64_t code) {
  switch (code) {
    case 0: return "Unknown";
    case 1: return "SparseCoo";
    case 2: return "SparseCsr";
    case 3: return "SparseCsc";
    case 4: return "SparseBsr";
    case 5: return "SparseBsc";
    case 6: return "_mkldnn";
    case 7: return "Strided";
    default: return "?";
  }
}

// A record's text: JSON configs and programs are read whole (stored: a view of the file).
std::span<const std::byte> record_bytes(const zip_reader& zip, const zip_entry& e) {
  return zip.read(e, true);
}

std::string record_text(const zip_reader& zip, const zip_entry& e, std::size_t max) {
  if (e.uncompressed_size > max)
    throw error(errc::corrupt_checkpoint,
                "record of " + std::to_string(e.uncompressed_size) + " bytes where at most " +
                    std::to_string(max) + " are expected",
                e.name);
  auto b = record_bytes(zip, e);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// One symbolic integer of the schema: {"as_int": n} or {"as_expr": {"expr_str": ..., "hint":
// ...}} (an older schema wrote the expression as a bare string).
struct sym_int {
  std::optional<std::int64_t> value;
  std::string expr;
};

// Reads the tensor_meta fields. `strict`: the configs, where every field must be known, present
// and concrete; otherwise (a program's tensor_values, only summarised) unknown fields are skipped
// and symbolic sizes kept as their expression.
struct meta_reader {
  json_reader& j;
  const std::string& who;  // "weight \"l1.weight\"", for messages
  bool strict;
  std::uint64_t base;   // offset of the record's text in the file
  std::string context;  // the record, for errors that are not the reader's

  [[noreturn]] void unsupported(std::size_t pos, const std::string& message) const {
    throw error(errc::unsupported, who + ": " + message, context, base + pos);
  }

  sym_int sym(const char* field) {
    sym_int s;
    bool seen = false;
    const std::size_t at = j.pos();
    j.object(field, [&](const std::string& k, std::size_t pos) {
      if (seen) j.fail_at(pos, who + ": " + field + " holds more than one member");
      seen = true;
      if (k == "as_int") {
        value v = j.any_value();
        if (!v.is_int()) j.fail_at(pos, who + ": " + field + ".as_int is not an integer");
        s.value = v.as_int();
      } else if (k == "as_expr") {
        if (j.peek() == '"') {
          s.expr = j.string();
        } else {
          j.object(field, [&](const std::string& ek, std::size_t) {
            if (ek == "expr_str")
              s.expr = j.string();
            else
              j.skip_value();
          });
        }
        if (strict)
          unsupported(pos, std::string(field) + " is symbolic (" + show_name(s.expr) +
                               "): a stored tensor's sizes must be concrete");
      } else if (strict) {
        j.fail_at(pos, who + ": unknown member " + json_quote(k) + " in " + field);
      } else {
        j.skip_value();
      }
    });
    if (!seen) j.fail_at(at, who + ": " + field + " is empty");
    return s;
  }

  std::vector<sym_int> syms(const char* field) {
    std::vector<sym_int> out;
    j.array(field, [&](std::size_t i) {
      if (i >= max_dims)
        j.fail(who + ": " + field + " has more than " + std::to_string(max_dims) + " dimensions");
      out.push_back(sym(field));
    });
    return out;
  }

  bool boolean(const char* field, std::size_t pos) {
    value v = j.any_value();
    if (!v.is_bool()) j.fail_at(pos, who + ": " + field + " is not true or false");
    return v.as_bool();
  }

  std::int64_t integer(const char* field, std::size_t pos) {
    value v = j.any_value();
    if (!v.is_int()) j.fail_at(pos, who + ": " + field + " is not an integer");
    return v.as_int();
  }

  device location(std::size_t at) {
    std::optional<std::string> type;
    std::optional<std::int64_t> index;
    j.object("device", [&](const std::string& k, std::size_t pos) {
      if (k == "type") {
        type = j.string();
      } else if (k == "index") {
        if (!j.is_null()) index = integer("device.index", pos);
      } else if (strict) {
        j.fail_at(pos, who + ": unknown member " + json_quote(k) + " in device");
      } else {
        j.skip_value();
      }
    });
    if (!type) j.fail_at(at, who + ": device has no type");
    if (index && (*index < 0 || *index > 1 << 16))
      j.fail_at(at, who + ": device index " + std::to_string(*index) + " is out of range");
    std::string tag = *type + (index ? ":" + std::to_string(*index) : "");
    try {
      return device::parse(tag);
    } catch (const error& e) {
      j.fail_at(at, who + ": device " + show_name(tag) + " is no device (" + e.message() + ")");
    }
  }
};

// A tensor_meta of a config (strict) or of a program's tensor_values (summarised).
struct parsed_meta {
  pt2_tensor_meta meta;
  std::vector<sym_int> sizes;  // as written (symbolic in a program)
  std::optional<dtype> type;
};

parsed_meta read_tensor_meta(meta_reader& m) {
  parsed_meta out;
  const std::size_t at = m.j.pos();
  std::optional<std::int64_t> code, layout;
  std::optional<bool> requires_grad;
  std::optional<device> location;
  std::optional<std::vector<sym_int>> sizes, strides;
  std::optional<sym_int> offset;
  std::size_t code_pos = at, layout_pos = at;
  m.j.object("tensor_meta", [&](const std::string& k, std::size_t pos) {
    if (k == "dtype") {
      code_pos = pos;
      code = m.integer("tensor_meta.dtype", pos);
    } else if (k == "sizes") {
      sizes = m.syms("sizes");
    } else if (k == "strides") {
      strides = m.syms("strides");
    } else if (k == "storage_offset") {
      offset = m.sym("storage_offset");
    } else if (k == "requires_grad") {
      requires_grad = m.boolean("tensor_meta.requires_grad", pos);
    } else if (k == "device") {
      location = m.location(pos);
    } else if (k == "layout") {
      layout_pos = pos;
      layout = m.integer("tensor_meta.layout", pos);
    } else if (m.strict) {
      m.j.fail_at(pos, m.who + ": unknown field " + json_quote(k) + " in tensor_meta");
    } else {
      m.j.skip_value();
    }
  });
  if (m.strict) {
    const char* missing = !code            ? "dtype"
                          : !sizes         ? "sizes"
                          : !strides       ? "strides"
                          : !offset        ? "storage_offset"
                          : !requires_grad ? "requires_grad"
                          : !location      ? "device"
                          : !layout        ? "layout"
                                           : nullptr;
    if (missing) m.j.fail_at(at, m.who + ": tensor_meta has no " + missing);
  }
  if (code) {
    out.meta.scalar_type = static_cast<int>(std::clamp<std::int64_t>(*code, -1, 1 << 20));
    out.type = dtype_of_code(*code);
    if (!out.type && m.strict)
      m.unsupported(code_pos, "dtype code " + std::to_string(*code) +
                                  " is not one of the export schema's ScalarType codes");
    if (out.type) out.meta.type = *out.type;
  }
  if (layout && *layout != 7 && m.strict)
    m.unsupported(layout_pos, "layout " + std::string(layout_name(*layout)) + " (" +
                                  std::to_string(*layout) + "): pthio reads strided tensors only");
  if (sizes) out.sizes = *sizes;
  if (m.strict) {
    if (sizes->size() != strides->size())
      m.j.fail_at(at, m.who + ": " + std::to_string(sizes->size()) + " sizes but " +
                          std::to_string(strides->size()) + " strides");
    for (const auto& s : *sizes) out.meta.sizes.push_back(*s.value);
    for (const auto& s : *strides) out.meta.strides.push_back(*s.value);
    out.meta.storage_offset = *offset->value;
    out.meta.requires_grad = *requires_grad;
    out.meta.location = *location;
  }
  return out;
}

// A payload config ({"config": {name: PayloadMeta}}), each entry checked against the archive.
std::vector<pt2_payload> read_config(const zip_reader& zip, const zip_entry& e,
                                     const std::string& dir, bool constants) {
  const std::string text = record_text(zip, e, zip.source().size());
  const auto bytes = std::as_bytes(std::span(text));
  if (auto bad = detail::find_invalid_utf8(bytes))
    throw error(errc::corrupt_checkpoint, "config is not UTF-8", e.name, e.data_offset + *bad);
  json_reader j(bytes, errc::corrupt_checkpoint, e.name, e.data_offset);
  std::vector<pt2_payload> out;
  std::unordered_set<std::string> names;
  bool seen_config = false;
  j.object("the config", [&](const std::string& top, std::size_t top_pos) {
    if (top != "config") j.fail_at(top_pos, "unknown field " + json_quote(top) + " in the config");
    if (seen_config) j.fail_at(top_pos, "\"config\" given twice");
    seen_config = true;
    j.object("config", [&](const std::string& name, std::size_t name_pos) {
      const std::string who = std::string(constants ? "constant " : "weight ") + show_name(name);
      if (!names.insert(name).second) j.fail_at(name_pos, who + " is listed twice");
      pt2_payload p;
      p.name = name;
      std::optional<std::string> path;
      std::optional<bool> is_param, use_pickle;
      bool has_meta = false;
      meta_reader m{j, who, true, e.data_offset, e.name};
      j.object("a config entry", [&](const std::string& k, std::size_t pos) {
        if (k == "path_name") {
          path = j.string();
          if (auto why = detail::relative_path_problem(*path);
              !why.empty() || path->empty() || path->find('/') != std::string::npos)
            j.fail_at(pos, who + ": path_name " + show_name(*path) +
                               " is not the name of a record in its folder");
        } else if (k == "is_param") {
          is_param = m.boolean("is_param", pos);
        } else if (k == "use_pickle") {
          use_pickle = m.boolean("use_pickle", pos);
        } else if (k == "tensor_meta") {
          has_meta = true;
          if (!j.is_null()) p.meta = read_tensor_meta(m).meta;
        } else {
          j.fail_at(pos, who + ": unknown field " + json_quote(k));
        }
      });
      const char* missing = !path         ? "path_name"
                            : !is_param   ? "is_param"
                            : !use_pickle ? "use_pickle"
                            : !has_meta   ? "tensor_meta"
                                          : nullptr;
      if (missing) j.fail_at(name_pos, who + " has no " + missing);
      p.is_param = *is_param;
      p.use_pickle = *use_pickle;
      if (constants) {
        // torch's _load_constants goes by the record's name, not by use_pickle: custom_obj_ and
        // opaque_obj_ records are unpickled whatever the entry says, any other name but tensor_
        // is refused.
        if (path->starts_with("custom_obj_") || path->starts_with("opaque_obj_"))
          p.use_pickle = true;
        else if (!path->starts_with("tensor_"))
          j.fail_at(name_pos, who + ": constant record " + show_name(*path) +
                                  " is none of tensor_N, custom_obj_N, opaque_obj_N");
      }
      if (!p.use_pickle && !p.meta)
        j.fail_at(name_pos, who + " is neither pickled nor has a tensor_meta");
      p.record = dir + *path;
      if (!zip.find(p.record))
        throw error(errc::corrupt_checkpoint, who + ": its record " + p.record + " is missing",
                    e.name, e.data_offset + name_pos);
      out.push_back(std::move(p));
    });
  });
  j.expect_end();
  if (!seen_config) throw error(errc::corrupt_checkpoint, "the config has no \"config\"", e.name);
  return out;
}

std::string top_folder(const zip_reader& zip) {
  if (zip.entries().empty()) return {};
  const std::string& first = zip.entries().front().name;
  auto slash = first.find('/');
  return slash == std::string::npos ? std::string() : first.substr(0, slash);
}

// A short record holding text ("pt2", "0", "8.20").
std::optional<std::string> small_text(const zip_reader& zip, const std::string& name) {
  const zip_entry* e = zip.find(name);
  if (!e) return std::nullopt;
  return record_text(zip, *e, 64);
}

}  // namespace

std::string_view pt2_layout_name(pt2_layout l) noexcept {
  switch (l) {
    case pt2_layout::archive: return "pt2 archive";
    case pt2_layout::archive_pickled: return "pt2 archive, pickled weights (torch 2.8)";
    case pt2_layout::export_zip: return "export zip (torch 2.1-2.7)";
  }
  return "?";
}

std::optional<pt2_info> read_pt2_info(const zip_reader& zip) {
  pt2_info info;
  if (const zip_entry* prog = zip.find(export_zip_program)) {
    info.layout = pt2_layout::export_zip;
    info.version = small_text(zip, "version").value_or("");
    pt2_model m;
    m.name = "model";
    m.program_record = prog->name;
    for (const char* n : {"serialized_state_dict.pt", "serialized_state_dict.json"})
      if (zip.find(n)) m.weights_blob = n;
    for (const char* n : {"serialized_constants.pt", "serialized_constants.json"})
      if (zip.find(n)) m.constants_blob = n;
    if (zip.find("serialized_example_inputs.pt"))
      m.sample_inputs_record = "serialized_example_inputs.pt";
    if (m.weights_blob.empty())
      throw error(errc::corrupt_checkpoint,
                  "torch.export zip without serialized_state_dict.pt (or .json)");
    info.models.push_back(std::move(m));
    return info;
  }
  const std::string root = top_folder(zip);
  if (root.empty()) return std::nullopt;
  const std::string prefix = root + "/";
  auto format = small_text(zip, prefix + "archive_format");
  if (!format) return std::nullopt;
  if (*format != "pt2")
    throw error(errc::corrupt_checkpoint,
                "archive_format says " + show_name(*format) + ", not \"pt2\"",
                prefix + "archive_format");
  info.root = root;
  // torch.export.load requires archive version 0 (ARCHIVE_VERSION_VALUE); an archive without the
  // record is older than version 0, read as 0.
  info.version = small_text(zip, prefix + "archive_version").value_or("0");
  if (info.version != "0")
    throw error(errc::unsupported,
                "archive_version " + show_name(info.version) + ": pthio reads version 0",
                prefix + "archive_version");
  const std::string models = prefix + "models/";
  const std::string weights = prefix + "data/weights/";
  const std::string constants = prefix + "data/constants/";
  const std::string aoti = prefix + "data/aotinductor/";
  for (const auto& e : zip.entries()) {
    if (e.name.starts_with(aoti)) {
      std::string rest = e.name.substr(aoti.size());
      std::string name = rest.substr(0, rest.find('/'));
      if (!name.empty() && rest.size() > name.size() &&
          std::find(info.aoti_models.begin(), info.aoti_models.end(), name) ==
              info.aoti_models.end())
        info.aoti_models.push_back(name);
    }
    // torch's rule (_load_exported_programs): every record under models/ is a program, its name
    // the rest of the path less its last five characters (".json").
    if (!e.name.starts_with(models)) continue;
    const std::string rest = e.name.substr(models.size());
    const std::string name = rest.substr(0, rest.size() - std::min<std::size_t>(5, rest.size()));
    pt2_model m;
    m.name = name;
    m.program_record = e.name;
    if (zip.find(prefix + "data/sample_inputs/" + name + ".pt"))
      m.sample_inputs_record = prefix + "data/sample_inputs/" + name + ".pt";
    if (zip.find(weights + name + ".pt")) {
      // torch 2.8: one torch.save blob per model.
      info.layout = pt2_layout::archive_pickled;
      m.weights_blob = weights + name + ".pt";
      if (zip.find(constants + name + ".pt")) m.constants_blob = constants + name + ".pt";
    } else {
      const zip_entry* wc = zip.find(weights + name + "_weights_config.json");
      if (!wc)
        throw error(errc::corrupt_checkpoint,
                    "model " + show_name(name) + " has neither " + weights + name +
                        "_weights_config.json nor " + weights + name + ".pt",
                    e.name);
      m.weights = read_config(zip, *wc, weights, false);
      const zip_entry* cc = zip.find(constants + name + "_constants_config.json");
      if (!cc)
        throw error(
            errc::corrupt_checkpoint,
            "model " + show_name(name) + " has no " + constants + name + "_constants_config.json",
            e.name);
      m.constants = read_config(zip, *cc, constants, true);
    }
    info.models.push_back(std::move(m));
  }
  if (info.models.empty() && info.aoti_models.empty())
    throw error(errc::corrupt_checkpoint,
                "the archive holds no program (" + models + ") and no AOTInductor package",
                prefix + "archive_format");
  return info;
}

std::vector<pt2_pickle> pt2_pickles(const zip_reader& zip, const pt2_info& info) {
  std::vector<pt2_pickle> out;
  std::unordered_set<std::string> seen;
  auto add = [&](const std::string& record, bool torch_save) {
    if (!record.empty() && seen.insert(record).second) out.push_back({record, torch_save});
  };
  for (const auto& m : info.models) {
    add(m.weights_blob, true);
    add(m.constants_blob, true);
    for (const auto* list : {&m.weights, &m.constants})
      for (const auto& p : *list)
        if (p.use_pickle) add(p.record, p.record.find("/opaque_obj_") == std::string::npos);
    add(m.sample_inputs_record, true);
  }
  // Object constants no config names (torch unpickles a record by its name), AOTInductor's
  // pickled weights (package_constants_on_disk_format "pickle_weights"), and any other record
  // that is itself a zip: torch.save blobs that torch.load may be handed.
  if (!info.root.empty()) {
    const std::string constants = info.root + "/data/constants/";
    for (const auto& e : zip.entries()) {
      if (!e.name.starts_with(constants)) continue;
      const std::string base = e.name.substr(e.name.rfind('/') + 1);
      if (base.starts_with("opaque_obj_")) add(e.name, false);
      if (base.starts_with("custom_obj_")) add(e.name, true);
    }
  }
  for (const auto& e : zip.entries()) {
    if (seen.count(e.name) || e.uncompressed_size < 4) continue;
    if (e.method != 0) continue;  // torch writes blobs stored; a deflated one is checked below
    auto head = zip.source().bytes().subspan(static_cast<std::size_t>(e.data_offset), 4);
    if (looks_like_zip(head)) add(e.name, true);
  }
  // torch stores every record; a deflated one is inflated to look inside, up to a bound.
  constexpr std::uint64_t max_deflated = pt2_max_deflated;
  for (const auto& e : zip.entries()) {
    if (e.method == 0 || seen.count(e.name) || e.uncompressed_size < 4) continue;
    if (e.uncompressed_size > max_deflated)
      throw error(errc::unsupported,
                  "deflated record of " + std::to_string(e.uncompressed_size) +
                      " bytes (torch stores a .pt2's records): not inflated to look for pickles",
                  e.name);
    if (looks_like_zip(zip.read(e).first(4))) add(e.name, true);
  }
  return out;
}

namespace detail {

namespace {

// A program's signature, summarised: its user inputs and its outputs with the dtype and shape the
// graph gives them.
struct io_meta {
  std::optional<dtype> type;
  std::vector<sym_int> sizes;
};

// A symbolic dimension as torch shows it: the schema stores sympy's srepr
// ("Symbol('s0', positive=True, integer=True)"), str(SymInt) gives "s0". Other expressions are
// kept as written.
std::string plain_expr(const std::string& e) {
  constexpr std::string_view head = "Symbol('";
  if (!e.starts_with(head) || !e.ends_with(")")) return e;
  auto close = e.find('\'', head.size());
  if (close == std::string::npos || close == head.size()) return e;
  std::string_view rest = std::string_view(e).substr(close + 1);
  if (rest != ")" && !rest.starts_with(", ")) return e;
  return e.substr(head.size(), close - head.size());
}

value shape_value(const std::vector<sym_int>& sizes) {
  value l = value::make_list();
  for (const auto& s : sizes)
    l.as_list().items.push_back(s.value ? value(*s.value) : value(plain_expr(s.expr)));
  return l;
}

// One Argument of the schema ({"as_tensor": {"name": "x"}}, {"as_sym_int": {"as_name": "s0"}},
// {"as_none": ...}): its kind without "as_" and its name, when it has one.
std::pair<std::string, std::optional<std::string>> read_argument(json_reader& j) {
  std::string kind;
  std::optional<std::string> name;
  j.object("an argument", [&](const std::string& k, std::size_t) {
    kind = k.starts_with("as_") ? k.substr(3) : k;
    if (j.peek() == '{') {
      j.object("an argument", [&](const std::string& f, std::size_t) {
        if ((f == "name" || f == "as_name") && j.peek() == '"')
          name = j.string();
        else
          j.skip_value();
      });
    } else {
      j.skip_value();
    }
  });
  return {kind, name};
}

struct signature_item {
  std::string spec;  // user_input, user_output, buffer_mutation, ...
  std::string type;  // tensor, sym_int, constant, ...
  std::optional<std::string> name;
  std::optional<std::string> target;
};

// A spec ({"user_input": {"arg": ...}}, {"buffer_mutation": {"arg": {"name": ...}, "buffer_name":
// ...}}): the user ones carry an Argument, the others a TensorArgument and a target name.
signature_item read_spec(json_reader& j) {
  signature_item it;
  j.object("a spec", [&](const std::string& kind, std::size_t) {
    it.spec = kind;
    if (j.peek() != '{') return j.skip_value();
    j.object("a spec", [&](const std::string& f, std::size_t) {
      if (f == "arg") {
        if (kind == "user_input" || kind == "user_output") {
          auto [type, name] = read_argument(j);
          it.type = type;
          it.name = name;
        } else {
          it.type = "tensor";
          j.object("an argument", [&](const std::string& g, std::size_t) {
            if (g == "name" && j.peek() == '"')
              it.name = j.string();
            else
              j.skip_value();
          });
        }
      } else if (f == "name" && j.peek() == '"') {  // constant_input
        it.name = j.string();
        it.type = "constant";
      } else if (f.ends_with("_name") && j.peek() == '"') {
        it.target = j.string();
      } else {
        j.skip_value();
      }
    });
  });
  if (it.spec == "constant_input") it.spec = "user_input";
  return it;
}

// The signature summary of a program record (the `signature` attribute).
value read_signature(const zip_reader& zip, const zip_entry& e) {
  const std::string text = record_text(zip, e, zip.source().size());
  const auto bytes = std::as_bytes(std::span(text));
  if (auto bad = find_invalid_utf8(bytes))
    throw error(errc::corrupt_checkpoint, "program is not UTF-8", e.name, e.data_offset + *bad);
  json_reader j(bytes, errc::corrupt_checkpoint, e.name, e.data_offset);
  std::unordered_map<std::string, io_meta> metas;
  std::vector<signature_item> inputs, outputs;
  const std::string who = "program tensor";
  j.object("the program", [&](const std::string& k, std::size_t) {
    if (k != "graph_module") return j.skip_value();
    j.object("graph_module", [&](const std::string& g, std::size_t) {
      if (g == "graph") {
        j.object("graph", [&](const std::string& f, std::size_t) {
          if (f != "tensor_values") return j.skip_value();
          j.object("tensor_values", [&](const std::string& name, std::size_t) {
            meta_reader m{j, who, false, e.data_offset, e.name};
            parsed_meta p = read_tensor_meta(m);
            metas[name] = {p.type, std::move(p.sizes)};
          });
        });
      } else if (g == "signature") {
        j.object("signature", [&](const std::string& f, std::size_t) {
          if (f == "input_specs")
            j.array("input_specs", [&](std::size_t) {
              signature_item it = read_spec(j);
              if (it.spec == "user_input") inputs.push_back(std::move(it));
            });
          else if (f == "output_specs")
            j.array("output_specs", [&](std::size_t) { outputs.push_back(read_spec(j)); });
          else
            j.skip_value();
        });
      } else {
        j.skip_value();
      }
    });
  });
  j.expect_end();
  auto list = [&](const std::vector<signature_item>& items) {
    value l = value::make_list();
    for (const auto& it : items) {
      value d = value::make_dict();
      auto& o = d.as_dict();
      o.set(value("name"), it.name ? value(*it.name) : value());
      o.set(value("kind"), value(it.spec));
      o.set(value("type"), value(it.type));
      if (it.target) o.set(value("target"), value(*it.target));
      if (it.type == "tensor" && it.name) {
        auto m = metas.find(*it.name);
        if (m != metas.end()) {
          o.set(value("dtype"),
                m->second.type ? value(std::string(dtype_name(*m->second.type))) : value());
          o.set(value("shape"), shape_value(m->second.sizes));
        }
      }
      l.as_list().items.push_back(std::move(d));
    }
    return l;
  };
  value sig = value::make_dict();
  sig.as_dict().set(value("inputs"), list(inputs));
  sig.as_dict().set(value("outputs"), list(outputs));
  return sig;
}

// A record as a source of its own: a torch.save blob inside the archive.
byte_source record_source(const zip_reader& zip, const zip_entry& e, bool verify) {
  if (e.method == 0) {
    if (verify) (void)zip.read(e, true);
    return zip.source().sub(e.data_offset, e.uncompressed_size, e.name);
  }
  auto bytes = zip.read(e, verify);
  return byte_source(zip.owner_of(e), bytes, e.name);
}

struct pt2_loader {
  const zip_reader& zip;
  const load_options& opt;
  std::shared_ptr<lazy_records> lazy;
  zip_storages storages;
  // Raw records loaded for the current model (torch builds one file map per model): the storage,
  // and the dtype and requires_grad of the first entry naming it, which torch's flat tensor takes.
  struct loaded_record {
    storage s;
    dtype type = dtype::uint8;
    bool requires_grad = false;
  };
  std::unordered_map<std::string, loaded_record> records;
  // Pickled records loaded so far: each is loaded once, however many entries name it.
  std::unordered_map<std::string, value> blobs;
  // What the empty records' zeros have taken, against limits.max_memory for the whole load.
  std::uint64_t zero_bytes = 0;

  // A torch.save blob (or, when !torch_save, a bare pickle), loaded with the same options but as
  // a plain checkpoint (torch.load does not read a .pt2 inside a .pt2); a lazy load's placeholders
  // join this checkpoint's.
  value blob(const std::string& record, bool torch_save) {
    if (auto it = blobs.find(record); it != blobs.end()) return it->second;
    const zip_entry* e = zip.find(record);
    if (!e) throw error(errc::corrupt_checkpoint, "record " + record + " is missing");
    byte_source src = record_source(zip, *e, opt.verify_crc && opt.mode == load_mode::eager);
    checkpoint ck;
    try {
      ck = torch_save ? load_zip(src, opt, false) : load_pickle(src, opt);
    } catch (const error& err) {
      throw err.with_outer_context(record);
    }
    if (const auto& r = lazy_records::of(ck); r && lazy) lazy->absorb(*r);
    return blobs.emplace(record, std::move(ck.root)).first->second;
  }

  // The storage of a raw record, read once per model.
  loaded_record& raw_record(const pt2_payload& p, const std::string& who, const device& target) {
    if (auto it = records.find(p.record); it != records.end()) return it->second;
    const pt2_tensor_meta& m = *p.meta;
    const zip_entry& e = *zip.find(p.record);
    loaded_record r;
    r.type = m.type;
    r.requires_grad = m.requires_grad;
    const std::size_t es = element_size(m.type);
    if (e.uncompressed_size % es != 0)
      throw error(errc::corrupt_checkpoint,
                  who + ": record of " + std::to_string(e.uncompressed_size) +
                      " bytes is not a whole number of " + std::string(dtype_name(m.type)) +
                      " elements",
                  e.name);
    if (e.uncompressed_size != 0) {
      r.s = storages.make(e, p.record, m.type, target);
      return records.emplace(p.record, std::move(r)).first->second;
    }
    // torch writes no bytes for a fake tensor and reads such a record as zeros of its size:
    // allocated here (on any target, lazy too), so all of them together stay within max_memory.
    std::uint64_t n = 0, bytes = 0;
    try {
      n = static_cast<std::uint64_t>(shape_numel(m.sizes));
    } catch (const error& err) {
      throw error(errc::corrupt_checkpoint, who + ": " + err.message(), e.name);
    }
    if (!checked_mul(n, es, bytes) || !checked_add(zero_bytes, bytes, zero_bytes) ||
        zero_bytes > opt.limits.max_memory)
      throw error(errc::limit_exceeded,
                  who + ": an empty record stands for zeros of shape " + shape_string(m.sizes) +
                      ", past max_memory (" + std::to_string(opt.limits.max_memory) +
                      " bytes) for the archive's empty records",
                  e.name);
    if (target.type() == device_type::meta)
      r.s = storage::borrow(nullptr, static_cast<std::size_t>(bytes), target);
    else
      r.s = tensor::zeros(m.type, {static_cast<std::int64_t>(n)}, target).get_storage();
    return records.emplace(p.record, std::move(r)).first->second;
  }

  // A raw entry: torch's as_strided over the record's flat tensor, a Parameter (with the entry's
  // requires_grad) for a weight with is_param; a constant never is one.
  value raw_tensor(const pt2_payload& p, bool weight) {
    const pt2_tensor_meta& m = *p.meta;
    const std::string who = show_name(p.name);
    const device target = opt.map_location.apply(m.location);
    check_target(target, m.location);
    const loaded_record& r = raw_record(p, who, target);
    const bool parameter = weight && p.is_param;
    try {
      tensor t(r.s, r.type, m.sizes, m.strides, m.storage_offset,
               parameter ? m.requires_grad : r.requires_grad);
      return value(std::move(t), parameter);
    } catch (const error& err) {
      throw error(err.kind(), who + ": " + err.message(), p.record);
    }
  }

  // One model's state dict then its constants, in the configs' order.
  value model(const pt2_model& m) {
    records.clear();
    value root = value::make_ordered_dict();
    dict_object& d = root.as_dict();
    auto add = [&](const std::string& name, value v, const char* what) {
      if (d.get(name))
        throw error(errc::corrupt_checkpoint, "model " + show_name(m.name) + ": " + what + " " +
                                                  show_name(name) +
                                                  " has the name of an entry before it");
      d.set(value(name), std::move(v));
    };
    if (!m.weights_blob.empty()) {
      for (const std::string* blob_name : {&m.weights_blob, &m.constants_blob}) {
        if (blob_name->empty()) continue;
        value part = blob(*blob_name, true);
        if (!part.is_dict())
          throw error(errc::corrupt_checkpoint,
                      "holds a " + std::string(kind_name(part)) + ", not a dict of tensors",
                      *blob_name);
        for (const auto& [k, v] : part.as_dict().entries()) {
          if (!k.is_str())
            throw error(errc::corrupt_checkpoint, "a key that is not a string", *blob_name);
          add(k.as_str(), v, blob_name == &m.weights_blob ? "weight" : "constant");
        }
      }
    } else {
      for (const auto* list : {&m.weights, &m.constants})
        for (const auto& p : *list) {
          const char* what = list == &m.weights ? "weight" : "constant";
          const bool weight = list == &m.weights;
          if (p.use_pickle) {
            value v = blob(p.record, p.record.find("/opaque_obj_") == std::string::npos);
            // A tensor subclass loads as the plain tensor it holds; is_param keeps a weight a
            // Parameter, as torch's _is_param attribute does.
            if (weight && v.is_tensor() && p.is_param && !v.is_parameter())
              v = value(v.as_tensor(), true);
            add(p.name, std::move(v), what);
          } else {
            add(p.name, raw_tensor(p, weight), what);
          }
        }
    }
    if (const zip_entry* prog = zip.find(m.program_record))
      d.attrs.emplace_back("signature", read_signature(zip, *prog));
    return root;
  }

  static const char* kind_name(const value& v) {
    return v.is_list() ? "list" : v.is_tuple() ? "tuple" : v.is_tensor() ? "tensor" : "value";
  }
};

// AOTInductor's pickled weights: weights_config.json maps each name to [record, sizes, strides,
// offset] over a torch.save'd tensor under data/weights/.
value aoti_weights(pt2_loader& l, const pt2_info& info, const std::string& model) {
  const std::string prefix = info.root + "/";
  const std::string cfg_name = prefix + "data/aotinductor/" + model + "/weights_config.json";
  const zip_entry* cfg = l.zip.find(cfg_name);
  if (!cfg) {
    const std::string dir = prefix + "data/aotinductor/" + model + "/";
    bool blob = false;
    for (const auto& e : l.zip.entries())
      blob = blob || (e.name.starts_with(dir) && e.name.ends_with("_weights.blob"));
    throw error(errc::unsupported,
                "AOTInductor model " + show_name(model) +
                    (blob ? " keeps its weights in one binary blob (package_constants_on_disk_"
                            "format \"binary_blob\") whose layout only its compiled library knows"
                          : " keeps its weights inside its compiled library") +
                    "; package it with aot_inductor.package_constants_on_disk_format="
                    "\"pickle_weights\" for pthio to read them",
                dir);
  }
  const std::string text = record_text(l.zip, *cfg, l.zip.source().size());
  const auto bytes = std::as_bytes(std::span(text));
  if (auto bad = find_invalid_utf8(bytes))
    throw error(errc::corrupt_checkpoint, "not UTF-8", cfg->name, cfg->data_offset + *bad);
  json_reader j(bytes, errc::corrupt_checkpoint, cfg->name, cfg->data_offset);
  value root = value::make_ordered_dict();
  std::unordered_map<std::string, value> blobs;
  j.object("weights_config", [&](const std::string& name, std::size_t pos) {
    const std::string who = "weight " + show_name(name);
    std::string file;
    shape_t sizes, strides;
    std::int64_t offset = 0;
    auto ints = [&](shape_t& out, const char* what) {
      j.array(what, [&](std::size_t i) {
        if (i >= max_dims) j.fail(who + ": too many dimensions");
        value v = j.any_value();
        if (!v.is_int()) j.fail_at(pos, who + ": " + what + " holds a non-integer");
        out.push_back(v.as_int());
      });
    };
    j.array("a weights_config entry", [&](std::size_t i) {
      if (i == 0) {
        file = j.string();
      } else if (i == 1) {
        ints(sizes, "sizes");
      } else if (i == 2) {
        ints(strides, "strides");
      } else if (i == 3) {
        value v = j.any_value();
        if (!v.is_int()) j.fail_at(pos, who + ": the offset is not an integer");
        offset = v.as_int();
      } else {
        j.fail_at(pos, who + ": more than [record, sizes, strides, offset]");
      }
    });
    if (file.empty() || file.find('/') != std::string::npos || !relative_path_problem(file).empty())
      j.fail_at(pos, who + ": " + show_name(file) + " is not a record under data/weights/");
    if (root.as_dict().get(name)) j.fail_at(pos, who + " is listed twice");
    auto it = blobs.find(file);
    if (it == blobs.end())
      it = blobs.emplace(file, l.blob(prefix + "data/weights/" + file, true)).first;
    if (!it->second.is_tensor()) j.fail_at(pos, who + ": " + file + " holds no tensor");
    const tensor& whole = it->second.as_tensor();
    try {
      // as_strided of the loaded blob: a Parameter's view requires grad as it does.
      tensor t(whole.get_storage(), whole.dtype(), sizes, strides, offset, whole.requires_grad());
      root.as_dict().set(value(name), value(std::move(t)));
    } catch (const error& err) {
      throw error(err.kind(), who + ": " + err.message(), cfg->name, cfg->data_offset + pos);
    }
  });
  j.expect_end();
  return root;
}

}  // namespace

checkpoint load_pt2(const byte_source& src, std::shared_ptr<const zip_reader> zip_ptr,
                    const pt2_info& info, const load_options& opt) {
  const zip_reader& zip = *zip_ptr;
  checkpoint ck;
  ck.format = checkpoint_format::pt2;
  ck.archive_name = info.root;
  ck.byte_order =
      info.root.empty() ? std::endian::little : read_byteorder(zip, info.root + "/", opt);
  auto [swap, zero_copy, lazy] = plan_placement(src, zip_ptr, ck.byte_order, opt);
  pt2_loader l{zip, opt, lazy, {zip, opt, swap, zero_copy, lazy.get(), {}, false, {}}, {}, {}, 0};
  std::vector<std::pair<std::string, value>> models;
  for (const auto& m : info.models) models.emplace_back(m.name, l.model(m));
  if (info.models.empty())
    for (const auto& a : info.aoti_models) models.emplace_back(a, aoti_weights(l, info, a));
  l.storages.uploads.finish();
  if (models.size() == 1) {
    ck.root = std::move(models.front().second);
  } else {
    ck.root = value::make_ordered_dict();
    for (auto& [name, v] : models) ck.root.as_dict().set(value(name), std::move(v));
  }
  if (lazy && !lazy->empty()) lazy_records::attach(ck, std::move(lazy));
  return ck;
}

}  // namespace detail

}  // namespace pthio
