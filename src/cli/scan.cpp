// scan: lists the globals a file's pickles name, without building or running anything, and
// judges them against torch's weights-only allowlist and a denylist of code-running globals.
#include "scan.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

#include "json.h"
#include "pthio/dcp.hpp"
#include "pthio/pickle.hpp"
#include "pthio/pt2.hpp"
#include "pthio/zip.hpp"

namespace pthio::cli {

bool is_dangerous_global(std::string_view module, std::string_view name) {
  // Whole modules that reach the OS, spawn processes, load code or open connections.
  static const char* modules[] = {"os",
                                  "posix",
                                  "nt",
                                  "subprocess",
                                  "sys",
                                  "shutil",
                                  "socket",
                                  "runpy",
                                  "pty",
                                  "commands",
                                  "webbrowser",
                                  "httplib",
                                  "http.client",
                                  "requests",
                                  "aiohttp",
                                  "asyncio",
                                  "bdb",
                                  "pdb",
                                  "pickle",
                                  "_pickle",
                                  "cPickle",
                                  "marshal",
                                  "importlib",
                                  "imp",
                                  "code",
                                  "codeop",
                                  "ctypes",
                                  "multiprocessing",
                                  "threading",
                                  "_thread",
                                  "signal",
                                  "tempfile",
                                  "pip",
                                  "setuptools",
                                  "distutils",
                                  "venv",
                                  "ensurepip",
                                  "dill",
                                  "cloudpickle",
                                  "joblib",
                                  "timeit",
                                  "trace",
                                  "profile",
                                  "cProfile",
                                  "pydoc",
                                  "telnetlib",
                                  "ftplib",
                                  "smtplib",
                                  "urllib",
                                  "urllib2",
                                  "urllib.request",
                                  "glob",
                                  "zipimport",
                                  "builtins.__import__",
                                  "platform",
                                  "sqlite3"};
  for (const char* m : modules) {
    std::string_view mv(m);
    if (module == mv ||
        (module.size() > mv.size() && module.starts_with(mv) && module[mv.size()] == '.'))
      return true;
  }
  struct pair {
    const char* module;
    const char* name;
  };
  static const pair names[] = {
      {"builtins", "eval"},
      {"builtins", "exec"},
      {"builtins", "execfile"},
      {"builtins", "compile"},
      {"builtins", "open"},
      {"builtins", "getattr"},
      {"builtins", "setattr"},
      {"builtins", "delattr"},
      {"builtins", "__import__"},
      {"builtins", "apply"},
      {"builtins", "input"},
      {"builtins", "breakpoint"},
      {"builtins", "globals"},
      {"builtins", "locals"},
      {"builtins", "vars"},
      {"builtins", "file"},
      {"__builtin__", "eval"},
      {"__builtin__", "exec"},
      {"__builtin__", "execfile"},
      {"__builtin__", "open"},
      {"__builtin__", "getattr"},
      {"__builtin__", "__import__"},
      {"__builtin__", "apply"},
      {"__builtin__", "compile"},
      {"operator", "attrgetter"},
      {"operator", "methodcaller"},
      {"_operator", "attrgetter"},
      {"_operator", "methodcaller"},
      {"functools", "partial"},
      {"functools", "reduce"},
      {"torch.serialization", "load"},
      {"torch.serialization", "_load"},
      {"torch", "load"},
      {"torch.storage", "_load_from_bytes"},
      {"torch._inductor.codecache", "compile_file"},
      {"torch.jit", "load"},
      {"torch.hub", "load"},
      {"torch.hub", "load_state_dict_from_url"},
      {"numpy.testing._private.utils", "runstring"},
      {"numpy", "load"},
      {"numpy.lib.npyio", "load"},
      {"copyreg", "_reconstructor"},
      {"types", "FunctionType"},
      {"types", "CodeType"},
      {"collections", "namedtuple"},
      {"io", "open"},
      {"_io", "open"},
      {"_io", "FileIO"},
      {"pathlib", "Path"},
      {"posixpath", "join"},
      {"linecache", "getline"},
      {"site", "main"},
  };
  for (const auto& p : names)
    if (module == p.module && name == p.name) return true;
  return false;
}

namespace {

using global_counts = std::vector<std::pair<global_ref, std::size_t>>;

void scan_pickle(std::span<const std::byte> bytes, const std::string& context, scan_report& r,
                 std::map<std::string, std::size_t>& index, global_counts& refs,
                 std::size_t* consumed) {
  unpickle_options u;
  u.context = context;
  u.persistent_load = [](const value& pid) { return pid; };  // inert: nothing is loaded
  u.on_global = [&](const global_ref& g, std::size_t) {
    std::string q = g.qualified();
    auto [it, fresh] = index.emplace(q, r.globals.size());
    if (fresh) {
      r.globals.emplace_back(q, 0);
      refs.emplace_back(g, 0);
    }
    ++r.globals[it->second].second;
    ++refs[it->second].second;
  };
  auto res = unpickle(bytes, u);
  if (consumed) *consumed = res.consumed;
}

}  // namespace

namespace {

// A torch.distributed.checkpoint folder: its metadata pickle(s), which torch reads with plain
// pickle.load (so any global outside torch's metadata classes is unsafe there), then every blob's
// pickles (torch.load: weights-only for tensor chunks, not for other values).
scan_report scan_dcp(const std::string& path) {
  scan_report r;
  r.file = path;
  r.format = "dcp";
  namespace fs = std::filesystem;
  const fs::path folder = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  std::map<std::string, std::size_t> meta_index, blob_index;
  global_counts meta_refs, blob_refs;
  scan_report meta_part, blob_part;
  std::optional<error> failed;
  try {
    std::vector<fs::path> metadata_files;
    if (fs::is_regular_file(folder / ".metadata")) {
      metadata_files.push_back(folder / ".metadata");
    } else {
      for (const auto& e : fs::directory_iterator(folder)) {
        const std::string n = e.path().filename().string();
        if (n.starts_with("__") && n.ends_with(".metadata")) metadata_files.push_back(e.path());
      }
      std::sort(metadata_files.begin(), metadata_files.end());
    }
    for (const auto& m : metadata_files) {
      byte_source src = byte_source::map_file(m);
      scan_pickle(src.bytes(), m.filename().string(), meta_part, meta_index, meta_refs, nullptr);
    }
    const dcp_metadata meta = read_dcp_folder_metadata(path);
    if (!meta.safetensors_blobs)
      for (const dcp_blob& b : dcp_blobs(meta)) {
        byte_source blob = read_dcp_blob(folder, b);
        if (!looks_like_zip(blob.bytes())) continue;  // a safetensors blob: no pickle
        zip_reader zip(blob);
        for (const auto& e : zip.entries())
          if (e.name.ends_with(".pkl"))
            scan_pickle(zip.read(e), blob.name() + ": " + e.name, blob_part, blob_index, blob_refs,
                        nullptr);
      }
  } catch (const error& e) {
    failed = e.with_outer_context(path);
  }
  // One list of globals; each judged by what reads it.
  std::map<std::string, std::size_t> index;
  auto add = [&](const scan_report& part, const global_counts& refs, bool metadata) {
    for (std::size_t i = 0; i < part.globals.size(); ++i) {
      const auto& [q, n] = part.globals[i];
      auto [it, fresh] = index.emplace(q, r.globals.size());
      if (fresh) r.globals.emplace_back(q, 0);
      r.globals[it->second].second += n;
      const global_ref& g = refs[i].first;
      const bool danger = is_dangerous_global(g.module, g.name);
      const bool allowed = !danger && (metadata ? is_dcp_metadata_global(g.module, g.name)
                                                : is_builtin_safe_global(g.module, g.name) ||
                                                      torch_globals().contains(g.module, g.name));
      if (danger && std::find(r.dangerous.begin(), r.dangerous.end(), q) == r.dangerous.end())
        r.dangerous.push_back(q);
      if (!allowed && std::find(r.unsafe.begin(), r.unsafe.end(), q) == r.unsafe.end())
        r.unsafe.push_back(q);
    }
  };
  add(meta_part, meta_refs, true);
  add(blob_part, blob_refs, false);
  // A folder that could not be read in full is reported when what was read is already unsafe;
  // otherwise nothing can be said of it.
  if (failed && r.unsafe.empty()) throw *failed;
  return r;
}

}  // namespace

scan_report scan_file(const std::string& path) {
  if (is_dcp(path)) return scan_dcp(path);
  if (std::filesystem::is_directory(path))
    throw error(errc::invalid_argument,
                "a folder that is no torch.distributed.checkpoint (a Hugging Face index and its "
                "shards?): scan each file",
                path);
  scan_report r;
  r.file = path;
  byte_source src = byte_source::map_file(path);
  std::map<std::string, std::size_t> index;
  global_counts refs;
  try {
    auto fmt = detect_format(src.bytes());
    if (!fmt)
      throw error(errc::corrupt_checkpoint, "not a pickle, zip or legacy checkpoint", "", 0);
    r.format = std::string(format_name(*fmt));
    if (*fmt == checkpoint_format::zip) {
      zip_reader zip(src);
      // Every .pkl member of a zip (the file, or a torch.save blob inside a .pt2), named after
      // `where`; false when there is none.
      auto scan_members = [&](const zip_reader& z, const std::string& where) {
        bool found = false;
        for (const auto& e : z.entries()) {
          if (!e.name.ends_with(".pkl")) continue;
          found = true;
          scan_pickle(z.read(e), where + e.name, r, index, refs, nullptr);
        }
        return found;
      };
      const bool any = scan_members(zip, "");
      for (const auto& e : zip.entries())
        if (e.name.find("/code/") != std::string::npos || e.name.ends_with("/constants.pkl"))
          r.format = "torchscript";
      // A torch.export archive, told as the loader tells it (whatever .pkl records it also
      // holds): torch unpickles the records its configs mark pickled (and every object
      // constant), the older layouts' torch.save blobs and the sample inputs.
      std::optional<pt2_info> pt2 = read_pt2_info(zip);
      if (pt2) {
        r.format = "pt2";
        for (const pt2_pickle& p : pt2_pickles(zip, *pt2)) {
          const zip_entry* e = zip.find(p.record);
          if (!e) throw error(errc::corrupt_checkpoint, "record " + p.record + " is missing");
          if (e->method != 0 && e->uncompressed_size > pt2_max_deflated)
            throw error(errc::unsupported,
                        "deflated record of " + std::to_string(e->uncompressed_size) +
                            " bytes (torch stores a .pt2's records): not inflated to scan it",
                        p.record);
          // Not CRC-checked (verify does that): a blob of many GiB is only touched where its
          // central directory and pickles are.
          auto bytes = zip.read(*e, false);
          if (!p.torch_save) {
            scan_pickle(bytes, p.record, r, index, refs, nullptr);
            continue;
          }
          if (!scan_members(zip_reader(byte_source::borrow(bytes, p.record)), p.record + ": "))
            throw error(errc::corrupt_checkpoint, "the torch.save blob holds no .pkl record",
                        p.record);
        }
      } else if (!any) {
        throw error(errc::corrupt_checkpoint, "the archive holds no .pkl record");
      }
    } else if (*fmt == checkpoint_format::legacy) {
      // magic, protocol, sys_info, object, storage keys: five pickles, then raw storage bytes.
      std::size_t pos = 0;
      for (int i = 0; i < 5 && pos < src.size(); ++i) {
        std::size_t used = 0;
        scan_pickle(src.bytes().subspan(pos), "legacy pickle " + std::to_string(i + 1), r, index,
                    refs, &used);
        pos += used;
      }
    } else if (*fmt == checkpoint_format::safetensors) {
      // No pickle: nothing can run.
    } else {
      scan_pickle(src.bytes(), "pickle", r, index, refs, nullptr);
    }
  } catch (const error& e) {
    throw e.with_outer_context(path);
  }
  for (const auto& [g, n] : refs) {
    bool danger = is_dangerous_global(g.module, g.name);
    bool allowed = !danger && (is_builtin_safe_global(g.module, g.name) ||
                               torch_globals().contains(g.module, g.name));
    if (danger) r.dangerous.push_back(g.qualified());
    if (!allowed) r.unsafe.push_back(g.qualified());
  }
  return r;
}

std::string scan_json(const scan_report& r) {
  std::string out = "{\"globals\": [";
  for (std::size_t i = 0; i < r.globals.size(); ++i)
    out += (i ? ", " : "") + std::string("{\"name\": ") + json_quote(r.globals[i].first) +
           ", \"count\": " + std::to_string(r.globals[i].second) + "}";
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_quote(v[i]);
    return s + "]";
  };
  out += "], \"unsafe\": " + list(r.unsafe) + ", \"dangerous\": " + list(r.dangerous) +
         ", \"verdict\": " + (r.unsafe.empty() ? "\"safe\"" : "\"unsafe\"") + "}\n";
  return out;
}

std::string scan_text(const scan_report& r) {
  std::string out = r.file + " (" + r.format + " format)\n";
  for (const auto& [q, n] : r.globals) {
    std::string tag;
    for (const auto& d : r.dangerous)
      if (d == q) tag = "  DANGEROUS";
    if (tag.empty())
      for (const auto& u : r.unsafe)
        if (u == q) tag = "  unsafe";
    out += "  " + std::to_string(n) + "\t" + q + tag + "\n";
  }
  out += "verdict: " + std::string(r.unsafe.empty() ? "safe" : "unsafe") + " (" +
         std::to_string(r.unsafe.size()) + " outside the weights-only allowlist, " +
         std::to_string(r.dangerous.size()) + " known to run code)\n";
  return out;
}

}  // namespace pthio::cli
