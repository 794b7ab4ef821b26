// CUDA: availability, device storages, host<->device copies, loading to and saving from a GPU,
// cuBLAS. Tests that need a device check cuda_available() first and otherwise skip, visibly
// (pthio_test::skip: CTest reports them Skipped with the reason), and return; the rest (the build
// flag, the errors without a device, the staging pipeline on a fake backend, CRC-32 combination)
// run everywhere.
#ifndef PTHIO_TESTS_CUDA_BUILT
#error "the build defines PTHIO_TESTS_CUDA_BUILT (0 or 1) for this file"
#endif

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if PTHIO_TESTS_CUDA_BUILT
#include <cuda_runtime_api.h>
#endif

#include <thread>

#include "cuda/common.h"
#include "cuda/staging.h"
#include "pthio/eigen.hpp"
#include "pthio/pthio.hpp"
#include "support.h"

namespace {

using pthio::device;
using pthio::dtype;
using pthio::tensor;

const device cuda0 = device::parse("cuda:0");

// True when a device is present; otherwise skips, or fails under PTHIO_TESTS_REQUIRE_CUDA=1.
bool need_device() { return pthio_test::need_cuda(); }

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> b(n);
  for (auto& x : b) x = static_cast<std::byte>(rng() & 0xff);
  return b;
}

