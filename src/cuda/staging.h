// Staged copies: host bytes -> fixed staging buffers -> a destination, chunk by chunk, with one
// filling thread per buffer. The transfer out of a buffer is the backend's (CUDA: an async
// host->device copy on the buffer's stream); this file knows nothing of CUDA, so the chunking,
// the buffer reuse rule and the CRC-32 are tested on hosts without a GPU.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "pthio/io.hpp"
#include "pthio/zip.hpp"

namespace pthio::detail {

// CRC-32 of A||B from crc(A), crc(B) and |B| (zlib's crc32_combine: crc(A) times x^(8|B|) mod P).
namespace crc32_math {
// a * b modulo the reflected CRC-32 polynomial.
constexpr std::uint32_t multmodp(std::uint32_t a, std::uint32_t b) noexcept {
  std::uint32_t m = std::uint32_t{1} << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ 0xedb88320u : b >> 1;
  }
  return p;
}
// x^(n * 2^k) modulo P.
inline std::uint32_t x2nmodp(std::uint64_t n, unsigned k) noexcept {
  static const auto table = [] {
    std::vector<std::uint32_t> t(64);
    std::uint32_t p = std::uint32_t{1} << 30;  // x^1
    for (auto& e : t) {
      e = p;
      p = multmodp(p, p);
    }
    return t;
  }();
  std::uint32_t p = std::uint32_t{1} << 31;  // x^0
  for (; n; n >>= 1, ++k)
    if (n & 1) p = multmodp(table[k & 63], p);
  return p;
}
}  // namespace crc32_math

inline std::uint32_t crc32_combine(std::uint32_t crc_a, std::uint32_t crc_b,
                                   std::uint64_t len_b) noexcept {
  return crc32_math::multmodp(crc32_math::x2nmodp(len_b, 3), crc_a) ^ crc_b;
}

// Copies queue up; each filling thread takes the next chunk (in order), waits until its buffer's
// last transfer is done, copies the chunk in (computing its CRC-32 when asked), and submits it.
class staging_pipeline {
 public:
  // The buffers and what moves bytes out of them. Slot i is only ever touched by filling thread i.
  class backend {
   public:
    virtual ~backend() = default;
    virtual std::size_t slots() const = 0;
    virtual std::size_t slot_bytes() const = 0;
    // Runs first on filling thread `slot` (CUDA: select the device).
    virtual void start_thread(std::size_t slot) { (void)slot; }
    virtual std::byte* buffer(std::size_t slot) = 0;
    // Returns once the last transfer out of `slot` no longer reads its buffer.
    virtual void wait(std::size_t slot) = 0;
    // Starts moving the first n bytes of buffer(slot) to dst; may return before they land.
    virtual void submit(std::size_t slot, std::byte* dst, std::size_t n) = 0;
  };

  explicit staging_pipeline(backend& b) : b_(b), chunk_(std::max<std::size_t>(b.slot_bytes(), 1)) {
    const std::size_t n = std::max<std::size_t>(b.slots(), 1);
    threads_.reserve(n);
    try {
      for (std::size_t i = 0; i < n; ++i) threads_.emplace_back([this, i] { run(i); });
    } catch (...) {
      stop();
      throw;
    }
  }
  // Stops the filling threads after the chunks they hold; chunks still queued are dropped.
  ~staging_pipeline() { stop(); }
  staging_pipeline(const staging_pipeline&) = delete;
  staging_pipeline& operator=(const staging_pipeline&) = delete;

