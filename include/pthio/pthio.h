/* pthio — the C API: load PyTorch checkpoints, walk their tensors, build and save state dicts.
 *
 * Plain C (C99 and later, and C++): no C++ type crosses this interface. Link with pthio::pthio
 * (static; link with a C++ linker or add the C++ runtime) or pthio::pthio_shared (libpthio.so).
 *
 * Errors. Every function that can fail returns a pthio_status: PTHIO_OK (0) or the kind of
 * failure. The message of the last call on the calling thread is in pthio_last_error(): "" after a
 * success, else text like "model.pth: archive/data.pkl: offset 1043: pickle: ...". The message is
 * thread-local and stays valid until the thread's next pthio call. Output parameters are written
 * only on success. Nothing here throws, aborts or prints.
 *
 * Handles. pthio_checkpoint and pthio_state_dict are opaque; each one a function creates is
 * released with its pthio_*_free (which accepts NULL). A handle may be used by one thread at a
 * time; distinct handles are independent.
 *
 * Borrowed pointers. Strings and arrays in a pthio_tensor_info (key, dtype_name, shape, strides,
 * device, data) belong to the handle they came from and stay valid until it is freed or, for a
 * state dict, next modified (add, remove). To keep a tensor's data longer, export it with
 * pthio_checkpoint_to_dlpack: the DLPack struct holds the storage until its deleter runs.
 *
 * Tensor layout. shape and strides have ndim entries; strides and storage_offset count elements,
 * not bytes. data is the address of element 0 (storage start + storage_offset * element_size);
 * element (i0, i1, ...) is at data + (i0 * strides[0] + i1 * strides[1] + ...) * element_size.
 * For a tensor on a CUDA device data is a device pointer; for meta tensors it is NULL. Elements
 * are in the machine's byte order (little-endian on every platform pthio builds for).
 */
#ifndef PTHIO_PTHIO_H
#define PTHIO_PTHIO_H

#include <stddef.h>
#include <stdint.h>

/* Exported from libpthio.so, which is built with hidden visibility (see <pthio/export.hpp>).
   PTHIO_BUILDING (compiling the library) and PTHIO_STATIC (linking libpthio.a) matter on Windows
   only. */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(PTHIO_STATIC)
#define PTHIO_C_API
#elif defined(PTHIO_BUILDING)
#define PTHIO_C_API __declspec(dllexport)
#else
#define PTHIO_C_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define PTHIO_C_API __attribute__((visibility("default")))
#else
#define PTHIO_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* DLPack's versioned managed tensor (DLPack >= 1.0; see <pthio/dlpack.hpp> or <dlpack/dlpack.h>).
 */
struct DLManagedTensorVersioned;

typedef enum pthio_status {
  PTHIO_OK = 0,
  PTHIO_ERR_IO = 1,                 /* the operating system refused a read, write, open or rename */
  PTHIO_ERR_CORRUPT_ZIP = 2,        /* the zip container is malformed */
  PTHIO_ERR_CORRUPT_PICKLE = 3,     /* the pickle stream is malformed */
  PTHIO_ERR_CORRUPT_CHECKPOINT = 4, /* well-formed parts that do not describe a valid checkpoint */
  PTHIO_ERR_CORRUPT_SAFETENSORS = 5, /* a safetensors header or layout is invalid */
  PTHIO_ERR_UNSUPPORTED = 6,         /* valid, but a feature pthio does not implement */
  PTHIO_ERR_UNSAFE_GLOBAL = 7,     /* strict mode met a global outside the weights-only allowlist */
  PTHIO_ERR_LIMIT_EXCEEDED = 8,    /* a resource limit (depth, memo, size) was reached */
  PTHIO_ERR_MISMATCH = 9,          /* shapes, dtypes or keys disagree */
  PTHIO_ERR_INVALID_ARGUMENT = 10, /* the caller passed something unusable (NULL, bad shape ...) */
  PTHIO_ERR_CUDA = 11,             /* a CUDA failure, or CUDA is not available */
  PTHIO_ERR_NOT_FOUND = 12,        /* no tensor has that key; index out of range */
  PTHIO_ERR_OUT_OF_MEMORY = 13,    /* an allocation failed */
  PTHIO_ERR_INTERNAL = 14          /* a bug in pthio: please report the message */
} pthio_status;

