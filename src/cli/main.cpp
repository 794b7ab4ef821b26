// The `pthio` command. Its interface is a contract (docs/cli.md): subcommands, --json shapes, key
// paths and exit statuses (0 success, 1 a negative answer, 2 usage error, 3 unreadable file).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "json.h"
#include "progress.h"
#include "pthio/pthio.hpp"
#include "scan.h"
#include "tensor_text.h"
#include "torch/internal.h"

namespace {

constexpr int exit_ok = 0, exit_negative = 1, exit_usage = 2, exit_unreadable = 3;

const char* usage_text =
    "usage: pthio COMMAND [ARGS]\n"
    "  ls FILE [--json] [--sort size]   one row per tensor: key, dtype, shape, device, bytes\n"
    "  dump FILE [--json]               the whole object tree\n"
    "  cat FILE KEY [--slice SPEC] [--raw] [--full] [--limit N]\n"
    "                                   one tensor (or t[SPEC]), printed as torch prints it;\n"
    "                                   --raw: its elements' bytes, little-endian, row-major\n"
    "  diff A B [--atol X] [--rtol Y] [--json]\n"
    "                                   compare two checkpoints (exit 1 when they differ)\n"
    "  convert IN OUT [--to pth|safetensors|dcp] [--max-shard-size SIZE]\n"
    "                                   streaming; with SIZE (5GB, 500MiB), OUT is a folder of\n"
    "                                   Hugging Face shards and their index; --to dcp: OUT is\n"
    "                                   a torch.distributed.checkpoint folder (one rank)\n"
    "  scan FILE [--json]               globals referenced, and a verdict (exit 1 when unsafe)\n"
    "  verify FILE                      structure and CRC-32 of every record (exit 1 when "
    "corrupt)\n"
    "  help [COMMAND]                   this text, or one command's (also COMMAND --help)\n"
    "  --version                        pthio's version\n"
    "options that load: --map-location cpu|cuda:N, --strict (weights-only globals), --mmap,\n"
    "  --quiet (no progress line on stderr; shown for long work when stderr is a terminal)\n"
    "  --state-dict [KEY]  (ls, dump, cat, diff, convert) the model's state dict under torch's\n"
    "                      names, also of a model saved whole; KEY names the entry holding it\n";

// Options every command that loads takes (all but scan).
#define PTHIO_LOAD_OPTIONS                                                                      \
  "  --map-location TAG   load every storage onto TAG (cpu, cuda:N, meta); default cpu\n"       \
  "  --strict             weights-only: refuse any global outside torch's allowlist (exit 3)\n" \
  "  -q, --quiet          no progress line on stderr (long work shows one when stderr is a\n"   \
  "                       terminal)\n"
#define PTHIO_STATE_DICT_OPTION                                                            \
  "  --state-dict [KEY]   work on the model's state dict under torch's names (also of a\n" \
  "                       model saved whole); KEY names the entry holding the model\n"

struct command_help {
  const char* name;
  const char* text;
};
const command_help command_helps[] = {
    {"ls",
     "usage: pthio ls FILE [--json] [--sort size] [options]\n"
     "One row per tensor: key path, dtype, shape, device, bytes; then a footer with the count,\n"
     "the total in binary units and in bytes, and the format. FILE is any checkpoint pthio\n"
     "reads (zip, legacy, TorchScript, safetensors, *.index.json, DCP folder, .pt2).\n"
     "  --json               one object: file, format, tensors (key, dtype, shape, stride,\n"
     "                       storage_offset, device, requires_grad, sha256)\n"
     "  --sort size          largest tensors first (equal sizes in the file's "
     "order)\n" PTHIO_LOAD_OPTIONS PTHIO_STATE_DICT_OPTION
     "exit: 0 listed, 2 usage error, 3 unreadable file\n"},
    {"dump",
     "usage: pthio dump FILE [--json] [options]\n"
     "The whole object tree: dicts, lists, tuples, Python values, tensors (dtype, shape,\n"
     "device), globals and inert objects, Python-like; nothing in it is executed.\n"
     "  --json               every value as docs/cli.md's dump --json renders "
     "it\n" PTHIO_LOAD_OPTIONS PTHIO_STATE_DICT_OPTION
     "exit: 0 dumped, 2 usage error, 3 unreadable file\n"},
    {"cat",
     "usage: pthio cat FILE KEY [--slice SPEC] [--raw] [--full] [--limit N] [options]\n"
     "One tensor, printed as torch prints it (print(t)) after a line KEY: dtype shape. Only the\n"
     "tensor's record is read (or the part of it SPEC needs).\n"
     "  --slice SPEC         t[SPEC]: Python basic indexing without brackets (0:512,:  5  -3:)\n"
     "  --limit N            summarize past N elements, as torch's print threshold (1000)\n"
     "  --full               every element, never summarized\n"
     "  --raw                the elements' bytes to stdout (row-major, little-endian); not to a\n"
     "                       terminal\n"
     "  --mmap               load in mmap mode instead of reading the record\n" PTHIO_LOAD_OPTIONS
         PTHIO_STATE_DICT_OPTION
     "exit: 0 printed, 2 usage error, 3 unreadable file or no such KEY\n"},
    {"diff",
     "usage: pthio diff A B [--atol X] [--rtol Y] [--json] [options]\n"
     "Compares two checkpoints entry by entry, by key path: tensors by dtype, shape and values,\n"
     "other values exactly. Prints 'only in A: KEY', 'only in B: KEY' and 'differs: KEY: why'\n"
     "lines, then 'N equal, M differ, K only in A, L only in B'. One tensor pair in memory.\n"
     "  --atol X, --rtol Y   values equal when |a - b| <= atol + rtol * |b| (default 0: exact)\n"
     "  --json               one object: a, b, entries (key, status, why), and the four "
     "counts\n" PTHIO_LOAD_OPTIONS PTHIO_STATE_DICT_OPTION
     "exit: 0 no difference, 1 a difference, 2 usage error, 3 unreadable\n"},
    {"convert",
     "usage: pthio convert IN OUT [--to pth|safetensors|dcp] [--max-shard-size SIZE] [options]\n"
     "Writes IN's tensors (and, for .pth, its whole object tree) as OUT, one tensor in memory at\n"
     "a time. The format follows --to, else OUT's extension (.safetensors), else pth.\n"
     "  --to FORMAT          pth (torch.save's zip format), safetensors, or dcp (a\n"
     "                       torch.distributed.checkpoint folder, one rank)\n"
     "  --max-shard-size SIZE  OUT is a folder of Hugging Face shards of at most SIZE (5GB,\n"
     "                       500MiB) and their *.index.json, as save_pretrained writes "
     "them\n" PTHIO_LOAD_OPTIONS PTHIO_STATE_DICT_OPTION
     "exit: 0 written, 2 usage error, 3 unreadable input or unwritable output\n"},
    {"scan",
     "usage: pthio scan FILE [--json]\n"
     "Lists every global (import) FILE's pickles name, from a static pass that never executes\n"
     "anything and reads malformed pickles too, and gives a verdict: safe (only torch's\n"
     "weights-only allowlist, whole file read), unsafe, or unknown (not read in full).\n"
     "  --json               globals (name, count, where), unsafe, dangerous, errors, verdict\n"
     "exit: 0 safe, 1 unsafe, 2 usage error, 3 unknown (not read in full, nothing unsafe seen)\n"},
    {"verify",
     "usage: pthio verify FILE [options]\n"
     "Checks the CRC-32 of every record and the structure (the object tree, every view against\n"
     "its record; a DCP folder's chunks against its metadata). Ends 'verify: ok' or 'verify:\n"
     "corruption found'.\n" PTHIO_LOAD_OPTIONS
     "exit: 0 ok, 1 corruption found, 2 usage error, 3 unreadable or not checkable\n"},
    {"help",
     "usage: pthio help [COMMAND]\n"
     "The general usage, or COMMAND's (the same as pthio COMMAND --help).\n"},
};

const char* help_of(const std::string& command) {
  for (const auto& h : command_helps)
    if (command == h.name) return h.text;
  return nullptr;
}

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct args {
  std::string command;
  std::vector<std::string> positional;
  bool json = false;
  bool strict = false;
  bool mmap = false;
  std::string map_location = "cpu";
  std::optional<long long> limit;
  std::optional<pthio::slice> slice;  // cat --slice SPEC
  bool raw = false;                   // cat --raw
  bool full = false;                  // cat --full
  std::string sort;                   // ls --sort size
  bool quiet = false;                 // no progress on stderr
  double atol = 0, rtol = 0;
  std::string to;
  std::string max_shard_size;
  pthio::cli::view_options view;
};

// The positional arguments each command that takes --state-dict has: an argument more, right
// after --state-dict, is its KEY.
const std::map<std::string, std::size_t>& positional_counts() {
  static const std::map<std::string, std::size_t> takes = {
      {"ls", 1}, {"dump", 1}, {"cat", 2}, {"diff", 2}, {"convert", 2}};
  return takes;
}

// The arguments after the command, parsed by CLI11 (options anywhere, `--opt value` and
// `--opt=value`, `--` ending the options). Every command accepts every option (docs/cli.md:
// options a command does not use are ignored); a value is checked where it is parsed, and any
// error is a usage error (exit 2).
args parse_args(int argc, char** argv) {
  if (argc < 2) throw usage_error("no command given");
  args a;
  a.command = argv[1];
  CLI::App app{"pthio " + a.command, a.command};
  app.set_help_flag();  // help is answered before parsing (run)
  app.add_option("args", a.positional);
  app.add_flag("--json", a.json);
  app.add_flag("--strict", a.strict);
  app.add_flag("--mmap", a.mmap);
  app.add_flag("--raw", a.raw);
  app.add_flag("--full", a.full);
  app.add_flag("-q,--quiet", a.quiet);
  app.add_option("--map-location", a.map_location);
  // Numbers that may not be negative, said plainly when they are.
  const CLI::Validator non_negative(
      [](std::string& text) -> std::string {
        std::size_t used = 0;
        double d = -1;
        try {
          d = std::stod(text, &used);
        } catch (...) {
          used = 0;
        }
        if (used > 0 && used == text.size() && d >= 0) return {};
        return "needs a non-negative number, got '" + text + "'";
      },
      "NUMBER >= 0");
  long long limit = 0;
  app.add_option("--limit", limit)->check(non_negative);
  std::string slice_text;
  app.add_option("--slice", slice_text);
  app.add_option("--atol", a.atol)->check(non_negative);
  app.add_option("--rtol", a.rtol)->check(non_negative);
  app.add_option("--to", a.to);
  app.add_option("--max-shard-size", a.max_shard_size);
  app.add_option("--sort", a.sort);
  // --state-dict [KEY]: the KEY, when given as a separate argument, is decided below.
  std::string state_dict_value;
  CLI::Option* state_dict = app.add_option("--state-dict", state_dict_value)->expected(0, 1);
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    throw usage_error(e.what());
  }
  if (app.count("--limit")) a.limit = limit;
  if (app.count("--slice")) {
    try {
      a.slice = pthio::slice::parse(slice_text);
    } catch (const pthio::error& e) {
      throw usage_error("--slice: " + e.message());
    }
  }
  if (app.count("--sort") && a.sort != "size")
    throw usage_error("--sort takes size, got '" + a.sort + "'");
  if (app.count("--max-shard-size") && a.max_shard_size.empty())
    throw usage_error("--max-shard-size needs a SIZE");
  if (!a.max_shard_size.empty() && a.command != "convert")
    throw usage_error(a.command + " does not take --max-shard-size");
  if (state_dict->count() == 0) return a;
  auto it = positional_counts().find(a.command);
  if (it == positional_counts().end()) throw usage_error(a.command + " does not take --state-dict");
  a.view.state_dict = true;
  // `--state-dict=KEY` is always a KEY; `--state-dict X` takes X as its KEY only when the
  // command has one argument more than it takes ("convert IN OUT --state-dict ema", "ls
  // --state-dict ema FILE"); otherwise X goes back among the arguments where it stood.
  bool joined = false;
  for (int i = 2; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    if (std::strcmp(argv[i], "--state-dict=") == 0) throw usage_error("--state-dict= needs a KEY");
    if (std::strncmp(argv[i], "--state-dict=", 13) == 0) joined = true;
  }
  if (state_dict_value.empty()) return a;
  if (joined || a.positional.size() == it->second) {
    a.view.key = state_dict_value;
    return a;
  }
  std::size_t before = 0;  // the positionals parsed before --state-dict
  for (const CLI::Option* o : app.parse_order()) {
    if (o == state_dict) break;
    if (o->get_positional()) ++before;
  }
  a.positional.insert(a.positional.begin() + static_cast<std::ptrdiff_t>(before), state_dict_value);
  return a;
}