  // Queues src[0, n) -> dst[0, n) and returns a ticket; src must stay valid until wait_read(ticket)
  // or wait_all() returns. When crc is set, *crc holds the CRC-32 of src once they have returned.
  std::uint64_t enqueue(const std::byte* src, std::size_t n, std::byte* dst, std::uint32_t* crc) {
    return enqueue_batch(src, nullptr, 0, n, dst, crc);
  }
  // Queues bytes [offset, offset + n) of `file` -> dst[0, n): the filling threads read them with
  // file.copy_out(), which for a mapped file is pread() straight into the staging buffers (no page
  // faults on the map, no pass through other memory). `file` must stay alive as src above.
  std::uint64_t enqueue_file(const byte_source& file, std::uint64_t offset, std::size_t n,
                             std::byte* dst, std::uint32_t* crc) {
    return enqueue_batch(nullptr, &file, offset, n, dst, crc);
  }
  // Returns once every byte of copy `ticket` has been read into a buffer (its transfers may still
  // be in flight: the backend says when they land).
  void wait_read(std::uint64_t ticket) {
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] {
      for (const auto& b : queue_)
        if (b->id == ticket) return b->finished == b->chunks;
      return true;  // finished and gone
    });
    if (error_) std::rethrow_exception(error_);
  }
  // Returns once every queued copy has been read.
  void wait_all() {
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return queue_.empty(); });
    if (error_) std::rethrow_exception(error_);
  }
  // enqueue + wait_read.
  void copy(const std::byte* src, std::size_t n, std::byte* dst, std::uint32_t* crc) {
    wait_read(enqueue(src, n, dst, crc));
  }
  // The first failure of a filling thread or of the backend, if any. After one, every later call
  // rethrows it (queued chunks are skipped).
  std::exception_ptr failure() const {
    std::lock_guard<std::mutex> lk(m_);
    return error_;
  }

 private:
  struct batch {
    std::uint64_t id = 0;
    const std::byte* src = nullptr;
    const byte_source* file = nullptr;  // read from here, at file_offset, instead of src when set
    std::uint64_t file_offset = 0;
    std::byte* dst = nullptr;
    std::size_t n = 0, chunks = 0, claimed = 0, finished = 0;
    std::uint32_t* crc = nullptr;
    std::vector<std::uint32_t> crcs;  // per chunk
  };

  std::uint64_t enqueue_batch(const std::byte* src, const byte_source* file,
                              std::uint64_t file_offset, std::size_t n, std::byte* dst,
                              std::uint32_t* crc) {
    std::lock_guard<std::mutex> lk(m_);
    if (error_) std::rethrow_exception(error_);
    const std::uint64_t id = next_id_++;
    if (n == 0) {
      if (crc) *crc = 0;
      return id;
    }
    auto b = std::make_unique<batch>();
    b->id = id;
    b->src = src;
    b->file = file;
    b->file_offset = file_offset;
    b->dst = dst;
    b->n = n;
    b->chunks = (n + chunk_ - 1) / chunk_;
    b->crc = crc;
    if (crc) b->crcs.assign(b->chunks, 0);
    queue_.push_back(std::move(b));
    work_.notify_all();
    return id;
  }

  void stop() noexcept {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  void run(std::size_t slot) {
    bool ready = true;
    try {
      b_.start_thread(slot);
    } catch (...) {
      ready = false;
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      // Batches before claim_pos_ have had every chunk claimed.
      work_.wait(lk, [&] { return stop_ || claim_pos_ < queue_.size(); });
      if (stop_) return;
      batch* b = queue_[claim_pos_].get();
      const std::size_t i = b->claimed++;
      if (b->claimed == b->chunks) ++claim_pos_;
      const bool skip = !ready || error_ != nullptr;
      const std::size_t off = i * chunk_, len = std::min(chunk_, b->n - off);
      const bool want_crc = b->crc != nullptr;
      lk.unlock();
      std::uint32_t c = 0;
      std::exception_ptr failed;
      if (!skip) {
        try {
          b_.wait(slot);
          std::byte* buf = b_.buffer(slot);
          // Copy (or read) and checksum in pieces that stay in cache between the two passes.
          constexpr std::size_t piece = std::size_t{1} << 20;
          for (std::size_t o = 0; o < len; o += piece) {
            const std::size_t l = std::min(piece, len - o);
            if (b->file)
              b->file->copy_out(b->file_offset + off + o, std::span<std::byte>(buf + o, l));
            else
              std::memcpy(buf + o, b->src + off + o, l);
            if (want_crc) c = pthio::crc32(std::span<const std::byte>(buf + o, l), c);
          }
          b_.submit(slot, b->dst + off, len);
        } catch (...) {
          failed = std::current_exception();
        }
      }
      lk.lock();
      if (failed && !error_) error_ = failed;
      if (want_crc) b->crcs[i] = c;
      if (++b->finished == b->chunks) {
        if (want_crc) {
          std::uint32_t all = b->crcs[0];
          for (std::size_t k = 1; k < b->chunks; ++k)
            all = crc32_combine(all, b->crcs[k], std::min(chunk_, b->n - k * chunk_));
          *b->crc = all;
        }
        // Finished batches leave from the front, in order (a finished batch is fully claimed).
        while (!queue_.empty() && queue_.front()->finished == queue_.front()->chunks) {
          queue_.pop_front();
          --claim_pos_;
        }
        done_cv_.notify_all();
      }
    }
  }

  backend& b_;
  const std::size_t chunk_;
  mutable std::mutex m_;
  std::condition_variable work_, done_cv_;
  std::deque<std::unique_ptr<batch>> queue_;  // unfinished batches, oldest first
  std::size_t claim_pos_ = 0;
  std::uint64_t next_id_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace pthio::detail
