// progress: see progress.h.
#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "json.h"

namespace pthio::cli {

namespace {

// A time in milliseconds from the environment (tests), else the default.
std::chrono::milliseconds configured(const char* name, long fallback) {
  if (const char* e = std::getenv(name)) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    if (end != e && *end == '\0' && v >= 0) return std::chrono::milliseconds(v);
  }
  return std::chrono::milliseconds(fallback);
}

std::string duration_text(double seconds) {
  // Past 100 days an estimate says nothing (and a hostile total could overflow the cast).
  if (!(seconds < 8.64e6)) return "days";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  return buf;
}

}  // namespace

progress::progress(std::string label, std::uint64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      show_after_(configured("PTHIO_PROGRESS_AFTER_MS", 1000)),
      redraw_every_(configured("PTHIO_PROGRESS_EVERY_MS", 100)) {}

progress::~progress() { clear(); }

void progress::clear() {
  if (!shown_) return;
  std::fputs("\r\033[K", stderr);  // back to the start of the line, erased
  std::fflush(stderr);
  shown_ = false;
}

bool progress::wanted(bool quiet) { return !quiet && ::isatty(STDERR_FILENO) == 1; }

void progress::update(std::uint64_t done) {
  done_ = done;
  if (!enabled_) return;
  const auto now = clock::now();
  if (now - start_ < show_after_) return;
  if (shown_ && now - last_draw_ < redraw_every_) return;
  last_draw_ = now;
  draw();
}

void progress::draw() {
  shown_ = true;
  const std::uint64_t total = std::max(total_, done_);
  const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0;
  std::string line = "\r" + label_ + ": " + binary_size(done_) + " of " + binary_size(total);
  if (total > 0) {
    char pct[16];
    std::snprintf(
        pct, sizeof pct, " (%d%%)",
        static_cast<int>(100.0 * static_cast<double>(done_) / static_cast<double>(total)));
    line += pct;
  }
  if (rate > 0 && elapsed >= 0.25) {  // a rate from the first moments says nothing
    line += ", " + binary_size(static_cast<std::uint64_t>(rate)) + "/s";
    line += ", " + duration_text(static_cast<double>(total - done_) / rate) + " left";
  }
  line += "\033[K";  // erase what a longer line before left
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace pthio::cli
