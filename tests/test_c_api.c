/* The C API, from C11: `pthio_c_api_test CASE SCRATCH_DIR` runs one case (load, find, save,
 * errors, threads, dlpack, whole_model, slice) and exits 0 when every check passed. Registered in
 * tests/package.cmake.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef __STDC_NO_THREADS__
#include <threads.h>
#endif

#include <pthio/pthio.h>

/* DLPack 1.x's versioned managed tensor, declared here from the spec for reading an export. */
typedef struct {
  void* data;
  struct {
    int32_t device_type;
    int32_t device_id;
  } device;
  int32_t ndim;
  struct {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
  } dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} test_dl_tensor;
struct DLManagedTensorVersioned {
  struct {
    uint32_t major;
    uint32_t minor;
  } version;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned* self);
  uint64_t flags;
  test_dl_tensor dl_tensor;
};

static int failures;
static const char* scratch;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: \"%s\")\n", __FILE__, __LINE__, #cond, \
              pthio_last_error());                                                                 \
      ++failures;                                                                                  \
    }                                                                                              \
  } while (0)
#define REQUIRE(cond)                                                                         \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: REQUIRE(%s) failed (last error: \"%s\")\n", __FILE__, __LINE__, \
              #cond, pthio_last_error());                                                     \
      ++failures;                                                                             \
      return;                                                                                 \
    }                                                                                         \
  } while (0)

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * (1.0 + fabs(b)); }