void need_positional(const args& a, std::size_t n, const char* what) {
  if (a.positional.size() != n) throw usage_error(a.command + " takes " + what);
}

pthio::load_options load_opts(const args& a) {
  pthio::load_options o;
  o.mode = a.mmap ? pthio::load_mode::mmap : pthio::load_mode::eager;
  o.strict = a.strict;
  try {
    o.map_location = pthio::map_location(pthio::device::parse(a.map_location));
  } catch (const pthio::error& e) {
    throw usage_error("--map-location: " + e.message());
  }
  return o;
}

// ls, dump, diff, convert and verify's structure check load lazily: the pickle (or header) only,
// each tensor read when it is needed and released after, so that no command holds the file.
pthio::load_options lazy_opts(const args& a) {
  pthio::load_options o = load_opts(a);
  o.mode = pthio::load_mode::lazy;
  return o;
}

int cmd_ls(const args& a) {
  need_positional(a, 1, "one FILE");
  auto ck = pthio::cli::open_checkpoint(a.positional[0], lazy_opts(a), a.view);
  const bool by_size = a.sort == "size";
  if (a.json) {
    // --json reads and hashes every tensor: progress over their bytes.
    std::uint64_t bytes = 0;
    pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value& v) {
      bytes += v.as_tensor().nbytes();
    });
    std::string out;
    {
      pthio::cli::progress bar("ls", bytes, pthio::cli::progress::wanted(a.quiet));
      out = pthio::cli::ls_json(ck, a.positional[0], by_size,
                                [&](std::uint64_t n) { bar.advance(n); });
    }
    std::cout << out << "\n";
    return exit_ok;
  }
  struct row {
    std::string key, dtype, shape, device, bytes;
    std::uint64_t nbytes;
  };
  std::vector<row> rows;
  std::uint64_t total = 0;
  pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
    const auto& t = v.as_tensor();
    total += t.nbytes();
    rows.push_back({key.empty() ? "\"\"" : key, std::string(pthio::dtype_name(t.dtype())),
                    pthio::shape_string(t.shape()), ck.load_device(t.get_storage()).str(),
                    std::to_string(t.nbytes()), t.nbytes()});
  });
  if (by_size)  // largest first; equal sizes keep the file's order
    std::stable_sort(rows.begin(), rows.end(),
                     [](const row& x, const row& y) { return x.nbytes > y.nbytes; });
  std::size_t w[5] = {3, 5, 5, 6, 5};
  for (const auto& r : rows) {
    w[0] = std::max(w[0], r.key.size());
    w[1] = std::max(w[1], r.dtype.size());
    w[2] = std::max(w[2], r.shape.size());
    w[3] = std::max(w[3], r.device.size());
    w[4] = std::max(w[4], r.bytes.size());
  }
  auto line = [&](const std::string& k, const std::string& d, const std::string& s,
                  const std::string& dev, const std::string& b) {
    std::printf("%-*s  %-*s  %-*s  %-*s  %*s\n", int(w[0]), k.c_str(), int(w[1]), d.c_str(),
                int(w[2]), s.c_str(), int(w[3]), dev.c_str(), int(w[4]), b.c_str());
  };
  line("key", "dtype", "shape", "device", "bytes");
  for (const auto& r : rows) line(r.key, r.dtype, r.shape, r.device, r.bytes);
  // "24 tensors, 10.9 KiB (11,208 bytes, zip format)"; under 1 KiB the bytes alone.
  const std::string format(pthio::format_name(ck.format));
  if (total < 1024)
    std::printf("%zu tensors, %llu bytes (%s format)\n", rows.size(),
                static_cast<unsigned long long>(total), format.c_str());
  else
    std::printf("%zu tensors, %s (%s bytes, %s format)\n", rows.size(),
                pthio::cli::binary_size(total).c_str(), pthio::cli::grouped(total).c_str(),
                format.c_str());
  return exit_ok;
}

