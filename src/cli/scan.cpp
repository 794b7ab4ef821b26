// scan's renderings of pthio::scan_report (the scanner itself is the library's, src/scan/).
#include <string>

#include "json.h"
#include "scan.h"

namespace pthio::cli {

std::string scan_json(const scan_report& r) {
  std::string out = "{\"globals\": [";
  for (std::size_t i = 0; i < r.globals.size(); ++i) {
    const scan_global& g = r.globals[i];
    out += (i ? ", " : "") + std::string("{\"name\": ") + json_quote(g.name) +
           ", \"count\": " + std::to_string(g.count) + ", \"where\": [";
    for (std::size_t j = 0; j < g.where.size(); ++j)
      out += (j ? ", " : "") + std::string("{\"member\": ") + json_quote(g.where[j].member) +
             ", \"offset\": " + std::to_string(g.where[j].offset) + "}";
    out += "]}";
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + json_quote(v[i]);
    return s + "]";
  };
  out += "], \"unsafe\": " + list(r.unsafe) + ", \"dangerous\": " + list(r.dangerous) +
         ", \"errors\": [";
  for (std::size_t i = 0; i < r.errors.size(); ++i)
    out += (i ? ", " : "") + std::string("{\"member\": ") + json_quote(r.errors[i].member) +
           ", \"offset\": " + std::to_string(r.errors[i].offset) +
           ", \"message\": " + json_quote(r.errors[i].message) + "}";
  out += "], \"verdict\": \"" + std::string(scan_verdict_name(r.verdict())) + "\"}\n";
  return out;
}

namespace {
std::string site_text(const scan_site& s) {
  return (s.member.empty() ? std::string() : s.member + " ") + "@" + std::to_string(s.offset) +
         " " + s.op;
}
}  // namespace

std::string scan_text(const scan_report& r) {
  std::string out = r.file + " (" + r.format + " format)\n";
  for (const auto& g : r.globals) {
    std::string tag = g.dangerous ? "  DANGEROUS" : g.unsafe ? "  unsafe" : "";
    if (!tag.empty() && !g.where.empty()) tag += "  (" + site_text(g.where.front()) + ")";
    out += "  " + std::to_string(g.count) + "\t" + g.name + tag + "\n";
  }
  for (const auto& e : r.errors)
    out += "  error: " + (e.member.empty() ? std::string() : e.member + " ") + "@" +
           std::to_string(e.offset) + ": " + e.message + "\n";
  if (r.error_count > r.errors.size())
    out += "  ... and " + std::to_string(r.error_count - r.errors.size()) + " more errors\n";
  switch (r.verdict()) {
    case scan_verdict::safe:
      out += "verdict: safe (every import on the weights-only allowlist)\n";
      break;
    case scan_verdict::unsafe:
      out += "verdict: unsafe (" + std::to_string(r.unsafe.size()) +
             " outside the weights-only allowlist, " + std::to_string(r.dangerous.size()) +
             " known to run code)\n";
      break;
    case scan_verdict::unknown:
      out += "verdict: unknown (" + std::to_string(r.error_count) +
             (r.error_count == 1 ? " error" : " errors") +
             ": not read in full; nothing unsafe in what was read)\n";
      break;
  }
  return out;
}

}  // namespace pthio::cli