static char* path_in(const char* dir, const char* name) {
  static char buf[4][4096];
  static int next;
  char* p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static void check_linear(const pthio_checkpoint* ck) {
  pthio_tensor_info w, b;
  REQUIRE(pthio_checkpoint_tensor_count(ck) == 2);
  CHECK(strcmp(pthio_checkpoint_format(ck), "zip") == 0);
  REQUIRE(pthio_checkpoint_tensor(ck, 0, &w) == PTHIO_OK);
  CHECK(strcmp(pthio_last_error(), "") == 0);
  CHECK(strcmp(w.key, "weight") == 0);
  CHECK(w.dtype == PTHIO_FLOAT32);
  CHECK(strcmp(w.dtype_name, "float32") == 0);
  REQUIRE(w.ndim == 2);
  CHECK(w.shape[0] == 3 && w.shape[1] == 4);
  CHECK(w.strides[0] == 4 && w.strides[1] == 1);
  CHECK(w.storage_offset == 0);
  CHECK(w.numel == 12 && w.element_size == 4 && w.nbytes == 48);
  CHECK(strcmp(w.device, "cpu") == 0);
  CHECK(w.is_contiguous == 1 && w.requires_grad == 0);
  REQUIRE(w.data != NULL);
  /* torch.nn.Linear(4, 3) as generate.py saved it: weight[0][0] and weight[1][2]. */
  CHECK(near(((const float*)w.data)[0], 0.2576316));
  CHECK(near(((const float*)w.data)[1 * 4 + 2], -0.102862656));
  REQUIRE(pthio_checkpoint_tensor(ck, 1, &b) == PTHIO_OK);
  CHECK(strcmp(b.key, "bias") == 0);
  REQUIRE(b.ndim == 1);
  CHECK(b.shape[0] == 3 && b.strides[0] == 1);
  CHECK(near(((const float*)b.data)[2], -0.03645438));
}

static void case_load(const char* fixtures) {
  pthio_checkpoint* ck = NULL;
  const char* path = path_in(fixtures, "t1/linear.pth");
  REQUIRE(pthio_checkpoint_open(path, NULL, &ck) == PTHIO_OK);
  check_linear(ck);
  pthio_checkpoint_free(ck);

  /* The same through a memory map, mapped to the CPU, in weights-only mode. */
  pthio_load_options o;
  pthio_load_options_init(&o);
  CHECK(o.mmap == 0 && o.strict == 0 && o.verify_crc == 1 && o.map_location == NULL);
  o.mmap = 1;
  o.map_location = "cpu";
  o.strict = 1;
  ck = NULL;
  REQUIRE(pthio_checkpoint_open(path, &o, &ck) == PTHIO_OK);
  check_linear(ck);
  pthio_checkpoint_free(ck);

  /* A training checkpoint: nested keys, a state dict extracted from it. */
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t2/ckpt_adam.pth"), NULL, &ck) == PTHIO_OK);
  pthio_tensor_info info;
  REQUIRE(pthio_checkpoint_find(ck, "model_state_dict.0.weight", &info) == PTHIO_OK);
  CHECK(info.ndim == 2 && info.shape[0] == 32 && info.shape[1] == 10);
  REQUIRE(pthio_checkpoint_find(ck, "optimizer_state_dict.state.0.exp_avg", &info) == PTHIO_OK);
  CHECK(info.shape[0] == 32 && info.shape[1] == 10);
  pthio_state_dict* sd = NULL;
  REQUIRE(pthio_state_dict_from_checkpoint(ck, NULL, &sd) == PTHIO_OK);
  pthio_checkpoint_free(ck); /* the state dict keeps the storages */
  CHECK(pthio_state_dict_size(sd) > 0);
  REQUIRE(pthio_state_dict_tensor(sd, 0, &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "0.weight") == 0);
  CHECK(info.shape[0] == 32 && ((const float*)info.data)[0] == ((const float*)info.data)[0]);
  pthio_state_dict_free(sd);
}

/* A model saved whole: its state dict under torch's names, exported in both formats. */
static void case_whole_model(const char* fixtures) {
  pthio_checkpoint* ck = NULL;
  pthio_tensor_info info;
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t2/whole_ckpt.pt"), NULL, &ck) == PTHIO_OK);
  pthio_state_dict* model = NULL;
  pthio_state_dict* ema = NULL;
  REQUIRE(pthio_state_dict_from_checkpoint(ck, NULL, &model) == PTHIO_OK);
  REQUIRE(pthio_state_dict_from_checkpoint(ck, "ema", &ema) == PTHIO_OK);
  pthio_checkpoint_free(ck);
  CHECK(pthio_state_dict_size(model) == 21 && pthio_state_dict_size(ema) == 21);
  /* The root's buffer first, then the children's entries, as torch orders them. */
  REQUIRE(pthio_state_dict_tensor(model, 0, &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "anchors") == 0 && info.shape[0] == 3 && info.shape[1] == 2);
  REQUIRE(pthio_state_dict_tensor(model, 1, &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "model.0.conv.weight") == 0 && info.dtype == PTHIO_FLOAT32);
  REQUIRE(pthio_state_dict_tensor(ema, 1, &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "model.0.conv.weight") == 0 && info.dtype == PTHIO_FLOAT16);
  CHECK(info.requires_grad == 0);

  const char* pth = path_in(scratch, "c_api_ema.pth");
  REQUIRE(pthio_state_dict_save(ema, pth, NULL) == PTHIO_OK);
  const char* st = path_in(scratch, "c_api_ema.safetensors");
  REQUIRE(pthio_state_dict_save_safetensors(ema, st) == PTHIO_OK);
  CHECK(pthio_state_dict_save_safetensors(NULL, st) == PTHIO_ERR_INVALID_ARGUMENT);
  /* A DCP folder: its data file and .metadata (tests/test_dcp_write.cpp checks their content). */
  {
    char dcp_dir[4096], file[4200];
    snprintf(dcp_dir, sizeof dcp_dir, "%s", path_in(scratch, "c_api_ema.dcp"));
    REQUIRE(pthio_state_dict_save_dcp(ema, dcp_dir, 1) == PTHIO_OK);
    const char* names[2] = {"__0_0.distcp", ".metadata"};
    for (int i = 0; i < 2; ++i) {
      snprintf(file, sizeof file, "%s/%s", dcp_dir, names[i]);
      FILE* f = fopen(file, "rb");
      CHECK(f != NULL);
      if (f) fclose(f);
    }
    CHECK(pthio_state_dict_save_dcp(NULL, dcp_dir, 0) == PTHIO_ERR_INVALID_ARGUMENT);
    /* a file where the folder should be */
    CHECK(pthio_state_dict_save_dcp(ema, pth, 0) == PTHIO_ERR_IO);
  }
  const char* paths[2] = {pth, st};
  for (int p = 0; p < 2; ++p) {
    REQUIRE(pthio_checkpoint_open(paths[p], NULL, &ck) == PTHIO_OK);
    CHECK(strcmp(pthio_checkpoint_format(ck), p == 0 ? "zip" : "safetensors") == 0);
    CHECK(pthio_checkpoint_tensor_count(ck) == 21);
    REQUIRE(pthio_checkpoint_find(ck, "model.3.bias", &info) == PTHIO_OK);
    CHECK(info.dtype == PTHIO_FLOAT16 && info.ndim == 1 && info.shape[0] == 24);
    pthio_checkpoint_free(ck);
  }
  pthio_state_dict_free(model);
  pthio_state_dict_free(ema);

  /* Nothing that is a state dict or a model. */
  pthio_state_dict* none = NULL;
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t2/pyvalues.pth"), NULL, &ck) == PTHIO_OK);
  CHECK(pthio_state_dict_from_checkpoint(ck, NULL, &none) == PTHIO_ERR_MISMATCH);
  CHECK(none == NULL && strstr(pthio_last_error(), "no state dict found") != NULL);
  pthio_checkpoint_free(ck);
}

static void case_find(const char* fixtures) {
  pthio_checkpoint* ck = NULL;
  pthio_tensor_info info;
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t1/linear.pth"), NULL, &ck) == PTHIO_OK);
  REQUIRE(pthio_checkpoint_find(ck, "bias", &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "bias") == 0 && info.shape[0] == 3);
  memset(&info, 0x5a, sizeof info);
  CHECK(pthio_checkpoint_find(ck, "no.such.key", &info) == PTHIO_ERR_NOT_FOUND);
  CHECK(strstr(pthio_last_error(), "no.such.key") != NULL);
  CHECK(info.ndim == 0x5a5a5a5a); /* untouched on failure */
  CHECK(pthio_checkpoint_tensor(ck, 2, &info) == PTHIO_ERR_NOT_FOUND);
  CHECK(strstr(pthio_last_error(), "2") != NULL);
  CHECK(pthio_checkpoint_tensor(ck, 0, &info) == PTHIO_OK);
  CHECK(strcmp(pthio_last_error(), "") == 0); /* a success clears the message */
  pthio_checkpoint_free(ck);
}

static void case_save(const char* fixtures) {
  (void)fixtures;
  float w[6] = {0.5f, -1.0f, 2.0f, 3.25f, 4.0f, -5.5f};
  int64_t counts[4] = {1, 2, 3, 40000000000LL};
  double col[6] = {1, 2, 3, 4, 5, 6}; /* a 2x3 row-major buffer, saved as its 3x2 transpose */
  uint8_t mask[3] = {1, 0, 1};
  int64_t step = 7;
  const int64_t w_shape[2] = {2, 3};
  const int64_t c_shape[1] = {4};
  const int64_t t_shape[2] = {3, 2}, t_strides[2] = {1, 3};
  const int64_t m_shape[1] = {3};

  pthio_state_dict* sd = NULL;
  REQUIRE(pthio_state_dict_new(&sd) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "fc.weight", PTHIO_FLOAT32, 2, w_shape, NULL, w, sizeof w,
                             PTHIO_COPY) == PTHIO_OK);
  w[0] = 99.0f; /* copied: the state dict keeps 0.5 */
  CHECK(pthio_state_dict_add(sd, "counts", PTHIO_INT64, 1, c_shape, NULL, counts, sizeof counts,
                             PTHIO_BORROW) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "colmajor", PTHIO_FLOAT64, 2, t_shape, t_strides, col, sizeof col,
                             PTHIO_COPY) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "mask", PTHIO_BOOL, 1, m_shape, NULL, mask, sizeof mask,
                             PTHIO_COPY) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "step", PTHIO_INT64, 0, NULL, NULL, &step, sizeof step,
                             PTHIO_COPY) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "dropped", PTHIO_INT64, 0, NULL, NULL, &step, sizeof step,
                             PTHIO_COPY) == PTHIO_OK);
  CHECK(pthio_state_dict_remove(sd, "dropped") == PTHIO_OK);
  CHECK(pthio_state_dict_remove(sd, "dropped") == PTHIO_ERR_NOT_FOUND);
  step = 8; /* replacing keeps the position */
  CHECK(pthio_state_dict_add(sd, "step", PTHIO_INT64, 0, NULL, NULL, &step, sizeof step,
                             PTHIO_COPY) == PTHIO_OK);
  CHECK(pthio_state_dict_size(sd) == 5);
  counts[1] = 20; /* borrowed: the state dict sees the caller's buffer */

  const char* zip_path = path_in(scratch, "c_api_saved.pth");
  const char* legacy_path = path_in(scratch, "c_api_legacy.pth");
  REQUIRE(pthio_state_dict_save(sd, zip_path, NULL) == PTHIO_OK);
  pthio_save_options so;
  pthio_save_options_init(&so);
  so.legacy_format = 1;
  REQUIRE(pthio_state_dict_save(sd, legacy_path, &so) == PTHIO_OK);
  pthio_state_dict_free(sd);

  const char* paths[2] = {zip_path, legacy_path};
  for (int p = 0; p < 2; ++p) {
    pthio_checkpoint* ck = NULL;
    pthio_tensor_info info;
    REQUIRE(pthio_checkpoint_open(paths[p], NULL, &ck) == PTHIO_OK);
    CHECK(strcmp(pthio_checkpoint_format(ck), p == 0 ? "zip" : "legacy") == 0);
    REQUIRE(pthio_checkpoint_tensor_count(ck) == 5);
    const char* order[5] = {"fc.weight", "counts", "colmajor", "mask", "step"};
    for (size_t i = 0; i < 5; ++i) {
      REQUIRE(pthio_checkpoint_tensor(ck, i, &info) == PTHIO_OK);
      CHECK(strcmp(info.key, order[i]) == 0);
    }
    REQUIRE(pthio_checkpoint_find(ck, "fc.weight", &info) == PTHIO_OK);
    CHECK(info.dtype == PTHIO_FLOAT32 && info.ndim == 2 && info.shape[0] == 2 &&
          info.shape[1] == 3);
    CHECK(((const float*)info.data)[0] == 0.5f && ((const float*)info.data)[5] == -5.5f);
    REQUIRE(pthio_checkpoint_find(ck, "counts", &info) == PTHIO_OK);
    CHECK(info.dtype == PTHIO_INT64 && ((const int64_t*)info.data)[1] == 20);
    CHECK(((const int64_t*)info.data)[3] == 40000000000LL);
    REQUIRE(pthio_checkpoint_find(ck, "colmajor", &info) == PTHIO_OK);
    CHECK(info.shape[0] == 3 && info.shape[1] == 2);
    CHECK(info.strides[0] == 1 && info.strides[1] == 3 && info.is_contiguous == 0);
    { /* element [2][1] of the transpose is col[1 * 3 + 2] */
      const double* d = (const double*)info.data;
      CHECK(d[2 * info.strides[0] + 1 * info.strides[1]] == 6.0);
      CHECK(d[1 * info.strides[0] + 0 * info.strides[1]] == 2.0);
    }
    REQUIRE(pthio_checkpoint_find(ck, "mask", &info) == PTHIO_OK);
    CHECK(info.dtype == PTHIO_BOOL && ((const uint8_t*)info.data)[1] == 0 &&
          ((const uint8_t*)info.data)[2] == 1);
    REQUIRE(pthio_checkpoint_find(ck, "step", &info) == PTHIO_OK);
    CHECK(info.ndim == 0 && info.shape == NULL && info.numel == 1 &&
          *(const int64_t*)info.data == 8);
    pthio_checkpoint_free(ck);
  }
}

