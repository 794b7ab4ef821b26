// zip_writer: the bytes torch's PyTorchStreamWriter writes (caffe2/serialize/inline_container.cc
// driving miniz's mz_zip_writer_add_mem_ex_v2 and mz_zip_writer_finalize_archive, with
// MZ_ZIP_FLAG_WRITE_ZIP64 and no timestamps), field for field.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "format.h"
#include "pthio/error.hpp"
#include "pthio/zip.hpp"

namespace pthio {

namespace {

using namespace detail::zip;

// The public header cannot name the internal constant; the two must agree.
static_assert(zip_writer::default_alignment == torch_alignment);

class header_buffer {
 public:
  void u16(std::uint64_t v) { le(v, 2); }
  void u32(std::uint64_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void text(std::string_view s) {
    for (char c : s) b_.push_back(static_cast<std::byte>(c));
  }
  void fill(std::size_t n, char c) { b_.insert(b_.end(), n, static_cast<std::byte>(c)); }
  std::size_t size() const noexcept { return b_.size(); }
  std::span<const std::byte> bytes() const noexcept { return b_; }
  void clear() noexcept { b_.clear(); }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xFF));
  }
  std::vector<std::byte> b_;
};

[[noreturn]] void misuse(const std::string& what) {
  throw error(errc::invalid_argument, "zip writer: " + what);
}

// miniz's zip64 extended information field (APPNOTE 4.5.3): uncompressed and compressed size
// when the size reaches 0xFFFFFFFF, the local header offset when it does. Note: in the local
// header miniz writes the compressed size as 0 (it is not known yet); the central copy is real.
void zip64_extra(header_buffer& h, bool sizes, std::uint64_t usize, std::uint64_t csize,
                 bool offset, std::uint64_t local_offset) {
  h.u16(zip64_extra_id);
  h.u16((sizes ? 16 : 0) + (offset ? 8 : 0));
  if (sizes) {
    h.u64(usize);
    h.u64(csize);
  }
  if (offset) h.u64(local_offset);
}

}  // namespace

// One background thread computing the CRC-32 of a span while the caller writes it: on a machine
// with a second core the checksum then costs no measurable wall time (BENCHMARKS.md; inline, it
// was a fifth of a 1 GiB save).
class crc_worker {
 public:
  crc_worker() : thread_([this] { run(); }) {}
  ~crc_worker() {
    {
      std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void start(std::span<const std::byte> data, std::uint32_t seed) {
    {
      std::lock_guard lock(m_);
      data_ = data;
      seed_ = seed;
      busy_ = true;
    }
    cv_.notify_all();
  }

  // Waits for the job started last; its CRC-32.
  std::uint32_t wait() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [this] { return !busy_; });
    return result_;
  }

  // Machines with one core gain nothing from the thread.
  static bool worthwhile() {
    static const bool yes = std::thread::hardware_concurrency() > 1;
    return yes;
  }

 private:
  void run() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [this] { return busy_ || stop_; });
      if (stop_) return;
      const auto data = data_;
      const auto seed = seed_;
      lock.unlock();
      const std::uint32_t r = crc32(data, seed);
      lock.lock();
      result_ = r;
      busy_ = false;
      cv_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::span<const std::byte> data_;
  std::uint32_t seed_ = 0;
  std::uint32_t result_ = 0;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;  // last: started once the members above exist
};

// CRC-32s of a list of spans, computed in order on a thread of its own; result(i) waits for
// span i only if the thread has not reached it yet (it runs at several GB/s, the writes it runs
// ahead of at the page cache's pace).
class crc_pipeline {
 public:
  explicit crc_pipeline(std::vector<std::span<const std::byte>> spans)
      : spans_(std::move(spans)), crcs_(spans_.size(), 0), thread_([this] { run(); }) {}
  ~crc_pipeline() {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  std::size_t size() const noexcept { return spans_.size(); }
  std::span<const std::byte> span(std::size_t i) const noexcept { return spans_[i]; }
  std::uint32_t result(std::size_t i) {
    if (done_.load(std::memory_order_acquire) <= i) {
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire) > i; });
    }
    return crcs_[i];
  }

 private:
  void run() {
    constexpr std::size_t piece = std::size_t{4} << 20;  // how often a destructor is noticed
    for (std::size_t i = 0; i < spans_.size(); ++i) {
      std::uint32_t c = 0;
      for (std::size_t off = 0; off < spans_[i].size(); off += piece) {
        if (stop_.load(std::memory_order_relaxed)) return;
        c = crc32(spans_[i].subspan(off, std::min(piece, spans_[i].size() - off)), c);
      }
      crcs_[i] = c;
      {
        std::lock_guard lock(m_);
        done_.store(i + 1, std::memory_order_release);
      }
      cv_.notify_all();
    }
  }

  std::vector<std::span<const std::byte>> spans_;
  std::vector<std::uint32_t> crcs_;
  std::atomic<std::size_t> done_{0};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;  // last: started once the members above exist
};

