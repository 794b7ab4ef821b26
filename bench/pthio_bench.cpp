// pthio_bench: times one pthio operation per run, measured inside this process around the
// operation alone, and prints one JSON line per run. bench/compare.py drives it, interleaved with
// torch, safetensors and the page-cache read references; BENCHMARKS.md holds the results.
//
//   pthio_bench load FILE --eager|--mmap|--lazy [--device cpu|cuda:N] [--repeat R] [--no-crc]
//                    [--threads N]
//       seconds: load_checkpoint + reading the first tensor's first byte (host tensors). mmap and
//       lazy also report first_tensor_seconds (the same span: open + parse + first tensor) and
//       parse_seconds (load_checkpoint alone). rss_delta_kib: resident memory added by the load;
//       rss_anon_delta_kib the part the process allocated, rss_file_delta_kib the page-cache pages
//       of the file the load mapped in (shared with the page cache, not allocated).
//   pthio_bench save FILE (--size-mib N --tensors K | --from SRC) [--repeat R]
//                    [--sink file|nofsync|null] [--crc] [--no-crc]
//       seconds: pthio::save of a state dict of K float32 tensors (N MiB in all), or of SRC's root
//       loaded untimed. --sink file (default) is pthio::save(path): temporary, fsync, rename.
//       nofsync writes the same bytes through a plain buffered fd (what torch.save does: no
//       fsync; it gathers and writes as file_sink does). null discards the bytes (pickling, zip
//       structure and CRC only). --crc also times
//       pthio::crc32 (libdeflate) over the same tensor bytes: crc_seconds.
//       --no-crc saves with save_options::compute_crc32 = false (CRC fields 0): the difference to a
//       save with CRCs is what the CRC-32 costs the save.
//   pthio_bench read FILE [--method fresh|reuse|staging-map|staging-pread] [--repeat R]
//       The memcpy-class reference: read() of the whole file from the page cache into a freshly
//       allocated buffer (fresh) or into a pre-faulted buffer (reuse). The staging methods fill a
//       ring of four pre-faulted 8 MiB buffers with the whole file, as a load to a GPU fills its
//       pinned buffers: from a fresh mmap of the file with memcpy (staging-map, every page of the
//       map faulted on the way) or with pread() in 1 MiB pieces (staging-pread), one thread.
//   pthio_bench crc FILE [--repeat R]
//       pthio::crc32 over the file's bytes, already in memory.
//   pthio_bench zip FILE [--repeat R]
//       Opening the file's zip structure alone (map, central directory, every local header):
//       pthio::zip_reader's constructor, the part of an mmap load that touches pages across the
//       file.
//   pthio_bench write FILE --size-mib N [--method plain|big|crc-chunked] [--piece-kib K] [--repeat
//   R]
//       The write reference: N MiB from memory to a new FILE, no fsync, with write() --piece-kib
//       at a time (default 1024, as zip_writer writes; plain), in 64 MiB calls (big: measured
//       2-3.5x slower into the page cache here), or each piece CRC-32'd then written (crc-chunked,
//       zip_writer on one core).
//
//   pthio_bench slice FILE KEY SPEC [--whole]
//       One process, one measurement: a lazy load_checkpoint, then checkpoint::load_slice(KEY,
//       SPEC) (--whole: load_tensor(KEY), the whole tensor, as the reference). seconds: both
//       together; file_bytes_read: what the process took from FILE, read() and pread() bytes
//       (/proc/self/io rchar, less this program's own reads of /proc); file_bytes_mapped: the
//       pages of FILE resident in its map (/proc/self/smaps); max_rss_kib the peak.
//   pthio_bench shard FILE --rank R --world W
//       Rank R's part of every tensor: shard_range along dimension 0 (0-d tensors whole), lazily,
//       one tensor at a time; file_bytes_read and _mapped as for slice. Run once per rank, the
//       ranks' bytes add up to what a tensor-parallel load reads in all.
//
// Output keys: op, mode, bytes (storage bytes for load/save, file bytes for read/crc), tensors,
// seconds (wall clock), cpu_seconds (this process's CPU time over the same span), plus the extras
// above and max_rss_kib (getrusage, the process's peak so far).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "pthio/pthio.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of this process (all threads): less disturbed than wall time by other work on the
// machine.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "pthio_bench: %s\n"
               "usage: pthio_bench load FILE --eager|--mmap|--lazy [--device cpu|cuda:N] [--repeat "
               "R] [--no-crc] [--threads N]\n"
               "       pthio_bench save FILE (--size-mib N --tensors K | --from SRC) [--repeat R]\n"
               "                        [--sink file|nofsync|null] [--crc] [--no-crc]\n"
               "       pthio_bench read FILE [--method fresh|reuse|staging-map|staging-pread] "
               "[--repeat R]\n"
               "       pthio_bench crc FILE [--repeat R]\n"
               "       pthio_bench zip FILE [--repeat R]\n"
               "       pthio_bench write FILE --size-mib N [--method plain|big|crc-chunked] "
               "[--piece-kib K]\n"
               "       pthio_bench slice FILE KEY SPEC [--whole]\n"
               "       pthio_bench shard FILE --rank R --world W\n",
               why.c_str());
  std::exit(2);
}

