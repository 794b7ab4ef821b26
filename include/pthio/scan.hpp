// pthio — the static scanner: which imports (classes and functions) a file's pickles name, found
// without running the stack machine to success, and whether torch's weights-only allowlist admits
// them all. Nothing in the file is built or called.
//
//   pthio::scan_report r = pthio::scan_file("model.pth");
//   if (r.verdict() != pthio::scan_verdict::safe) ...   // r.unsafe, r.dangerous, r.errors say why
//
// What is read: every pickle of a stream (after a STOP the scan goes on while bytes remain), every
// zip member that looks like a pickle whatever its name, found through the central directory and
// through its local headers both (and a zip found from its end record when data is prepended),
// nested zips, legacy torch files (their five pickles, then past the storages), torch's legacy tar
// format, numpy .npy object arrays (also as .npz members), torch.distributed.checkpoint folders and
// safetensors files (no pickle). The pass over each pickle's opcodes keeps going where the
// unpickler would stop (an undefined memo index, a value of the wrong type, a byte that is no
// opcode, a stream cut short), reports the error, and resynchronises where it can.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pthio/export.hpp"

namespace pthio {

enum class scan_verdict {
  safe,     // read in full, and every import is on the weights-only allowlist
  unsafe,   // an import outside the allowlist, or a construct that could run code
  unknown,  // not read in full, and nothing unsafe seen in what was read
};

PTHIO_API std::string_view scan_verdict_name(scan_verdict v) noexcept;  // "safe", ...

// Where an import (or a finding) appears: the member (a zip member, "blob: member" for one nested
// in another, "" for the file itself) and the byte offset of its opcode in that member's bytes.
struct scan_site {
  std::string member;
  std::uint64_t offset = 0;
  std::string op;  // GLOBAL, INST, STACK_GLOBAL, EXT1, BUILD, NEWOBJ_EX, REDUCE, ...
};

// One import, or one finding that is no import, spelled between angle brackets:
//   <unresolved STACK_GLOBAL>            STACK_GLOBAL whose operands are not literal strings
//   <copyreg extension N>                EXT1/EXT2/EXT4 (the copyreg extension registry)
//   <unresolved call>                    a call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, BUILD) on a value
//                                        the pass could not resolve to an import
//   <BUILD on module.name>               BUILD on the imported class or function itself
//   <BUILD sets __name__>                BUILD whose state sets a dunder attribute
//   <NEWOBJ_EX keywords to module.name>  keyword arguments to a class's __new__
struct scan_global {
  std::string name;  // module.name
  std::size_t count = 0;
  std::vector<scan_site> where;  // the first scan_max_sites sites
  bool unsafe = false;
  bool dangerous = false;
};
inline constexpr std::size_t scan_max_sites = 16;

struct scan_error {
  std::string member;
  std::uint64_t offset = 0;
  std::string message;
};

struct scan_report {
  std::string file;
  // zip, torchscript, pt2, legacy, tar (torch's legacy tar), pickle, npy, safetensors, dcp, or
  // unknown when the first bytes are none of these.
  std::string format;
  std::vector<scan_global> globals;    // in order of first appearance
  std::vector<std::string> unsafe;     // names of the unsafe globals and findings
  std::vector<std::string> dangerous;  // names known to run code (a subset of unsafe)
  std::vector<scan_error> errors;      // what could not be read (the first scan_max_errors)
  std::size_t error_count = 0;         // all of them

  scan_verdict verdict() const noexcept {
    if (!unsafe.empty()) return scan_verdict::unsafe;
    return error_count ? scan_verdict::unknown : scan_verdict::safe;
  }
};
inline constexpr std::size_t scan_max_errors = 64;

// Scans a file, or a torch.distributed.checkpoint folder (or its .metadata). Throws pthio::error
// only when the path cannot be opened; everything wrong inside the file is in `errors`.
PTHIO_API scan_report scan_file(const std::filesystem::path& path);
// Scans bytes in memory; `name` is the report's file.
PTHIO_API scan_report scan_bytes(std::span<const std::byte> bytes, std::string name = "<memory>");

// True when module.name is known to run code or reach the system when called or touched (os,
// subprocess, builtins.eval, torch.load, ...): the denylist, one entry per reason, in scan.cpp.
PTHIO_API bool is_dangerous_global(std::string_view module, std::string_view name);

}  // namespace pthio