zip_writer::~zip_writer() = default;

void zip_writer::crc_ahead(std::vector<std::span<const std::byte>> contents) {
  if (ahead_ || finished_ || !compute_crc_ || !crc_worker::worthwhile()) return;
  // An empty entry has no write to match (and no CRC to wait for).
  std::erase_if(contents, [](std::span<const std::byte> c) { return c.empty(); });
  if (contents.empty()) return;
  try {
    ahead_ = std::make_unique<crc_pipeline>(std::move(contents));
  } catch (const std::system_error&) {
    return;  // no thread to be had: entries are checksummed as they are written
  }
  ahead_next_ = 0;
}

void zip_writer::write_pieces(std::span<const std::byte> data, bool crc) {
  // Written 1 MiB at a time, as file_sink writes (src/io.cpp); checksummed here, each piece is
  // CRC'd just before it is written, so the write reads it from cache.
  constexpr std::size_t piece = std::size_t{1} << 20;
  for (std::size_t off = 0; off < data.size(); off += piece) {
    const auto part = data.subspan(off, std::min(piece, data.size() - off));
    if (crc) cur_crc_ = crc32(part, cur_crc_);
    out_.write(part);
  }
}

zip_writer::zip_writer(sink& out, std::uint32_t alignment) : out_(out), alignment_(alignment) {
  // The "FB" field's length is a u16 holding up to alignment - 1 padding bytes.
  if (alignment_ == 0 || alignment_ > max_alignment)
    misuse("alignment " + std::to_string(alignment) + " is not between 1 and " +
           std::to_string(max_alignment));
}

void zip_writer::add(std::string_view name, std::span<const std::byte> data) {
  begin_entry(name, data.size());
  write(data);
  end_entry();
}

namespace {

void check_name(std::string_view name) {
  if (name.empty()) misuse("empty entry name");
  if (name.size() > u16_max)
    misuse("entry name of " + std::to_string(name.size()) + " bytes (at most 65535)");
  if (name.find('\0') != std::string_view::npos) misuse("entry name contains a NUL byte");
}

// miniz sets the descriptor bit only for entries with data, and writes a descriptor only for them.
std::uint16_t entry_flags(std::uint64_t planned) {
  return planned != 0 ? (flag_utf8 | flag_descriptor) : flag_utf8;
}

// The local header of an entry of `planned` bytes at `offset`, its data aligned to `alignment`.
void put_local_header(header_buffer& h, std::string_view name, std::uint64_t planned,
                      std::uint64_t offset, std::uint32_t alignment) {
  const bool zip64_sizes = planned >= u32_max;
  const bool zip64_offset = offset >= u32_max;
  const bool zip64 = zip64_sizes || zip64_offset;
  const std::size_t zip64_len =
      zip64 ? extra_header_size + (zip64_sizes ? 16 : 0) + (zip64_offset ? 8 : 0) : 0;
  const std::uint16_t flags = entry_flags(planned);

  // torch's getPadding(): an "FB" extra field (always present, possibly empty) of 'Z' bytes that
  // puts the data on a multiple of the alignment, counting the zip64 field before it.
  const std::uint64_t start =
      offset + local_header_size + name.size() + zip64_len + extra_header_size;
  const std::uint64_t padding = (alignment - start % alignment) % alignment;

  h.u32(local_header_sig);
  h.u16(0);  // version needed: miniz writes 0 for stored entries
  h.u16(flags);
  h.u16(method_stored);
  h.u16(0);  // DOS time: torch's miniz is built without time support
  h.u16(0);  // DOS date
  h.u32(0);  // CRC-32, compressed and uncompressed size: in the data descriptor
  h.u32(0);
  h.u32(0);
  h.u16(name.size());
  h.u16(zip64_len + extra_header_size + padding);
  h.text(name);
  if (zip64) zip64_extra(h, zip64_sizes, planned, 0, zip64_offset, offset);
  h.text(padding_field_id);
  h.u16(padding);
  h.fill(static_cast<std::size_t>(padding), padding_byte);
}

// The data descriptor (APPNOTE 4.3.9) after an entry with data; 8-byte sizes when the local
// header has a zip64 field (miniz: also when only the offset needed it) or the size needs them.
void put_descriptor(header_buffer& h, std::uint32_t crc, std::uint64_t size, bool local_zip64) {
  h.u32(descriptor_sig);
  h.u32(crc);
  if (local_zip64 || size >= u32_max) {
    h.u64(size);
    h.u64(size);
  } else {
    h.u32(size);
    h.u32(size);
  }
}

}  // namespace