long max_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Current resident set from /proc/self/status: all of it, anonymous pages (what the process
// allocated) and file pages (a map's pages of the page cache, shared with it, dropped at will).
struct rss {
  long total = -1, anon = -1, file = -1;
};
rss rss_now() {
  rss r;
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return r;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    long v = 0;
    if (std::sscanf(line, "VmRSS: %ld", &v) == 1)
      r.total = v;
    else if (std::sscanf(line, "RssAnon: %ld", &v) == 1)
      r.anon = v;
    else if (std::sscanf(line, "RssFile: %ld", &v) == 1)
      r.file = v;
  }
  std::fclose(f);
  return r;
}

// The first tensor depth first, in the file's order (visit_tensors' order), without visiting the
// rest.
const pthio::tensor* first_tensor(const pthio::value& v) {
  using k = pthio::value::kind;
  switch (v.type()) {
    case k::tensor: return &v.as_tensor();
    case k::dict:
      for (const auto& [key, c] : v.as_dict().entries())
        if (auto t = first_tensor(c)) return t;
      return nullptr;
    case k::list:
    case k::tuple:
      for (const auto& c : v.items())
        if (auto t = first_tensor(c)) return t;
      return nullptr;
    case k::object: {
      const auto& o = v.as_object();
      if (o.has_state && o.state.is_dict())
        for (const auto& [key, c] : o.state.as_dict().entries())
          if (auto t = first_tensor(c)) return t;
      for (const auto& c : o.list_items)
        if (auto t = first_tensor(c)) return t;
      for (const auto& [key, c] : o.dict_items)
        if (auto t = first_tensor(c)) return t;
      return nullptr;
    }
    default: return nullptr;
  }
}

volatile unsigned char sink_byte;
volatile std::uint32_t crc_sink;

// Reads the first tensor's first byte (host tensors; a device load has landed when load returns).
// Reads the first tensor's first byte; a lazy checkpoint reads that tensor's record first.
bool touch_first(const pthio::checkpoint& ck) {
  const pthio::tensor* t = first_tensor(ck.root);
  if (!t) return false;
  const pthio::tensor loaded = ck.load_tensor(*t);
  if (!loaded.dev().is_cpu() || loaded.numel() == 0) return false;
  sink_byte = static_cast<unsigned char>(*loaded.raw_data());
  return true;
}

struct counts {
  std::size_t tensors = 0;
  std::uint64_t bytes = 0;  // each storage once
};

counts count(const pthio::value& root) {
  counts c;
  std::unordered_set<const void*> seen;
  pthio::visit_tensors(root, [&](const std::string&, const pthio::value& v) {
    ++c.tensors;
    const auto& s = v.as_tensor().get_storage();
    if (seen.insert(s.id()).second) c.bytes += s.nbytes();
  });
  return c;
}

struct args {
  std::string op, file, mode = "eager", device = "cpu", from, sink = "file",
                        method;  // method: per op default
  int repeat = 1;
  std::uint64_t size_mib = 0;
  std::size_t tensors = 0;
  std::size_t piece_kib = 1024;
  bool crc = false, no_crc = false;
  unsigned threads = 0;   // load_options::threads
  std::string key, spec;  // slice
  bool whole = false;
  long long rank = 0, world = 1;  // shard
};