// Python-like text rendering for `dump` without --json (`ck` gives a lazy tensor's device).
void dump_text(const pthio::value& v, int indent, std::string& out, const pthio::checkpoint& ck);

void dump_text_items(std::span<const pthio::value> items, int indent, std::string& out, char open,
                     char close, const pthio::checkpoint& ck) {
  if (items.empty()) {
    out += open;
    out += close;
    return;
  }
  out += open;
  out += '\n';
  for (const auto& e : items) {
    out += std::string(static_cast<std::size_t>(indent + 2), ' ');
    dump_text(e, indent + 2, out, ck);
    out += ",\n";
  }
  out += std::string(static_cast<std::size_t>(indent), ' ');
  out += close;
}

void dump_text(const pthio::value& v, int indent, std::string& out, const pthio::checkpoint& ck) {
  using k = pthio::value::kind;
  switch (v.type()) {
    case k::none: out += "None"; break;
    case k::boolean: out += v.as_bool() ? "True" : "False"; break;
    case k::integer: out += std::to_string(v.as_int()); break;
    case k::big_integer: out += v.as_big_int().to_string(); break;
    case k::floating: {
      double d = v.as_float();
      out += std::isnan(d)   ? "nan"
             : std::isinf(d) ? (d > 0 ? "inf" : "-inf")
                             : pthio::cli::python_float_repr(d);
      break;
    }
    case k::string: out += pthio::cli::json_quote(v.as_str()); break;
    case k::bytes: out += "b<" + std::to_string(v.as_bytes().size()) + " bytes>"; break;
    case k::list: dump_text_items(v.items(), indent, out, '[', ']', ck); break;
    case k::tuple: dump_text_items(v.items(), indent, out, '(', ')', ck); break;
    case k::dict: {
      const auto& d = v.as_dict();
      if (!d.class_name.empty()) out += d.class_name;
      if (d.size() == 0) {
        out += "{}";
      } else {
        out += "{\n";
        for (const auto& [key, val] : d.entries()) {
          out += std::string(static_cast<std::size_t>(indent + 2), ' ');
          dump_text(key, indent + 2, out, ck);
          out += ": ";
          dump_text(val, indent + 2, out, ck);
          out += ",\n";
        }
        out += std::string(static_cast<std::size_t>(indent), ' ') + "}";
      }
      for (const auto& [name, val] : d.attrs) {
        out += '\n';
        out.append(static_cast<std::size_t>(indent), ' ');
        out += '.';
        out += name;
        out += " = ";
        dump_text(val, indent, out, ck);
      }
      break;
    }
    case k::tensor: {
      const auto& t = v.as_tensor();
      out += std::string(v.is_parameter() ? "Parameter" : "tensor") + "(" +
             std::string(pthio::dtype_name(t.dtype())) + ", " + pthio::shape_string(t.shape()) +
             ", device=" + ck.load_device(t.get_storage()).str() +
             (t.requires_grad() ? ", requires_grad=True" : "") + ")";
      break;
    }
    case k::storage:
      out += "storage(" + std::string(pthio::dtype_name(v.as_storage().dtype)) + ")";
      break;
    case k::global: out += v.as_global().qualified(); break;
    case k::object: {
      const auto& o = v.as_object();
      out += o.type.qualified();
      if (!o.args.is_none()) dump_text(o.args, indent, out, ck);
      if (o.has_state) {
        out += " state=";
        dump_text(o.state, indent, out, ck);
      }
      break;
    }
  }
}

