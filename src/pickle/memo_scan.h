// pthio — the unpickler's pre-pass (internal): which memo entries a pickle ever reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pthio::detail {

// Which memo indices a pickle ever reads (GET, BINGET, LONG_BINGET), found by one pass over its
// opcodes before it runs. torch memoizes every object it writes but reads back only a few (the
// globals, 'storage', the location), so the machine stores only what will be read: the rest
// would be copied into the memo, kept to the end and torn down for nothing. The pass only
// measures opcode arguments; when it cannot follow the stream to a STOP (bad or unknown
// input, which the machine reports where it meets it), or the stream numbers its memo entries
// by count (MEMOIZE, protocol 4), every entry is stored as before.
class memo_reads {
 public:
  // Indices at or past max_memo are never stored (BINPUT refuses them), so they need no bit.
  memo_reads(std::span<const std::byte> data, std::uint64_t max_memo) {
    if (!scan(data, max_memo)) all_ = true;
  }
  bool will_read(std::uint64_t index) const noexcept {
    if (all_) return true;
    if (index < bits_.size() * 64)
      return bits_[static_cast<std::size_t>(index / 64)] >> (index % 64) & 1;
    return tail_;
  }
  std::uint64_t bytes() const noexcept { return bits_.capacity() * sizeof(std::uint64_t); }

 private:
  // The pass (memo_scan.cpp): false when it cannot follow the stream to a STOP.
  bool scan(std::span<const std::byte> data, std::uint64_t max_memo);
  std::vector<std::uint64_t> bits_;
  bool tail_ = false;
  bool all_ = false;
};

}  // namespace pthio::detail