args parse(int argc, char** argv) {
  if (argc < 3) usage("missing operation or file");
  args a;
  a.op = argv[1];
  a.file = argv[2];
  auto need = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  int first_option = 3;
  if (a.op == "slice") {
    if (argc < 5) usage("slice needs FILE KEY SPEC");
    a.key = argv[3];
    a.spec = argv[4];
    first_option = 5;
  }
  for (int i = first_option; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--whole")
      a.whole = true;
    else if (s == "--rank")
      a.rank = std::atoll(need(i).c_str());
    else if (s == "--world")
      a.world = std::atoll(need(i).c_str());
    else if (s == "--eager" || s == "--mmap" || s == "--lazy")
      a.mode = s.substr(2);
    else if (s == "--device")
      a.device = need(i);
    else if (s == "--repeat")
      a.repeat = std::atoi(need(i).c_str());
    else if (s == "--size-mib")
      a.size_mib = std::strtoull(need(i).c_str(), nullptr, 10);
    else if (s == "--tensors")
      a.tensors = std::strtoull(need(i).c_str(), nullptr, 10);
    else if (s == "--from")
      a.from = need(i);
    else if (s == "--piece-kib")
      a.piece_kib = std::strtoull(need(i).c_str(), nullptr, 10);
    else if (s == "--sink")
      a.sink = need(i);
    else if (s == "--method")
      a.method = need(i);
    else if (s == "--crc")
      a.crc = true;
    else if (s == "--no-crc")
      a.no_crc = true;
    else if (s == "--threads")
      a.threads = static_cast<unsigned>(std::stoul(need(i)));
    else
      usage("unknown option " + s);
  }
  if (a.repeat < 1) usage("--repeat must be at least 1");
  if (a.method.empty()) a.method = a.op == "write" ? "plain" : "fresh";
  return a;
}

int run_load(const args& a) {
  pthio::load_options o;
  if (a.mode == "eager") {
    o.mode = pthio::load_mode::eager;
  } else if (a.mode == "mmap") {
    o.mode = pthio::load_mode::mmap;
  } else {
    o.mode = pthio::load_mode::lazy;
  }
  o.map_location = pthio::map_location(a.device);
  o.verify_crc = !a.no_crc;
  o.threads = a.threads;
  for (int r = 0; r < a.repeat; ++r) {
    const rss rss0 = rss_now();
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    pthio::checkpoint ck = pthio::load_checkpoint(a.file, o);
    const double parse = since(t0);
    const bool touched = touch_first(ck);
    const double total = since(t0);
    const double cpu = cpu_now() - c0;
    const rss rss1 = rss_now();
    counts c = count(ck.root);
    std::printf(
        "{\"op\": \"load\", \"mode\": \"%s\", \"device\": \"%s\", \"bytes\": %llu, \"tensors\": "
        "%zu, "
        "\"seconds\": %.9f, \"cpu_seconds\": %.9f",
        a.mode.c_str(), a.device.c_str(), static_cast<unsigned long long>(c.bytes), c.tensors,
        total, cpu);
    if (a.mode != "eager") std::printf(", \"first_tensor_seconds\": %.9f", total);
    std::printf(
        ", \"parse_seconds\": %.9f, \"touched\": %s, \"crc\": %s, \"rss_delta_kib\": %ld, "
        "\"rss_anon_delta_kib\": %ld, \"rss_file_delta_kib\": %ld, \"max_rss_kib\": %ld}\n",
        parse, touched ? "true" : "false", o.verify_crc ? "true" : "false", rss1.total - rss0.total,
        rss1.anon - rss0.anon, rss1.file - rss0.file, max_rss_kib());
    std::fflush(stdout);
  }
  return 0;
}

