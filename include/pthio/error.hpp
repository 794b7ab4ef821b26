// pthio — the one exception family.
//
// Every failure pthio reports is a pthio::error (derived from std::runtime_error). It carries:
//   kind     what went wrong (io, corrupt zip, corrupt pickle, unsupported, unsafe global, ...)
//   context  where: the file, then the record inside it ("model.pth: archive/data.pkl")
//   offset   the byte offset inside that record or file where the rule was broken, if any
// what() reads "model.pth: archive/data.pkl: offset 1234: BINPUT memo index 9 has no value".
// Bad input of any kind yields a pthio::error, never a crash, hang or unbounded allocation.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "pthio/export.hpp"

namespace pthio {

enum class errc {
  io,                   // the operating system refused a read, write, open or rename
  corrupt_zip,          // the zip container breaks a rule of APPNOTE or of torch's layout
  corrupt_pickle,       // the pickle stream is malformed
  corrupt_checkpoint,   // container and pickle are well-formed but do not describe a valid
                        // checkpoint
  corrupt_safetensors,  // a safetensors header or layout is invalid
  unsupported,          // valid, but a feature pthio does not implement (named in the message)
  unsafe_global,        // strict (weights-only) mode met a global outside the allowlist
  limit_exceeded,       // a configured resource limit (depth, memo, memory) was reached
  mismatch,             // shapes, dtypes or keys disagree (state-dict loading)
  invalid_argument,     // the caller passed something unusable
  cuda,                 // a CUDA runtime or cuBLAS failure, or CUDA is not available
};

// Torch-style short name of an error kind: "io", "corrupt zip", ...
PTHIO_API std::string_view errc_name(errc kind) noexcept;

class PTHIO_API error : public std::runtime_error {
 public:
  error(errc kind, std::string message, std::string context = {},
        std::optional<std::uint64_t> offset = std::nullopt);

  errc kind() const noexcept { return kind_; }
  // The rule broken, without context or offset.
  const std::string& message() const noexcept { return message_; }
  // Where: "file: record", possibly empty.
  const std::string& context() const noexcept { return context_; }
  std::optional<std::uint64_t> offset() const noexcept { return offset_; }

  // The same error with `outer` prepended to its context ("model.pth" + "archive/data.pkl").
  error with_outer_context(std::string_view outer) const;

 private:
  errc kind_;
  std::string message_;
  std::string context_;
  std::optional<std::uint64_t> offset_;
};

}  // namespace pthio