void zip_writer::begin_entry(std::string_view name, std::optional<std::uint64_t> size) {
  if (finished_) misuse("begin_entry after finish");
  if (in_entry_) misuse("begin_entry while entry \"" + cur_name_ + "\" is open");
  check_name(name);
  const std::uint64_t offset = out_.position();
  // Unknown size: planned as torch plans a small non-empty entry; end_entry() copes with the rest.
  header_buffer h;
  put_local_header(h, name, size.value_or(1), offset, alignment_);
  out_.write(h.bytes());

  in_entry_ = true;
  cur_name_ = std::string(name);
  cur_local_ = offset;
  cur_size_ = 0;
  cur_crc_ = 0;
  cur_declared_ = size;
}

void zip_writer::write(std::span<const std::byte> data) {
  if (!in_entry_)
    misuse(finished_ ? "write after finish" : "write outside an entry (call begin_entry first)");
  if (data.empty()) return;
  if (cur_declared_ && data.size() > *cur_declared_ - cur_size_)
    misuse("entry \"" + cur_name_ + "\" declared " + std::to_string(*cur_declared_) +
           " bytes but more are written");
  if (compute_crc_ && ahead_ && ahead_next_ < ahead_->size()) {
    const auto next = ahead_->span(ahead_next_);
    const bool continues = (cur_size_ == 0 || cur_ahead_) &&
                           data.data() == next.data() + cur_size_ &&
                           data.size() <= next.size() - cur_size_;
    if (continues) {
      cur_ahead_ = true;  // its CRC-32 comes from the pipeline at end_entry()
      write_pieces(data, false);
      cur_size_ += data.size();
      return;
    }
    if (cur_ahead_) {  // the entry left its announced span: checksum what was written of it here
      cur_crc_ = crc32(next.first(static_cast<std::size_t>(cur_size_)));
      cur_ahead_ = false;
      cur_left_ahead_ = true;  // the span was this entry's all the same: the next one is expected
    }
  }
  // From 256 KiB on, the CRC-32 runs on the worker thread while this one writes.
  constexpr std::size_t parallel_crc_size = std::size_t{256} << 10;
  crc_worker* worker = nullptr;
  if (compute_crc_ && data.size() >= parallel_crc_size && crc_worker::worthwhile()) {
    if (!crc_worker_) crc_worker_ = std::make_unique<crc_worker>();
    worker = crc_worker_.get();
    worker->start(data, cur_crc_);
  }
  // `data` may be released when this returns: the worker is waited for, even when a write throws.
  struct joiner {
    crc_worker* w;
    ~joiner() {
      if (w) (void)w->wait();
    }
  } join{worker};
  write_pieces(data, compute_crc_ && !worker);
  if (worker) cur_crc_ = worker->wait();
  cur_size_ += data.size();
}

