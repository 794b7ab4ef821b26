// diff and convert.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

#include "json.h"
#include "progress.h"
#include "pthio/convert.hpp"
#include "pthio/safetensors.hpp"
#include "pthio/state_dict.hpp"
#include "scan.h"

namespace pthio::cli {

checkpoint open_checkpoint(const std::string& file, const load_options& options,
                           const view_options& view) {
  checkpoint ck = load_checkpoint(file, options);
  if (view.state_dict) {
    try {
      ck.root = extract_state_dict(ck.root, view.key).to_value();
    } catch (const error& e) {
      throw e.with_outer_context(file);
    }
  }
  return ck;
}

namespace {

// Leaves of a value by key path: tensors, and (for pickle-based files) scalar values.
void leaves(const value& v, const std::string& path, int depth, bool scalars,
            std::vector<std::pair<std::string, value>>& out) {
  auto child = [&](const std::string& part, const value& c) {
    leaves(c, depth > 0 ? path + "." + part : part, depth + 1, scalars, out);
  };
  switch (v.type()) {
    case value::kind::dict:
      for (const auto& [k, c] : v.as_dict().entries()) child(key_text(k), c);
      break;
    case value::kind::list:
    case value::kind::tuple:
      for (std::size_t i = 0; i < v.items().size(); ++i) child(std::to_string(i), v.items()[i]);
      break;
    case value::kind::object: {
      const auto& o = v.as_object();
      if (o.has_state && o.state.is_dict()) {
        for (const auto& [k, c] : o.state.as_dict().entries()) child(key_text(k), c);
      } else if (scalars) {
        out.emplace_back(path, v);
      }
      break;
    }
    case value::kind::tensor: out.emplace_back(path, v); break;
    default:
      if (scalars) out.emplace_back(path, v);
  }
}

std::string describe_tensor(const tensor& t) {
  return std::string(dtype_name(t.dtype())) + " " + shape_string(t.shape());
}

// Empty when close; else a description of the largest difference.
// What comparing two tensors of one dtype and shape found, over one piece or many: elements
// outside the tolerance (with the first of the largest differences), or for dtypes compared
// byte for byte, whether any differed.
struct tally {
  std::int64_t bad = 0;
  std::int64_t at = -1;
  double worst = 0;
  bool bytes_differ = false;
  std::string exact_only;  // the message of a dtype compared only byte for byte
};

// Compares a and b (same dtype and shape), `first` the flat index of a's first element in the
// whole tensor.
void compare_piece(const tensor& a0, const tensor& b0, double atol, double rtol, std::int64_t first,
                   tally& t) {
  tensor a = a0.dev().is_cpu() ? a0 : a0.to(cpu_device);
  tensor b = b0.dev().is_cpu() ? b0 : b0.to(cpu_device);
  if (atol == 0 && rtol == 0) {
    // Contiguous tensors (what a load gives, nearly always) are compared in place: bytes() would
    // copy both, element by element.
    if (a.is_contiguous() && b.is_contiguous()) {
      if (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0) return;
    } else if (a.bytes() == b.bytes()) {
      return;
    }
  }
  bool convertible =
      is_floating_point(a.dtype()) || (!is_complex(a.dtype()) && !is_quantized(a.dtype()));
  if (!convertible || a.dtype() == dtype::uint64 || a.dtype() == dtype::int64) {
    if (atol == 0 && rtol == 0) {
      t.bytes_differ = true;
      t.exact_only = "elements differ";
      return;
    }
    if (a.bytes() == b.bytes()) return;
    if (!convertible) {
      t.bytes_differ = true;
      t.exact_only =
          "elements differ (exact comparison for " + std::string(dtype_name(a.dtype())) + ")";
      return;
    }
  }
  tensor x = a.to(dtype::float64).contiguous(), y = b.to(dtype::float64).contiguous();
  const double* px = x.numel() ? x.data<double>() : nullptr;
  const double* py = y.numel() ? y.data<double>() : nullptr;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    double p = px[i], q = py[i];
    if (std::isnan(p) && std::isnan(q)) continue;
    if (p == q) continue;
    double d = std::fabs(p - q);
    if (!(d <= atol + rtol * std::fabs(q))) {
      ++t.bad;
      if (!(d <= t.worst)) {
        t.worst = d;
        t.at = first + i;
      }
    }
  }
}

std::string verdict(const tally& t, std::int64_t numel) {
  if (t.bytes_differ) return t.exact_only;
  if (!t.bad) return "";
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "%lld of %lld elements differ; largest |a-b| = %s at flat index %lld",
                static_cast<long long>(t.bad), static_cast<long long>(numel),
                std::isnan(t.worst) ? "nan" : python_float_repr(t.worst).c_str(),
                static_cast<long long>(t.at));
  return buf;
}