// A buffered sink over a plain file descriptor: what file_sink does (small writes gathered in a
// 1 MiB buffer, writes of 256 KiB or more written from the caller's memory behind the buffered
// bytes in one writev), without the temporary, the fsync and the rename, none of which
// torch.save does.
class fd_sink final : public pthio::sink {
 public:
  explicit fd_sink(const std::string& path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw pthio::error(pthio::errc::io, std::string("cannot create: ") + std::strerror(errno),
                         path);
    buf_.reserve(cap_);
  }
  ~fd_sink() override {
    put(buf_.data(), buf_.size(), nullptr, 0);
    ::close(fd_);
  }
  void write(const void* data, std::size_t n) override {
    auto p = static_cast<const std::byte*>(data);
    if (n < direct_) {
      if (buf_.size() + n > cap_) {
        put(buf_.data(), buf_.size(), nullptr, 0);
        buf_.clear();
      }
      buf_.insert(buf_.end(), p, p + n);
    } else {
      put(buf_.data(), buf_.size(), p, n);
      buf_.clear();
    }
    pos_ += n;
  }
  std::uint64_t position() const override { return pos_; }

 private:
  static constexpr std::size_t cap_ = 1u << 20, direct_ = 256u << 10;
  void put(const std::byte* a, std::size_t na, const std::byte* b, std::size_t nb) {
    iovec iov[2] = {{const_cast<std::byte*>(a), na}, {const_cast<std::byte*>(b), nb}};
    iovec* v = iov;
    int count = 2;
    while (count > 0 && v->iov_len == 0) ++v, --count;
    while (count > 0) {
      ssize_t w = ::writev(fd_, v, count);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw pthio::error(pthio::errc::io, std::string("cannot write: ") + std::strerror(errno));
      }
      auto left = static_cast<std::size_t>(w);
      while (count > 0 && left >= v->iov_len) left -= v->iov_len, ++v, --count;
      if (count > 0) v->iov_base = static_cast<std::byte*>(v->iov_base) + left, v->iov_len -= left;
    }
  }
  int fd_ = -1;
  std::uint64_t pos_ = 0;
  std::vector<std::byte> buf_;
};

class null_sink final : public pthio::sink {
 public:
  void write(const void*, std::size_t n) override { pos_ += n; }
  std::uint64_t position() const override { return pos_; }

 private:
  std::uint64_t pos_ = 0;
};

pthio::value synthetic_state_dict(std::uint64_t size_mib, std::size_t k) {
  if (k == 0) usage("--tensors must be at least 1");
  const std::uint64_t total = size_mib << 20;
  const std::uint64_t per = total / 4 / k;  // float32 elements per tensor
  pthio::value sd = pthio::value::make_ordered_dict();
  for (std::size_t i = 0; i < k; ++i) {
    pthio::tensor t = pthio::tensor::zeros(pthio::dtype::float32, {static_cast<std::int64_t>(per)});
    float* d = t.data<float>();
    for (std::uint64_t j = 0; j < per; ++j)
      d[j] = static_cast<float>((i * 131 + j) % 1021) * 0.001f;
    sd.as_dict().set(pthio::value("layers." + std::to_string(i) + ".weight"), pthio::value(t));
  }
  return sd;
}

int run_save(const args& a) {
  pthio::value root;
  if (!a.from.empty()) {
    root = pthio::load_checkpoint(a.from).root;
  } else {
    if (a.size_mib == 0 || a.tensors == 0) usage("save needs --size-mib and --tensors, or --from");
    root = synthetic_state_dict(a.size_mib, a.tensors);
  }
  counts c = count(root);
  pthio::save_options so;
  so.archive_name = std::filesystem::path(a.file).stem().string();
  so.serialization_id =
      "1234567890123456789012345678901234567890";  // fixed: runs compare byte for byte
  so.compute_crc32 = !a.no_crc;
  for (int r = 0; r < a.repeat; ++r) {
    // A previous run's file is removed untimed: truncating 1 GiB of page cache is not saving.
    ::unlink(a.file.c_str());
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    if (a.sink == "file") {
      pthio::save(a.file, root, so);
    } else if (a.sink == "nofsync") {
      fd_sink out(a.file);
      pthio::save(out, root, so);
    } else if (a.sink == "null") {
      null_sink out;
      pthio::save(out, root, so);
    } else {
      usage("--sink is file, nofsync or null");
    }
    const double s = since(t0);
    const double cpu = cpu_now() - c0;
    std::printf(
        "{\"op\": \"save\", \"mode\": \"%s\", \"bytes\": %llu, \"tensors\": %zu, \"seconds\": "
        "%.9f, "
        "\"cpu_seconds\": %.9f",
        a.sink.c_str(), static_cast<unsigned long long>(c.bytes), c.tensors, s, cpu);
    if (a.crc) {
      std::unordered_set<const void*> seen;
      std::uint32_t crc = 0;
      const double c1 = cpu_now();
      auto t1 = clock_type::now();
      pthio::visit_tensors(root, [&](const std::string&, const pthio::value& v) {
        const auto& st = v.as_tensor().get_storage();
        if (seen.insert(st.id()).second) crc ^= pthio::crc32({st.data(), st.nbytes()});
      });
      const double crc_s = since(t1);
      std::printf(", \"crc_seconds\": %.9f, \"crc_cpu_seconds\": %.9f, \"crc_value\": %u", crc_s,
                  cpu_now() - c1, crc);
    }
    std::printf(", \"max_rss_kib\": %ld}\n", max_rss_kib());
    std::fflush(stdout);
  }
  return 0;
}