int cmd_dump(const args& a) {
  need_positional(a, 1, "one FILE");
  auto ck = pthio::cli::open_checkpoint(a.positional[0], lazy_opts(a), a.view);
  if (a.json) {
    std::cout << pthio::cli::dump_json(ck) << "\n";
  } else {
    std::string out;
    dump_text(ck.root, 0, out, ck);
    std::cout << out << "\n";
  }
  return exit_ok;
}

int cmd_cat(const args& a) {
  need_positional(a, 2, "FILE KEY");
  // Lazily (unless --mmap): only the tensor's record, or the part of it the slice needs, is read.
  pthio::load_options options = load_opts(a);
  if (!a.mmap) options.mode = pthio::load_mode::lazy;
  auto ck = pthio::cli::open_checkpoint(a.positional[0], options, a.view);
  const std::string& want = a.positional[1];
  std::optional<pthio::tensor> found;
  std::vector<std::string> keys;
  pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
    if (!found && key == want) found = v.as_tensor();
    keys.push_back(key);
  });
  if (!found) {
    std::string msg = "no tensor with key '" + want + "'";
    if (!keys.empty())
      msg += " (keys: " + keys.front() +
             (keys.size() > 1 ? ", ... " + std::to_string(keys.size()) + " in all" : "") + ")";
    throw pthio::error(pthio::errc::invalid_argument, msg, a.positional[0]);
  }
  pthio::tensor t;
  try {
    // A large record shows progress as it is read (its CRC-32 still checked whole).
    pthio::cli::progress bar("cat", std::max(found->nbytes(), found->get_storage().nbytes()),
                             pthio::cli::progress::wanted(a.quiet));
    pthio::detail::read_observer_scope observe([&bar](std::uint64_t n) { bar.advance(n); });
    t = a.slice ? ck.load_slice(*found, *a.slice, want) : ck.load_tensor(*found);
  } catch (const pthio::error& e) {
    // A slice that does not fit is the caller's error: say in which file (the reader's errors
    // name it already).
    if (e.kind() != pthio::errc::invalid_argument) throw;
    throw e.with_outer_context(a.positional[0]);
  }
  if (!t.dev().is_cpu() && t.dev().type() != pthio::device_type::meta) t = t.to(pthio::cpu_device);
  if (t.dev().type() == pthio::device_type::meta)
    throw pthio::error(pthio::errc::unsupported,
                       "tensor '" + want + "' is on the meta device and has no values");
  if (a.raw) {
    // Raw bytes would scramble a terminal: for pipes and files only.
    if (::isatty(STDOUT_FILENO))
      throw usage_error("--raw writes binary data; redirect standard output to a file or pipe");
    t = t.contiguous();  // every element is written: a view's are gathered first
    // The elements as they are in memory: row-major, and little-endian on every host pthio
    // builds for (tensor.hpp's bytes() order).
    const std::size_t nbytes = t.nbytes();
    if (nbytes && std::fwrite(t.raw_data(), 1, nbytes, stdout) != nbytes)
      throw pthio::error(pthio::errc::io, "cannot write to standard output");
    if (std::fflush(stdout) != 0)
      throw pthio::error(pthio::errc::io, "cannot write to standard output");
    return exit_ok;
  }
  // As torch prints it: summarized past --limit elements (torch's print threshold, 1,000 by
  // default), in full with --full.
  const std::int64_t threshold = a.full    ? std::numeric_limits<std::int64_t>::max()
                                 : a.limit ? *a.limit
                                           : 1000;
  const std::string shown_key = a.slice ? want + "[" + a.slice->str() + "]" : want;
  std::printf("%s: %s %s\n%s\n", shown_key.c_str(),
              std::string(pthio::dtype_name(t.dtype())).c_str(),
              pthio::shape_string(t.shape()).c_str(), pthio::cli::torch_text(t, threshold).c_str());
  return exit_ok;
}