std::string compare_tensors(const tensor& a, const tensor& b, double atol, double rtol) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape())
    return describe_tensor(a) + " vs " + describe_tensor(b);
  tally t;
  compare_piece(a, b, atol, rtol, 0, t);
  return verdict(t, a.numel());
}

// A pair of tensors of two checkpoints of one dtype and shape. From lazy checkpoints, a large pair
// is read and compared in pieces of leading rows (load_slice) of about 256 KiB a side: what is
// held at once stays bounded, and the pieces stay in the processor's cache between the read and
// the comparison (reading whole tensors into fresh memory made diff three times slower than
// reading the files).
std::string compare_tensors(const tensor& ta, const tensor& tb, double atol, double rtol,
                            const checkpoint& a, const checkpoint& b) {
  constexpr std::size_t piece_bytes = std::size_t{256} << 10;
  const std::size_t nbytes = ta.nbytes();
  if (nbytes <= 2 * piece_bytes || ta.dim() == 0 || !a.is_lazy() || !b.is_lazy())
    return compare_tensors(a.load_elements(ta), b.load_elements(tb), atol, rtol);
  const std::int64_t rows = ta.shape()[0];
  const std::int64_t row_elements = ta.numel() / rows;
  const std::int64_t row_bytes = static_cast<std::int64_t>(nbytes) / rows;
  const std::int64_t step =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(piece_bytes) / row_bytes);
  tally t;
  for (std::int64_t i = 0; i < rows && !t.bytes_differ; i += step) {
    const pthio::slice s({slice_item::range(i, std::min(rows, i + step), 1)});
    compare_piece(a.load_slice(ta, s), b.load_slice(tb, s), atol, rtol, i * row_elements, t);
  }
  return verdict(t, ta.numel());
}

}  // namespace

int cmd_diff(const std::vector<std::string>& files, double atol, double rtol,
             const load_options& options, const view_options& view, bool json, bool show_progress) {
  if (files.size() != 2) throw usage("diff takes two files, A and B");
  auto a = open_checkpoint(files[0], options, view);
  auto b = open_checkpoint(files[1], options, view);
  auto pickled = [](checkpoint_format f) { return f != checkpoint_format::safetensors; };
  bool scalars = pickled(a.format) && pickled(b.format);
  std::vector<std::pair<std::string, value>> la, lb;
  leaves(a.root, "", 0, scalars, la);
  leaves(b.root, "", 0, scalars, lb);
  std::map<std::string, const value*> mb;
  for (const auto& [k, v] : lb) mb.emplace(k, &v);
  // Progress: the bytes of the tensor pairs that will be read (same dtype and shape).
  std::uint64_t pair_bytes = 0;
  for (const auto& [k, v] : la)
    if (auto it = mb.find(k); it != mb.end() && v.is_tensor() && it->second->is_tensor()) {
      const tensor& ta = v.as_tensor();
      const tensor& tb = it->second->as_tensor();
      if (ta.dtype() == tb.dtype() && ta.shape() == tb.shape())
        pair_bytes += ta.nbytes() + tb.nbytes();
    }
  progress bar("diff", pair_bytes, show_progress);
  // Every entry of A in order, then B's own: its status and, when it differs, why.
  enum class status { equal, differs, only_a, only_b };
  struct entry {
    std::string key;
    status st;
    std::string why;
  };
  std::vector<entry> entries;
  std::map<std::string, bool> seen;
  std::size_t counts[4] = {0, 0, 0, 0};
  auto note = [&](const std::string& k, status st, std::string why = {}) {
    ++counts[static_cast<int>(st)];
    const std::string shown = k.empty() ? "\"\"" : k;
    // Text lines as they are found (a long diff shows its progress); JSON at the end.
    if (!json) {
      if (st != status::equal) bar.clear();  // a result line, not over the progress line
      if (st == status::only_a) std::printf("only in A: %s\n", shown.c_str());
      if (st == status::only_b) std::printf("only in B: %s\n", shown.c_str());
      if (st == status::differs) std::printf("differs: %s: %s\n", shown.c_str(), why.c_str());
    }
    if (json) entries.push_back({k, st, std::move(why)});
  };
  for (const auto& [k, v] : la) {
    seen[k] = true;
    auto it = mb.find(k);
    if (it == mb.end()) {
      note(k, status::only_a);
      continue;
    }
    const value& w = *it->second;
    std::string why;
    if (v.is_tensor() != w.is_tensor()) {
      why = std::string(v.type_name()) + " vs " + std::string(w.type_name());
    } else if (v.is_tensor()) {
      // Dtypes and shapes first, from the pickles; then the pair's bytes, read now and released
      // before the next pair (lazy checkpoints).
      const tensor& ta = v.as_tensor();
      const tensor& tb = w.as_tensor();
      if (ta.dtype() != tb.dtype() || ta.shape() != tb.shape()) {
        why = describe_tensor(ta) + " vs " + describe_tensor(tb);
      } else {
        why = compare_tensors(ta, tb, atol, rtol, a, b);
        bar.advance(ta.nbytes() + tb.nbytes());
      }
    } else if (dump_json(v) != dump_json(w)) {
      why = dump_json(v) + " vs " + dump_json(w);
    }
    const status st = why.empty() ? status::equal : status::differs;
    note(k, st, std::move(why));
  }
  for (const auto& [k, v] : lb)
    if (!seen.count(k)) note(k, status::only_b);
  const bool differ = counts[1] + counts[2] + counts[3] > 0;
  bar.clear();
  if (json) {
    static const char* names[] = {"equal", "differs", "only in A", "only in B"};
    std::string out =
        "{\"a\": " + json_quote(files[0]) + ", \"b\": " + json_quote(files[1]) + ", \"entries\": [";
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const entry& e = entries[i];
      out += (i ? ",\n  " : "\n  ");
      out += "{\"key\": " + json_quote(e.key) + ", \"status\": \"" + names[static_cast<int>(e.st)] +
             "\"";
      if (e.st == status::differs) out += ", \"why\": " + json_quote(e.why);
      out += "}";
    }
    out += entries.empty() ? "]" : "\n]";
    out += ", \"equal\": " + std::to_string(counts[0]) +
           ", \"differ\": " + std::to_string(counts[1]) +
           ", \"only_in_a\": " + std::to_string(counts[2]) +
           ", \"only_in_b\": " + std::to_string(counts[3]) + "}\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::printf("%zu equal, %zu differ, %zu only in A, %zu only in B\n", counts[0], counts[1],
                counts[2], counts[3]);
  }
  return differ ? 1 : 0;
}