std::uint64_t file_size(const std::string& path, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::perror(path.c_str());
    std::exit(3);
  }
  return static_cast<std::uint64_t>(st.st_size);
}

void read_all(int fd, std::byte* dst, std::uint64_t n) {
  std::uint64_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(fd, dst + done, std::min<std::uint64_t>(n - done, 1u << 30),
                          static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      std::perror("read");
      std::exit(3);
    }
    done += static_cast<std::uint64_t>(got);
  }
}

int run_read(const args& a) {
  int fd = ::open(a.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror(a.file.c_str());
    return 3;
  }
  const std::uint64_t n = file_size(a.file, fd);
  std::byte* reused = nullptr;
  if (a.method == "reuse") {
    reused = static_cast<std::byte*>(std::aligned_alloc(64, (n + 63) / 64 * 64));
    std::memset(reused, 1, n);  // pre-faulted: the timed read is the copy alone
  }
  const bool staging = a.method == "staging-map" || a.method == "staging-pread";
  constexpr std::size_t ring = 4, slot = std::size_t{8} << 20, piece = std::size_t{1} << 20;
  std::vector<std::byte> slots;
  if (staging) slots.assign(ring * slot, std::byte{1});  // pre-faulted, as pinned memory is
  for (int r = 0; r < a.repeat; ++r) {
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    std::byte* buf = reused;
    if (staging) {
      void* map = nullptr;
      if (a.method == "staging-map") {
        map = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
          std::perror("mmap");
          return 3;
        }
      }
      for (std::uint64_t off = 0, k = 0; off < n; off += slot, ++k) {
        std::byte* dst = slots.data() + (k % ring) * slot;
        const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(slot, n - off));
        if (map) {
          std::memcpy(dst, static_cast<const std::byte*>(map) + off, len);
        } else {
          for (std::size_t o = 0; o < len; o += piece) {
            const std::size_t l = std::min(piece, len - o);
            if (::pread(fd, dst + o, l, static_cast<off_t>(off + o)) != static_cast<ssize_t>(l)) {
              std::perror("pread");
              return 3;
            }
          }
        }
      }
      if (map) ::munmap(map, n);
      buf = slots.data();
    } else if (a.method == "fresh") {
      buf = static_cast<std::byte*>(std::aligned_alloc(64, (n + 63) / 64 * 64));
    } else if (a.method != "reuse") {
      usage("--method is fresh, reuse, staging-map or staging-pread");
    }
    if (!staging) read_all(fd, buf, n);
    sink_byte = static_cast<unsigned char>(buf[staging ? 0 : n / 2]);
    const double s = since(t0);
    const double cpu = cpu_now() - c0;
    if (buf != reused && !staging) std::free(buf);
    std::printf(
        "{\"op\": \"read\", \"mode\": \"%s\", \"bytes\": %llu, \"tensors\": 0, \"seconds\": %.9f, "
        "\"cpu_seconds\": %.9f, \"max_rss_kib\": %ld}\n",
        a.method.c_str(), static_cast<unsigned long long>(n), s, cpu, max_rss_kib());
    std::fflush(stdout);
  }
  std::free(reused);
  ::close(fd);
  return 0;
}

