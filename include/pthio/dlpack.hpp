// pthio — DLPack: hand tensors to other frameworks and take theirs, without copying.
//
// The ABI (DLPack 1.1, https://dmlc.github.io/dlpack/latest/c_api.html). The structs below are
// pthio's own declarations of DLPack's interface, field for field and value for value, in
// namespace pthio::dlpack so they never clash with a <dlpack/dlpack.h> in the same program. A
// pointer from here may be reinterpret_cast to the same-named type of dlpack.h (>= 1.0) and back;
// when dlpack.h is included first, this header static_asserts that the layouts agree.
//
//   DLDevice          { int32 device_type; int32 device_id }                            8 bytes
//   DLDataType        { uint8 code; uint8 bits; uint16 lanes }                          4 bytes
//   DLTensor          { void* data; DLDevice device; int32 ndim; DLDataType dtype;
//                       int64* shape; int64* strides; uint64 byte_offset }              48 bytes
//   DLManagedTensor   { DLTensor dl_tensor; void* manager_ctx; void (*deleter)(self*) } 64 bytes
//   DLManagedTensorVersioned
//                     { DLPackVersion version {uint32 major, minor}; void* manager_ctx;
//                       void (*deleter)(self*); uint64 flags; DLTensor dl_tensor }      80 bytes
//   (sizes on LP64). Strides count elements; byte_offset counts bytes from `data`.
//
// Ownership.
//   Export (to_dlpack, to_dlpack_versioned): no copy. The returned struct and its manager context
//   are one heap block holding a pthio tensor handle, so the storage (heap, mmap, CUDA memory, or
//   whatever it wraps) stays alive until the consumer calls `deleter(self)` exactly once, from any
//   thread, even after every pthio handle is gone. data is the address of element 0 (byte_offset
//   0, as torch exports), or null for a tensor with no elements; strides are always given.
//   Import (from_dlpack): no copy. The tensor's storage owns the managed struct and calls its
//   deleter exactly once, when the last pthio handle (tensor, storage, view) to it goes. If
//   from_dlpack throws, it has taken nothing: the caller still owns the struct and its deleter.
//   The borrowing import (view_dlpack) keeps no ownership; the caller keeps the data alive.
//
// Devices: kDLCPU <-> cpu; kDLCUDA with device_id <-> cuda:N (data pointers pass through, never
// dereferenced here); kDLCUDAHost (pinned host memory) imports as cpu; kDLCUDAManaged as cuda:N.
// Other device types are refused (pthio::error(unsupported)).
//
// Dtypes (code, bits, lanes):
//   float16/32/64 kDLFloat 16/32/64; bfloat16 kDLBfloat 16; complex32/64/128 kDLComplex 32/64/128;
//   int8..int64 kDLInt; uint8..uint64 kDLUInt; bool kDLBool 8; float8_e4m3fn, float8_e5m2,
//   float8_e4m3fnuz, float8_e5m2fnuz, float8_e8m0fnu: their kDLFloat8_* code, 8 bits;
//   float4_e2m1fn_x2: kDLFloat4_e2m1fn, 4 bits, 2 lanes (two packed values per byte, as torch).
//   All lanes are 1 otherwise. Quantized, bits* and bcomplex32 tensors have no DLPack dtype.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pthio/device.hpp"
#include "pthio/dtype.hpp"
#include "pthio/export.hpp"
#include "pthio/tensor.hpp"

