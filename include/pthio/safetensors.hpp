// pthio — safetensors files (huggingface/safetensors), read and written.
//
// Layout (all little-endian):
//   bytes 0..8         N, the header size, a u64 (at most 100,000,000)
//   bytes 8..8+N       the header: UTF-8 JSON, one object
//                        {"__metadata__": {"str": "str", ...},            (optional)
//                         "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin,
//                         end]},
//                         ...}
//                      padded with spaces to a multiple of 8 by the writers
//   bytes 8+N..        the data section: each tensor's elements, row-major, little-endian; offsets
//                      are relative to the start of this section
//
// Checked on reading, as the reference implementation (the safetensors crate) checks: the header
// size against the cap and the file; the header is UTF-8 and one JSON object with nothing after it
// but whitespace; `__metadata__` maps str to str; every tensor has exactly one "dtype" (a name in
// the table below), "shape" (non-negative integers) and "data_offsets" (two non-negative integers),
// other fields being ignored; sorted by offset, the tensors follow one another from 0 without gap
// or overlap and end exactly at the end of the file; end - begin == numel x element size, with
// checked arithmetic. Stricter than the reference: a tensor name given twice is refused (the
// reference keeps the last), and so is the array form of a tensor entry (`["F32", [2], [0, 8]]`,
// which serde happens to accept and no writer produces). Errors are
// pthio::error(corrupt_safetensors) with the file offset; a dtype pthio has no type for (F6_E2M3,
// F6_E3M2) is errc::unsupported.
//
// dtypes: BOOL bool, U8 uint8, I8 int8, U16 uint16, I16 int16, U32 uint32, I32 int32, U64 uint64,
// I64 int64, F16 float16, BF16 bfloat16, F32 float32, F64 float64, C64 complex64, F8_E4M3
// float8_e4m3fn, F8_E5M2 float8_e5m2, F8_E4M3FNUZ float8_e4m3fnuz, F8_E5M2FNUZ float8_e5m2fnuz,
// F8_E8M0 float8_e8m0fnu, F4 float4_e2m1fn_x2 (the header counts 4-bit elements, pthio and torch
// count bytes: the last dimension is halved on reading and doubled on writing).
//
// Loading gives a checkpoint whose root is an OrderedDict name -> tensor in data-offset order
// (the order safetensors.torch.load_file returns, and the header's order in files the package
// wrote), each tensor contiguous in its own storage. `__metadata__`, when present, is the root
// dict's attribute "__metadata__" (a dict of str), shown by `dump` under "attrs".
//
// Writing lays the file out as the package does, byte for byte: tensors sorted by dtype in the
// package's order of decreasing alignment, then by name; the header compact JSON with
// `__metadata__` first, padded with spaces to a multiple of 8. Tensors are named by their key
// paths (visit_tensors); non-contiguous tensors and views are written as contiguous copies of
// their elements, and tensors sharing a storage each get their own copy (safetensors has no
// sharing). Values that are not tensors cannot be stored: save() refuses them; save_safetensors()
// with drop_non_tensors leaves them out, and plan_safetensors() names them.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/export.hpp"

namespace pthio {

// The safetensors name of a dtype ("F32"); empty when safetensors has none (complex128, qint8,
// ...).
PTHIO_API std::string_view safetensors_dtype_name(dtype t) noexcept;
// The dtype of a safetensors name; nullopt for unknown names and for F6_E2M3 / F6_E3M2.
PTHIO_API std::optional<dtype> dtype_from_safetensors_name(std::string_view name) noexcept;

struct safetensors_entry {
  std::string name;
  std::string dtype_name;            // as in the header: "F32"
  std::optional<pthio::dtype> type;  // nullopt for F6_E2M3 / F6_E3M2
  shape_t shape;                     // as in the header (F4: 4-bit elements)
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section
  std::uint64_t header_offset = 0;   // file offset of the entry's name in the header
};

struct safetensors_header {
  std::uint64_t header_size = 0;                                             // N
  std::optional<std::vector<std::pair<std::string, std::string>>> metadata;  // in header order
  std::vector<safetensors_entry> tensors;  // in data-offset order (ties: header order)
  std::uint64_t data_offset() const noexcept { return 8 + header_size; }
};

// Parses and validates the header of a whole safetensors file (every rule above, including that
// the data section ends where the file does). Throws pthio::error(corrupt_safetensors).
PTHIO_API safetensors_header read_safetensors_header(std::span<const std::byte> file);

// Loads a safetensors file (load_checkpoint dispatches here too). mmap mode: tensors are views into
// the mapping when their data is aligned to the element size, else copies. map_location maps the
// saved location "cpu".
PTHIO_API checkpoint load_safetensors(const std::filesystem::path& path,
                                      const load_options& options = {});
PTHIO_API checkpoint load_safetensors(byte_source source, const load_options& options = {});

// What a save would write, and what it would leave out.
struct safetensors_plan {
  std::vector<std::pair<std::string, tensor>> tensors;  // key path -> tensor, in the value's order
  // Key paths of values that are not tensors and not containers of tensors, with their type name
  // ("int", "str", "None", "dict" for an empty one, ...): safetensors cannot store them.
  std::vector<std::pair<std::string, std::string>> dropped;
  // Names of tensors that share a storage (each group written as separate copies).
  std::vector<std::vector<std::string>> shared;
  // `__metadata__`: the root dict's "__metadata__" attribute when it is a dict of str to str.
  std::optional<std::vector<std::pair<std::string, std::string>>> metadata;
};
PTHIO_API safetensors_plan plan_safetensors(const value& root);

struct safetensors_save_options {
  // false: a value that is not a tensor is refused (pthio::error invalid_argument naming it);
  // true: it is left out of the file.
  bool drop_non_tensors = false;
  // `__metadata__` to write; nullopt: the root dict's "__metadata__" attribute, if any.
  std::optional<std::vector<std::pair<std::string, std::string>>> metadata;
};

// Writes `root`'s tensors as a safetensors file, atomically as save() does. Throws
// invalid_argument for values that are not tensors (unless dropped), two tensors with one key
// path, names that are not UTF-8; unsupported for dtypes safetensors lacks and meta tensors.
PTHIO_API void save_safetensors(const std::filesystem::path& path, const value& root,
                                const safetensors_save_options& options = {});
PTHIO_API void save_safetensors(sink& out, const value& root,
                                const safetensors_save_options& options = {});

}  // namespace pthio