// A contiguous host tensor of `t` filled with arbitrary bytes (floats: values in [-1, 1]).
tensor random_tensor(dtype t, pthio::shape_t shape, unsigned seed) {
  tensor r = tensor::zeros(t, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto n = static_cast<std::size_t>(r.numel());
  if (t == dtype::float32) {
    for (std::size_t i = 0; i < n; ++i) r.data<float>()[i] = u(rng);
  } else if (t == dtype::float16 || t == dtype::bfloat16) {
    auto* p = reinterpret_cast<std::uint16_t*>(r.raw_data());
    for (std::size_t i = 0; i < n; ++i)
      p[i] = t == dtype::float16 ? pthio::float_to_half(u(rng)) : pthio::float_to_bfloat16(u(rng));
  } else if (t == dtype::bool_) {
    for (std::size_t i = 0; i < n; ++i) r.raw_data()[i] = static_cast<std::byte>(rng() & 1);
  } else {
    auto b = random_bytes(r.nbytes(), seed);
    if (!b.empty()) std::memcpy(r.raw_data(), b.data(), b.size());
  }
  return r;
}

// A fake transfer engine: a submitted chunk lands only when its slot is waited on or drained, so a
// pipeline that refilled a buffer without waiting would deliver the wrong bytes.
struct fake_backend final : pthio::detail::staging_pipeline::backend {
  fake_backend(std::size_t slots, std::size_t bytes)
      : bufs(slots, std::vector<std::byte>(bytes)), in_flight(slots) {}
  std::size_t slots() const override { return bufs.size(); }
  std::size_t slot_bytes() const override { return bufs[0].size(); }
  std::byte* buffer(std::size_t slot) override { return bufs[slot].data(); }
  void wait(std::size_t slot) override { land(slot); }
  void submit(std::size_t slot, std::byte* dst, std::size_t n) override {
    if (in_flight[slot].dst) broken = true;  // submitted over a transfer nobody waited for
    in_flight[slot] = {dst, n};
    if (++submits == fail_at) throw pthio::error(pthio::errc::cuda, "injected transfer failure");
  }
  void land(std::size_t slot) {
    auto& p = in_flight[slot];
    if (p.dst) std::memcpy(p.dst, bufs[slot].data(), p.n);
    p = {};
  }
  void drain() {
    for (std::size_t i = 0; i < bufs.size(); ++i) land(i);
  }
  struct pending {
    std::byte* dst = nullptr;
    std::size_t n = 0;
  };
  std::vector<std::vector<std::byte>> bufs;
  std::vector<pending> in_flight;
  std::atomic<int> submits{0};
  int fail_at = -1;
  std::atomic<bool> broken{false};
};

// Restores the default staging options when a test that changed them ends.
struct staging_restore {
  pthio::cuda::staging_options saved = pthio::cuda::get_staging_options();
  ~staging_restore() { pthio::cuda::set_staging_options(saved); }
};

// The elements of a device tensor read back with a plain cudaMemcpy of the bytes its view spans,
// strided on the host: a witness that does not go through pthio's own download (staging buffers,
// gather kernel).
tensor plain_download(const tensor& d) {
  std::size_t last = 0;
  for (std::size_t i = 0; i < d.shape().size(); ++i)
    last += static_cast<std::size_t>(d.shape()[i] - 1) * static_cast<std::size_t>(d.strides()[i]);
  const std::size_t reach = d.numel() == 0 ? 0 : (last + 1) * d.element_size();
  pthio::storage h = pthio::storage::allocate(reach);
#if PTHIO_TESTS_CUDA_BUILT
  if (reach) REQUIRE(cudaMemcpy(h.data(), d.raw_data(), reach, cudaMemcpyDefault) == cudaSuccess);
#else
  FAIL("plain_download needs a CUDA build");
#endif
  return tensor(h, d.dtype(), d.shape(), d.strides(), 0).contiguous();
}

void check_same(const tensor& got, const tensor& want) {
  REQUIRE(got.defined());
  CHECK(got.dtype() == want.dtype());
  CHECK(got.shape() == want.shape());
  tensor h = got.dev().is_cpu() ? got : got.to(pthio::cpu_device);
  CHECK(h.dev().is_cpu());
  CHECK(h.bytes() == want.bytes());
  if (got.dev().is_cuda()) CHECK(plain_download(got).bytes() == want.bytes());
}

// Every tensor of `v` with its key, in visit order.
std::vector<std::pair<std::string, tensor>> tensors_of(const pthio::value& v) {
  std::vector<std::pair<std::string, tensor>> out;
  pthio::visit_tensors(
      v, [&](const std::string& k, const pthio::value& t) { out.emplace_back(k, t.as_tensor()); });
  return out;
}

// `got` (loaded to cuda:0) and `want` (loaded to the CPU) hold the same keys and elements.
void check_loaded_to_gpu(const pthio::value& got, const pthio::value& want) {
  auto g = tensors_of(got), w = tensors_of(want);
  REQUIRE(g.size() == w.size());
  REQUIRE_FALSE(g.empty());
  for (std::size_t i = 0; i < g.size(); ++i) {
    CAPTURE(g[i].first);
    CHECK(g[i].first == w[i].first);
    CHECK(g[i].second.dev() == cuda0);
    check_same(g[i].second, w[i].second);
  }
}

// A zip checkpoint rewritten entry by entry: `edit` may change an entry's name and bytes, or drop
// it (returns false). CRC-32s are computed afresh.
template <class F>
std::vector<std::byte> rewrite_zip(const std::vector<std::byte>& in, F edit) {
  pthio::zip_reader zip(pthio::byte_source::borrow(in));
  pthio::memory_sink out;
  pthio::zip_writer w(out);
  for (const auto& e : zip.entries()) {
    std::string name = e.name;
    auto span = zip.read(e, true);
    std::vector<std::byte> data(span.begin(), span.end());
    if (edit(name, data)) w.add(name, data);
  }
  w.finish();
  return std::move(out.buffer());
}

// `rel` (a zip fixture saved on cuda:0) with its storages' location rewritten to `location`, a
// string of the same length ("cuda:1"): as if saved on that device.
std::vector<std::byte> saved_on(const char* rel, const std::string& location) {
  return rewrite_zip(pthio_test::read_bytes(pthio_test::fixture(rel)),
                     [&](std::string& name, std::vector<std::byte>& data) {
                       if (!name.ends_with("/data.pkl")) return true;
                       std::string text(reinterpret_cast<const char*>(data.data()), data.size());
                       std::size_t n = 0;
                       for (auto at = text.find("cuda:0"); at != std::string::npos;
                            at = text.find("cuda:0", at + 1), ++n)
                         std::memcpy(data.data() + at, location.data(), 6);
                       REQUIRE(n > 0);
                       return true;
                     });
}

// |got - want| <= atol + rtol |want| elementwise, got any float dtype, want float32 (host).
void check_close(const tensor& got, const tensor& want, float atol, float rtol) {
  tensor g = got.to(pthio::cpu_device).to(dtype::float32).contiguous();
  tensor w = want.contiguous();
  REQUIRE(g.shape() == w.shape());
  int bad = 0;
  for (std::int64_t i = 0; i < g.numel(); ++i) {
    float a = g.data<float>()[i], b = w.data<float>()[i];
    if (!(std::fabs(a - b) <= atol + rtol * std::fabs(b)) && bad++ < 5)
      FAIL_CHECK("element " << i << ": got " << a << ", want " << b);
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_SUITE("cuda") {
  TEST_CASE("cuda: cuda_built() reflects the build, and the queries agree") {
    CHECK(pthio::cuda_built() == static_cast<bool>(PTHIO_TESTS_CUDA_BUILT));
    CHECK(pthio::cuda_available() == (pthio::cuda_device_count() > 0));
    if (!pthio::cuda_built()) {
      CHECK_FALSE(pthio::cuda_available());
      CHECK(pthio::cuda_unavailable_reason() == "pthio was built without CUDA");
    } else if (pthio::cuda_available()) {
      CHECK(pthio::cuda_unavailable_reason().empty());
    } else {
      CHECK(pthio::cuda_unavailable_reason().starts_with("cudaGetDeviceCount: "));
    }
    MESSAGE("CUDA built: " << pthio::cuda_built() << ", devices: " << pthio::cuda_device_count()
                           << " " << pthio::cuda_unavailable_reason());
  }

  TEST_CASE(
      "cuda: without a device, loading a GPU-saved file to cuda:0 fails naming map_location") {
    if (pthio::cuda_available()) {
      pthio_test::skip("a CUDA device is present: this case checks the errors without one");
      return;
    }
    for (const char* rel : {"t1/cuda.pth", "t1/cuda_legacy.pth"}) {
      CAPTURE(rel);
      pthio::load_options o;
      o.map_location = "cuda:0";
      try {
        (void)pthio::load(pthio_test::fixture(rel), o);
        FAIL("loaded to cuda:0 without a device");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::cuda);
        const std::string what = e.what();
        CHECK(what.find("map_location") != std::string::npos);
        CHECK(what.find("cuda:0") != std::string::npos);
        CHECK(what.find(pthio::cuda_unavailable_reason()) != std::string::npos);
      }
    }
  }

  TEST_CASE("cuda: without a device, device storages and copies throw errc::cuda") {
    if (pthio::cuda_available()) {
      pthio_test::skip("a CUDA device is present: this case checks the errors without one");
      return;
    }
    CHECK_THROWS_WITH_AS(pthio::storage::allocate(16, cuda0), doctest::Contains("cuda:0"),
                         pthio::error);
    try {
      (void)pthio::storage::allocate(16, cuda0);
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::cuda);
    }
    for (auto fn : {+[] {
                      (void)tensor::zeros(dtype::float32, {2, 2}, cuda0);
                    },
                    +[] {
                      (void)tensor::zeros(dtype::float32, {2, 2}).to(cuda0);
                    },
                    +[] { pthio::cuda::synchronize(cuda0); }}) {
      try {
        fn();
        FAIL("no error");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::cuda);
      }
    }
    tensor a = tensor::zeros(dtype::float32, {2, 2}), c = tensor::zeros(dtype::float32, {2, 2});
    CHECK_THROWS_AS(pthio::cuda::gemm(a, a, c), pthio::error);
  }

  TEST_CASE("cuda: staging options are checked") {
    staging_restore restore;
    auto d = pthio::cuda::get_staging_options();
    CHECK(d.buffers >= 2);
    CHECK(d.buffer_bytes >= (std::size_t{1} << 20));
    pthio::cuda::set_staging_options({3, std::size_t{1} << 20});
    CHECK(pthio::cuda::get_staging_options().buffers == 3);
    CHECK(pthio::cuda::get_staging_options().buffer_bytes == std::size_t{1} << 20);
    CHECK_THROWS_AS(pthio::cuda::set_staging_options({0, std::size_t{1} << 20}), pthio::error);
    CHECK_THROWS_AS(pthio::cuda::set_staging_options({2, 1000}), pthio::error);
    CHECK_THROWS_AS(pthio::cuda::set_staging_options({17, std::size_t{1} << 20}), pthio::error);
  }

  TEST_CASE("cuda: crc32_combine equals the CRC-32 of the concatenation") {
    auto b = random_bytes(100'003, 7);
    std::span<const std::byte> all(b);
    for (std::size_t cut :
         {std::size_t{0}, std::size_t{1}, std::size_t{4096}, std::size_t{65537}, b.size()}) {
      CAPTURE(cut);
      auto a = all.first(cut), rest = all.subspan(cut);
      CHECK(pthio::detail::crc32_combine(pthio::crc32(a), pthio::crc32(rest), rest.size()) ==
            pthio::crc32(all));
    }
  }

  TEST_CASE(
      "cuda: the staging pipeline delivers every byte, waits before reusing a buffer, and sums "
      "CRC-32") {
    fake_backend be(3, 1000);
    std::vector<std::size_t> sizes{0, 1, 999, 1000, 1001, 2999, 3000, 3001, 12345, 100'000};
    std::vector<std::vector<std::byte>> src, dst;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      src.push_back(random_bytes(sizes[i], static_cast<unsigned>(i + 1)));
      dst.emplace_back(sizes[i], std::byte{0xee});
    }
    {
      pthio::detail::staging_pipeline p(be);
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        CAPTURE(sizes[i]);
        std::uint32_t crc = 1;
        p.copy(src[i].data(), sizes[i], dst[i].data(), i % 2 ? &crc : nullptr);
        if (i % 2) CHECK(crc == pthio::crc32(src[i]));
      }
      CHECK_FALSE(p.failure());
    }
    be.drain();
    CHECK_FALSE(be.broken);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      CAPTURE(sizes[i]);
      CHECK(dst[i] == src[i]);
    }
  }

  TEST_CASE("cuda: queued copies, many small and some large, all land with their CRC-32") {
    fake_backend be(4, 4096);
    std::vector<std::vector<std::byte>> src, dst;
    std::vector<std::uint32_t> crcs;
    std::mt19937 rng(5);
    for (int i = 0; i < 300; ++i) {
      std::size_t n = i % 50 == 0 ? 50'000 + rng() % 10'000 : rng() % 3000;
      src.push_back(random_bytes(n, static_cast<unsigned>(100 + i)));
      dst.emplace_back(n, std::byte{0xee});
    }
    crcs.assign(src.size(), 1);
    {
      pthio::detail::staging_pipeline p(be);
      std::vector<std::uint64_t> tickets;
      for (std::size_t i = 0; i < src.size(); ++i)
        tickets.push_back(p.enqueue(src[i].data(), src[i].size(), dst[i].data(), &crcs[i]));
      p.wait_read(tickets[150]);
      p.wait_all();
      CHECK_FALSE(p.failure());
    }
    be.drain();
    CHECK_FALSE(be.broken);
    for (std::size_t i = 0; i < src.size(); ++i) {
      CAPTURE(i);
      CHECK(dst[i] == src[i]);
      CHECK(crcs[i] == pthio::crc32(src[i]));
    }
  }

  TEST_CASE("cuda: a failed transfer surfaces from the staging pipeline, and sticks") {
    fake_backend be(2, 4096);
    be.fail_at = 3;
    auto src = random_bytes(40'000, 3);
    std::vector<std::byte> dst(src.size());
    pthio::detail::staging_pipeline p(be);
    CHECK_THROWS_WITH_AS(p.copy(src.data(), src.size(), dst.data(), nullptr),
                         "injected transfer failure", pthio::error);
    CHECK(p.failure());
    CHECK_THROWS_AS(p.copy(src.data(), 10, dst.data(), nullptr), pthio::error);
  }

  // ---- with a device
  // ------------------------------------------------------------------------------

  TEST_CASE("cuda: device storages are zeroed, on their device, and freed with the last handle") {
    if (!need_device()) return;
    pthio::storage s = pthio::storage::allocate(1000, cuda0);
    CHECK(s.dev() == cuda0);
    CHECK(s.nbytes() == 1000);
    CHECK(s.data() != nullptr);
    check_same(tensor(s, dtype::uint8, {1000}, {1}), tensor::zeros(dtype::uint8, {1000}));
    // "cuda" is the current device, spelled with its index.
    CHECK(pthio::storage::allocate(8, device::parse("cuda")).dev() == cuda0);
    CHECK(pthio::storage::allocate(0, cuda0).nbytes() == 0);
    // 64 x 4 GiB is more than any GPU holds: passes only if each storage is freed with its handle.
    for (int i = 0; i < 64; ++i) {
      pthio::storage big = pthio::storage::allocate(std::size_t{4} << 30, cuda0);
      CHECK(big.use_count() == 1);
    }
  }

  TEST_CASE("cuda: a missing device index and an impossible size give clear errc::cuda errors") {
    if (!need_device()) return;
    const int n = pthio::cuda_device_count();
    const device missing(pthio::device_type::cuda, n);
    const std::string want = "cuda:" + std::to_string(n) + " requested, " + std::to_string(n) +
                             (n == 1 ? " device present" : " devices present");
    CHECK_THROWS_WITH_AS(pthio::storage::allocate(16, missing), doctest::Contains(want.c_str()),
                         pthio::error);
    CHECK_THROWS_WITH_AS(tensor::zeros(dtype::float32, {4}).to(missing),
                         doctest::Contains(want.c_str()), pthio::error);
    pthio::load_options o;
    o.map_location = missing;
    CHECK_THROWS_WITH_AS(pthio::load(pthio_test::fixture("t1/cuda.pth"), o),
                         doctest::Contains(want.c_str()), pthio::error);
    try {
      (void)pthio::storage::allocate(std::size_t{1} << 50, cuda0);
      FAIL("allocated 1 PiB");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::cuda);
      CHECK(std::string(e.what()).find("1125899906842624 bytes") != std::string::npos);
      CHECK(std::string(e.what()).find("out of device memory") != std::string::npos);
    }
    // The failure left nothing behind: the device still works.
    check_same(tensor::zeros(dtype::int32, {3}, cuda0), tensor::zeros(dtype::int32, {3}));
  }

  TEST_CASE("cuda: tensor::to() round-trips every element size, contiguous or not") {
    if (!need_device()) return;
    for (dtype t : {dtype::uint8, dtype::bool_, dtype::float16, dtype::bfloat16, dtype::float32,
                    dtype::int64, dtype::float64, dtype::complex64, dtype::complex128}) {
      CAPTURE(std::string(pthio::dtype_name(t)));
      tensor h = random_tensor(t, {3, 5, 7}, 11);
      tensor d = h.to(cuda0);
      CHECK(d.dev() == cuda0);
      CHECK(d.is_contiguous());
      check_same(d, h);
      // Views of device memory come back as the host's views of the same bytes.
      check_same(d.transpose(0, 2), h.transpose(0, 2).contiguous());
      check_same(d.narrow(1, 1, 3), h.narrow(1, 1, 3).contiguous());
      check_same(d.as_strided({3, 3}, {35, 2}, 1), h.as_strided({3, 3}, {35, 2}, 1).contiguous());
      // Host views go up as contiguous copies.
      tensor up = h.transpose(0, 1).to(cuda0);
      CHECK(up.is_contiguous());
      check_same(up, h.transpose(0, 1).contiguous());
      // clone() on the device: contiguous, same values.
      tensor c = d.transpose(1, 2).clone();
      CHECK(c.dev() == cuda0);
      CHECK(c.is_contiguous());
      check_same(c, h.transpose(1, 2).contiguous());
      check_same(d.clone(), h);
    }
    tensor g = random_tensor(dtype::float32, {4}, 2);
    g.set_requires_grad(true);
    CHECK(g.to(cuda0).requires_grad());
    check_same(tensor::zeros(dtype::float32, {0, 3}).to(cuda0),
               tensor::zeros(dtype::float32, {0, 3}));
  }

  TEST_CASE("cuda: strided copies past the kernel's dimensions and at odd alignment") {
    if (!need_device()) return;
    // 13 dimensions that cannot merge: the host fallback.
    pthio::shape_t shape(13, 2);
    tensor h = random_tensor(dtype::int16, shape, 5);
    pthio::shape_t rev_shape = shape, rev_strides(h.strides().rbegin(), h.strides().rend());
    tensor hv = h.as_strided(rev_shape, rev_strides, 0);
    check_same(h.to(cuda0).as_strided(rev_shape, rev_strides, 0), hv.contiguous());
    // float64 elements at an address aligned to 4 bytes only: the kernel moves them in 4-byte
    // units.
    tensor src = random_tensor(dtype::float64, {8}, 9);
    std::vector<std::uint8_t> full(68, 0);
    std::memcpy(full.data() + 4, src.raw_data(), 64);
    tensor up =
        tensor::from_values<std::uint8_t>(std::span<const std::uint8_t>(full), {68}).to(cuda0);
    pthio::storage shifted = pthio::storage::wrap(
        std::make_shared<pthio::storage>(up.get_storage()), up.get_storage().data() + 4, 64, cuda0);
    tensor dv(shifted, dtype::float64, {2, 4}, {1, 2});
    check_same(dv, src.as_strided({2, 4}, {1, 2}, 0).contiguous());
  }

  TEST_CASE("cuda: copies larger than the staging buffers, both ways") {
    if (!need_device()) return;
    staging_restore restore;
    for (auto opt :
         {pthio::cuda::staging_options{2, std::size_t{64} << 10}, pthio::cuda::staging_options{}}) {
      pthio::cuda::set_staging_options(opt);
      CAPTURE(opt.buffers);
      CAPTURE(opt.buffer_bytes);
      for (std::size_t n :
           {std::size_t{100}, (std::size_t{1} << 20) + 123, (std::size_t{40} << 20) + 7}) {
        CAPTURE(n);
        tensor h =
            random_tensor(dtype::uint8, {static_cast<std::int64_t>(n)}, static_cast<unsigned>(n));
        check_same(h.to(cuda0), h);
      }
    }
  }

  TEST_CASE("cuda: GPU-saved fixtures load to cuda:0 with the same values as on the CPU") {
    if (!need_device()) return;
    for (const char* rel :
         {"t1/cuda.pth", "t2/cuda.pth", "t1/cuda_legacy.pth", "t2/cuda_legacy.pth", "t2/views.pth",
          "t2/byte_views.pth", "t2/legacy_views.pth", "t1/dtypes.pth", "t2/tied.pth",
          "t2/many_tensors.pth"}) {
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
        CAPTURE(rel);
        CAPTURE(static_cast<int>(mode));
        pthio::load_options cpu, gpu;
        cpu.mode = gpu.mode = mode;
        cpu.map_location = "cpu";
        gpu.map_location = "cuda:0";
        pthio::value want = pthio::load(pthio_test::fixture(rel), cpu);
        pthio::value got = pthio::load(pthio_test::fixture(rel), gpu);
        std::vector<std::pair<std::string, tensor>> w, g;
        pthio::visit_tensors(want, [&](const std::string& k, const pthio::value& v) {
          w.emplace_back(k, v.as_tensor());
        });
        pthio::visit_tensors(got, [&](const std::string& k, const pthio::value& v) {
          g.emplace_back(k, v.as_tensor());
        });
        REQUIRE(g.size() == w.size());
        for (std::size_t i = 0; i < g.size(); ++i) {
          CAPTURE(g[i].first);
          CHECK(g[i].first == w[i].first);
          CHECK(g[i].second.dev() == cuda0);
          check_same(g[i].second, w[i].second);
        }
      }
    }
  }

  TEST_CASE(
      "cuda: a legacy file loaded to cuda:0 keeps tensors that shared a storage sharing one") {
    if (!need_device()) return;
    for (const char* rel : {"t1/legacy_views.pth", "t2/legacy_views.pth", "t2/legacy_ckpt.pth",
                            "t2/cuda_legacy.pth"}) {
      CAPTURE(rel);
      pthio::load_options cpu, gpu;
      cpu.map_location = "cpu";
      gpu.map_location = "cuda:0";
      pthio::value want = pthio::load(pthio_test::fixture(rel), cpu);
      pthio::value got = pthio::load(pthio_test::fixture(rel), gpu);
      std::vector<tensor> w, g;
      pthio::visit_tensors(
          want, [&](const std::string&, const pthio::value& v) { w.push_back(v.as_tensor()); });
      pthio::visit_tensors(
          got, [&](const std::string&, const pthio::value& v) { g.push_back(v.as_tensor()); });
      REQUIRE(g.size() == w.size());
      for (std::size_t i = 0; i < g.size(); ++i) {
        CAPTURE(i);
        CHECK(g[i].dev() == cuda0);
        check_same(g[i], w[i]);
        for (std::size_t j = 0; j < g.size(); ++j)
          CHECK(g[i].get_storage().same(g[j].get_storage()) ==
                w[i].get_storage().same(w[j].get_storage()));
      }
    }
  }

  TEST_CASE(
      "cuda: a large checkpoint streams to the device, and a corrupt record is caught on the way") {
    if (!need_device()) return;
    auto dir = pthio_test::scratch_dir();
    auto path = dir / "cuda_stream.pth";
    tensor big =
        random_tensor(dtype::float32, {5, 1 << 20}, 21);  // 20 MiB: several staging buffers
    tensor small = random_tensor(dtype::float16, {7, 3}, 22);
    pthio::value root = pthio::value::make_dict();
    root.as_dict().set(pthio::value("big"), pthio::value(big));
    root.as_dict().set(pthio::value("small"), pthio::value(small));
    pthio::save(path, root);
    pthio::load_options o;
    o.map_location = "cuda:0";
    pthio::value v = pthio::load(path, o);
    check_same(v.find("big")->as_tensor(), big);
    check_same(v.find("small")->as_tensor(), small);
    // One byte flipped in the middle of the big record: the CRC-32 computed while streaming catches
    // it.
    auto bytes = pthio_test::read_bytes(path);
    bytes[bytes.size() / 2] ^= std::byte{0x40};
    auto bad = dir / "cuda_stream_bad.pth";
    pthio_test::write_bytes(bad, bytes);
    try {
      (void)pthio::load(bad, o);
      FAIL("corrupt record loaded");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::corrupt_zip);
      CHECK(std::string(e.what()).find("CRC-32 mismatch") != std::string::npos);
    }
    o.verify_crc = false;
    CHECK_NOTHROW((void)pthio::load(bad, o));
  }

  TEST_CASE("cuda: saving GPU tensors writes torch's cuda:N location and the device bytes") {
    if (!need_device()) return;
    staging_restore restore;
    pthio::cuda::set_staging_options({2, std::size_t{64} << 10});  // several chunks per record
    tensor w = random_tensor(dtype::float32, {300, 257}, 31);
    tensor dw = w.to(cuda0);
    pthio::value root = pthio::value::make_dict();
    root.as_dict().set(pthio::value("w"), pthio::value(dw));
    root.as_dict().set(pthio::value("wt"), pthio::value(dw.transpose(0, 1)));  // same storage
    root.as_dict().set(pthio::value("cpu"), pthio::value(w));
    for (auto fmt : {pthio::checkpoint_format::zip, pthio::checkpoint_format::legacy}) {
      CAPTURE(static_cast<int>(fmt));
      pthio::memory_sink out;
      pthio::save_options so;
      so.format = fmt;
      pthio::save(out, root, so);
      const auto& b = out.buffer();
      const std::string text(reinterpret_cast<const char*>(b.data()), b.size());
      CHECK(text.find("cuda:0") != std::string::npos);
      pthio::load_options lo;
      lo.map_location = "cpu";
      pthio::value v = pthio::load_checkpoint(pthio::byte_source::borrow(b), lo).root;
      check_same(v.find("w")->as_tensor(), w);
      check_same(v.find("wt")->as_tensor(), w.transpose(0, 1).contiguous());
      CHECK(v.find("w")->as_tensor().get_storage().same(v.find("wt")->as_tensor().get_storage()));
      // Loaded with the saved locations, the GPU tensors come back to cuda:0.
      pthio::value again = pthio::load_checkpoint(pthio::byte_source::borrow(b)).root;
      CHECK(again.find("w")->as_tensor().dev() == cuda0);
      CHECK(again.find("cpu")->as_tensor().dev().is_cpu());
    }
  }

  TEST_CASE("cuda: gemm matches the CPU for float32, float16 and bfloat16, plain or transposed") {
    if (!need_device()) return;
    const std::int64_t m = 33, k = 65, n = 17;
    for (dtype in : {dtype::float32, dtype::float16, dtype::bfloat16}) {
      for (dtype out : {in, dtype::float32}) {
        for (int layout = 0; layout < 8; ++layout) {
          const bool ta = layout & 1, tb = layout & 2, tc = layout & 4;
          CAPTURE(std::string(pthio::dtype_name(in)));
          CAPTURE(std::string(pthio::dtype_name(out)));
          CAPTURE(layout);
          // Each operand as given, or as the transpose of a contiguous matrix; the same views on
          // the device.
          tensor ba = random_tensor(in, ta ? pthio::shape_t{k, m} : pthio::shape_t{m, k}, 1);
          tensor bb = random_tensor(in, tb ? pthio::shape_t{n, k} : pthio::shape_t{k, n}, 2);
          tensor bc = random_tensor(out, tc ? pthio::shape_t{n, m} : pthio::shape_t{m, n}, 3);
          auto view = [](const tensor& t, bool transposed) {
            return transposed ? t.transpose(0, 1) : t;
          };
          tensor ha = view(ba, ta), hb = view(bb, tb), hc = view(bc, tc);
          tensor da = view(ba.to(cuda0), ta), db = view(bb.to(cuda0), tb),
                 dc = view(bc.to(cuda0), tc);
          const float alpha = 1.5f, beta = 0.5f;
          pthio::cuda::gemm(da, db, dc, alpha, beta);
          tensor fa = ha.to(dtype::float32), fb = hb.to(dtype::float32), fc = hc.to(dtype::float32);
          tensor want = tensor::zeros(dtype::float32, {m, n});
          pthio::map_matrix<float>(want) =
              alpha * (pthio::map_matrix<float>(fa) * pthio::map_matrix<float>(fb)) +
              beta * pthio::map_matrix<float>(fc);
          const float tol = out == dtype::float32 ? 1e-4f : out == dtype::float16 ? 2e-3f : 1.6e-2f;
          check_close(dc, want, tol, tol);
        }
      }
    }
  }

  TEST_CASE("cuda: gemv matches the CPU, with strided vectors") {
    if (!need_device()) return;
    const std::int64_t m = 40, n = 23;
    for (dtype in : {dtype::float32, dtype::float16, dtype::bfloat16}) {
      for (bool trans : {false, true}) {
        CAPTURE(std::string(pthio::dtype_name(in)));
        CAPTURE(trans);
        tensor ha =
            trans ? random_tensor(in, {n, m}, 4).transpose(0, 1) : random_tensor(in, {m, n}, 4);
        tensor hx2 = random_tensor(in, {2 * n}, 5);  // x = every other element
        tensor hx = hx2.as_strided({n}, {2}, 0);
        tensor hy = random_tensor(dtype::float32, {m}, 6);
        tensor da =
            trans ? ha.transpose(0, 1).contiguous().to(cuda0).transpose(0, 1) : ha.to(cuda0);
        tensor dx = hx2.to(cuda0).as_strided({n}, {2}, 0);
        tensor dy = hy.to(cuda0);
        pthio::cuda::gemv(da, dx, dy, 2.0f, -1.0f);
        tensor fa = ha.to(dtype::float32), fx = hx.to(dtype::float32);
        tensor want = tensor::zeros(dtype::float32, {m});
        pthio::map_vector<float>(want) =
            2.0f * (pthio::map_matrix<float>(fa) * pthio::map_vector<float>(fx)) -
            pthio::map_vector<float>(hy);
        check_close(dy, want, 1e-3f, 1e-3f);
      }
    }
  }

  TEST_CASE("cuda: gemm refuses what it cannot compute") {
    if (!need_device()) return;
    tensor a = tensor::zeros(dtype::float32, {4, 3}, cuda0),
           b = tensor::zeros(dtype::float32, {3, 5}, cuda0);
    tensor c = tensor::zeros(dtype::float32, {4, 5}, cuda0);
    auto kind_of = [](auto&& fn) {
      try {
        fn();
      } catch (const pthio::error& e) {
        return e.kind();
      }
      return pthio::errc::io;  // nothing thrown
    };
    tensor bad_c = tensor::zeros(dtype::float32, {4, 4}, cuda0);
    CHECK(kind_of([&] { pthio::cuda::gemm(a, b, bad_c); }) == pthio::errc::mismatch);
    tensor h = tensor::zeros(dtype::float16, {3, 5}, cuda0);
    CHECK(kind_of([&] { pthio::cuda::gemm(a, h, c); }) == pthio::errc::invalid_argument);
    tensor host_c = tensor::zeros(dtype::float32, {4, 5});
    CHECK(kind_of([&] { pthio::cuda::gemm(a, b, host_c); }) == pthio::errc::invalid_argument);
    tensor wide = tensor::zeros(dtype::float32, {40}, cuda0);
    tensor no_unit = wide.as_strided({4, 3}, {6, 2}, 0);
    CHECK(kind_of([&] { pthio::cuda::gemm(no_unit, b, c); }) == pthio::errc::invalid_argument);
    tensor i32 = tensor::zeros(dtype::int32, {4, 3}, cuda0);
    CHECK(kind_of([&] { pthio::cuda::gemm(i32, b, c); }) == pthio::errc::invalid_argument);
    tensor alias = c.as_strided({4, 3}, {5, 1}, 0);
    CHECK(kind_of([&] { pthio::cuda::gemm(alias, b, c); }) == pthio::errc::invalid_argument);
    pthio::cuda::gemm(a, b, c);  // the valid call still works
    pthio::cuda::synchronize(cuda0);
  }

  TEST_CASE("cuda: tensors move between devices") {
    if (!pthio_test::need_cuda(2)) return;
    const device cuda1 = device::parse("cuda:1");
    tensor h = random_tensor(dtype::float32, {64, 33}, 8);
    tensor d1 = h.to(cuda0).transpose(0, 1).to(cuda1);
    CHECK(d1.dev() == cuda1);
    check_same(d1, h.transpose(0, 1).contiguous());
    check_same(d1.to(cuda0), h.transpose(0, 1).contiguous());
  }

  // ---- the harness and the paths around the device (run everywhere)
  // ----------------------------------------------------------

  TEST_CASE("cuda: a file saved on cuda:1 maps to the CPU by a mapping that names cuda:1") {
    // Checks saved_on() itself, which the GPU case below relies on.
    auto b = saved_on("t2/cuda.pth", "cuda:1");
    pthio::load_options o;
    o.map_location = pthio::map_location::mapping({{"cuda:1", "cpu"}});
    auto got = pthio::load_checkpoint(pthio::byte_source::from_vector(b, "cuda1.pth"), o).root;
    auto want = pthio::load(pthio_test::fixture("t2/cuda.pth"), pthio_test::cpu_options());
    auto g = tensors_of(got), w = tensors_of(want);
    REQUIRE(g.size() == w.size());
    REQUIRE_FALSE(g.empty());
    for (std::size_t i = 0; i < g.size(); ++i) {
      CHECK(g[i].second.dev().is_cpu());
      CHECK(g[i].second.bytes() == w[i].second.bytes());
    }
  }

  TEST_CASE("cuda: DLPack names plain \"cuda\" as the current device's index") {
    // A borrowed "cuda" storage needs no device: the export asks the runtime which is current
    // (0 when it cannot say, as without a device or without CUDA).
    alignas(64) static std::byte fake[256];
    tensor t(pthio::storage::borrow(fake, sizeof fake, device::parse("cuda")), dtype::float32, {64},
             {1});
    auto* m = pthio::to_dlpack_versioned(t);
    CHECK(m->dl_tensor.device.device_id == pthio::detail::current_cuda_device());
    m->deleter(m);
  }

  // ---- with a device, beyond the fixtures
  // -------------------------------------------------------------------

  TEST_CASE("cuda: safetensors, big-endian, sharded and lazy loads to cuda:0 equal the CPU's") {
    if (!need_device()) return;
    for (const char* rel :
         {"st/simple.safetensors", "st/dtypes.safetensors", "st/unaligned.safetensors",
          "st/shapes.safetensors", "bigendian/big.pth", "st/sharded/model.safetensors.index.json",
          "st/sharded/pytorch_model.bin.index.json"}) {
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
        CAPTURE(rel);
        CAPTURE(static_cast<int>(mode));
        pthio::load_options gpu;
        gpu.mode = mode;
        gpu.map_location = "cuda:0";
        check_loaded_to_gpu(pthio::load(pthio_test::fixture(rel), gpu),
                            pthio::load(pthio_test::fixture(rel), pthio_test::cpu_options(mode)));
      }
    }
    // Lazy: load_tensor one by one, then materialize(): each tensor arrives on cuda:0.
    // (Small files: under compute-sanitizer every record is a checked allocation and copy.)
    for (const char* rel : {"t2/cuda.pth", "t2/views.pth", "st/dtypes.safetensors",
                            "bigendian/big.pth", "t2/legacy_ckpt.pth"}) {
      CAPTURE(rel);
      pthio::load_options lazy;
      lazy.mode = pthio::load_mode::lazy;
      lazy.map_location = "cuda:0";
      auto want = pthio::load(pthio_test::fixture(rel), pthio_test::cpu_options());
      auto ck = pthio::load_checkpoint(pthio_test::fixture(rel), lazy);
      auto w = tensors_of(want);
      for (std::size_t i = 0; i < w.size(); ++i) {
        CAPTURE(w[i].first);
        tensor t = ck.load_tensor(w[i].first);
        CHECK(t.dev() == cuda0);
        check_same(t, w[i].second);
      }
      ck.materialize();
      check_loaded_to_gpu(ck.root, want);
    }
  }

  TEST_CASE(
      "cuda: large records read from the map or the file into pinned buffers, with their CRC-32") {
    if (!need_device()) return;
    staging_restore restore;
    auto path = pthio_test::scratch_dir() / "pread.pth";
    pthio::value root = pthio::value::make_dict();
    std::vector<tensor> want;
    // Six records of 1 MiB and odd sizes (6 MiB, past the first 4 MiB that go as direct copies),
    // a few chunks each, and a small one, which a lazy read takes through a host copy.
    for (int i = 0; i < 6; ++i) {
      want.push_back(random_tensor(dtype::float32, {(1 << 18) + 7 * i + 1}, 40 + i));
      root.as_dict().set(pthio::value("w" + std::to_string(i)), pthio::value(want.back()));
    }
    want.push_back(random_tensor(dtype::int16, {33}, 47));
    root.as_dict().set(pthio::value("small"), pthio::value(want.back()));
    pthio::save(path, root);
    // Eager and mmap loads read from the map, or with pread() when asked; lazy ones always with
    // pread().
    for (bool pread : {false, true}) {
      pthio::cuda::set_staging_options({3, std::size_t{1} << 20, pread});
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap, pthio::load_mode::lazy}) {
        CAPTURE(pread);
        CAPTURE(static_cast<int>(mode));
        pthio::load_options o;
        o.mode = mode;
        o.map_location = "cuda:0";
        auto ck = pthio::load_checkpoint(path, o);
        if (mode == pthio::load_mode::lazy) ck.materialize();
        for (int i = 0; i < 6; ++i)
          check_same(ck.root.find("w" + std::to_string(i))->as_tensor(), want[i]);
        check_same(ck.root.find("small")->as_tensor(), want[6]);
      }
    }
    // A flipped byte in the fourth record is caught by the CRC-32 computed on the way, eager and
    // lazy.
    auto bytes = pthio_test::read_bytes(path);
    pthio::zip_reader zip(pthio::byte_source::borrow(bytes));
    const pthio::zip_entry* rec = zip.find("pread/data/3");
    REQUIRE(rec);
    bytes[rec->data_offset + rec->uncompressed_size / 2] ^= std::byte{1};
    auto bad = pthio_test::scratch_dir() / "pread_bad.pth";
    pthio_test::write_bytes(bad, bytes);
    pthio::cuda::set_staging_options({3, std::size_t{1} << 20, true});
    for (auto mode : {pthio::load_mode::eager, pthio::load_mode::lazy}) {
      CAPTURE(static_cast<int>(mode));
      pthio::load_options o;
      o.mode = mode;
      o.map_location = "cuda:0";
      auto e = pthio_test::error_of([&] {
        auto ck = pthio::load_checkpoint(bad, o);
        ck.materialize();
      });
      CHECK(e.kind() == pthio::errc::corrupt_zip);
      CHECK(std::string(e.what()).find("CRC-32 mismatch") != std::string::npos);
    }
  }

  TEST_CASE("cuda: a load that fails midway, uploads in flight, frees everything cleanly") {
    if (!need_device()) return;
    // Big records queue on the filling threads (CRC-32 on the way), then a record is missing: the
    // load throws while transfers and checksums are in flight. Under ASan this caught the CRC
    // slots being freed before the threads that write them were joined.
    staging_restore restore;
    pthio::cuda::set_staging_options({4, std::size_t{1} << 20});
    pthio::value root = pthio::value::make_dict();
    for (int i = 0; i < 12; ++i)
      root.as_dict().set(pthio::value("w" + std::to_string(i)),
                         pthio::value(random_tensor(dtype::float32, {1 << 20}, 60 + i)));
    pthio::memory_sink out;
    pthio::save(out, root);
    for (int missing : {3, 11}) {
      CAPTURE(missing);
      auto b = rewrite_zip(out.buffer(), [&](std::string& name, std::vector<std::byte>&) {
        return !name.ends_with("/data/" + std::to_string(missing));
      });
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
        pthio::load_options o;
        o.mode = mode;
        o.map_location = "cuda:0";
        auto e = pthio_test::error_of(
            [&] { (void)pthio::load_checkpoint(pthio::byte_source::borrow(b), o); });
        CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
      }
    }
    // The device and the staging pool still work.
    tensor h = random_tensor(dtype::float32, {1 << 20}, 99);
    check_same(h.to(cuda0), h);
  }

  TEST_CASE("cuda: a file saved on cuda:1 loads to cuda:0 through {\"cuda:1\": \"cuda:0\"}") {
    if (!need_device()) return;
    auto b = saved_on("t2/cuda.pth", "cuda:1");
    pthio::load_options o;
    o.map_location = pthio::map_location::mapping({{"cuda:1", "cuda:0"}});
    check_loaded_to_gpu(
        pthio::load_checkpoint(pthio::byte_source::from_vector(b, "cuda1.pth"), o).root,
        pthio::load(pthio_test::fixture("t2/cuda.pth"), pthio_test::cpu_options()));
  }

  TEST_CASE("cuda: to() from many threads at once, both ways") {
    if (!need_device()) return;
    constexpr int threads = 8;
    std::vector<std::thread> pool;
    std::atomic<int> bad{0};
    for (int i = 0; i < threads; ++i)
      pool.emplace_back([i, &bad] {
        for (int round = 0; round < 6; ++round) {
          const std::int64_t n = (i % 2 ? 3 << 20 : 1000) + round * 17 + i;
          tensor h = random_tensor(dtype::uint8, {n}, static_cast<unsigned>(i * 100 + round));
          tensor d = h.to(cuda0);
          tensor back = d.to(pthio::cpu_device);
          if (back.bytes() != h.bytes() || plain_download(d).bytes() != h.bytes()) ++bad;
        }
      });
    for (auto& t : pool) t.join();
    CHECK(bad == 0);
  }

  TEST_CASE("cuda: load_state_dict into GPU tensors, from host and device sources") {
    if (!need_device()) return;
    tensor w = random_tensor(dtype::float32, {6, 5}, 70),
           b = random_tensor(dtype::float16, {6}, 71);
    tensor m = random_tensor(dtype::float32, {4, 3}, 72);
    pthio::state_dict source;
    source.set("w", w);
    source.set("b", b);            // float16 into a float32 target: converted
    source.set("m", m.to(cuda0));  // already on the device
    // Targets on the GPU: contiguous, and a transposed view of a storage with other bytes around.
    tensor tw = tensor::zeros(dtype::float32, {6, 5}, cuda0);
    tensor tb = tensor::zeros(dtype::float32, {6}, cuda0);
    tensor holder = random_tensor(dtype::float32, {5, 4}, 73).to(cuda0);
    tensor tm = holder.narrow(0, 1, 3).transpose(0, 1);  // [4, 3], strides {1, 4}
    pthio::state_dict target;
    target.set("w", tw);
    target.set("b", tb);
    target.set("m", tm);
    tensor before = holder.to(pthio::cpu_device);
    pthio::load_state_dict_options opt;
    opt.convert_dtypes = true;
    auto report = pthio::load_state_dict(target, source, opt);
    CHECK(report.ok());
    check_same(tw, w);
    check_same(tb, b.to(dtype::float32));
    check_same(tm, m);
    // The holder's bytes outside the view kept their values.
    tensor after = holder.to(pthio::cpu_device);
    for (std::int64_t r : {0, 4})
      for (std::int64_t c = 0; c < 4; ++c)
        CHECK(after.at<float>({r, c}) == before.at<float>({r, c}));
    // A GPU tensor converted keeps its device; a copy from an overlapping view of the same
    // storage reads the source before writing.
    tensor half = tw.to(dtype::float16);
    CHECK(half.dev() == cuda0);
    check_same(half, w.to(dtype::float16));
    tensor row = random_tensor(dtype::float32, {8}, 74);
    tensor drow = row.to(cuda0);
    tensor shifted = drow.narrow(0, 1, 7);
    shifted.copy_from(drow.narrow(0, 0, 7));  // dst[i] = src[i - 1], ranges overlap
    tensor want_row = row.clone();
    tensor want_tail = want_row.narrow(0, 1, 7);
    want_tail.copy_from(row.narrow(0, 0, 7));
    check_same(drow, want_row);
    // And back: a CPU target from GPU sources.
    pthio::state_dict host;
    host.set("w", tensor::zeros(dtype::float32, {6, 5}));
    pthio::state_dict dev;
    dev.set("w", tw);
    pthio::load_state_dict(host, dev);
    CHECK(host.at("w").bytes() == w.bytes());
  }

  TEST_CASE("cuda: DLPack exports plain \"cuda\" as the current device") {
    if (!need_device()) return;
    const int last = pthio::cuda_device_count() - 1;
#if PTHIO_TESTS_CUDA_BUILT
    int saved = 0;
    REQUIRE(cudaGetDevice(&saved) == cudaSuccess);
    REQUIRE(cudaSetDevice(last) == cudaSuccess);
#endif
    tensor d = tensor::zeros(dtype::float32, {8}, device(pthio::device_type::cuda, last));
    tensor plain(pthio::storage::wrap(std::make_shared<pthio::storage>(d.get_storage()),
                                      d.get_storage().data(), d.nbytes(), device::parse("cuda")),
                 dtype::float32, {8}, {1});
    auto* m = pthio::to_dlpack_versioned(plain);
    CHECK(m->dl_tensor.device.device_type == pthio::dlpack::kDLCUDA);
    CHECK(m->dl_tensor.device.device_id == last);
    m->deleter(m);
#if PTHIO_TESTS_CUDA_BUILT
    REQUIRE(cudaSetDevice(saved) == cudaSuccess);
#endif
  }

  TEST_CASE("cuda: without pinned memory, staging falls back to pageable buffers") {
    if (!need_device()) return;
    staging_restore restore;
    struct unforce {
      ~unforce() { pthio::detail::force_pageable_staging(false); }
    } guard;
    pthio::detail::force_pageable_staging(true);
    pthio::cuda::set_staging_options({2, std::size_t{1} << 20});  // drops the pooled pinned sets
    const auto before = pthio::detail::pageable_staging_sets();
    tensor h = random_tensor(dtype::float32, {3 << 20}, 80);  // 12 MiB: many chunks
    tensor d = h.to(cuda0);
    check_same(d, h);
    pthio::load_options o;
    o.map_location = "cuda:0";
    auto got = pthio::load(pthio_test::fixture("t2/cuda.pth"), o);
    CHECK(pthio::detail::pageable_staging_sets() > before);
    pthio::detail::force_pageable_staging(false);  // the checks below download through pinned sets
    check_loaded_to_gpu(got,
                        pthio::load(pthio_test::fixture("t2/cuda.pth"), pthio_test::cpu_options()));
  }

}  // TEST_SUITE
