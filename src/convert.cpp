// Streaming convert (include/pthio/convert.hpp): a lazy checkpoint written out one storage record
// at a time, as one file or as Hugging Face shards.
#include "pthio/convert.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <unordered_map>

#include "dcp_write.h"
#include "pthio/safetensors.hpp"
#include "torch/internal.h"

namespace pthio {

namespace {

// Bytes written by the files of this conversion that are complete, and the observer of all of
// them (convert_options::on_progress), for write_file.
thread_local std::uint64_t written_before = 0;
thread_local const std::function<void(std::uint64_t)>* progress_observer = nullptr;

// Writes one file atomically; errors name it.
template <class F>
void write_file(const std::filesystem::path& path, F&& fill) {
  try {
    file_sink out(path);
    if (progress_observer)
      out.on_write = [](std::uint64_t position) {
        (*progress_observer)(written_before + position);
      };
    fill(out);
    out.commit();
    written_before += out.position();
  } catch (const error& e) {
    throw e.with_outer_context(path.string());
  }
}

void write_pth(const checkpoint& in, const value& root, const std::filesystem::path& path,
               save_options o) {
  o.format = checkpoint_format::zip;
  // As save(path): torch names the archive folder after the file's stem.
  if (o.archive_name.empty()) o.archive_name = path.stem().string();
  if (o.archive_name.empty()) o.archive_name = "archive";
  const auto& records = detail::lazy_records::of(in);
  write_file(path, [&](sink& out) { detail::save_zip_streaming(out, root, o, records.get()); });
}

void write_safetensors(const checkpoint& in, const value& root, const std::filesystem::path& path,
                       const safetensors_save_options& so) {
  std::function<tensor(const tensor&)> fetch;
  if (in.is_lazy()) fetch = [&in](const tensor& t) { return in.load_elements(t); };
  write_file(path, [&](sink& out) { detail::write_safetensors(out, root, so, fetch); });
}

// JSON text as Python's json.dumps writes it (ensure_ascii: every non-ASCII character as \uXXXX,
// surrogate pairs past U+FFFF). Key paths come from pickled str values, which are UTF-8.
std::string python_json_string(std::string_view s) {
  std::string out = "\"";
  char buf[16];
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp = c;
    std::size_t len = 1;
    if (c >= 0x80) {
      len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      if (c < 0xc2 || c > 0xf4 || i + len > s.size())
        throw error(errc::invalid_argument, "a tensor name is not valid UTF-8");
      cp = c & (0x3f >> (len - 1));
      for (std::size_t k = 1; k < len; ++k) {
        const auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80)
          throw error(errc::invalid_argument, "a tensor name is not valid UTF-8");
        cp = (cp << 6) | (cc & 0x3f);
      }
    }
    i += len;
    if (cp == '"') {
      out += "\\\"";
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\b') {
      out += "\\b";
    } else if (cp == '\f') {
      out += "\\f";
    } else if (cp < 0x20 || (cp >= 0x7f && cp < 0x10000)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xd800 + (cp >> 10)),
                    static_cast<unsigned>(0xdc00 + (cp & 0x3ff)));
      out += buf;
    } else {
      out += static_cast<char>(cp);
    }
  }
  return out + "\"";
}

convert_result convert_sharded(const checkpoint& in, const std::filesystem::path& folder,
                               const convert_options& options) {
  const bool st = options.to == checkpoint_format::safetensors;
  convert_result res;
  safetensors_plan plan = plan_safetensors(in.root);
  res.dropped = std::move(plan.dropped);
  if (st) res.shared = std::move(plan.shared);

  // huggingface_hub's split_state_dict_into_shards_factory, over (key path, tensor) in order.
  const auto& tensors = plan.tensors;
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (!seen.emplace(tensors[i].first, i).second)
      throw error(errc::invalid_argument, "two tensors have the key path '" + tensors[i].first +
                                              "'; a sharded index needs unique names");
  const std::uint64_t limit = options.max_shard_size;
  std::vector<std::vector<std::size_t>> shards;  // tensor indices
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0;
  std::unordered_map<const void*, std::vector<std::size_t>> by_storage;  // pth: shared storages
  std::vector<const void*> storage_order;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const tensor& t = tensors[i].second;
    std::uint64_t size = t.nbytes();
    const storage& s = t.get_storage();
    if (!st && s.defined() && s.nbytes() > 0) {
      auto [it, fresh] = by_storage.try_emplace(s.id());
      it->second.push_back(i);
      if (!fresh) continue;  // placed with the first tensor of its storage, below
      storage_order.push_back(s.id());
      size = s.nbytes();
    }
    res.total_size += size;
    if (size > limit) {
      shards.push_back({i});
      continue;
    }
    if (current_size + size > limit) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += size;
  }
  if (!current.empty()) shards.push_back(std::move(current));
  if (shards.empty()) shards.emplace_back();  // no tensors: one empty file, as save_pretrained
  // Tensors sharing a storage join the shard of its first tensor, after that shard's own.
  if (!st) {
    std::vector<std::size_t> shard_of(tensors.size(), 0);
    for (std::size_t k = 0; k < shards.size(); ++k)
      for (std::size_t i : shards[k]) shard_of[i] = k;
    for (const void* id : storage_order) {
      const auto& members = by_storage[id];
      for (std::size_t m = 1; m < members.size(); ++m)
        shards[shard_of[members.front()]].push_back(members[m]);
    }
  }

  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) throw error(errc::io, "cannot create the folder: " + ec.message(), folder.string());
  const std::string stem = st ? "model" : "pytorch_model";
  const std::string ext = st ? ".safetensors" : ".bin";
  const std::size_t n = shards.size();
  auto name_of = [&](std::size_t k) {
    if (n == 1) return stem + ext;
    char buf[64];
    std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", k + 1, n);
    return stem + buf + ext;
  };
  // An index already in the folder goes first: a failure part way then leaves no index naming a
  // mix of old and new shards, and a single-file result leaves none naming old shards.
  const std::filesystem::path index_path = folder / (stem + ext + ".index.json");
  std::error_code gone;
  std::filesystem::remove(index_path, gone);
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (std::size_t k = 0; k < n; ++k) {
    const std::string file = name_of(k);
    value root = value::make_dict();
    for (std::size_t i : shards[k]) {
      root.as_dict().set(value(tensors[i].first), value(tensors[i].second));
      weight_map.emplace_back(tensors[i].first, file);
    }
    const std::filesystem::path path = folder / file;
    if (st) {
      safetensors_save_options so;
      so.metadata = std::vector<std::pair<std::string, std::string>>{{"format", "pt"}};
      write_safetensors(in, root, path, so);
    } else {
      write_pth(in, root, path, options.pth);
    }
    res.files.push_back(path);
  }
  res.tensors = tensors.size();
  if (n == 1) return res;

  // The index last: a reader that finds it finds every shard it names in place.
  std::sort(weight_map.begin(), weight_map.end());
  std::string index =
      "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(res.total_size) +
      "\n  },\n  \"weight_map\": {";
  for (std::size_t i = 0; i < weight_map.size(); ++i)
    index += std::string(i ? "," : "") + "\n    " + python_json_string(weight_map[i].first) + ": " +
             python_json_string(weight_map[i].second);
  index += weight_map.empty() ? "}\n}\n" : "\n  }\n}\n";
  write_file(index_path, [&](sink& out) { out.write(index.data(), index.size()); });
  res.files.push_back(index_path);
  return res;
}

}  // namespace