// Every tensor of a lazy checkpoint read (and dropped) one at a time: the blobs checked against
// the metadata, the chunks assembled.
void verify_tensors(const pthio::checkpoint& ck, bool show_progress) {
  std::uint64_t bytes = 0;
  pthio::visit_tensors(
      ck.root, [&](const std::string&, const pthio::value& v) { bytes += v.as_tensor().nbytes(); });
  pthio::cli::progress bar("verify", bytes, show_progress);
  pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value& v) {
    (void)ck.load_tensor(v.as_tensor());
    bar.advance(v.as_tensor().nbytes());
  });
}

// Set when check_structure met a feature pthio does not read.
bool unsupported_structure = false;

// verify's structure check: the object tree, loaded lazily without CRC-32s (they are checked
// record by record beforehand); with `read`, every tensor read as well (a DCP folder's chunks
// checked against its metadata and assembled). Prints "structure ok: ..." or CORRUPT; false on
// corruption; a feature pthio does not read prints UNSUPPORTED and sets unsupported_structure.
template <class Source>
bool check_structure(const args& a, const Source& src, bool read, const std::string& more) {
  try {
    pthio::load_options o = lazy_opts(a);
    o.verify_crc = false;
    auto ck = pthio::load_checkpoint(src, o);
    std::size_t n = 0;
    pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value&) { ++n; });
    if (read) verify_tensors(ck, pthio::cli::progress::wanted(a.quiet));
    std::printf("structure ok: %s format, %zu tensors%s\n",
                std::string(pthio::format_name(ck.format)).c_str(), n, more.c_str());
    return true;
  } catch (const pthio::error& e) {
    if (e.kind() == pthio::errc::io) throw;
    if (e.kind() == pthio::errc::unsupported) {
      // A feature pthio lacks: no verdict on the structure (verify_verdict decides).
      std::printf("UNSUPPORTED  %s\n", e.what());
      unsupported_structure = true;
      return true;
    }
    std::printf("CORRUPT  %s\n", e.what());
    return false;
  }
}