int run_crc(const args& a) {
  int fd = ::open(a.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror(a.file.c_str());
    return 3;
  }
  const std::uint64_t n = file_size(a.file, fd);
  std::vector<std::byte> buf(n);
  read_all(fd, buf.data(), n);
  ::close(fd);
  for (int r = 0; r < a.repeat; ++r) {
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    std::uint32_t c = pthio::crc32(buf);
    const double s = since(t0);
    const double cpu = cpu_now() - c0;
    std::printf(
        "{\"op\": \"crc\", \"mode\": \"libdeflate\", \"bytes\": %llu, \"tensors\": 0, \"seconds\": "
        "%.9f, "
        "\"cpu_seconds\": %.9f, \"crc_value\": %u}\n",
        static_cast<unsigned long long>(n), s, cpu, c);
    std::fflush(stdout);
  }
  return 0;
}

int run_zip(const args& a) {
  for (int r = 0; r < a.repeat; ++r) {
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    pthio::zip_reader z(pthio::byte_source::map_file(a.file));
    const double s = since(t0);
    const double cpu = cpu_now() - c0;
    std::printf(
        "{\"op\": \"zip\", \"mode\": \"open\", \"bytes\": %llu, \"tensors\": 0, \"entries\": %zu, "
        "\"seconds\": %.9f, \"cpu_seconds\": %.9f}\n",
        static_cast<unsigned long long>(z.source().size()), z.entries().size(), s, cpu);
    std::fflush(stdout);
  }
  return 0;
}

void write_all(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      std::perror("write");
      std::exit(3);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

int run_write(const args& a) {
  if (a.size_mib == 0) usage("write needs --size-mib");
  const std::size_t n = static_cast<std::size_t>(a.size_mib) << 20;
  std::vector<std::byte> src(n);
  for (std::size_t i = 0; i < n; ++i) src[i] = static_cast<std::byte>((i * 2654435761u) >> 13);
  constexpr std::size_t call = 64u << 20;
  const std::size_t piece = std::max<std::size_t>(a.piece_kib, 1) << 10;
  for (int r = 0; r < a.repeat; ++r) {
    ::unlink(
        a.file.c_str());  // as save: the previous run's file removed untimed, creating it timed
    const double c0 = cpu_now();
    auto t0 = clock_type::now();
    int fd = ::open(a.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::perror(a.file.c_str());
      return 3;
    }
    std::uint32_t crc = 0;
    if (a.method == "plain" || a.method == "big") {
      const std::size_t step = a.method == "big" ? call : piece;
      for (std::size_t off = 0; off < n; off += step)
        write_all(fd, src.data() + off, std::min(step, n - off));
    } else if (a.method == "crc-chunked") {
      for (std::size_t off = 0; off < n; off += piece) {
        const std::size_t len = std::min(piece, n - off);
        crc = pthio::crc32({src.data() + off, len}, crc);
        write_all(fd, src.data() + off, len);
      }
    } else {
      usage("--method is plain, big or crc-chunked");
    }
    const double s = since(t0);
    const double cpu = cpu_now() - c0;
    ::close(fd);
    crc_sink = crc;
    std::printf(
        "{\"op\": \"write\", \"mode\": \"%s\", \"bytes\": %zu, \"tensors\": 0, \"seconds\": %.9f, "
        "\"cpu_seconds\": %.9f, \"crc_value\": %u}\n",
        a.method.c_str(), n, s, cpu, crc);
    std::fflush(stdout);
  }
  return 0;
}

// Bytes read() and pread() brought into this process so far (/proc/self/io's rchar); -1 where
// there is no such file.
long long rchar_now() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (!f) return -1;
  char line[128];
  long long v = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "rchar: %lld", &v) == 1) break;
  std::fclose(f);
  return v;
}

// Resident KiB of this process's mappings of `path` (/proc/self/smaps): the file's pages a load
// touched through its map (the pickle, the zip's directory).
long mapped_kib(const std::string& path) {
  std::FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[4096];
  bool in = false;
  long total = 0;
  while (std::fgets(line, sizeof line, f)) {
    std::string l(line);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    // A mapping's header: "start-end perms offset dev inode   path".
    const bool header = !l.empty() && std::isxdigit(static_cast<unsigned char>(l[0])) &&
                        l.find('-') != std::string::npos && l.find(':') > l.find(' ');
    if (header) {
      in = l.size() >= path.size() && l.compare(l.size() - path.size(), path.size(), path) == 0;
      continue;
    }
    long v = 0;
    if (in && std::sscanf(line, "Rss: %ld", &v) == 1) total += v;
  }
  std::fclose(f);
  return total;
}