/* Element types, in pthio::dtype's order; names as torch spells them without "torch.". */
typedef enum pthio_dtype {
  PTHIO_FLOAT64 = 0,
  PTHIO_FLOAT32 = 1,
  PTHIO_FLOAT16 = 2,
  PTHIO_BFLOAT16 = 3,
  PTHIO_COMPLEX128 = 4,
  PTHIO_COMPLEX64 = 5,
  PTHIO_COMPLEX32 = 6,
  PTHIO_INT64 = 7,
  PTHIO_INT32 = 8,
  PTHIO_INT16 = 9,
  PTHIO_INT8 = 10,
  PTHIO_UINT8 = 11,
  PTHIO_UINT16 = 12,
  PTHIO_UINT32 = 13,
  PTHIO_UINT64 = 14,
  PTHIO_BOOL = 15,
  PTHIO_QINT8 = 16,
  PTHIO_QUINT8 = 17,
  PTHIO_QINT32 = 18,
  PTHIO_QUINT4X2 = 19,
  PTHIO_QUINT2X4 = 20,
  PTHIO_FLOAT8_E4M3FN = 21,
  PTHIO_FLOAT8_E5M2 = 22,
  PTHIO_FLOAT8_E4M3FNUZ = 23,
  PTHIO_FLOAT8_E5M2FNUZ = 24,
  PTHIO_FLOAT8_E8M0FNU = 25,
  PTHIO_FLOAT4_E2M1FN_X2 = 26,
  PTHIO_BITS8 = 27,
  PTHIO_BITS16 = 28,
  PTHIO_BITS1X8 = 29,
  PTHIO_BITS2X4 = 30,
  PTHIO_BITS4X2 = 31,
  PTHIO_BCOMPLEX32 = 32
} pthio_dtype;

/* One tensor, as seen through a handle. Every pointer is borrowed (see "Borrowed pointers"). */
typedef struct pthio_tensor_info {
  const char* key;        /* key path ("model_state_dict.fc.weight"); "" for a root tensor */
  const char* dtype_name; /* "float32", "bfloat16", "bool" ... */
  pthio_dtype dtype;
  int32_t ndim;
  const int64_t* shape;   /* ndim extents (NULL when ndim is 0) */
  const int64_t* strides; /* ndim strides in elements (NULL when ndim is 0) */
  int64_t storage_offset; /* in elements, from the start of the storage */
  int64_t numel;          /* product of the extents */
  size_t element_size;    /* bytes per element */
  size_t nbytes;          /* numel * element_size: the elements' bytes, not the storage's */
  void* data;             /* element 0: host or CUDA address; NULL for meta tensors */
  const char* device;     /* "cpu", "cuda:0" ... */
  int requires_grad;      /* 1 or 0 */
  int is_contiguous;      /* 1 when row-major contiguous */
} pthio_tensor_info;

typedef struct pthio_load_options {
  int mmap;                 /* nonzero: map the file and view tensors in place (zero-copy) */
  const char* map_location; /* NULL or "": keep saved devices; else a device ("cpu", "cuda:0") */
  int strict;               /* nonzero: refuse globals outside torch's weights-only allowlist */
  int verify_crc;           /* nonzero: check each record's CRC-32 on eager loads (default 1) */
  int lazy; /* nonzero: read the pickle only (zip, TorchScript, safetensors, shard indexes): every
               tensor is a meta placeholder (data NULL) whose elements pthio_load_slice reads from
               the file on demand; legacy files load eagerly. Overrides mmap. */
} pthio_load_options;

typedef struct pthio_save_options {
  int legacy_format;        /* nonzero: torch's pre-1.6 format instead of zip */
  int torch_1_13_layout;    /* nonzero: the zip records exactly as torch 1.13 writes them */
  const char* archive_name; /* NULL or "": the file name's stem, as torch names it */
} pthio_save_options;

typedef struct pthio_checkpoint pthio_checkpoint;
typedef struct pthio_state_dict pthio_state_dict;
typedef struct pthio_tensor pthio_tensor; /* one tensor the caller owns (pthio_load_slice) */

/* Flags of pthio_state_dict_add. */
#define PTHIO_COPY 0u /* copy the caller's bytes now */
#define PTHIO_BORROW                                                          \
  1u /* keep a pointer: the buffer must outlive the state dict (or the entry) \
      */