// Corruption found (a bad CRC, say) is the verdict even where pthio could not check the rest;
// otherwise a structure pthio cannot read is no verdict on the file: exit 3, as for a file it
// cannot read.
int verify_verdict(bool bad) {
  if (!bad && unsupported_structure) {
    std::printf("verify: structure not checked (a feature pthio does not read)\n");
    return exit_unreadable;
  }
  std::printf(bad ? "verify: corruption found\n" : "verify: ok\n");
  return bad ? exit_negative : exit_ok;
}

// A torch.distributed.checkpoint folder: the CRC-32 of every record of every blob, then the
// structure (every chunk against the metadata, assembled).
int verify_dcp(const args& a, const std::string& dir) {
  bool bad = false;
  const std::filesystem::path folder = std::filesystem::is_directory(dir)
                                           ? std::filesystem::path(dir)
                                           : std::filesystem::path(dir).parent_path();
  std::optional<pthio::dcp_metadata> meta;
  try {
    meta = pthio::read_dcp_folder_metadata(dir);
  } catch (const pthio::error& e) {
    if (e.kind() == pthio::errc::io) throw;
    std::printf("CORRUPT  %s\n", e.what());
    return verify_verdict(true);
  }
  std::size_t absent = 0;
  const auto blobs = pthio::dcp_blobs(*meta);
  std::uint64_t blob_bytes = 0;
  for (const pthio::dcp_blob& b : blobs) blob_bytes += b.storage.length;
  std::optional<pthio::cli::progress> bar;
  bar.emplace("verify", blob_bytes, pthio::cli::progress::wanted(a.quiet));
  for (const pthio::dcp_blob& b : blobs) {
    // The blob's lines replace the progress line; the next blob's advance draws it again.
    struct redraw {
      pthio::cli::progress& bar;
      std::uint64_t n;
      ~redraw() {
        try {
          bar.advance(n);
        } catch (...) {  // a progress line is not worth an exception from a destructor
        }
      }
    } after{*bar, b.storage.length};
    const std::string where = b.storage.relative_path + " bytes " +
                              std::to_string(b.storage.offset) + "+" +
                              std::to_string(b.storage.length) + " (" + b.what + ")";
    try {
      pthio::byte_source blob = pthio::read_dcp_blob(folder, b);
      if (meta->safetensors_blobs || !pthio::looks_like_zip(blob.bytes())) {
        // Elements in a safetensors blob: no CRC-32; checked with the structure below.
        bar->clear();
        std::printf("no CRC   %s\n", where.c_str());
        ++absent;
        continue;
      }
      pthio::zip_reader zip(blob);
      std::size_t n = 0;
      for (const auto& e : zip.entries()) {
        if (e.crc32 == 0 && e.uncompressed_size != 0) {
          ++absent;
          continue;
        }
        std::uint32_t got = zip.compute_crc(e);
        if (got != e.crc32) {
          bad = true;
          char buf[64];
          std::snprintf(buf, sizeof buf, "expected %08x, got %08x", e.crc32, got);
          bar->clear();
          std::printf("BAD CRC  %s: %s (%s)\n", where.c_str(), e.name.c_str(), buf);
        }
        ++n;
      }
      bar->clear();
      std::printf("ok       %s: %zu records\n", where.c_str(), n);
    } catch (const pthio::error& err) {
      if (err.kind() == pthio::errc::io) throw;
      if (err.kind() == pthio::errc::unsupported) {  // a transform pthio does not know
        unsupported_structure = true;
        bar->clear();
        std::printf("UNSUPPORTED  %s: %s\n", where.c_str(), err.what());
        continue;
      }
      bad = true;
      bar->clear();
      std::printf("CORRUPT  %s: %s\n", where.c_str(), err.what());
    }
  }
  bar.reset();
  if (absent) std::printf("%zu records or blobs carry no CRC-32\n", absent);
  const std::size_t files = meta->metadata_files.size();
  const std::string more =
      ", " + std::to_string(files) + " metadata file" + (files == 1 ? "" : "s");
  bad = !check_structure(a, dir, true, more) || bad;
  return verify_verdict(bad);
}