// What a measured span took from `path`: read() and pread() bytes (/proc/self/io's rchar, less
// this program's own reading of /proc/self/io, which each reading counts only in the next one),
// and the file's pages resident in this process's map of it (the kernel maps whole folios around a
// touched byte, up to 2 MiB on ext4 with large folios, so this overstates what was looked at).
// Call mapped() while the checkpoint (its map) is alive.
struct file_reads {
  std::string path;
  long long rchar0 = 0, overhead = 0;
  explicit file_reads(std::string p) : path(std::filesystem::absolute(p).string()) {
    const long long a = rchar_now();
    rchar0 = rchar_now();
    overhead = rchar0 - a;  // one reading of /proc/self/io
  }
  long long read() const { return std::max(0LL, rchar_now() - rchar0 - overhead); }
  long long mapped() const { return mapped_kib(path) * 1024; }
};

int run_slice(const args& a) {
  pthio::load_options o;
  o.mode = pthio::load_mode::lazy;
  o.map_location = pthio::map_location(a.device);
  const pthio::slice sl = pthio::slice::parse(a.spec);
  file_reads reads(a.file);
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = cpu_now();
  pthio::checkpoint ck = pthio::load_checkpoint(a.file, o);
  pthio::tensor t = a.whole ? ck.load_tensor(a.key) : ck.load_slice(a.key, sl);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_now() - c0;
  const long long read = reads.read(), mapped = reads.mapped();
  std::printf(
      "{\"op\": \"slice\", \"mode\": \"%s\", \"key\": \"%s\", \"spec\": \"%s\", \"shape\": \"%s\", "
      "\"bytes\": %zu, \"seconds\": %.9f, \"cpu_seconds\": %.9f, \"file_bytes_read\": %lld, "
      "\"file_bytes_mapped\": %lld, \"max_rss_kib\": %ld}\n",
      a.whole ? "whole" : "slice", a.key.c_str(), a.whole ? "" : sl.str().c_str(),
      pthio::shape_string(t.shape()).c_str(), t.nbytes(), s, cpu, read, mapped, max_rss_kib());
  return 0;
}

int run_shard(const args& a) {
  pthio::load_options o;
  o.mode = pthio::load_mode::lazy;
  o.map_location = pthio::map_location(a.device);
  file_reads reads(a.file);
  const auto t0 = std::chrono::steady_clock::now();
  pthio::checkpoint ck = pthio::load_checkpoint(a.file, o);
  std::size_t bytes = 0, tensors = 0;
  pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
    const pthio::tensor& p = v.as_tensor();
    pthio::tensor t = p.dim() == 0
                          ? ck.load_tensor(key)
                          : ck.load_slice(key, pthio::shard_slice(p.shape(), 0, a.rank, a.world));
    bytes += t.nbytes();
    ++tensors;
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "{\"op\": \"shard\", \"rank\": %lld, \"world\": %lld, \"tensors\": %zu, \"bytes\": %zu, "
      "\"seconds\": %.9f, \"file_bytes_read\": %lld, \"file_bytes_mapped\": %lld, "
      "\"max_rss_kib\": %ld}\n",
      a.rank, a.world, tensors, bytes, s, reads.read(), reads.mapped(), max_rss_kib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  args a = parse(argc, argv);
  try {
    if (a.op == "load") return run_load(a);
    if (a.op == "save") return run_save(a);
    if (a.op == "read") return run_read(a);
    if (a.op == "crc") return run_crc(a);
    if (a.op == "zip") return run_zip(a);
    if (a.op == "write") return run_write(a);
    if (a.op == "slice") return run_slice(a);
    if (a.op == "shard") return run_shard(a);
    usage("unknown operation " + a.op);
  } catch (const pthio::error& e) {
    std::fprintf(stderr, "pthio_bench: %s\n", e.what());
    return 3;
  }
}