namespace pthio {
namespace dlpack {

// The DLPack version these declarations follow and pthio writes into exported tensors.
inline constexpr std::uint32_t version_major = 1;
inline constexpr std::uint32_t version_minor = 1;

struct DLPackVersion {
  std::uint32_t major;
  std::uint32_t minor;
};

enum DLDeviceType : std::int32_t {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLOpenCL = 4,
  kDLVulkan = 7,
  kDLMetal = 8,
  kDLVPI = 9,
  kDLROCM = 10,
  kDLROCMHost = 11,
  kDLExtDev = 12,
  kDLCUDAManaged = 13,
  kDLOneAPI = 14,
  kDLWebGPU = 15,
  kDLHexagon = 16,
  kDLMAIA = 17,
};

struct DLDevice {
  DLDeviceType device_type;
  std::int32_t device_id;
};

enum DLDataTypeCode : std::uint8_t {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLOpaqueHandle = 3,
  kDLBfloat = 4,
  kDLComplex = 5,
  kDLBool = 6,
  kDLFloat8_e3m4 = 7,
  kDLFloat8_e4m3 = 8,
  kDLFloat8_e4m3b11fnuz = 9,
  kDLFloat8_e4m3fn = 10,
  kDLFloat8_e4m3fnuz = 11,
  kDLFloat8_e5m2 = 12,
  kDLFloat8_e5m2fnuz = 13,
  kDLFloat8_e8m0fnu = 14,
  kDLFloat6_e2m3fn = 15,
  kDLFloat6_e3m2fn = 16,
  kDLFloat4_e2m1fn = 17,
};

struct DLDataType {
  std::uint8_t code;  // a DLDataTypeCode
  std::uint8_t bits;
  std::uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // null: compact row-major
  std::uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// DLManagedTensorVersioned::flags bits.
inline constexpr std::uint64_t flag_read_only = 1ull << 0;
inline constexpr std::uint64_t flag_is_copied = 1ull << 1;
inline constexpr std::uint64_t flag_is_subbyte_type_padded = 1ull << 2;

struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  std::uint64_t flags;
  DLTensor dl_tensor;
};

}  // namespace dlpack

// The DLPack dtype of `t`; throws pthio::error(unsupported) when DLPack has none.
PTHIO_API dlpack::DLDataType to_dlpack_dtype(dtype t);
// The pthio dtype of a DLPack dtype; throws pthio::error(unsupported) for codes, bit widths or
// lane counts pthio has no dtype for (vector types, float6, float8_e3m4 ...).
PTHIO_API dtype dtype_from_dlpack(dlpack::DLDataType t);
// cpu -> kDLCPU 0, cuda:N -> kDLCUDA N ("cuda" without index -> the calling thread's current
// device, as cudaGetDevice says; 0 without CUDA); others throw unsupported.
PTHIO_API dlpack::DLDevice to_dlpack_device(const device& d);
// The inverse, plus kDLCUDAHost -> cpu and kDLCUDAManaged -> cuda:N; others throw unsupported.
PTHIO_API device device_from_dlpack(dlpack::DLDevice d);

// Exports `t` without copying, as DLPack >= 1.0 consumers expect (version 1.1, flags 0). The
// caller owns the result and releases it with its deleter. Throws for an undefined tensor, a
// meta/other-device tensor, or a dtype DLPack lacks.
PTHIO_API dlpack::DLManagedTensorVersioned* to_dlpack_versioned(const tensor& t);
// The same as the legacy (pre-1.0) DLManagedTensor, for consumers that only take that.
PTHIO_API dlpack::DLManagedTensor* to_dlpack(const tensor& t);

// Takes ownership of `m` and returns a tensor over its data, without copying (see the header
// comment for the lifetime rules). Refuses (throws, ownership not taken) a null pointer, a major
// version other than 1, negative strides or extents, and unsupported dtypes or devices. A
// read-only tensor (flag_read_only) is accepted; the caller must then not write through it.
PTHIO_API tensor from_dlpack(dlpack::DLManagedTensorVersioned* m);
PTHIO_API tensor from_dlpack(dlpack::DLManagedTensor* m);

// A tensor viewing `t`'s data without taking any ownership: the caller keeps the data alive
// longer than every handle to the result. Same checks as from_dlpack.
PTHIO_API tensor view_dlpack(const dlpack::DLTensor& t);

}  // namespace pthio

#if defined(DLPACK_MAJOR_VERSION) && DLPACK_MAJOR_VERSION >= 1
// <dlpack/dlpack.h> is in scope: its types must be the ones declared above, byte for byte.
static_assert(sizeof(::DLTensor) == sizeof(pthio::dlpack::DLTensor));
static_assert(offsetof(::DLTensor, byte_offset) == offsetof(pthio::dlpack::DLTensor, byte_offset));
static_assert(sizeof(::DLManagedTensor) == sizeof(pthio::dlpack::DLManagedTensor));
static_assert(sizeof(::DLManagedTensorVersioned) ==
              sizeof(pthio::dlpack::DLManagedTensorVersioned));
static_assert(offsetof(::DLManagedTensorVersioned, dl_tensor) ==
              offsetof(pthio::dlpack::DLManagedTensorVersioned, dl_tensor));
#endif