int cmd_verify(const args& a) {
  need_positional(a, 1, "one FILE");
  const std::string& file = a.positional[0];
  if (pthio::is_dcp(file)) return verify_dcp(a, file);
  if (std::filesystem::is_directory(file)) {
    // A folder with a Hugging Face index: its shards' structure.
    pthio::load_options o = lazy_opts(a);
    auto ck = pthio::load_checkpoint(file, o);
    verify_tensors(ck, pthio::cli::progress::wanted(a.quiet));
    std::printf("structure ok: %s format\nverify: ok\n",
                std::string(pthio::format_name(ck.format)).c_str());
    return exit_ok;
  }
  pthio::byte_source src = pthio::byte_source::map_file(file);
  auto fmt = pthio::detect_format(src.bytes());
  bool bad = false;
  if (fmt == pthio::checkpoint_format::zip) {
    std::optional<pthio::zip_reader> zip;
    try {
      zip.emplace(src);
    } catch (const pthio::error& e) {
      std::printf("CORRUPT  %s\n", e.what());
      return exit_negative;
    }
    std::size_t absent = 0;
    std::uint64_t record_bytes = 0;
    for (const auto& e : zip->entries()) record_bytes += e.uncompressed_size;
    std::optional<pthio::cli::progress> bar;
    bar.emplace("verify", record_bytes, pthio::cli::progress::wanted(a.quiet));
    for (const auto& e : zip->entries()) {
      // Each record's line replaces the progress line, which the next advance draws again.
      std::string line;
      try {
        if (e.crc32 == 0 && e.uncompressed_size != 0) {
          ++absent;
          zip->read(e, false);
          line = "no CRC   " + e.name;
        } else if (std::uint32_t got = zip->compute_crc(e); got != e.crc32) {
          bad = true;
          char buf[64];
          std::snprintf(buf, sizeof buf, "expected %08x, got %08x", e.crc32, got);
          line = "BAD CRC  " + e.name + " (" + buf + ")";
        } else {
          line = "ok       " + e.name;
        }
      } catch (const pthio::error& err) {
        bad = true;
        line = "CORRUPT  " + e.name + ": " + err.what();
      }
      bar->clear();
      std::printf("%s\n", line.c_str());
      bar->advance(e.uncompressed_size);
    }
    bar.reset();
    if (absent)
      std::printf("%zu records carry no CRC-32 (written with CRC computation off)\n", absent);
  } else if (fmt == pthio::checkpoint_format::legacy) {
    std::printf("legacy format: records carry no CRC-32; checking structure only\n");
  }
  // Structure: the object tree and every storage it names.
  // Lazy: every view is checked against its record without reading the record (the CRC-32s
  // were checked above, record by record, in bounded pieces).
  bad = !check_structure(a, src, false, "") || bad;
  return verify_verdict(bad);
}