static void case_errors(const char* fixtures) {
  pthio_checkpoint* ck = (pthio_checkpoint*)&ck; /* must stay untouched on failure */
  pthio_checkpoint* const sentinel = ck;
  const char* missing = path_in(scratch, "does-not-exist.pth");
  CHECK(pthio_checkpoint_open(missing, NULL, &ck) == PTHIO_ERR_IO);
  CHECK(ck == sentinel);
  CHECK(strstr(pthio_last_error(), "does-not-exist.pth") != NULL);

  /* Not a checkpoint at all. */
  const char* garbage = path_in(scratch, "garbage.pth");
  FILE* f = fopen(garbage, "wb");
  REQUIRE(f != NULL);
  fputs("this is not a checkpoint, just text long enough to be looked at", f);
  fclose(f);
  pthio_status st = pthio_checkpoint_open(garbage, NULL, &ck);
  CHECK(st != PTHIO_OK && st != PTHIO_ERR_INTERNAL);
  CHECK(strlen(pthio_last_error()) > 0);

  /* A record whose bytes disagree with its CRC-32. */
  st = pthio_checkpoint_open(path_in(fixtures, "t1/corrupt_record.pth"), NULL, &ck);
  CHECK(st == PTHIO_ERR_CORRUPT_ZIP || st == PTHIO_ERR_CORRUPT_CHECKPOINT);
  CHECK(ck == sentinel);

  /* Bad arguments. */
  CHECK(pthio_checkpoint_open(NULL, NULL, &ck) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_checkpoint_open(missing, NULL, NULL) == PTHIO_ERR_INVALID_ARGUMENT);
  pthio_load_options o;
  pthio_load_options_init(&o);
  o.map_location = "cuda:banana";
  CHECK(pthio_checkpoint_open(path_in(fixtures, "t1/linear.pth"), &o, &ck) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pthio_last_error(), "banana") != NULL);
  CHECK(pthio_checkpoint_tensor_count(NULL) == 0);
  CHECK(pthio_checkpoint_tensor(NULL, 0, NULL) == PTHIO_ERR_INVALID_ARGUMENT);
  pthio_checkpoint_free(NULL);
  pthio_state_dict_free(NULL);

  pthio_state_dict* sd = NULL;
  float buf[4] = {0};
  const int64_t shape[2] = {2, 3};
  const int64_t neg[1] = {-1};
  REQUIRE(pthio_state_dict_new(&sd) == PTHIO_OK);
  CHECK(pthio_state_dict_add(sd, "small", PTHIO_FLOAT32, 2, shape, NULL, buf, sizeof buf,
                             PTHIO_COPY) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pthio_last_error(), "24 bytes") != NULL);
  CHECK(pthio_state_dict_add(sd, "x", (pthio_dtype)99, 1, neg + 0, NULL, buf, sizeof buf,
                             PTHIO_COPY) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_add(sd, "x", PTHIO_FLOAT32, 1, neg, NULL, buf, sizeof buf, PTHIO_COPY) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_add(sd, "x", PTHIO_FLOAT32, -1, NULL, NULL, buf, sizeof buf, PTHIO_COPY) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_add(sd, "x", PTHIO_FLOAT32, 1, NULL, NULL, buf, sizeof buf, PTHIO_COPY) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_add(sd, "x", PTHIO_FLOAT32, 0, NULL, NULL, buf, sizeof buf, 7u) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_add(sd, NULL, PTHIO_FLOAT32, 0, NULL, NULL, buf, sizeof buf, PTHIO_COPY) ==
        PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(pthio_state_dict_size(sd) == 0);
  CHECK(pthio_state_dict_add(sd, "ok", PTHIO_FLOAT32, 0, NULL, NULL, buf, sizeof buf, PTHIO_COPY) ==
        PTHIO_OK);
  CHECK(pthio_state_dict_save(sd, path_in(scratch, "no/such/dir/out.pth"), NULL) == PTHIO_ERR_IO);
  CHECK(strstr(pthio_last_error(), "no/such/dir") != NULL);
  /* Quantized tensors are read, never written. */
  int8_t q[2] = {1, 2};
  const int64_t qshape[1] = {2};
  CHECK(pthio_state_dict_add(sd, "q", PTHIO_QINT8, 1, qshape, NULL, q, sizeof q, PTHIO_COPY) ==
        PTHIO_OK);
  CHECK(pthio_state_dict_save(sd, path_in(scratch, "quantized.pth"), NULL) ==
        PTHIO_ERR_UNSUPPORTED);
  pthio_state_dict_free(sd);

  /* Names and dtypes. */
  pthio_dtype d = PTHIO_BOOL;
  CHECK(pthio_dtype_from_name("half", &d) == PTHIO_OK && d == PTHIO_FLOAT16);
  CHECK(pthio_dtype_from_name("float8_e4m3fn", &d) == PTHIO_OK && d == PTHIO_FLOAT8_E4M3FN);
  CHECK(pthio_dtype_from_name("floaty", &d) == PTHIO_ERR_INVALID_ARGUMENT &&
        d == PTHIO_FLOAT8_E4M3FN);
  CHECK(strcmp(pthio_dtype_name(PTHIO_BFLOAT16), "bfloat16") == 0);
  CHECK(pthio_dtype_name((pthio_dtype)-1) == NULL);
  CHECK(pthio_dtype_element_size(PTHIO_COMPLEX128) == 16 &&
        pthio_dtype_element_size((pthio_dtype)77) == 0);
  CHECK(strcmp(pthio_status_name(PTHIO_ERR_NOT_FOUND), "not found") == 0);
  CHECK(strcmp(pthio_status_name(PTHIO_OK), "ok") == 0);
  CHECK(strlen(pthio_version()) > 0 && strcmp(pthio_version(), "unknown") != 0);
}

