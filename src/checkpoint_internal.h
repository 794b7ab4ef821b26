// Pieces shared by the checkpoint loaders and savers (not part of the public API).
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pthio/checkpoint.hpp"

namespace pthio::detail {

[[noreturn]] void bad_args(const char* fn, const std::string& why);
std::vector<std::int64_t> int_sequence(const value& v, const char* fn, const char* what);

// Replaces, in place, every value for which fn returns a replacement (iterative walk; shared
// containers visited once; replaced values are not descended into).
void transform_values(value& root, const std::function<std::optional<value>(const value&)>& fn);

// Key paths and `dump --json` write shared containers out in full, once per reference: a few
// hundred bytes of pickle can nest (x, x) sixty times. Refuses (limit_exceeded, naming `what`) a
// value whose expansion exceeds 16 times the values it holds plus 100,000, and a cyclic one.
void check_expansion(const value& root, const char* what);

// Host bytes to a storage on `target` (cpu: a copy).
storage copy_to_device(std::span<const std::byte> bytes, const device& target);

checkpoint load_safetensors(const byte_source& src, const load_options& options);
void save_safetensors(sink& out, const value& root, const save_options& options);

}  // namespace pthio::detail