void zip_writer::end_entry() {
  if (!in_entry_) misuse(finished_ ? "end_entry after finish" : "end_entry without begin_entry");
  if (cur_declared_ && cur_size_ != *cur_declared_)
    misuse("entry \"" + cur_name_ + "\" declared " + std::to_string(*cur_declared_) +
           " bytes but " + std::to_string(cur_size_) + " were written");
  if (ahead_ && ahead_next_ < ahead_->size()) {
    if (cur_ahead_) {
      const auto next = ahead_->span(ahead_next_);
      if (cur_size_ == next.size()) {
        cur_crc_ = ahead_->result(ahead_next_);
        ++checksummed_ahead_;
      } else {
        cur_crc_ = crc32(next.first(static_cast<std::size_t>(cur_size_)));
      }
      ++ahead_next_;
    } else if (cur_left_ahead_) {
      ++ahead_next_;
    }
    cur_ahead_ = cur_left_ahead_ = false;
  }
  const std::uint64_t planned = cur_declared_.value_or(1);
  const bool local_zip64 = planned >= u32_max || cur_local_ >= u32_max;
  const std::uint16_t flags = entry_flags(planned);
  if (flags & flag_descriptor) {
    header_buffer h;
    put_descriptor(h, cur_crc_, cur_size_, local_zip64);
    out_.write(h.bytes());
  }
  done_.push_back(written{std::move(cur_name_), cur_local_, cur_size_, cur_crc_, flags});
  in_entry_ = false;
  cur_name_.clear();
  cur_declared_.reset();
}

void zip_writer::finish() {
  if (finished_) misuse("finish called twice");
  if (in_entry_) misuse("finish while entry \"" + cur_name_ + "\" is open");
  ahead_.reset();  // announced spans are not read past this point
  {
    std::vector<std::string_view> names;
    names.reserve(done_.size());
    for (const written& w : done_) names.emplace_back(w.name);
    std::sort(names.begin(), names.end());
    auto dup = std::adjacent_find(names.begin(), names.end());
    if (dup != names.end()) misuse("duplicate entry name \"" + std::string(*dup) + "\"");
  }

  // miniz writes the central directory at offset 0 with size 0 when there are no entries.
  const std::uint64_t cd_offset = done_.empty() ? 0 : out_.position();
  std::uint64_t cd_size = 0;
  header_buffer h;
  for (const written& w : done_) {
    const bool zip64_sizes = w.size >= u32_max;
    const bool zip64_offset = w.local_offset >= u32_max;
    const std::size_t zip64_len =
        (zip64_sizes || zip64_offset)
            ? extra_header_size + (zip64_sizes ? 16 : 0) + (zip64_offset ? 8 : 0)
            : 0;
    h.clear();
    h.u32(central_header_sig);
    h.u16(0);  // version made by: miniz leaves it 0
    h.u16(0);  // version needed (stored)
    h.u16(w.flags);
    h.u16(method_stored);
    h.u16(0);  // time
    h.u16(0);  // date
    h.u32(w.crc);
    h.u32(std::min(w.size, u32_max));
    h.u32(std::min(w.size, u32_max));
    h.u16(w.name.size());
    h.u16(zip64_len);
    h.u16(0);  // comment length
    h.u16(0);  // disk number start
    h.u16(0);  // internal attributes
    h.u32(0);  // external attributes
    h.u32(std::min(w.local_offset, u32_max));
    h.text(w.name);
    if (zip64_len) zip64_extra(h, zip64_sizes, w.size, w.size, zip64_offset, w.local_offset);
    out_.write(h.bytes());
    cd_size += h.size();
  }

  // Zip64 end record and locator (APPNOTE 4.3.14, 4.3.15), always, as torch asks miniz for zip64.
  const std::uint64_t zip64_end_offset = out_.position();
  const std::uint64_t n = done_.size();
  h.clear();
  h.u32(zip64_end_sig);
  h.u64(zip64_end_size - zip64_end_size_field_excludes);
  h.u16(version_made_by_miniz);
  h.u16(version_needed_zip64);
  h.u32(0);  // this disk
  h.u32(0);  // disk with the central directory
  h.u64(n);
  h.u64(n);
  h.u64(cd_size);
  h.u64(cd_offset);
  h.u32(zip64_locator_sig);
  h.u32(0);  // disk with the zip64 end record
  h.u64(zip64_end_offset);
  h.u32(1);  // total disks
  // End of central directory record (APPNOTE 4.3.16), values clamped as miniz does.
  h.u32(end_sig);
  h.u16(0);
  h.u16(0);
  h.u16(std::min(n, u16_max));
  h.u16(std::min(n, u16_max));
  h.u32(std::min(cd_size, u32_max));
  h.u32(std::min(cd_offset, u32_max));
  h.u16(0);  // comment length
  out_.write(h.bytes());
  finished_ = true;
}

}  // namespace pthio
