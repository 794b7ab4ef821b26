// Loading any checkpoint: the format from the first bytes (or the path, for a Hugging Face index),
// then the loader for it; map_location's constructors.
#include <cstring>

#include "internal.h"
#include "pthio/dcp.hpp"
#include "pthio/safetensors.hpp"
#include "pthio/scan.hpp"
#include "pthio/sharded.hpp"

namespace pthio {

std::string_view format_name(checkpoint_format f) noexcept {
  switch (f) {
    case checkpoint_format::zip: return "zip";
    case checkpoint_format::legacy: return "legacy";
    case checkpoint_format::torchscript: return "torchscript";
    case checkpoint_format::safetensors: return "safetensors";
    case checkpoint_format::pickle: return "pickle";
    case checkpoint_format::dcp: return "dcp";
    case checkpoint_format::pt2: return "pt2";
  }
  return "?";
}

map_location map_location::mapping(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<std::pair<device, device>> parsed;
  for (const auto& [from, to] : pairs) parsed.emplace_back(device::parse(from), device::parse(to));
  return function([parsed](const device& saved) {
    for (const auto& [from, to] : parsed)
      if (from == saved) return to;
    return saved;
  });
}

map_location map_location::function(std::function<device(const device& saved)> fn) {
  map_location m;
  m.fn_ = std::move(fn);
  return m;
}

namespace {

// The legacy stream opens with a pickled LONG1 of this magic number (torch/serialization.py).
constexpr std::uint8_t legacy_magic_pickle[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

}  // namespace

namespace detail {

// Weights-only loads take only what the static scanner calls safe: every pickle the file holds
// however it is packed (not only those the loader reads), every import on the allowlist, and
// the whole file read. The loader's own checks stay behind this one.
void require_scan_safe(const scan_report& r) {
  switch (r.verdict()) {
    case scan_verdict::safe: return;
    case scan_verdict::unsafe: {
      const scan_global* g = nullptr;
      for (const auto& x : r.globals)
        if (x.unsafe) {
          g = &x;
          break;
        }
      const scan_site site = g && !g->where.empty() ? g->where.front() : scan_site{};
      const std::string name = g ? g->name : std::string("?");
      throw error(errc::unsafe_global,
                  (name.starts_with("<") ? name : "global " + name) +
                      " is not allowed in weights-only mode (the scan finds " +
                      std::to_string(r.unsafe.size()) + " unsafe; `pthio scan` lists them)",
                  site.member, site.offset);
    }
    case scan_verdict::unknown: {
      const scan_error& e = r.errors.front();
      throw error(errc::corrupt_checkpoint,
                  "weights-only: not read in full by the scan: " + e.message, e.member, e.offset);
    }
  }
}

}  // namespace detail

std::optional<checkpoint_format> detect_format(std::span<const std::byte> b) noexcept {
  auto at = [&](std::size_t i) { return static_cast<std::uint8_t>(b[i]); };
  if (b.size() >= 4 && at(0) == 'P' && at(1) == 'K' &&
      ((at(2) == 3 && at(3) == 4) || (at(2) == 5 && at(3) == 6)))
    return checkpoint_format::zip;
  if (b.size() >= sizeof legacy_magic_pickle &&
      std::memcmp(b.data(), legacy_magic_pickle, sizeof legacy_magic_pickle) == 0)
    return checkpoint_format::legacy;
  if (b.size() >= 10) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | at(static_cast<std::size_t>(i));
    if (n >= 2 && n <= b.size() - 8 && at(8) == '{') return checkpoint_format::safetensors;
  }
  if (!b.empty() && (at(0) == 0x80 || at(0) == '(' || at(0) == '}' || at(0) == ']' || at(0) == 'c'))
    return checkpoint_format::pickle;
  return std::nullopt;
}

checkpoint load_checkpoint(byte_source source, const load_options& options) {
  const std::string name = source.name();
  try {
    auto fmt = detect_format(source.bytes());
    if (!fmt)
      throw error(errc::corrupt_checkpoint, "not a torch checkpoint (unrecognised first bytes)", "",
                  0);
    auto load = [&] {
      switch (*fmt) {
        case checkpoint_format::zip: return detail::load_zip(source, options);
        case checkpoint_format::legacy: return detail::load_legacy(source, options);
        case checkpoint_format::safetensors: return detail::load_safetensors(source, options);
        case checkpoint_format::pickle: return detail::load_pickle(source, options);
        default: break;
      }
      throw error(errc::unsupported, "unsupported format");
    };
    if (!options.strict) return load();
    // The loader's own refusal (it names the key path) comes first; nothing runs either way.
    checkpoint ck = load();
    detail::require_scan_safe(scan_bytes(source.bytes(), name));
    return ck;
  } catch (const error& e) {
    throw e.with_outer_context(name);
  }
}

checkpoint load_checkpoint(const std::filesystem::path& path, const load_options& options) {
  // A torch.distributed.checkpoint folder (or its .metadata), or a folder with a Hugging Face
  // index or safetensors files in it.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec) || path.filename() == ".metadata" ||
      (path.filename().string().starts_with("__") && path.extension() == ".metadata")) {
    return load_dcp(path, options);  // weights-only: load_dcp scans the folder too
  }
  // Eager loads map the file too: storages are copied out of the map, which is then released.
  byte_source src = byte_source::map_file(path);
  if (!detect_format(src.bytes())) {
    // A Hugging Face index (*.index.json) names shard files beside it; a .safetensors file whose
    // first bytes are not recognised gets the safetensors loader's precise error.
    if (is_sharded_index(src.bytes())) return load_sharded(path, options).merged;
    if (path.extension() == ".safetensors") return load_safetensors(std::move(src), options);
  }
  return load_checkpoint(std::move(src), options);
}

value load(const std::filesystem::path& path, const load_options& options) {
  return load_checkpoint(path, options).root;
}

}  // namespace pthio
