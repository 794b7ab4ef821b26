// pthio — the scanner's pass over a pickle's opcodes (internal). It follows the stream as an
// abstract stack machine whose values are only what a scanner needs (a literal string, an
// import, the result of calling one, a container and whether it sets a dunder key, a mark, or
// "unknown"), so that STACK_GLOBAL is resolved from the strings pushed or memoized before it, and
// calls and BUILDs are judged by what they apply to. It never fails: an error is recorded with
// its offset and the pass goes on (a semantic error with an unknown value in place; a byte that
// is no opcode or an argument cut short by resynchronising on the next PROTO, GLOBAL or INST, and
// by picking up string + string + STACK_GLOBAL patterns in between).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pthio::detail {

struct pass_site {
  std::uint64_t offset = 0;
  std::string_view op;  // a static string
};

// One import (or finding), however often the pickle names it: memory follows the distinct names,
// not the input's length.
struct pass_import {
  std::string module;  // empty for a finding that is no import
  std::string name;    // the import's name, or the whole finding ("<unresolved STACK_GLOBAL>")
  std::size_t count = 0;
  std::vector<pass_site> sites;  // the first pass_max_sites
};
inline constexpr std::size_t pass_max_sites = 16;

struct pass_error {
  std::uint64_t offset = 0;
  std::string message;
};

struct pass_result {
  std::vector<pass_import> imports;  // in order of first appearance
  std::vector<pass_error> errors;    // the first few
  std::size_t error_count = 0;
  std::size_t pickles = 0;   // pickles read to their STOP
  std::size_t end = 0;       // where the pass stopped
  bool first_clean = false;  // the first pickle reached its STOP without an error
  bool hit_limit = false;    // a cap on the stack, memo or strings was reached
  // A STACK_GLOBAL on two strings, one too long to keep: a pickle's shape, whatever the name.
  bool named_stack_global = false;
};

enum class pass_extent {
  one,  // the first pickle only: stops after its STOP, or at the first error that loses the
        // stream (`end` is then where)
  all,  // every pickle to the end of the bytes, through errors
};

// Offsets are relative to `data`.
pass_result pickle_pass(std::span<const std::byte> data, pass_extent extent);

// How many errors a pass keeps (error_count counts them all).
inline constexpr std::size_t pass_max_errors = 16;

}  // namespace pthio::detail