int cmd_scan(const args& a) {
  need_positional(a, 1, "one FILE");
  const pthio::scan_report report = pthio::scan_file(a.positional[0]);
  std::fputs((a.json ? pthio::cli::scan_json(report) : pthio::cli::scan_text(report)).c_str(),
             stdout);
  switch (report.verdict()) {
    case pthio::scan_verdict::safe: return exit_ok;
    case pthio::scan_verdict::unsafe: return exit_negative;
    case pthio::scan_verdict::unknown: break;
  }
  // Not read in full, nothing unsafe seen: no verdict either way.
  std::fflush(stdout);
  const pthio::scan_error& first = report.errors.front();
  std::fprintf(stderr, "pthio: %s: not read in full: %s%s@%llu: %s\n", report.file.c_str(),
               first.member.c_str(), first.member.empty() ? "" : " ",
               static_cast<unsigned long long>(first.offset), first.message.c_str());
  return exit_unreadable;
}

int run(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "-V") == 0)) {
    std::printf("pthio %s\n", PTHIO_VERSION);
    return exit_ok;
  }
  // COMMAND --help (or -h) anywhere before "--": that command's usage, whatever else is there.
  if (argc >= 2)
    for (int i = 2; i < argc && std::strcmp(argv[i], "--") != 0; ++i)
      if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
        const char* text = help_of(argv[1]);
        if (!text) throw usage_error("unknown command '" + std::string(argv[1]) + "'");
        std::fputs(text, stdout);
        return exit_ok;
      }
  args a = parse_args(argc, argv);
  if (a.command == "ls") return cmd_ls(a);
  if (a.command == "dump") return cmd_dump(a);
  if (a.command == "cat") return cmd_cat(a);
  if (a.command == "scan") return cmd_scan(a);
  if (a.command == "verify") return cmd_verify(a);
  if (a.command == "diff")
    return pthio::cli::cmd_diff(a.positional, a.atol, a.rtol, lazy_opts(a), a.view, a.json,
                                pthio::cli::progress::wanted(a.quiet));
  if (a.command == "convert")
    return pthio::cli::cmd_convert(a.positional, a.to, a.max_shard_size, lazy_opts(a), a.view,
                                   pthio::cli::progress::wanted(a.quiet));
  if (a.command == "help" || a.command == "--help" || a.command == "-h") {
    if (a.positional.size() > 1) throw usage_error("help takes at most one COMMAND");
    if (a.positional.empty()) {
      std::fputs(usage_text, stdout);
      return exit_ok;
    }
    const char* text = help_of(a.positional[0]);
    if (!text) throw usage_error("no command '" + a.positional[0] + "'");
    std::fputs(text, stdout);
    return exit_ok;
  }
  throw usage_error("unknown command '" + a.command + "'");
}

}  // namespace

int main(int argc, char** argv) {
  // After a usage error, the usage of the command given, or the general one.
  const char* usage = argc >= 2 && help_of(argv[1]) ? help_of(argv[1]) : usage_text;
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "pthio: %s\n%s", e.what(), usage);
    return exit_usage;
  } catch (const pthio::cli::usage& e) {
    std::fprintf(stderr, "pthio: %s\n%s", e.what(), usage);
    return exit_usage;
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "pthio: %s\n", e.what());
    return exit_unreadable;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "pthio: out of memory\n");
    return exit_unreadable;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pthio: %s\n", e.what());
    return exit_unreadable;
  }
}