#ifndef __STDC_NO_THREADS__
static int thread_fails(void* arg) {
  pthio_checkpoint* ck = NULL;
  int ok = pthio_checkpoint_open((const char*)arg, NULL, &ck) == PTHIO_ERR_IO &&
           strstr(pthio_last_error(), "other-thread.pth") != NULL;
  return ok ? 0 : 1;
}
#endif

static void case_threads(const char* fixtures) {
#ifndef __STDC_NO_THREADS__
  /* The message is per thread: another thread's failure does not replace this one's. */
  pthio_checkpoint* ck = NULL;
  CHECK(pthio_checkpoint_open(path_in(scratch, "this-thread.pth"), NULL, &ck) == PTHIO_ERR_IO);
  thrd_t t;
  int rc = 1;
  REQUIRE(thrd_create(&t, thread_fails, path_in(scratch, "other-thread.pth")) == thrd_success);
  REQUIRE(thrd_join(t, &rc) == thrd_success);
  CHECK(rc == 0);
  CHECK(strstr(pthio_last_error(), "this-thread.pth") != NULL);
  CHECK(strstr(pthio_last_error(), "other-thread.pth") == NULL);
  (void)fixtures;
#else
  (void)fixtures;
  fprintf(stderr, "no C11 threads: skipped\n");
#endif
}

