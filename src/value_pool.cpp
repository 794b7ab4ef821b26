// value_pool: see value_pool.h.
#include "value_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define PTHIO_POOL_PER_OBJECT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTHIO_POOL_PER_OBJECT 1
#endif
#endif

namespace pthio::detail {

namespace {
// Blocks double from 4 KiB up to this; from map_from on they are anonymous maps. What a block
// holds but has not handed out is not resident (maps) or small (the first, heap, blocks), so the
// memory the unpickler has not charged to max_memory stays small.
constexpr std::size_t max_block = std::size_t{4} << 20;
constexpr std::size_t map_from = std::size_t{64} << 10;
// A mapped block's pages are made resident this many bytes at a time.
constexpr std::size_t populate_run = std::size_t{64} << 10;
constexpr std::size_t page_bytes = 4096;
std::atomic<resident_observer> observer{nullptr};
void report_resident(std::ptrdiff_t delta) noexcept {
  if (auto f = observer.load(std::memory_order_relaxed)) f(delta);
}

// The free list for `bytes` (<= max_reused): 16-byte steps, never class 0, so that every slot has
// room for the list's link.
[[maybe_unused]] std::size_t size_class(std::size_t bytes) noexcept {
  return std::max<std::size_t>((bytes + 15) / 16, 1);
}

}  // namespace

void set_resident_observer(resident_observer f) noexcept {
  observer.store(f, std::memory_order_relaxed);
}

value_pool*& current_value_pool() noexcept {
  thread_local value_pool* pool = nullptr;
  return pool;
}

void* value_pool::allocate(std::size_t bytes, std::size_t align) {
#ifdef PTHIO_POOL_PER_OBJECT
  void* p = ::operator new(bytes, std::align_val_t(align));
  retain();
  return p;
#else
  if (bytes <= max_reused && align <= 16) {
    const std::size_t c = size_class(bytes);
    if (void* p = free_[c]) {
      free_[c] = *static_cast<void**>(p);
      retain();
      return p;
    }
    bytes = c * 16;  // so that any later object of this class fits where this one was,
    align = 16;      // however aligned it must be
  }
  auto aligned_cur = [&] {
    return (reinterpret_cast<std::uintptr_t>(cur_) + align - 1) & ~(std::uintptr_t(align) - 1);
  };
  std::uintptr_t aligned = aligned_cur();
  if (!cur_ || aligned + bytes > reinterpret_cast<std::uintptr_t>(end_)) [[unlikely]] {
    new_block(bytes + align);
    aligned = aligned_cur();
  }
  cur_ = reinterpret_cast<std::byte*>(aligned + bytes);
  if (cur_ > resident_) [[unlikely]]
    populate_to(cur_);
  retain();
  return reinterpret_cast<void*>(aligned);
#endif
}

void value_pool::new_block(std::size_t min_bytes) {
  // The block header is padded to max_align_t, so its data is aligned.
  constexpr std::size_t header_bytes =
      (sizeof(block) + alignof(std::max_align_t) - 1) & ~(alignof(std::max_align_t) - 1);
  const std::size_t size = std::max(next_block_, header_bytes + min_bytes);
  block* b = nullptr;
  const bool mapped = size >= map_from;
  if (mapped) {
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    b = static_cast<block*>(m);
  } else {
    b = static_cast<block*>(::operator new(size));
  }
  // A heap block counts as resident (it faults page by page, as any heap memory); of a map, the
  // header's page, written here, is.
  *b = block{blocks_, size, mapped ? std::min(size, page_bytes) : 0, mapped};
  blocks_ = b;
  cur_ = reinterpret_cast<std::byte*>(b) + header_bytes;
  end_ = reinterpret_cast<std::byte*>(b) + size;
  resident_ = mapped ? reinterpret_cast<std::byte*>(b) + b->resident : end_;
  if (mapped) report_resident(static_cast<std::ptrdiff_t>(b->resident));
  next_block_ = std::min(next_block_ * 2, max_block);
}

void value_pool::populate_to(std::byte* p) noexcept {
  // Pages up to the end of the run holding p and populate_run after it; pages a failed (or
  // unsupported) madvise leaves out fault in on first touch as usual. resident_ stays on a page
  // boundary (a mapped block's start and size are multiples of the page size).
  const auto page = std::uintptr_t{page_bytes};
  const auto upto =
      std::min(reinterpret_cast<std::uintptr_t>(end_),
               (reinterpret_cast<std::uintptr_t>(p) + populate_run + page - 1) & ~(page - 1));
  const auto from = reinterpret_cast<std::uintptr_t>(resident_);
  if (upto <= from) return;
#ifdef MADV_POPULATE_WRITE
  ::madvise(reinterpret_cast<void*>(from), upto - from, MADV_POPULATE_WRITE);
#endif
  blocks_->resident += upto - from;
  report_resident(static_cast<std::ptrdiff_t>(upto - from));
  resident_ = reinterpret_cast<std::byte*>(upto);
}

void value_pool::deallocate([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes,
                            [[maybe_unused]] std::size_t align) noexcept {
#ifdef PTHIO_POOL_PER_OBJECT
  ::operator delete(p, std::align_val_t(align));
#else
  if (bytes <= max_reused && align <= 16 && current_value_pool() == this) {
    // The scope making this pool current holds a reference: release() below cannot free it.
    const std::size_t c = size_class(bytes);
    *static_cast<void**>(p) = free_[c];
    free_[c] = p;
  }
#endif
  release();
}

value_pool::~value_pool() {
  while (blocks_) {
    block* next = blocks_->next;
    if (blocks_->mapped) {
      report_resident(-static_cast<std::ptrdiff_t>(blocks_->resident));
      ::munmap(blocks_, blocks_->size);
    } else
      ::operator delete(blocks_);
    blocks_ = next;
  }
}

}  // namespace pthio::detail
