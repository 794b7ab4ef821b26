// Progress of long work on stderr, for people: one line, redrawn in place, cleared at the end;
// only when stderr is a terminal and --quiet was not given. Nothing goes to stdout.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pthio::cli {

class progress {
 public:
  // `label` starts the line ("convert", "verify"); `total` is the bytes the work will take, as
  // far as known (done may pass it: the total then follows). Shows nothing unless `enabled`.
  progress(std::string label, std::uint64_t total, bool enabled);
  ~progress();  // clears the line
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  void advance(std::uint64_t bytes) { update(done_ + bytes); }
  // `done` bytes so far. The line appears once the work has taken 1 s and is redrawn at most
  // every 100 ms (for tests, the environment variables PTHIO_PROGRESS_AFTER_MS and
  // PTHIO_PROGRESS_EVERY_MS change both).
  void update(std::uint64_t done);
  void add_total(std::uint64_t bytes) { total_ += bytes; }
  // Erases the line, if shown, before the command prints a line of its own (stdout and stderr
  // may be the same terminal); the next update draws it again.
  void clear();

  // Whether a command should show progress: stderr is a terminal and not --quiet.
  static bool wanted(bool quiet);

 private:
  using clock = std::chrono::steady_clock;
  void draw();
  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool enabled_;
  bool shown_ = false;
  clock::time_point start_ = clock::now();
  clock::time_point last_draw_{};
  clock::duration show_after_;
  clock::duration redraw_every_;
};

}  // namespace pthio::cli