int cmd_convert(const std::vector<std::string>& files, const std::string& to,
                const std::string& max_shard_size, const load_options& options,
                const view_options& view, bool show_progress) {
  if (files.size() != 2) throw usage("convert takes IN and OUT");
  std::string target = to;
  if (target.empty()) target = files[1].ends_with(".safetensors") ? "safetensors" : "pth";
  if (target != "pth" && target != "safetensors" && target != "dcp")
    throw usage("--to takes pth, safetensors or dcp, got '" + to + "'");
  if (target == "dcp" && !max_shard_size.empty())
    throw usage("--max-shard-size does not apply to --to dcp");
  convert_options co;
  co.to = target == "pth"           ? checkpoint_format::zip
          : target == "safetensors" ? checkpoint_format::safetensors
                                    : checkpoint_format::dcp;
  if (!max_shard_size.empty()) {
    try {
      co.max_shard_size = parse_shard_size(max_shard_size);
    } catch (const error& e) {
      throw usage("--max-shard-size: " + e.message());
    }
  }
  auto ck = open_checkpoint(files[0], options, view);
  // Progress by the bytes written, against the tensors' bytes (the output's bulk).
  std::uint64_t tensor_bytes = 0;
  visit_tensors(
      ck.root, [&](const std::string&, const value& v) { tensor_bytes += v.as_tensor().nbytes(); });
  std::optional<progress> bar;
  bar.emplace("convert", tensor_bytes, show_progress);
  if (show_progress) co.on_progress = [&](std::uint64_t written) { bar->update(written); };
  convert_result r = convert(ck, files[1], co);
  bar.reset();  // the line cleared before the report
  if (co.max_shard_size > 0) {
    std::printf("wrote %s (%s, %zu tensors in %zu file%s)\n", files[1].c_str(), target.c_str(),
                r.tensors, r.files.size(), r.files.size() == 1 ? "" : "s");
    for (const auto& f : r.files) std::printf("  %s\n", f.filename().string().c_str());
  } else {
    std::printf("wrote %s (%s, %zu tensors)\n", files[1].c_str(), target.c_str(), r.tensors);
  }
  auto shown = [](const std::string& k) { return k.empty() ? std::string("\"\"") : k; };
  if (!r.dropped.empty()) {
    std::printf(
        "dropped %zu value%s that %s not tensors (%s):\n", r.dropped.size(),
        r.dropped.size() == 1 ? "" : "s", r.dropped.size() == 1 ? "is" : "are",
        target == "safetensors" ? "safetensors stores only tensors" : "shards hold only tensors");
    for (const auto& [key, type] : r.dropped)
      std::printf("  %s (%s)\n", shown(key).c_str(), type.c_str());
  }
  if (!r.shared.empty()) {
    std::printf(
        "copied %zu group%s of tensors that shared a storage (safetensors stores each tensor "
        "separately):\n",
        r.shared.size(), r.shared.size() == 1 ? "" : "s");
    for (const auto& group : r.shared) {
      std::string line;
      for (const auto& k : group) line += (line.empty() ? "" : ", ") + shown(k);
      std::printf("  %s\n", line.c_str());
    }
  }
  return 0;
}

}  // namespace pthio::cli
