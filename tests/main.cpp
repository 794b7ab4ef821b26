// The doctest main of pthio_tests and pthio_limits_tests: runs the tests, then keeps the scratch
// folder (tests/support.h) only when a test failed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "support.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int failed = context.run();
  if (failed != 0) pthio_test::keep_scratch_dir();
  return failed;
}