static void case_dlpack(const char* fixtures) {
  pthio_checkpoint* ck = NULL;
  struct DLManagedTensorVersioned* m = NULL;
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t1/linear.pth"), NULL, &ck) == PTHIO_OK);
  REQUIRE(pthio_checkpoint_to_dlpack(ck, 0, &m) == PTHIO_OK);
  CHECK(pthio_checkpoint_to_dlpack(ck, 9, &m) == PTHIO_ERR_NOT_FOUND);
  pthio_checkpoint_free(ck); /* the DLPack tensor keeps the weight's storage */
  REQUIRE(m != NULL);
  CHECK(m->version.major == 1);
  CHECK(m->dl_tensor.device.device_type == 1 /* kDLCPU */);
  CHECK(m->dl_tensor.dtype.code == 2 /* kDLFloat */ && m->dl_tensor.dtype.bits == 32 &&
        m->dl_tensor.dtype.lanes == 1);
  REQUIRE(m->dl_tensor.ndim == 2);
  CHECK(m->dl_tensor.shape[0] == 3 && m->dl_tensor.shape[1] == 4);
  CHECK(m->dl_tensor.strides[0] == 4 && m->dl_tensor.strides[1] == 1);
  const float* data = (const float*)((const char*)m->dl_tensor.data + m->dl_tensor.byte_offset);
  CHECK(near(data[0], 0.2576316));
  CHECK(near(data[6], -0.102862656));
  REQUIRE(m->deleter != NULL);
  m->deleter(m);
}

