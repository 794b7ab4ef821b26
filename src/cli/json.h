// The `pthio` command's JSON renderings, part of its contract (docs/cli.md).
//
// dump: None -> null; bool; int -> integer when |v| <= 2^53 else {"int": "<decimal>"}; float -> the
// shortest round-tripping repr, always with '.' or 'e' (as Python's repr), non-finite as
// {"float": "nan"|"inf"|"-inf"}; str -> string; bytes -> {"bytes": "<base64>"}; list -> array;
// tuple -> {"tuple": [...]}; dict -> {"dict": [[k, v], ...]} plus "class" for an OrderedDict and
// "attrs" for attributes set on it; tensor -> {"tensor": {ls fields but key}}; a global ->
// {"global": "module.name"}; anything else -> {"object": "module.name", "args": ..., "state": ...}.
// ls: one object per tensor {"key", "dtype", "shape", "stride", "storage_offset", "device",
// "requires_grad", "sha256"}; sha256 covers the elements in row-major order, little-endian.
//
// Every function returns a new string and keeps nothing. Tensors on a CUDA device are copied to
// the host to be hashed (pthio::error(cuda) without CUDA); a meta tensor has no elements to hash:
// tensor_sha256 returns "" and the JSON says "sha256": null. tensor_json's value must be a tensor
// (invalid_argument otherwise).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "pthio/checkpoint.hpp"

namespace pthio::cli {

// Python's repr() of a finite double: "0.1", "1e-08", "1e+16", "100.0".
std::string python_float_repr(double d);
// The shortest text that reads back as this float32 value, in the same layout ("0.1", "1e-08").
std::string python_float_repr(float f);
// A byte count in binary units, one decimal: "10.9 KiB", "1.0 GiB" ("512 B" below 1 KiB).
std::string binary_size(std::uint64_t bytes);
// A count with thousands separators: "11,208".
std::string grouped(std::uint64_t n);
// A JSON string literal (UTF-8 passed through, control characters and invalid bytes escaped): the
// library's own quoting, with which its error messages show names.
std::string json_quote(std::string_view s);
// Lowercase hex SHA-256 of the tensor's elements (row-major, little-endian; host copy if needed).
std::string tensor_sha256(const tensor& t);
// The ls fields of one tensor; with a key, "key" comes first.
std::string tensor_json(const value& t, const std::string* key);
// The whole `dump --json` rendering of a value.
std::string dump_json(const value& v);
// The same for a checkpoint's root; a lazy checkpoint's tensors are read (to be hashed) one at a
// time, and each released before the next.
std::string dump_json(const checkpoint& ck);
// The whole `ls --json` object for a loaded file (a lazy one read tensor by tensor); by_size:
// the tensors largest first (ties in the file's order), as `ls --sort size`.
// on_tensor, when given, is told each tensor's bytes once it is hashed (a progress display).
std::string ls_json(const checkpoint& ck, std::string_view file, bool by_size = false,
                    const std::function<void(std::uint64_t bytes)>& on_tensor = {});

}  // namespace pthio::cli
