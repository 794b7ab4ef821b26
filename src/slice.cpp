#include "pthio/slice.hpp"

#include <charconv>

#include "pthio/error.hpp"

namespace pthio {

namespace {

[[noreturn]] void bad_text(std::string_view text, std::size_t at, const std::string& why) {
  throw error(errc::invalid_argument, "malformed slice '" + std::string(text) + "': " + why +
                                          " at character " + std::to_string(at + 1));
}

struct parser {
  std::string_view text;
  std::size_t pos = 0;

  void skip_spaces() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t')) ++pos;
  }
  bool at_end() const { return pos >= text.size(); }
  char peek() const { return at_end() ? '\0' : text[pos]; }

  // An optional integer (sign, then digits); nullopt when none starts here.
  std::optional<std::int64_t> number() {
    skip_spaces();
    const std::size_t begin = pos;
    bool negative = false;
    if (peek() == '+' || peek() == '-') {
      negative = peek() == '-';
      ++pos;
    }
    const std::size_t digits = pos;
    while (!at_end() && text[pos] >= '0' && text[pos] <= '9') ++pos;
    if (pos == digits) {
      if (pos != begin) bad_text(text, begin, "a sign without digits");
      return std::nullopt;
    }
    // Python allows any size; a tensor's extent fits int64, so a bigger number is refused rather
    // than clipped (clipping would be right for a range, wrong for an index).
    std::uint64_t magnitude = 0;
    auto [end, ec] = std::from_chars(text.data() + digits, text.data() + pos, magnitude);
    (void)end;
    const std::uint64_t limit = negative ? std::uint64_t{1} << 63 : (std::uint64_t{1} << 63) - 1;
    if (ec != std::errc() || magnitude > limit)
      bad_text(text, begin, "a number beyond 64-bit integers");
    skip_spaces();
    if (negative) return magnitude == limit ? INT64_MIN : -static_cast<std::int64_t>(magnitude);
    return static_cast<std::int64_t>(magnitude);
  }

  slice_item item() {
    const std::size_t begin = pos;
    std::optional<std::int64_t> first = number();
    if (peek() != ':') {
      if (!first)
        bad_text(text, begin,
                 at_end() || peek() == ',' ? "an empty item"
                                           : "unexpected '" + std::string(1, peek()) + "'");
      return slice_item::at(*first);
    }
    ++pos;
    std::optional<std::int64_t> stop = number();
    std::int64_t step = 1;
    if (peek() == ':') {
      const std::size_t step_at = ++pos;
      if (std::optional<std::int64_t> s = number()) {
        if (*s <= 0) bad_text(text, step_at, "step " + std::to_string(*s) + " (steps must be > 0)");
        step = *s;
      }
    }
    return slice_item::range(first, stop, step);
  }
};

std::string item_text(const slice_item& it) {
  if (it.is_index) return std::to_string(it.index);
  std::string s;
  if (it.start) s += std::to_string(*it.start);
  s += ':';
  if (it.stop) s += std::to_string(*it.stop);
  if (it.step != 1) s += ':' + std::to_string(it.step);
  return s;
}

}  // namespace

slice slice::parse(std::string_view text) {
  parser p{text};
  std::vector<slice_item> items;
  p.skip_spaces();
  if (p.at_end()) return slice();
  while (true) {
    items.push_back(p.item());
    if (p.at_end()) break;
    if (p.peek() != ',') bad_text(text, p.pos, "unexpected '" + std::string(1, p.peek()) + "'");
    ++p.pos;
    p.skip_spaces();
    if (p.at_end()) break;  // one trailing comma, as Python's t[5,]
  }
  return slice(std::move(items));
}

std::string slice::str() const {
  std::string s;
  for (std::size_t i = 0; i < items_.size(); ++i) {
    if (i) s += ',';
    s += item_text(items_[i]);
  }
  return s;
}

std::vector<resolved_dim> slice::resolve(std::span<const std::int64_t> shape,
                                         std::string_view key) const {
  auto fail = [&](const std::string& why) -> void {
    std::string where = key.empty() ? "" : " of '" + std::string(key) + "'";
    throw error(errc::invalid_argument, "slice [" + str() + "]" + where + ": " + why);
  };
  if (items_.size() > shape.size())
    fail(std::to_string(items_.size()) + " indices for a tensor of " +
         std::to_string(shape.size()) + " dimension" + (shape.size() == 1 ? "" : "s"));
  std::vector<resolved_dim> out(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    const std::int64_t n = shape[d];
    resolved_dim& r = out[d];
    if (d >= items_.size()) {
      r = {0, 1, n, true};
      continue;
    }
    const slice_item& it = items_[d];
    if (it.is_index) {
      if (it.index < -n || it.index >= n)
        fail(
            "index " + std::to_string(it.index) + " is out of range for dimension " +
            std::to_string(d) + " of size " + std::to_string(n) +
            (n > 0 ? " (bounds -" + std::to_string(n) + " to " + std::to_string(n - 1) + ")" : ""));
      r = {it.index < 0 ? it.index + n : it.index, 1, 1, false};
      continue;
    }
    if (it.step <= 0)
      fail("step " + std::to_string(it.step) + " for dimension " + std::to_string(d) +
           " (steps must be > 0)");
    // Python's clipping: a negative bound counts from the end, then both lie in [0, n].
    auto clip = [n](std::int64_t v) { return v < 0 ? (v + n < 0 ? 0 : v + n) : (v > n ? n : v); };
    const std::int64_t start = it.start ? clip(*it.start) : 0;
    const std::int64_t stop = it.stop ? clip(*it.stop) : n;
    r.start = start;
    r.step = it.step;
    r.count = stop > start ? (stop - start - 1) / it.step + 1 : 0;
    r.keep = true;
  }
  return out;
}

std::vector<std::int64_t> slice::result_shape(std::span<const std::int64_t> shape,
                                              std::string_view key) const {
  std::vector<std::int64_t> s;
  for (const resolved_dim& r : resolve(shape, key))
    if (r.keep) s.push_back(r.count);
  return s;
}

std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t n, std::int64_t rank,
                                                  std::int64_t world) {
  if (n < 0 || world < 1 || rank < 0 || rank >= world)
    throw error(errc::invalid_argument,
                "shard_range(" + std::to_string(n) + ", rank " + std::to_string(rank) + ", world " +
                    std::to_string(world) + "): needs n >= 0, world >= 1 and 0 <= rank < world");
  // ceil(n / world) without overflow; both ends clipped to n without forming a product or sum
  // past n.
  const std::int64_t block = n / world + (n % world != 0);
  const std::int64_t first = block == 0 || rank > n / block ? n : rank * block;
  const std::int64_t last = n - first < block ? n : first + block;
  return {first, last};
}

slice shard_slice(std::span<const std::int64_t> shape, std::size_t dim, std::int64_t rank,
                  std::int64_t world) {
  if (dim >= shape.size())
    throw error(errc::invalid_argument, "shard_slice: dimension " + std::to_string(dim) +
                                            " of a tensor of " + std::to_string(shape.size()) +
                                            " dimensions");
  auto [first, last] = shard_range(shape[dim], rank, world);
  std::vector<slice_item> items(dim, slice_item::all());
  items.push_back(slice_item::range(first, last));
  return slice(std::move(items));
}

}  // namespace pthio
