/* A C consumer of the C API: loads nn.Linear(4, 3)'s state dict, saves a state dict and reads it
 * back. Usage: consumer_c FIXTURE OUT_DIR. */
#include <stdio.h>
#include <string.h>

#include <pthio/pthio.h>

static int fail(const char* what, pthio_status st) {
  fprintf(stderr, "consumer_c: %s: %s: %s\n", what, pthio_status_name(st), pthio_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  pthio_checkpoint* ck = NULL;
  pthio_tensor_info w;
  pthio_status st = pthio_checkpoint_open(argv[1], NULL, &ck);
  if (st != PTHIO_OK) return fail("open", st);
  if ((st = pthio_checkpoint_find(ck, "weight", &w)) != PTHIO_OK) return fail("find", st);
  if (w.ndim != 2 || w.shape[0] != 3 || w.shape[1] != 4 || w.dtype != PTHIO_FLOAT32) return 1;
  float first = ((const float*)w.data)[0];

  pthio_state_dict* sd = NULL;
  if ((st = pthio_state_dict_new(&sd)) != PTHIO_OK) return fail("new", st);
  st = pthio_state_dict_add(sd, "w", PTHIO_FLOAT32, w.ndim, w.shape, w.strides, w.data, w.nbytes,
                            PTHIO_COPY);
  if (st != PTHIO_OK) return fail("add", st);
  pthio_checkpoint_free(ck);
  char out[4096];
  snprintf(out, sizeof out, "%s/consumer_c.pth", argv[2]);
  if ((st = pthio_state_dict_save(sd, out, NULL)) != PTHIO_OK) return fail("save", st);
  pthio_state_dict_free(sd);

  if ((st = pthio_checkpoint_open(out, NULL, &ck)) != PTHIO_OK) return fail("reopen", st);
  if ((st = pthio_checkpoint_find(ck, "w", &w)) != PTHIO_OK) return fail("find w", st);
  if (((const float*)w.data)[0] != first) return 1;
  pthio_checkpoint_free(ck);
  printf("consumer_c %s: ok\n", pthio_version());
  return 0;
}
