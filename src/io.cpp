#include "pthio/io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "pthio/error.hpp"

namespace pthio {

namespace {

[[noreturn]] void throw_io(const std::string& what, const std::filesystem::path& p, int err) {
  throw error(errc::io, what + ": " + std::strerror(err), p.string());
}

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

std::uint64_t file_size_of(int fd, const std::filesystem::path& p) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_io("cannot stat", p, errno);
  if (S_ISDIR(st.st_mode)) throw error(errc::io, "is a directory", p.string());
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace

byte_source byte_source::map_file(const std::filesystem::path& path) {
  fd_guard f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw_io("cannot open", path, errno);
  std::uint64_t size = file_size_of(f.fd, path);
  if (size == 0) {
    byte_source s(nullptr, {}, path.string());
    s.mapped_ = true;
    return s;
  }
  // MAP_PRIVATE with write access: tensors over the map may be modified in-process without
  // touching the file (copy-on-write pages).
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) throw_io("cannot mmap", path, errno);
  auto owner = std::shared_ptr<const void>(
      p, [size](const void* q) { ::munmap(const_cast<void*>(q), size); });
  byte_source s(std::move(owner),
                {static_cast<const std::byte*>(p), static_cast<std::size_t>(size)}, path.string());
  s.mapped_ = true;
  s.fd_ = std::shared_ptr<const int>(new int(f.fd), [](const int* fd) {
    ::close(*fd);
    delete fd;
  });
  f.fd = -1;  // now owned by fd_
  return s;
}

void byte_source::copy_out(std::uint64_t offset, std::span<std::byte> out) const {
  if (!fd_) {
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return;
  }
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(*fd_, out.data() + done, out.size() - done,
                        static_cast<off_t>(base_ + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The file shrank or cannot be read: the map's bytes are what the reader saw so far.
      if (n < 0) throw_io("cannot read", name_, errno);
      throw error(errc::io, "file shrank while being read", name_, offset + done);
    }
    done += static_cast<std::size_t>(n);
  }
}

byte_source byte_source::sub(std::uint64_t offset, std::uint64_t length, std::string name) const {
  if (offset > bytes_.size() || length > bytes_.size() - offset)
    throw error(errc::invalid_argument, "bytes " + std::to_string(offset) + " to " +
                                            std::to_string(offset) + " + " +
                                            std::to_string(length) + " are not inside the " +
                                            std::to_string(bytes_.size()) + " bytes of " + name_);
  byte_source s = *this;
  s.bytes_ = bytes_.subspan(static_cast<std::size_t>(offset), static_cast<std::size_t>(length));
  s.base_ = base_ + offset;
  s.name_ = std::move(name);
  return s;
}

byte_source byte_source::read_file(const std::filesystem::path& path) {
  fd_guard f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw_io("cannot open", path, errno);
  std::uint64_t size = file_size_of(f.fd, path);
  auto buf = std::make_shared<std::vector<std::byte>>();
  try {
    buf->resize(static_cast<std::size_t>(size));
  } catch (const std::bad_alloc&) {
    throw error(errc::limit_exceeded, "cannot allocate " + std::to_string(size) + " bytes",
                path.string());
  }
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, 1u << 30));
    ssize_t n = ::read(f.fd, buf->data() + done, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("cannot read", path, errno);
    }
    if (n == 0) throw error(errc::io, "file shrank while being read", path.string());
    done += static_cast<std::uint64_t>(n);
  }
  std::span<const std::byte> view(buf->data(), buf->size());
  return adopt(std::shared_ptr<const void>(buf, buf.get()), view, path.string());
}

byte_source byte_source::from_vector(std::vector<std::byte> data, std::string name) {
  auto buf = std::make_shared<std::vector<std::byte>>(std::move(data));
  std::span<const std::byte> view(buf->data(), buf->size());
  return adopt(std::shared_ptr<const void>(buf, buf.get()), view, std::move(name));
}

byte_source byte_source::adopt(std::shared_ptr<const void> owner, std::span<const std::byte> bytes,
                               std::string name) {
  byte_source s(std::move(owner), bytes, std::move(name));
  s.owned_ = true;
  return s;
}

byte_source byte_source::borrow(std::span<const std::byte> data, std::string name) {
  return byte_source(nullptr, data, std::move(name));
}

void memory_sink::write(const void* data, std::size_t n) {
  auto p = static_cast<const std::byte*>(data);
  buffer_.insert(buffer_.end(), p, p + n);
}

namespace {
// Small writes are gathered and written 1 MiB at a time (pieces that stay in cache while the
// kernel copies them; larger write() calls measured anywhere from 0.6x to 3.5x the time of 1 MiB
// ones on the development VM, so no larger size is better everywhere).
constexpr std::size_t sink_buffer_size = 1u << 20;
// Writes at least this large go to the file from the caller's memory (after what the buffer holds,
// in the same writev), not through the buffer: copying them first made a 1 GiB save of 1 MiB
// tensors 3.5x slower (BENCHMARKS.md, "Changes measured").
constexpr std::size_t direct_write_size = 256u << 10;
}  // namespace

file_sink::file_sink(std::filesystem::path target) : target_(std::move(target)) {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<std::uint64_t>(::getpid()));
  for (int attempt = 0; attempt < 16; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".pthio-tmp-%016llx",
                  static_cast<unsigned long long>(rng()));
    temp_ = target_;
    temp_ += suffix;
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) break;
    if (errno != EEXIST) throw_io("cannot create temporary file", temp_, errno);
  }
  if (fd_ < 0) throw error(errc::io, "cannot create a unique temporary file", target_.string());
  buffer_.reserve(sink_buffer_size);
}

file_sink::~file_sink() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
}

void file_sink::flush() {
  const std::byte* p = buffer_.data();
  std::size_t left = buffer_.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("cannot write", temp_, errno);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void file_sink::write(const void* data, std::size_t n) {
  if (committed_ || fd_ < 0)
    throw error(errc::invalid_argument, "write after commit", target_.string());
  auto p = static_cast<const std::byte*>(data);
  constexpr std::size_t observed_piece = std::size_t{64} << 20;
  if (on_write && n > observed_piece) {
    for (std::size_t done = 0; done < n; done += observed_piece)
      write(p + done, std::min(observed_piece, n - done));
    return;
  }
  if (n < direct_write_size) {
    if (buffer_.size() + n > sink_buffer_size) flush();
    buffer_.insert(buffer_.end(), p, p + n);
    position_ += n;
    if (on_write) on_write(position_);
    return;
  }
  // The buffered bytes, then these, in one writev; a short write resumes where it stopped.
  iovec iov[2] = {{buffer_.data(), buffer_.size()}, {const_cast<std::byte*>(p), n}};
  iovec* v = buffer_.empty() ? iov + 1 : iov;
  int count = buffer_.empty() ? 1 : 2;
  while (count > 0) {
    ssize_t w = ::writev(fd_, v, count);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_io("cannot write", temp_, errno);
    }
    auto left = static_cast<std::size_t>(w);
    while (count > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --count;
    }
    if (count > 0) {
      v->iov_base = static_cast<std::byte*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
  buffer_.clear();
  position_ += n;
  if (on_write) on_write(position_);
}

void file_sink::commit() {
  if (committed_) return;
  flush();
  if (::fsync(fd_) != 0) throw_io("cannot fsync", temp_, errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw_io("cannot close", temp_, errno);
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    throw_io("cannot rename into place", target_, errno);
  committed_ = true;
  auto dir = target_.parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: makes the rename durable
    ::close(dfd);
  }
}

}  // namespace pthio
