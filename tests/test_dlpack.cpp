// DLPack: the ABI layout, dtype and device mapping, zero-copy export and import, and who frees
// what when (the producer's deleter runs exactly once, after the last handle goes).
#include <doctest/doctest.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "pthio/cuda.hpp"
#include "pthio/dlpack.hpp"
#include "pthio/pthio.hpp"
#include "support.h"

using pthio::dtype;
using pthio::tensor;
namespace dl = pthio::dlpack;

namespace {

// A 4x6 float32 tensor 0, 1, ..., 23 whose storage owner sets *released when it goes.
tensor tracked_tensor(const std::shared_ptr<bool>& released) {
  auto buf = std::make_shared<std::vector<float>>(24);
  std::iota(buf->begin(), buf->end(), 0.0f);
  float* data = buf->data();
  std::shared_ptr<const void> owner(data, [buf, released](const void*) mutable {
    *released = true;
    buf.reset();
  });
  return tensor(pthio::storage::wrap(owner, data, 24 * sizeof(float)), dtype::float32, {4, 6},
                {6, 1});
}

// A producer's DLPack tensor over its own buffer, counting deleter calls.
template <class Managed>
struct producer {
  Managed managed{};
  std::vector<double> buffer;
  std::vector<std::int64_t> shape, strides;
  int* deletes;

  static void deleter(Managed* self) {
    auto* p = static_cast<producer*>(self->manager_ctx);
    ++*p->deletes;
    delete p;
  }
  // rows x cols float64 with element [i][j] = 10 * i + j, stored with the given byte offset.
  static Managed* make(int* deletes, std::int64_t rows, std::int64_t cols, std::size_t lead = 0) {
    auto* p = new producer;
    p->deletes = deletes;
    p->buffer.assign(lead + static_cast<std::size_t>(rows * cols), -1.0);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        p->buffer[lead + static_cast<std::size_t>(i * cols + j)] = static_cast<double>(10 * i + j);
    p->shape = {rows, cols};
    p->strides = {cols, 1};
    dl::DLTensor& t = p->managed.dl_tensor;
    t.data = p->buffer.data();
    t.device = {dl::kDLCPU, 0};
    t.ndim = 2;
    t.dtype = {dl::kDLFloat, 64, 1};
    t.shape = p->shape.data();
    t.strides = p->strides.data();
    t.byte_offset = lead * sizeof(double);
    if constexpr (std::is_same_v<Managed, dl::DLManagedTensorVersioned>)
      p->managed.version = {1, 1};
    p->managed.manager_ctx = p;
    p->managed.deleter = &producer::deleter;
    return &p->managed;
  }
};

}  // namespace

