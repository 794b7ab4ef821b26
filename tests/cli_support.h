// Runs the pthio command and captures its exit status, stdout and stderr.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>

#include "support.h"

#ifndef PTHIO_CLI_PATH
#define PTHIO_CLI_PATH ""  // built with PTHIO_BUILD_TOOLS=OFF: there is no command to run
#endif

namespace pthio_test {

// Whether the pthio command was built; a test case or suite that runs it carries needs_cli, which
// skips it without the command, and a skipped case is not listed, so CTest does not register it.
inline constexpr bool cli_built = sizeof(PTHIO_CLI_PATH) > 1;
inline const doctest::skip needs_cli{!cli_built};

struct run_result {
  int status = -1;  // exit status; -1 when killed by a signal
  std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// A shell command line, its output captured.
inline run_result run_shell(const std::string& command) {
  static int counter = 0;
  auto base = scratch_dir() / ("cli-" + std::to_string(++counter));
  std::string cmd = "{ " + command + "; } >" + shell_quote(base.string() + ".out") + " 2>" +
                    shell_quote(base.string() + ".err") + " </dev/null";
  int rc = std::system(cmd.c_str());
  run_result r;
  r.status = (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1;
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(base.string() + ".out");
  r.err = slurp(base.string() + ".err");
  return r;
}

inline run_result run_cli(const std::string& args) {
  return run_shell(shell_quote(PTHIO_CLI_PATH) + " " + args);
}

}  // namespace pthio_test
