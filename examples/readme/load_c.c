/* README, "Load into an inference engine" from C: the C API of <pthio/pthio.h>.
 *   readme_load_c STATE_DICT        (CTest runs it on fixtures/t2/linear.pth, nn.Linear(4, 3))
 * The README shows print_checkpoint() verbatim; tests/readme_check.py keeps it so. */
#include <stdio.h>
#include <string.h>

#include <pthio/pthio.h>

int print_checkpoint(const char* path) {
  pthio_load_options opts;
  pthio_load_options_init(&opts); /* eager, saved devices kept, CRC-32 checked */
  opts.map_location = "cpu";
  opts.strict = 1; /* weights only */

  pthio_checkpoint* ck = NULL;
  if (pthio_checkpoint_open(path, &opts, &ck) != PTHIO_OK) {
    fprintf(stderr, "%s\n", pthio_last_error()); /* file, record, offset, rule broken */
    return 1;
  }
  for (size_t i = 0; i < pthio_checkpoint_tensor_count(ck); ++i) {
    pthio_tensor_info t;
    if (pthio_checkpoint_tensor(ck, i, &t) == PTHIO_OK)
      printf("%s %s ndim %d numel %lld\n", t.key, t.dtype_name, (int)t.ndim, (long long)t.numel);
  }

  pthio_tensor_info w;
  if (pthio_checkpoint_find(ck, "weight", &w) == PTHIO_OK && w.dtype == PTHIO_FLOAT32 &&
      w.ndim == 2) {
    /* Borrowed from the handle: valid until pthio_checkpoint_free. Strides count elements. */
    const float* data = (const float*)w.data;
    printf("weight[1][2] = %g\n", data[1 * w.strides[0] + 2 * w.strides[1]]);
  }
  pthio_checkpoint_free(ck);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: readme_load_c STATE_DICT\n");
    return 2;
  }
  if (print_checkpoint(argv[1]) != 0) return 1;

  /* A file that does not exist: a status and a message, nothing thrown or printed. */
  pthio_checkpoint* ck = NULL;
  pthio_status s = pthio_checkpoint_open("no/such/file.pth", NULL, &ck);
  if (s != PTHIO_ERR_IO || ck != NULL || strstr(pthio_last_error(), "no/such/file.pth") == NULL) {
    fprintf(stderr, "readme_load_c: expected an io error, got %s: %s\n", pthio_status_name(s),
            pthio_last_error());
    return 1;
  }
  printf("missing file: %s\n", pthio_status_name(s));
  printf("readme_load_c: ok\n");
  return 0;
}