/* ---- library -------------------------------------------------------------------------------- */

/* "0.1.0": the library's version. */
PTHIO_C_API const char* pthio_version(void);
/* The calling thread's message from its last pthio call; "" after a success. Never NULL. */
PTHIO_C_API const char* pthio_last_error(void);
/* A status's short name ("ok", "io", "corrupt zip", "not found" ...). Never NULL. */
PTHIO_C_API const char* pthio_status_name(pthio_status status);

/* torch's name of a dtype ("float32"); NULL for a value outside the enum. */
PTHIO_C_API const char* pthio_dtype_name(pthio_dtype dtype);
/* Bytes per element (1 for packed sub-byte types, as torch); 0 for a value outside the enum. */
PTHIO_C_API size_t pthio_dtype_element_size(pthio_dtype dtype);
/* Parses torch's names and aliases ("float", "half", "long" ...); PTHIO_ERR_INVALID_ARGUMENT if
 * unknown. */
PTHIO_C_API pthio_status pthio_dtype_from_name(const char* name, pthio_dtype* out);

/* ---- loading -------------------------------------------------------------------------------- */

/* The defaults: eager load, saved devices kept, not strict, CRC-32 verified. */
PTHIO_C_API void pthio_load_options_init(pthio_load_options* options);

/* Loads the checkpoint at `path` (zip, legacy, TorchScript, safetensors, a Hugging Face
   *.index.json of shards, or a torch.distributed.checkpoint folder); options NULL means the
   defaults. On success *out is a new handle holding every tensor, in the file's order; free it
   with pthio_checkpoint_free. */
PTHIO_C_API pthio_status pthio_checkpoint_open(const char* path, const pthio_load_options* options,
                                               pthio_checkpoint** out);
PTHIO_C_API void pthio_checkpoint_free(pthio_checkpoint* checkpoint);
/* "zip", "legacy", "torchscript", "safetensors" or "dcp"; "" for NULL. Owned by the handle. */
PTHIO_C_API const char* pthio_checkpoint_format(const pthio_checkpoint* checkpoint);
/* Number of tensors reachable from the root (0 for NULL). */
PTHIO_C_API size_t pthio_checkpoint_tensor_count(const pthio_checkpoint* checkpoint);
/* The index-th tensor (depth first, the file's order); PTHIO_ERR_NOT_FOUND past the end. */
PTHIO_C_API pthio_status pthio_checkpoint_tensor(const pthio_checkpoint* checkpoint, size_t index,
                                                 pthio_tensor_info* out);
/* The tensor with key path `key`; PTHIO_ERR_NOT_FOUND (message naming the key) when none. */
PTHIO_C_API pthio_status pthio_checkpoint_find(const pthio_checkpoint* checkpoint, const char* key,
                                               pthio_tensor_info* out);
/* The index-th tensor as a DLPack >= 1.0 managed tensor, without copying: the result holds the
   storage alive until the caller invokes (*out)->deleter(*out), even after the checkpoint is freed.
 */
PTHIO_C_API pthio_status pthio_checkpoint_to_dlpack(const pthio_checkpoint* checkpoint,
                                                    size_t index,
                                                    struct DLManagedTensorVersioned** out);

/* ---- slices --------------------------------------------------------------------------------- */

/* The elements `slice` selects of the tensor with key path `key`, as a new contiguous tensor the
   caller owns (free it with pthio_tensor_free; it does not depend on the checkpoint staying open):
   torch's t[slice].contiguous(), on the device map_location named. `slice` is the text between
   Python's brackets: integers and start:stop:step ranges on the leading dimensions, separated by
   commas ("0:512,:", ":,128:256", "5", "-3:", "1:100:7,::2"; "" selects everything); an integer
   removes its dimension; negative numbers count from the end; steps are > 0. A checkpoint opened
   with `lazy` reads only the bytes the slice needs (no CRC-32 check on the part of a record read:
   see pthio::checkpoint::load_slice); others slice the loaded tensor in memory.
   PTHIO_ERR_NOT_FOUND when no tensor has the key; PTHIO_ERR_INVALID_ARGUMENT for malformed text
   or a slice that does not fit the shape (the message names the key, the dimension and the
   bound). Several threads may call it at once on one checkpoint. */