convert_result convert(const checkpoint& in, const std::filesystem::path& out,
                       const convert_options& options) {
  // The progress observer for write_file, for the length of this call.
  struct observe {
    const std::function<void(std::uint64_t)>* saved = progress_observer;
    std::uint64_t saved_before = written_before;
    explicit observe(const std::function<void(std::uint64_t)>& f) {
      progress_observer = f ? &f : nullptr;
      written_before = 0;
    }
    ~observe() {
      progress_observer = saved;
      written_before = saved_before;
    }
  } observing(options.on_progress);
  if (options.to == checkpoint_format::dcp) {
    if (options.on_progress && !options.dcp.on_progress) {
      convert_options o = options;
      o.dcp.on_progress = options.on_progress;
      return convert(in, out, o);
    }
    if (options.max_shard_size > 0)
      throw error(errc::invalid_argument, "convert: a DCP folder is not sharded by size");
    detail::dcp_write_result w = detail::save_dcp(out, in.root, options.dcp, &in);
    convert_result res;
    res.files = std::move(w.files);
    res.tensors = w.tensors;
    return res;
  }
  if (options.to != checkpoint_format::zip && options.to != checkpoint_format::safetensors)
    throw error(errc::invalid_argument, "convert writes the zip (.pth), safetensors or dcp format");
  if (options.max_shard_size > 0) return convert_sharded(in, out, options);
  convert_result res;
  if (options.to == checkpoint_format::zip) {
    write_pth(in, in.root, out, options.pth);
    visit_tensors(in.root, [&](const std::string&, const value&) { ++res.tensors; });
  } else {
    safetensors_plan plan = plan_safetensors(in.root);
    safetensors_save_options so;
    so.drop_non_tensors = true;
    write_safetensors(in, in.root, out, so);
    res.tensors = plan.tensors.size();
    res.dropped = std::move(plan.dropped);
    res.shared = std::move(plan.shared);
  }
  res.files.push_back(out);
  return res;
}

convert_result convert(const std::filesystem::path& in, const std::filesystem::path& out,
                       const convert_options& options, load_options load) {
  load.mode = load_mode::lazy;
  return convert(load_checkpoint(in, load), out, options);
}

std::uint64_t parse_shard_size(std::string_view text) {
  auto bad = [&]() -> error {
    return error(
        errc::invalid_argument,
        "a shard size is digits and a unit (5GB, 500MiB, 10KB), got '" + std::string(text) + "'");
  };
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  struct unit {
    std::string_view suffix;
    std::uint64_t factor;
    bool binary;
  };
  static constexpr unit units[] = {{"GIB", 1ull << 30, true}, {"MIB", 1ull << 20, true},
                                   {"KIB", 1ull << 10, true}, {"GB", 1000000000ull, false},
                                   {"MB", 1000000ull, false}, {"KB", 1000ull, false}};
  std::uint64_t factor = 1;
  std::size_t digits = text.size();
  bool bits = false;
  for (const auto& u : units)
    if (upper.ends_with(u.suffix)) {
      factor = u.factor;
      digits = text.size() - u.suffix.size();
      bits = !u.binary && text.ends_with('b');
      break;
    }
  if (digits == 0) throw bad();
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    if (text[i] < '0' || text[i] > '9') throw bad();
    if (n > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) throw bad();
    n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
  }
  if (n > std::numeric_limits<std::uint64_t>::max() / factor) throw bad();
  n *= factor;
  if (bits) n /= 8;
  if (n == 0) throw bad();
  return n;
}

}  // namespace pthio
