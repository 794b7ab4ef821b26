// pthio — slices: Python basic indexing on a tensor's leading dimensions, and the tensor-parallel
// split.
//
// A slice is what goes between the brackets of t[...] in Python, limited to integers and
// start:stop:step ranges: "0:512,:", ":,128:256", "5", "-3:", "1:100:7,::2". Each item applies to
// one leading dimension; dimensions after the last item are taken whole. An index selects one
// position and removes its dimension (t[5] of a [10, 4] tensor is [4]), as torch does; a range
// keeps it. Negative numbers count from the end, and omitted parts default, as Python means them:
// start 0, stop the extent, step 1. Ranges are clipped to the extent as Python clips them (0:100
// of 10 rows is 10 rows; 20:30 is none); an index must lie in [-n, n). Steps must be > 0, as in
// torch (no reversed slices). Ellipsis, None, lists and boolean masks are not basic slices and are
// refused.
//
// checkpoint::load_slice (checkpoint.hpp) reads the elements a slice selects, and nothing else
// in lazy mode.
//
// Errors: pthio::error(invalid_argument): slice::parse names the malformed text and where in it;
// resolving against a shape names the key (when known), the dimension and the bound (an index out
// of range, more items than dimensions).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pthio/export.hpp"

namespace pthio {

// One item of a slice: an index, or a range.
struct PTHIO_API slice_item {
  bool is_index = false;
  std::int64_t index = 0;             // when is_index
  std::optional<std::int64_t> start;  // a range's parts; nullopt: omitted
  std::optional<std::int64_t> stop;
  std::int64_t step = 1;  // > 0

  static slice_item at(std::int64_t i) { return {true, i, {}, {}, 1}; }
  static slice_item all() { return {}; }
  // step must be > 0 (checked where the item is used).
  static slice_item range(std::optional<std::int64_t> start, std::optional<std::int64_t> stop,
                          std::int64_t step = 1) {
    return {false, 0, start, stop, step};
  }
  bool operator==(const slice_item&) const = default;
};

// One dimension of a slice resolved against an extent: positions start, start + step, ...,
// `count` of them (count may be 0); `keep` false for an index (the dimension goes).
struct resolved_dim {
  std::int64_t start = 0;
  std::int64_t step = 1;
  std::int64_t count = 0;
  bool keep = true;
};

class PTHIO_API slice {
 public:
  slice() = default;  // t[()]: everything
  slice(std::vector<slice_item> items) : items_(std::move(items)) {}

  // Parses Python's spelling without the brackets. Spaces around numbers and colons are allowed;
  // one trailing comma is allowed ("5," is t[5,]); an empty text is the empty slice (everything).
  // Throws invalid_argument for anything else: empty items, a zero or negative step, numbers
  // beyond int64, other characters.
  static slice parse(std::string_view text);

  const std::vector<slice_item>& items() const noexcept { return items_; }
  bool empty() const noexcept { return items_.empty(); }
  // Python's spelling, canonical ("0:512, :" -> "0:512,:").
  std::string str() const;

  // Each dimension of `shape` resolved: the items for the leading ones, whole ranges after.
  // Throws invalid_argument naming `key` (when not empty), the dimension and the bound for an
  // index outside [-n, n), a step <= 0, or more items than dimensions.
  std::vector<resolved_dim> resolve(std::span<const std::int64_t> shape,
                                    std::string_view key = {}) const;
  // The shape t[slice] has.
  std::vector<std::int64_t> result_shape(std::span<const std::int64_t> shape,
                                         std::string_view key = {}) const;

  bool operator==(const slice&) const = default;

 private:
  std::vector<slice_item> items_;
};

// Rank `rank`'s part [first, second) of `n` positions split over `world` ranks, the split
// text-generation-inference's Weights.get_partial_sharded (and the safetensors-based loaders
// built like it) use for tensor parallelism: blocks of ceil(n / world), the last ranks' blocks
// clipped to n, so the remainder falls short on the last ranks (n = 10, world = 4: 3, 3, 3, 1)
// and a rank past the end gets an empty range (n = 2, world = 4: 1, 1, 0, 0). Throws
// invalid_argument for n < 0, world < 1 or rank outside [0, world).
PTHIO_API std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t n, std::int64_t rank,
                                                            std::int64_t world);

// The slice taking shard_range(extent of `dim`, rank, world) along dimension `dim` of `shape`,
// every other dimension whole (dim 0: rows, as a column-parallel weight is split; dim 1: columns,
// as a row-parallel one).
PTHIO_API slice shard_slice(std::span<const std::int64_t> shape, std::size_t dim, std::int64_t rank,
                            std::int64_t world);

}  // namespace pthio