static void case_slice(const char* fixtures) {
  /* The same weight eagerly (every element) and lazily (placeholders, then slices read). */
  pthio_checkpoint* eager = NULL;
  pthio_checkpoint* lazy = NULL;
  pthio_load_options o;
  pthio_tensor_info whole, info;
  pthio_tensor* t = NULL;
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t1/linear.pth"), NULL, &eager) == PTHIO_OK);
  REQUIRE(pthio_checkpoint_find(eager, "weight", &whole) == PTHIO_OK);
  pthio_load_options_init(&o);
  o.lazy = 1;
  o.map_location = "cpu";
  REQUIRE(pthio_checkpoint_open(path_in(fixtures, "t1/linear.pth"), &o, &lazy) == PTHIO_OK);
  REQUIRE(pthio_checkpoint_find(lazy, "weight", &info) == PTHIO_OK);
  CHECK(info.data == NULL && strcmp(info.device, "meta") == 0); /* nothing read yet */
  const float* w = (const float*)whole.data;                    /* [3, 4], row-major */

  /* Rows 1 and 2, every other column from column 1: weight[1:, 1::2]. */
  REQUIRE(pthio_load_slice(lazy, "weight", "1:, 1::2", &t) == PTHIO_OK);
  REQUIRE(pthio_tensor_get_info(t, &info) == PTHIO_OK);
  CHECK(strcmp(info.key, "weight") == 0 && strcmp(info.device, "cpu") == 0);
  REQUIRE(info.ndim == 2 && info.dtype == PTHIO_FLOAT32);
  CHECK(info.shape[0] == 2 && info.shape[1] == 2 && info.strides[0] == 2 && info.is_contiguous);
  const float* s = (const float*)info.data;
  CHECK(s[0] == w[5] && s[1] == w[7] && s[2] == w[9] && s[3] == w[11]);
  CHECK(near(w[6], -0.102862656));
  pthio_checkpoint_free(lazy); /* the slice owns its bytes */
  CHECK(s[3] == w[11]);
  pthio_tensor_free(t);

  /* An index removes its dimension; negative numbers count from the end. From the eager handle,
     sliced in memory. */
  REQUIRE(pthio_load_slice(eager, "weight", "-2", &t) == PTHIO_OK);
  REQUIRE(pthio_tensor_get_info(t, &info) == PTHIO_OK);
  CHECK(info.ndim == 1 && info.shape[0] == 4 && info.numel == 4 && info.nbytes == 16);
  CHECK(memcmp(info.data, w + 4, 16) == 0);
  pthio_tensor_free(t);

  /* Errors: malformed text, out of range (naming key, dimension and bound), absent key. */
  t = NULL;
  CHECK(pthio_load_slice(eager, "weight", "1:2:0", &t) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pthio_last_error(), "1:2:0") != NULL);
  CHECK(pthio_load_slice(eager, "weight", ":,4", &t) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(strstr(pthio_last_error(), "weight") != NULL &&
        strstr(pthio_last_error(), "dimension 1") != NULL &&
        strstr(pthio_last_error(), "size 4") != NULL);
  CHECK(pthio_load_slice(eager, "nope", ":", &t) == PTHIO_ERR_NOT_FOUND);
  CHECK(pthio_load_slice(eager, "weight", NULL, &t) == PTHIO_ERR_INVALID_ARGUMENT);
  CHECK(t == NULL);
  CHECK(pthio_tensor_get_info(NULL, &info) == PTHIO_ERR_INVALID_ARGUMENT);
  pthio_tensor_free(NULL);
  pthio_checkpoint_free(eager);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s CASE FIXTURES_DIR SCRATCH_DIR\n", argv[0]);
    return 2;
  }
  const char* name = argv[1];
  const char* fixtures = argv[2];
  scratch = argv[3];
  static const struct {
    const char* name;
    void (*run)(const char*);
  } cases[] = {{"load", case_load},
               {"find", case_find},
               {"save", case_save},
               {"errors", case_errors},
               {"threads", case_threads},
               {"dlpack", case_dlpack},
               {"whole_model", case_whole_model},
               {"slice", case_slice}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    if (strcmp(cases[i].name, name) == 0) {
      cases[i].run(fixtures);
      if (failures) fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
      return failures ? 1 : 0;
    }
  }
  fprintf(stderr, "unknown case %s\n", name);
  return 2;
}
