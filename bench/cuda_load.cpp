// Loading a checkpoint straight to cuda:0, against the reference measured in the same run: pinned
// host-to-device cudaMemcpy bandwidth (the ceiling; docs/architecture.md: >= 80% of it), with the
// pageable cudaMemcpy and the page-cache memcpy rates beside it.
//
//   pthio_bench_cuda_load [FILE] [--make-mib N] [--tensors K] [--repeat R] [--mmap] [--no-crc]
//                         [--staging BUFFERSxMIB] [--pread]
//
// --pread: records reach the staging buffers by pread() from the file, not memcpy from the map
// (staging_options::pread_mapped_files).
//
// Without FILE it first writes N MiB (default 1024) of float32 in K tensors (default 64) to a
// temporary file, removed at the end. The file is read once before timing, so every load comes
// from the page cache. Each load is timed from the call to its return (load() returns once every
// storage has landed on the device); the rate counts each storage's bytes once.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "pthio/pthio.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Host-to-device cudaMemcpy of `bytes` from pinned or pageable memory: best GB/s over `repeat`.
double h2d_rate(std::size_t bytes, bool pinned, int repeat) {
  void* host = nullptr;
  void* dev = nullptr;
  std::vector<std::byte> pageable;
  if (pinned) {
    cuda_check(cudaHostAlloc(&host, bytes, cudaHostAllocDefault), "cudaHostAlloc");
  } else {
    pageable.assign(bytes, std::byte{1});
    host = pageable.data();
  }
  std::memset(host, 1, bytes);
  cuda_check(cudaMalloc(&dev, bytes), "cudaMalloc");
  cudaEvent_t a, b;
  cuda_check(cudaEventCreate(&a), "cudaEventCreate");
  cuda_check(cudaEventCreate(&b), "cudaEventCreate");
  cuda_check(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "warm-up cudaMemcpy");
  double best = 0;
  for (int i = 0; i < repeat; ++i) {
    cuda_check(cudaEventRecord(a), "cudaEventRecord");
    cuda_check(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda_check(cudaEventRecord(b), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    best = std::max(best, static_cast<double>(bytes) / (ms * 1e-3) / 1e9);
  }
  (void)cudaEventDestroy(a);
  (void)cudaEventDestroy(b);
  (void)cudaFree(dev);
  if (pinned) (void)cudaFreeHost(host);
  return best;
}

// memcpy from the file's page-cache pages (a fresh mapping each time) into a 64 MiB buffer.
double page_cache_rate(const std::filesystem::path& path, int repeat) {
  std::vector<std::byte> buf(std::size_t{64} << 20);
  double best = 0;
  for (int i = 0; i < repeat; ++i) {
    auto src = pthio::byte_source::map_file(path);
    auto all = src.bytes();
    auto t0 = clock_type::now();
    for (std::size_t off = 0; off < all.size(); off += buf.size()) {
      std::size_t n = std::min(buf.size(), all.size() - off);
      std::memcpy(buf.data(), all.data() + off, n);
    }
    best = std::max(best, static_cast<double>(all.size()) / seconds_since(t0) / 1e9);
  }
  return best;
}

[[noreturn]] void usage() {
  std::fprintf(
      stderr,
      "usage: pthio_bench_cuda_load [FILE] [--make-mib N] [--tensors K] [--repeat R] [--mmap] "
      "[--no-crc] [--staging BUFFERSxMIB] [--pread]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path file;
  std::size_t make_mib = 1024, tensors = 64;
  int repeat = 5;
  pthio::load_options opt;
  opt.map_location = "cuda:0";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--make-mib")
      make_mib = std::stoull(next());
    else if (a == "--tensors")
      tensors = std::max<std::size_t>(1, std::stoull(next()));
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(next()));
    else if (a == "--mmap")
      opt.mode = pthio::load_mode::mmap;
    else if (a == "--no-crc")
      opt.verify_crc = false;
    else if (a == "--pread") {
      auto st = pthio::cuda::get_staging_options();
      st.pread_mapped_files = true;
      pthio::cuda::set_staging_options(st);
    } else if (a == "--staging") {
      std::string s = next();
      auto x = s.find('x');
      if (x == std::string::npos) usage();
      auto st = pthio::cuda::get_staging_options();
      st.buffers = std::stoull(s.substr(0, x));
      st.buffer_bytes = std::stoull(s.substr(x + 1)) << 20;
      pthio::cuda::set_staging_options(st);
    } else if (!a.empty() && a[0] == '-')
      usage();
    else
      file = a;
  }
  if (!pthio::cuda_available()) {
    std::fprintf(stderr, "no CUDA device (%s)\n", pthio::cuda_unavailable_reason().c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s\n", prop.name);

  bool made = false;
  if (file.empty()) {
    file = std::filesystem::temp_directory_path() /
           ("pthio_cuda_bench_" + std::to_string(::getpid()) + ".pth");
    const std::int64_t per = static_cast<std::int64_t>((make_mib << 20) / tensors / 4);
    pthio::value root = pthio::value::make_ordered_dict();
    for (std::size_t t = 0; t < tensors; ++t) {
      pthio::tensor x = pthio::tensor::zeros(pthio::dtype::float32, {per});
      for (std::int64_t j = 0; j < per; ++j)
        x.data<float>()[j] = static_cast<float>((j * 31 + t) % 1000) * 0.001f;
      root.as_dict().set(pthio::value("layer" + std::to_string(t) + ".weight"), pthio::value(x));
    }
    auto t0 = clock_type::now();
    pthio::save(file, root);
    std::printf("wrote %s: %zu tensors, %.1f MiB in %.2f s\n", file.c_str(), tensors,
                static_cast<double>(std::filesystem::file_size(file)) / (1 << 20),
                seconds_since(t0));
    made = true;
  }

  // Bring the file into the page cache, and count its storage bytes (each storage once).
  std::uint64_t bytes = 0;
  {
    pthio::load_options cpu = opt;
    cpu.map_location = "cpu";
    pthio::value v = pthio::load(file, cpu);
    std::set<const void*> seen;
    pthio::visit_tensors(v, [&](const std::string&, const pthio::value& t) {
      const auto& s = t.as_tensor().get_storage();
      if (seen.insert(s.id()).second) bytes += s.nbytes();
    });
  }

  const double pinned = h2d_rate(std::size_t{256} << 20, true, repeat);
  const double pageable = h2d_rate(std::size_t{256} << 20, false, repeat);
  const double cache = page_cache_rate(file, repeat);

  std::vector<double> rates;
  (void)pthio::load(file, opt);  // warm-up: CUDA context, staging buffers
  for (int i = 0; i < repeat; ++i) {
    auto t0 = clock_type::now();
    pthio::value v = pthio::load(file, opt);
    const double s = seconds_since(t0);
    rates.push_back(static_cast<double>(bytes) / s / 1e9);
  }
  const double best = *std::max_element(rates.begin(), rates.end()), med = median(rates);
  const auto st = pthio::cuda::get_staging_options();
  std::printf("checkpoint: %s, %.1f MiB of storages, mode %s, crc %s, staging %zu x %zu MiB%s\n",
              file.c_str(), static_cast<double>(bytes) / (1 << 20),
              opt.mode == pthio::load_mode::mmap ? "mmap" : "eager", opt.verify_crc ? "on" : "off",
              st.buffers, st.buffer_bytes >> 20, st.pread_mapped_files ? ", pread" : "");
  std::printf("pinned   H2D cudaMemcpy (256 MiB): %7.2f GB/s   <- reference\n", pinned);
  std::printf("pageable H2D cudaMemcpy (256 MiB): %7.2f GB/s\n", pageable);
  std::printf("page-cache memcpy (the file)     : %7.2f GB/s\n", cache);
  std::printf(
      "pthio::load to cuda:0            : %7.2f GB/s best, %.2f median of %d = %.0f%% / %.0f%% of "
      "pinned "
      "H2D (target >= 80%%)\n",
      best, med, repeat, 100 * best / pinned, 100 * med / pinned);
  if (made) std::filesystem::remove(file);
  return 0;
}
