// value_pool: see value_pool.h.
#include "value_pool.h"

#include <algorithm>
#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#define PTHIO_POOL_PER_OBJECT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTHIO_POOL_PER_OBJECT 1
#endif
#endif

namespace pthio::detail {

namespace {
// Blocks double from 4 KiB up to this: a small pickle takes little, and what a block holds but
// has not handed out (memory the unpickler has not charged to max_memory) stays small.
constexpr std::size_t max_block = std::size_t{32} << 10;
}  // namespace

value_pool*& current_value_pool() noexcept {
  thread_local value_pool* pool = nullptr;
  return pool;
}

void* value_pool::allocate(std::size_t bytes, std::size_t align) {
#ifdef PTHIO_POOL_PER_OBJECT
  void* p = ::operator new(bytes, std::align_val_t(align));
#else
  auto at = reinterpret_cast<std::uintptr_t>(cur_);
  std::uintptr_t aligned = (at + align - 1) & ~(std::uintptr_t(align) - 1);
  if (!cur_ || aligned + bytes > reinterpret_cast<std::uintptr_t>(end_)) {
    // A new block: the block header is padded to max_align_t, so its data is aligned.
    constexpr std::size_t header = (sizeof(block) + alignof(std::max_align_t) - 1) & ~(alignof(std::max_align_t) - 1);
    const std::size_t size = std::max(next_block_, header + bytes + align);
    auto* b = static_cast<block*>(::operator new(size));
    b->next = blocks_;
    blocks_ = b;
    cur_ = reinterpret_cast<std::byte*>(b) + header;
    end_ = reinterpret_cast<std::byte*>(b) + size;
    next_block_ = std::min(next_block_ * 2, max_block);
    at = reinterpret_cast<std::uintptr_t>(cur_);
    aligned = (at + align - 1) & ~(std::uintptr_t(align) - 1);
  }
  void* p = reinterpret_cast<void*>(aligned);
  cur_ = reinterpret_cast<std::byte*>(aligned + bytes);
#endif
  retain();
  return p;
}

void value_pool::deallocate([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes,
                            [[maybe_unused]] std::size_t align) noexcept {
#ifdef PTHIO_POOL_PER_OBJECT
  ::operator delete(p, std::align_val_t(align));
#endif
  release();
}

value_pool::~value_pool() {
  while (blocks_) {
    block* next = blocks_->next;
    ::operator delete(blocks_);
    blocks_ = next;
  }
}

}  // namespace pthio::detail