PTHIO_C_API pthio_status pthio_load_slice(const pthio_checkpoint* checkpoint, const char* key,
                                          const char* slice, pthio_tensor** out);
/* The tensor's layout and bytes (key: the key it was read from); pointers live as long as the
   handle. */
PTHIO_C_API pthio_status pthio_tensor_get_info(const pthio_tensor* tensor, pthio_tensor_info* out);
PTHIO_C_API void pthio_tensor_free(pthio_tensor* tensor);

/* ---- state dicts ---------------------------------------------------------------------------- */

/* A new, empty state dict (an ordered name -> tensor map). */
PTHIO_C_API pthio_status pthio_state_dict_new(pthio_state_dict** out);
/* The model's state dict inside a checkpoint (pthio::extract_state_dict): the entry named `key`
   when key is non-NULL and non-empty, else the root or its "model_state_dict", "state_dict",
   "model", "module", "net", "network" or "ema" entry. A model saved whole (torch.save(model), or
   a checkpoint holding one) gives module.state_dict() under torch's names, computed without
   running the model's code: the default nn.Module.state_dict, parameters and persistent buffers,
   detached. PTHIO_ERR_MISMATCH when there is none. The tensors share the checkpoint's storage,
   which stays alive with the state dict. */
PTHIO_C_API pthio_status pthio_state_dict_from_checkpoint(const pthio_checkpoint* checkpoint,
                                                          const char* key, pthio_state_dict** out);
PTHIO_C_API void pthio_state_dict_free(pthio_state_dict* state_dict);
/* Number of entries (0 for NULL). */
PTHIO_C_API size_t pthio_state_dict_size(const pthio_state_dict* state_dict);
/* The index-th entry, in insertion order; PTHIO_ERR_NOT_FOUND past the end. */
PTHIO_C_API pthio_status pthio_state_dict_tensor(const pthio_state_dict* state_dict, size_t index,
                                                 pthio_tensor_info* out);
/* Adds `name` (or replaces it, keeping its position): a tensor of `dtype` with `ndim` extents
   `shape` over `data`. strides NULL means row-major contiguous; otherwise ndim non-negative
   strides in elements. nbytes is the size of the buffer, which must hold every element the
   strides reach. flags PTHIO_COPY copies the bytes; PTHIO_BORROW uses them in place. */
PTHIO_C_API pthio_status pthio_state_dict_add(pthio_state_dict* state_dict, const char* name,
                                              pthio_dtype dtype, int32_t ndim, const int64_t* shape,
                                              const int64_t* strides, const void* data,
                                              size_t nbytes, unsigned flags);
/* Removes `name`; PTHIO_ERR_NOT_FOUND when absent. */
PTHIO_C_API pthio_status pthio_state_dict_remove(pthio_state_dict* state_dict, const char* name);

/* The defaults: zip, as torch 2.x lays it out, archive named after the file. */
PTHIO_C_API void pthio_save_options_init(pthio_save_options* options);
/* Writes the state dict (an OrderedDict, as torch.save(model.state_dict())) to `path` atomically:
   a temporary beside it, fsync'd, renamed over it. options NULL means the defaults. */
PTHIO_C_API pthio_status pthio_state_dict_save(const pthio_state_dict* state_dict, const char* path,
                                               const pthio_save_options* options);
/* Writes the state dict as a safetensors file at `path`, atomically as above: each tensor's
   elements, contiguous, under its name (tensors that shared a storage are written separately). */
PTHIO_C_API pthio_status pthio_state_dict_save_safetensors(const pthio_state_dict* state_dict,
                                                           const char* path);
/* Writes the state dict as a single-rank torch.distributed.checkpoint folder `dir` (created if
   missing; an earlier checkpoint's .metadata, __R.metadata and *.distcp files there are replaced):
   __0_0.distcp holding each tensor, contiguous, as a torch.save blob (in a zstd frame when `zstd`
   is nonzero), then .metadata. torch.distributed.checkpoint.load reads it into a state dict with
   the same names and shapes. */
PTHIO_C_API pthio_status pthio_state_dict_save_dcp(const pthio_state_dict* state_dict,
                                                   const char* dir, int zstd);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PTHIO_PTHIO_H */
