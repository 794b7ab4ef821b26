// value_pool: where the unpickler's objects live. A pickle builds many small objects at once
// (a torch state_dict: four tuples, an OrderedDict, a storage and a tensor per entry), most of
// them dead by the next entry; through malloc each is a search of its free lists on the way in
// and a sort into them on the way out. The pool hands out memory from large blocks by bumping a
// pointer; while its load runs, memory of an object that dies goes on a list by size and the
// next object of that size takes it. Blocks go back only when every object allocated from the
// pool is gone.
//
// Lifetime: each allocation holds one reference to the pool and drops it when the object's
// shared_ptr control block is freed; the pool's blocks are freed with the last reference, on
// whatever thread drops it. Allocation is for one thread at a time: the one in whose pool_scope
// the pool is current. A value that outlives its load keeps the whole pool (the metadata of that
// load, charged to load_options::limits::max_memory as it was built) until it goes.
//
// Memory: blocks double from 4 KiB; from 64 KiB on they are anonymous maps (up to 4 MiB each),
// whose pages become resident in runs of 64 KiB just ahead of the pointer (one
// madvise(MADV_POPULATE_WRITE) per run instead of a page fault per page, which on a VM costs as
// much as the parse of an object or two per page). A map's pages past the pointer's run are never
// touched, so at most one run ahead of what was handed out is resident and uncharged.
//
// Under AddressSanitizer every allocation is a separate operator new, so that the sanitizer
// still sees each object's bounds and lifetime.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace pthio::detail {

class value_pool {
 public:
  value_pool() = default;
  value_pool(const value_pool&) = delete;
  value_pool& operator=(const value_pool&) = delete;

  // A new pool holding one reference, the caller's.
  static value_pool* create() { return new value_pool; }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // `bytes` aligned to `align` (at most alignof(std::max_align_t)), holding a reference.
  void* allocate(std::size_t bytes, std::size_t align);
  // Gives back what allocate() returned: drops its reference.
  void deallocate(void* p, std::size_t bytes, std::size_t align) noexcept;

 private:
  ~value_pool();
  struct block {
    block* next;
    std::size_t size;
    std::size_t resident;  // a map's bytes made resident so far
    bool mapped;           // an anonymous map (else operator new)
  };
  void new_block(std::size_t min_bytes);
  void populate_to(std::byte* p) noexcept;
  std::atomic<std::size_t> refs_{1};
  block* blocks_ = nullptr;
  std::byte* cur_ = nullptr;
  std::byte* end_ = nullptr;
  std::byte* resident_ = nullptr;  // in a mapped block: the end of the pages populated so far
  // Freed memory for reuse, by size class (16-byte steps up to max_reused bytes), taken and
  // given only on the thread where the pool is current (during its load): objects freed on
  // other threads, or after the load, only drop their reference. A state_dict's transient
  // tuples and OrderedDicts die one entry after they are made and the next entry's take their
  // place.
  static constexpr std::size_t max_reused = 512;
  void* free_[max_reused / 16 + 1] = {};
  std::size_t next_block_ = 4096;
};

// Test hook: `f` is told, with a delta in bytes, when pools make pages of their mapped blocks
// resident and when they give them back (the memory a counting operator new does not see).
using resident_observer = void (*)(std::ptrdiff_t delta) noexcept;
void set_resident_observer(resident_observer f) noexcept;

// The pool of the load running on this thread, or nullptr.
value_pool*& current_value_pool() noexcept;

// Makes a new pool current on this thread for its lifetime (the previous one after).
class value_pool_scope {
 public:
  value_pool_scope() : saved_(current_value_pool()), pool_(value_pool::create()) {
    current_value_pool() = pool_;
  }
  ~value_pool_scope() {
    current_value_pool() = saved_;
    pool_->release();
  }
  value_pool_scope(const value_pool_scope&) = delete;
  value_pool_scope& operator=(const value_pool_scope&) = delete;

 private:
  value_pool* saved_;
  value_pool* pool_;
};

template <class T>
struct pool_allocator {
  using value_type = T;
  value_pool* pool;
  explicit pool_allocator(value_pool* p) noexcept : pool(p) {}
  template <class U>
  pool_allocator(const pool_allocator<U>& other) noexcept : pool(other.pool) {}
  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(pool->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { pool->deallocate(p, n * sizeof(T), alignof(T)); }
  template <class U>
  friend bool operator==(const pool_allocator& a, const pool_allocator<U>& b) noexcept {
    return a.pool == b.pool;
  }
};

// make_shared, from this thread's pool when a load is running; T may be an array (U[], with the
// element count as the argument).
template <class T, class... Args>
std::shared_ptr<T> make_pooled(Args&&... args) {
  if (value_pool* p = current_value_pool())
    return std::allocate_shared<T>(pool_allocator<std::remove_extent_t<T>>(p),
                                   std::forward<Args>(args)...);
  return std::make_shared<T>(std::forward<Args>(args)...);
}

}  // namespace pthio::detail
