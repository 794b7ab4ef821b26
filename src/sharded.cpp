// Sharded checkpoints: Hugging Face's index files (transformers' modeling_utils writes them with
// json.dumps(index, indent=2, sort_keys=True) and loads each shard whole).
#include "pthio/sharded.hpp"

#include <unordered_map>
#include <unordered_set>

#include "json_reader.h"
#include "pthio/safetensors.hpp"
#include "torch/internal.h"

namespace pthio {

namespace {

// An index of a few million names is a few hundred MB; past this it is not an index.
constexpr std::size_t max_index_size = 256u << 20;

checkpoint load_shard(const std::filesystem::path& p, const load_options& options) {
  byte_source src = byte_source::map_file(p);
  if (!detect_format(src.bytes()) && p.extension() == ".safetensors")
    return load_safetensors(std::move(src), options);
  return load_checkpoint(std::move(src), options);
}

}  // namespace

namespace detail {

std::string show_name(const std::string& s) {
  return json_quote(s.size() > 200 ? s.substr(0, 200) + "..." : s);
}

std::string relative_path_problem(const std::string& path) {
  if (path.empty()) return "is empty";
  if (path.find('\0') != std::string::npos) return "holds a NUL byte";
  std::filesystem::path p(path);
  if (p.is_absolute() || path.front() == '/') return "is absolute";
  for (const auto& part : p)
    if (part == "..") return "has a '..' part";
  return {};
}

}  // namespace detail

bool is_sharded_index(std::span<const std::byte> bytes) noexcept {
  for (std::byte b : bytes) {
    auto c = static_cast<unsigned char>(b);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{';
  }
  return false;
}

sharded_index read_sharded_index(std::span<const std::byte> bytes, const std::string& name) {
  detail::byte_reader r(bytes, errc::corrupt_checkpoint, name);
  if (bytes.size() > max_index_size)
    r.fail_at(0, "index of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                     std::to_string(max_index_size));
  if (auto bad = detail::find_invalid_utf8(bytes)) r.fail_at(*bad, "the index is not valid UTF-8");
  detail::json_reader j(bytes, errc::corrupt_checkpoint, name, 0);
  sharded_index idx;
  bool has_map = false, has_metadata = false;
  std::unordered_map<std::string, std::size_t> listed;
  std::unordered_set<std::string> shards;
  j.object("the index", [&](const std::string& key, std::size_t key_pos) {
    if (key == "weight_map") {
      if (has_map) j.fail_at(key_pos, "weight_map is given twice");
      has_map = true;
      j.object("weight_map", [&](const std::string& tensor, std::size_t tp) {
        if (!listed.emplace(tensor, idx.weight_map.size()).second)
          j.fail_at(tp, "weight_map lists tensor " + detail::show_name(tensor) + " twice");
        if (j.peek() != '"')
          j.fail("weight_map entry " + detail::show_name(tensor) +
                 " must name a shard file (a string)");
        std::size_t sp = j.pos();
        std::string shard = j.string();
        if (std::string why = detail::relative_path_problem(shard); !why.empty())
          j.fail_at(sp, "shard path " + detail::show_name(shard) + " of " +
                            detail::show_name(tensor) + " " + why +
                            "; shards are named relative to the index's folder");
        if (shards.insert(shard).second) idx.shards.push_back(shard);
        idx.weight_map.emplace_back(tensor, std::move(shard));
      });
    } else if (key == "metadata") {
      if (has_metadata) j.fail_at(key_pos, "metadata is given twice");
      has_metadata = true;
      idx.metadata = j.any_value();
    } else {
      j.skip_value();
    }
  });
  j.expect_end();
  if (!has_map) r.fail_at(0, "the index has no weight_map");
  return idx;
}

sharded_checkpoint load_sharded(const std::filesystem::path& index_file,
                                const load_options& options) {
  sharded_checkpoint out;
  const std::string name = index_file.string();
  {
    byte_source src = byte_source::map_file(index_file);
    try {
      out.index = read_sharded_index(src.bytes(), "index");
    } catch (const error& e) {
      throw e.with_outer_context(name);
    }
  }
  const std::filesystem::path folder = index_file.parent_path();

  // Every shard's tensors, by name.
  struct found {
    value tensor;
    std::size_t shard;
  };
  std::unordered_map<std::string, found> tensors;
  std::vector<std::vector<std::string>> order(out.index.shards.size());
  std::unordered_map<std::string, std::size_t> shard_no;
  // A lazy load keeps every shard's records: the merged tensors are those shards' placeholders.
  auto lazy = std::make_shared<detail::lazy_records>();
  for (std::size_t s = 0; s < out.index.shards.size(); ++s) {
    const std::string& shard = out.index.shards[s];
    shard_no.emplace(shard, s);
    checkpoint ck = load_shard(folder / shard, options);
    if (const auto& records = detail::lazy_records::of(ck)) lazy->absorb(*records);
    if (s == 0) {
      out.merged.format = ck.format;
      out.merged.byte_order = ck.byte_order;
    }
    visit_tensors(ck.root, [&](const std::string& key, const value& t) {
      auto [it, fresh] = tensors.emplace(key, found{t, s});
      if (!fresh)
        throw error(errc::corrupt_checkpoint,
                    "tensor " + detail::show_name(key) + " is in shard " +
                        detail::show_name(out.index.shards[it->second.shard]) + " and in shard " +
                        detail::show_name(shard),
                    name);
      order[s].push_back(key);
    });
  }

  out.merged.root = value::make_ordered_dict();
  dict_object& d = out.merged.root.as_dict();
  std::unordered_set<std::string> placed;
  for (const auto& [tensor_name, shard] : out.index.weight_map) {
    auto it = tensors.find(tensor_name);
    if (it == tensors.end())
      throw error(errc::corrupt_checkpoint,
                  "weight_map puts tensor " + detail::show_name(tensor_name) + " in shard " +
                      detail::show_name(shard) + ", which holds no such tensor",
                  name);
    if (it->second.shard != shard_no.at(shard))
      throw error(errc::corrupt_checkpoint,
                  "weight_map puts tensor " + detail::show_name(tensor_name) + " in shard " +
                      detail::show_name(shard) + ", but shard " +
                      detail::show_name(out.index.shards[it->second.shard]) + " holds it",
                  name);
    d.set(value(tensor_name), it->second.tensor);
    placed.insert(tensor_name);
  }
  for (const auto& keys : order)
    for (const auto& key : keys)
      if (!placed.count(key)) {
        d.set(value(key), tensors.at(key).tensor);
        out.unlisted.push_back(key);
      }
  if (!out.index.metadata.is_none()) d.attrs.emplace_back("metadata", out.index.metadata);
  if (!lazy->empty()) detail::lazy_records::attach(out.merged, std::move(lazy));
  return out;
}

}  // namespace pthio