TEST_SUITE("dlpack") {
  TEST_CASE("dlpack: the structs have DLPack 1.1's layout") {
    CHECK(sizeof(dl::DLDevice) == 8);
    CHECK(sizeof(dl::DLDataType) == 4);
    if (sizeof(void*) == 8) {
      CHECK(sizeof(dl::DLTensor) == 48);
      CHECK(offsetof(dl::DLTensor, ndim) == 16);
      CHECK(offsetof(dl::DLTensor, dtype) == 20);
      CHECK(offsetof(dl::DLTensor, byte_offset) == 40);
      CHECK(sizeof(dl::DLManagedTensor) == 64);
      CHECK(sizeof(dl::DLManagedTensorVersioned) == 80);
      CHECK(offsetof(dl::DLManagedTensorVersioned, flags) == 24);
      CHECK(offsetof(dl::DLManagedTensorVersioned, dl_tensor) == 32);
    }
    CHECK(dl::kDLCUDA == 2);
    CHECK(dl::kDLCUDAManaged == 13);
    CHECK(dl::kDLBool == 6);
    CHECK(dl::kDLFloat8_e4m3fn == 10);
    CHECK(dl::kDLFloat8_e8m0fnu == 14);
    CHECK(dl::kDLFloat4_e2m1fn == 17);
  }

  TEST_CASE("dlpack: every dtype DLPack can describe maps both ways, the rest are refused") {
    struct row {
      dtype t;
      std::uint8_t code, bits;
      std::uint16_t lanes;
    };
    const row rows[] = {
        {dtype::float32, dl::kDLFloat, 32, 1},
        {dtype::float64, dl::kDLFloat, 64, 1},
        {dtype::float16, dl::kDLFloat, 16, 1},
        {dtype::bfloat16, dl::kDLBfloat, 16, 1},
        {dtype::complex64, dl::kDLComplex, 64, 1},
        {dtype::complex128, dl::kDLComplex, 128, 1},
        {dtype::complex32, dl::kDLComplex, 32, 1},
        {dtype::int8, dl::kDLInt, 8, 1},
        {dtype::int64, dl::kDLInt, 64, 1},
        {dtype::uint8, dl::kDLUInt, 8, 1},
        {dtype::uint64, dl::kDLUInt, 64, 1},
        {dtype::bool_, dl::kDLBool, 8, 1},
        {dtype::float8_e4m3fn, dl::kDLFloat8_e4m3fn, 8, 1},
        {dtype::float8_e5m2, dl::kDLFloat8_e5m2, 8, 1},
        {dtype::float8_e4m3fnuz, dl::kDLFloat8_e4m3fnuz, 8, 1},
        {dtype::float8_e5m2fnuz, dl::kDLFloat8_e5m2fnuz, 8, 1},
        {dtype::float8_e8m0fnu, dl::kDLFloat8_e8m0fnu, 8, 1},
        {dtype::float4_e2m1fn_x2, dl::kDLFloat4_e2m1fn, 4, 2},
    };
    for (const auto& r : rows) {
      CAPTURE(pthio::dtype_name(r.t));
      auto d = pthio::to_dlpack_dtype(r.t);
      CHECK(d.code == r.code);
      CHECK(d.bits == r.bits);
      CHECK(d.lanes == r.lanes);
      CHECK(pthio::dtype_from_dlpack(d) == r.t);
    }
    for (dtype t : {dtype::qint8, dtype::quint4x2, dtype::bits8, dtype::bits16, dtype::bcomplex32})
      CHECK_THROWS_WITH_AS(pthio::to_dlpack_dtype(t),
                           doctest::Contains(std::string(pthio::dtype_name(t)).c_str()),
                           pthio::error);
    // Vector lanes, float6, float8_e3m4 and odd widths have no pthio dtype.
    for (dl::DLDataType d :
         {dl::DLDataType{dl::kDLFloat, 32, 4}, dl::DLDataType{dl::kDLFloat6_e2m3fn, 6, 1},
          dl::DLDataType{dl::kDLFloat8_e3m4, 8, 1}, dl::DLDataType{dl::kDLInt, 4, 1},
          dl::DLDataType{dl::kDLOpaqueHandle, 64, 1}, dl::DLDataType{dl::kDLFloat4_e2m1fn, 4, 1}})
      CHECK_THROWS_WITH_AS(pthio::dtype_from_dlpack(d), doctest::Contains("pthio has no dtype"),
                           pthio::error);
  }

  TEST_CASE("dlpack: devices map cpu and cuda:N both ways, other device types are refused") {
    CHECK(pthio::to_dlpack_device(pthio::cpu_device).device_type == dl::kDLCPU);
    auto c = pthio::to_dlpack_device(pthio::device::parse("cuda:3"));
    CHECK(c.device_type == dl::kDLCUDA);
    CHECK(c.device_id == 3);
    CHECK(pthio::to_dlpack_device(pthio::device::parse("cuda")).device_id == 0);
    CHECK(pthio::device_from_dlpack({dl::kDLCUDA, 2}) == pthio::device::parse("cuda:2"));
    CHECK(pthio::device_from_dlpack({dl::kDLCUDAManaged, 1}) == pthio::device::parse("cuda:1"));
    CHECK(pthio::device_from_dlpack({dl::kDLCUDAHost, 0}).is_cpu());
    CHECK(pthio::device_from_dlpack({dl::kDLCPU, 0}).is_cpu());
    CHECK_THROWS_WITH_AS(pthio::device_from_dlpack({dl::kDLMetal, 0}),
                         doctest::Contains("device type 8"), pthio::error);
    CHECK_THROWS_AS(pthio::device_from_dlpack({dl::kDLCUDA, -1}), pthio::error);
    CHECK_THROWS_AS(pthio::to_dlpack_device(pthio::device::parse("meta")), pthio::error);
  }

  TEST_CASE("dlpack: a versioned export shares the tensor's bytes and describes its view") {
    auto released = std::make_shared<bool>(false);
    tensor base = tracked_tensor(released);
    tensor view = base.narrow(0, 1, 3).transpose(0, 1);  // shape [6, 3], strides [1, 6], offset 6
    dl::DLManagedTensorVersioned* m = pthio::to_dlpack_versioned(view);
    REQUIRE(m != nullptr);
    CHECK(m->version.major == 1);
    CHECK(m->version.minor == 1);
    CHECK(m->flags == 0);
    const dl::DLTensor& t = m->dl_tensor;
    CHECK(t.device.device_type == dl::kDLCPU);
    CHECK(t.dtype.code == dl::kDLFloat);
    CHECK(t.dtype.bits == 32);
    REQUIRE(t.ndim == 2);
    CHECK(t.shape[0] == 6);
    CHECK(t.shape[1] == 3);
    CHECK(t.strides[0] == 1);
    CHECK(t.strides[1] == 6);
    CHECK(t.byte_offset == 0);
    CHECK(t.data == static_cast<void*>(view.raw_data()));  // no copy
    const float* f = static_cast<const float*>(t.data);
    CHECK(f[2 * t.strides[0] + 1 * t.strides[1]] == view.at<float>({2, 1}));
    m->deleter(m);
    CHECK_FALSE(*released);  // base still holds the storage
  }

  TEST_CASE("dlpack: an exported tensor outlives every pthio handle until its deleter runs") {
    for (bool versioned : {true, false}) {
      CAPTURE(versioned);
      auto released = std::make_shared<bool>(false);
      dl::DLManagedTensorVersioned* mv = nullptr;
      dl::DLManagedTensor* ml = nullptr;
      {
        tensor t = tracked_tensor(released).narrow(0, 2, 2);
        if (versioned)
          mv = pthio::to_dlpack_versioned(t);
        else
          ml = pthio::to_dlpack(t);
      }
      // Every pthio handle is gone; the export keeps the bytes.
      CHECK_FALSE(*released);
      const dl::DLTensor& t = versioned ? mv->dl_tensor : ml->dl_tensor;
      const float* f = static_cast<const float*>(t.data);
      CHECK(f[0] == 12.0f);
      CHECK(f[1 * t.strides[0] + 5] == 23.0f);
      if (versioned)
        mv->deleter(mv);
      else
        ml->deleter(ml);
      CHECK(*released);
    }
  }

  TEST_CASE(
      "dlpack: a mapped checkpoint's tensor stays readable through DLPack after the checkpoint "
      "goes") {
    pthio::load_options o;
    o.mode = pthio::load_mode::mmap;
    dl::DLManagedTensorVersioned* m = nullptr;
    {
      pthio::checkpoint ck = pthio::load_checkpoint(pthio_test::fixture("t1/linear.pth"), o);
      m = pthio::to_dlpack_versioned(ck.root.find("weight")->as_tensor());
    }
    const float* f = static_cast<const float*>(m->dl_tensor.data);
    CHECK(f[0] == doctest::Approx(0.2576316f));
    CHECK(f[6] == doctest::Approx(-0.102862656f));
    m->deleter(m);
  }

  TEST_CASE(
      "dlpack: from_dlpack views the producer's bytes and calls its deleter once, after the last "
      "handle") {
    int deletes = 0;
    auto* m = producer<dl::DLManagedTensorVersioned>::make(&deletes, 3, 4, /*lead=*/2);
    const auto* first = static_cast<const std::byte*>(m->dl_tensor.data) + m->dl_tensor.byte_offset;
    tensor view;
    {
      tensor t = pthio::from_dlpack(m);
      CHECK(t.dtype() == dtype::float64);
      CHECK(t.shape() == pthio::shape_t{3, 4});
      CHECK(t.strides() == pthio::shape_t{4, 1});
      CHECK(t.dev().is_cpu());
      CHECK(t.raw_data() == first);  // no copy; byte_offset honoured
      CHECK(t.at<double>({2, 3}) == 23.0);
      tensor copy = t;
      view = t.transpose(0, 1).narrow(0, 1, 2);
      CHECK(view.at<double>({1, 2}) == 22.0);
    }
    CHECK(deletes == 0);            // the view still holds it
    view.at<double>({0, 0}) = 5.0;  // writes reach the producer's buffer
    view = tensor();
    CHECK(deletes == 1);
  }

  TEST_CASE("dlpack: the legacy DLManagedTensor imports the same way") {
    int deletes = 0;
    auto* m = producer<dl::DLManagedTensor>::make(&deletes, 2, 5);
    {
      tensor t = pthio::from_dlpack(m);
      CHECK(t.at<double>({1, 4}) == 14.0);
      CHECK(deletes == 0);
    }
    CHECK(deletes == 1);
  }

  TEST_CASE("dlpack: import takes null strides as compact row-major and keeps given strides") {
    int deletes = 0;
    auto* m = producer<dl::DLManagedTensorVersioned>::make(&deletes, 4, 3);
    m->dl_tensor.strides = nullptr;
    tensor t = pthio::from_dlpack(m);
    CHECK(t.strides() == pthio::shape_t{3, 1});
    CHECK(t.is_contiguous());
    CHECK(t.at<double>({3, 2}) == 32.0);

    // A column-major 3x4 view of the same kind of buffer: shape [3, 4], strides [1, 3].
    auto* c = producer<dl::DLManagedTensorVersioned>::make(&deletes, 4, 3);
    auto* cp = static_cast<producer<dl::DLManagedTensorVersioned>*>(c->manager_ctx);
    cp->shape = {3, 4};
    cp->strides = {1, 3};
    c->dl_tensor.shape = cp->shape.data();
    c->dl_tensor.strides = cp->strides.data();
    tensor ct = pthio::from_dlpack(c);
    CHECK_FALSE(ct.is_contiguous());
    CHECK(ct.at<double>({2, 3}) == 32.0);  // buffer element 3 * 3 + 2 = row 3, column 2 of 4x3
    t = tensor();
    ct = tensor();
    CHECK(deletes == 2);
  }

  TEST_CASE("dlpack: a refused import takes no ownership") {
    int deletes = 0;
    auto* m = producer<dl::DLManagedTensorVersioned>::make(&deletes, 2, 2);
    m->version.major = 2;
    CHECK_THROWS_WITH_AS(pthio::from_dlpack(m), doctest::Contains("version 2"), pthio::error);
    m->version.major = 1;
    m->dl_tensor.dtype = {dl::kDLFloat, 64, 2};
    CHECK_THROWS_AS(pthio::from_dlpack(m), pthio::error);
    m->dl_tensor.dtype = {dl::kDLFloat, 64, 1};
    m->dl_tensor.device = {dl::kDLVulkan, 0};
    CHECK_THROWS_AS(pthio::from_dlpack(m), pthio::error);
    m->dl_tensor.device = {dl::kDLCPU, 0};
    std::int64_t neg[2] = {-2, 1};
    m->dl_tensor.strides = neg;
    CHECK_THROWS_WITH_AS(pthio::from_dlpack(m), doctest::Contains("negative stride"), pthio::error);
    m->dl_tensor.strides = nullptr;
    m->dl_tensor.ndim = -1;
    CHECK_THROWS_AS(pthio::from_dlpack(m), pthio::error);
    m->dl_tensor.ndim = 2;
    void* data = m->dl_tensor.data;
    m->dl_tensor.data = nullptr;
    CHECK_THROWS_WITH_AS(pthio::from_dlpack(m), doctest::Contains("null data"), pthio::error);
    m->dl_tensor.data = data;
    CHECK_THROWS_AS(pthio::from_dlpack(static_cast<dl::DLManagedTensorVersioned*>(nullptr)),
                    pthio::error);
    CHECK(deletes == 0);
    m->deleter(m);  // still the caller's to release
    CHECK(deletes == 1);
  }

  TEST_CASE("dlpack: export then import shares one storage, released when both sides are done") {
    auto released = std::make_shared<bool>(false);
    tensor back;
    {
      tensor t = tracked_tensor(released).narrow(1, 1, 4);
      back = pthio::from_dlpack(pthio::to_dlpack_versioned(t));
      CHECK(back.raw_data() == t.raw_data());
      CHECK(back.shape() == t.shape());
      CHECK(back.strides() == t.strides());
      CHECK(back.dtype() == dtype::float32);
    }
    CHECK_FALSE(*released);
    CHECK(back.at<float>({3, 3}) == 22.0f);
    back = tensor();
    CHECK(*released);
  }

  TEST_CASE("dlpack: tensors with no elements export a null data pointer and import back") {
    tensor empty = tensor::zeros(dtype::int32, {0, 5});
    auto* m = pthio::to_dlpack_versioned(empty);
    CHECK(m->dl_tensor.data == nullptr);
    tensor back = pthio::from_dlpack(m);
    CHECK(back.numel() == 0);
    CHECK(back.shape() == pthio::shape_t{0, 5});
    tensor scalar = tensor::from_values<std::int64_t>({42}, {});
    auto* s = pthio::to_dlpack(scalar);
    CHECK(s->dl_tensor.ndim == 0);
    CHECK(*static_cast<const std::int64_t*>(s->dl_tensor.data) == 42);
    CHECK(pthio::from_dlpack(s).item<std::int64_t>() == 42);
  }

  TEST_CASE("dlpack: CUDA tensors pass their device id and pointer through untouched") {
    // The pointer is never dereferenced: a fake device address is enough to check the plumbing.
    auto* fake = reinterpret_cast<void*>(std::uintptr_t{0x7f0000001000});
    tensor t(pthio::storage::borrow(fake, 4096, pthio::device::parse("cuda:1")), dtype::bfloat16,
             {16, 8}, {8, 1}, 64);
    auto* m = pthio::to_dlpack_versioned(t);
    CHECK(m->dl_tensor.device.device_type == dl::kDLCUDA);
    CHECK(m->dl_tensor.device.device_id == 1);
    CHECK(m->dl_tensor.data == static_cast<void*>(static_cast<std::byte*>(fake) + 128));
    CHECK(m->dl_tensor.dtype.code == dl::kDLBfloat);
    tensor back = pthio::from_dlpack(m);
    CHECK(back.dev() == pthio::device::parse("cuda:1"));
    CHECK(back.raw_data() == static_cast<std::byte*>(fake) + 128);

    dl::DLTensor foreign{};
    std::int64_t shape[1] = {10};
    foreign.data = fake;
    foreign.device = {dl::kDLCUDA, 3};
    foreign.ndim = 1;
    foreign.dtype = {dl::kDLFloat, 32, 1};
    foreign.shape = shape;
    foreign.byte_offset = 256;
    tensor v = pthio::view_dlpack(foreign);
    CHECK(v.dev() == pthio::device::parse("cuda:3"));
    CHECK(v.raw_data() == static_cast<std::byte*>(fake) + 256);
    CHECK(v.get_storage().nbytes() == 40);
  }

  // In the cuda suite (CTest label cuda) though it lives here with the other DLPack cases.
  TEST_CASE("dlpack: on a GPU, a cuda:0 tensor exports its device memory and imports back" *
            doctest::test_suite("cuda")) {
    if (!pthio_test::need_cuda()) return;
    tensor host = tensor::from_values<float>({1, 2, 3, 4, 5, 6}, {2, 3});
    tensor dev = host.to(pthio::device::parse("cuda:0"));
    auto* m = pthio::to_dlpack_versioned(dev);
    CHECK(m->dl_tensor.device.device_type == dl::kDLCUDA);
    CHECK(m->dl_tensor.device.device_id == 0);
    CHECK(m->dl_tensor.data == static_cast<void*>(dev.raw_data()));
    dev = tensor();
    tensor back = pthio::from_dlpack(m);  // the export kept the device memory alive
    CHECK(back.dev().is_cuda());
    tensor round = back.to(pthio::cpu_device);
    CHECK(round.at<float>({1, 2}) == 6.0f);
  }

}  // TEST_SUITE
