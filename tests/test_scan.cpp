// The static scanner against the hostile corpus (tests/data/hostile: crafted by its
// make_hostile.py, each case's expected verdict and names in its manifest), the weights-only
// loader against the same files, and the verdict on the real torch fixtures.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/json.h"
#include "cli_support.h"
#include "manifest.h"
#include "pthio/pthio.hpp"
#include "support.h"

namespace {

namespace fs = std::filesystem;

fs::path hostile_dir() { return pthio_test::fixtures_dir() / ".." / "tests" / "data" / "hostile"; }

const nlohmann::json& hostile_manifest() {
  static const nlohmann::json m = [] {
    std::ifstream in(hostile_dir() / "manifest.json");
    return nlohmann::json::parse(in);
  }();
  return m;
}

bool listed(const std::vector<std::string>& names, const std::string& want) {
  if (want.ends_with("*")) {
    const std::string prefix = want.substr(0, want.size() - 1);
    return std::any_of(names.begin(), names.end(),
                       [&](const std::string& n) { return n.starts_with(prefix); });
  }
  return std::find(names.begin(), names.end(), want) != names.end();
}

}  // namespace

TEST_SUITE("scan") {
  TEST_CASE("scan: every hostile case gets its verdict, names and errors") {
    const auto& cases = hostile_manifest()["cases"];
    REQUIRE(cases.size() >= 100);
    std::map<std::string, int> per_trick;
    for (const auto& c : cases) {
      const std::string file = c["file"];
      CAPTURE(file);
      ++per_trick[c["trick"]];
      const pthio::scan_report r = pthio::scan_file(hostile_dir() / file);
      CHECK(pthio::scan_verdict_name(r.verdict()) == c["verdict"].get<std::string>());
      for (const char* key : {"unsafe", "dangerous"}) {
        if (!c.contains(key)) continue;
        const auto& have = std::string(key) == "unsafe" ? r.unsafe : r.dangerous;
        for (const auto& want : c[key]) CHECK_MESSAGE(listed(have, want), key, " lacks ", want);
      }
      if (c.contains("errors")) CHECK((r.error_count > 0) == c["errors"].get<bool>());
      // Every dangerous name is unsafe; every unsafe one is a global of the report with a site.
      for (const auto& d : r.dangerous) CHECK(listed(r.unsafe, d));
      for (const auto& g : r.globals)
        if (g.unsafe) CHECK(!g.where.empty());
    }
    // At least three cases for each trick.
    for (const auto& [trick, n] : per_trick) {
      CAPTURE(trick);
      CHECK(n >= 3);
    }
  }

  TEST_CASE("scan: no hostile case loads weights-only, in any mode") {
    for (const auto& c : hostile_manifest()["cases"]) {
      if (c["verdict"] == "safe") continue;
      const std::string file = c["file"];
      CAPTURE(file);
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::lazy, pthio::load_mode::mmap}) {
        auto o = pthio_test::cpu_options(mode);
        o.strict = true;
        CHECK_THROWS_AS(pthio::load_checkpoint(hostile_dir() / file, o), pthio::error);
      }
    }
  }

  TEST_CASE("scan: the benign controls load weights-only where they are checkpoints") {
    // small.pth re-emitted by the corpus's own zip writer (stored and deflated): the same
    // tensors as the fixture torch wrote.
    auto o = pthio_test::cpu_options();
    o.strict = true;
    auto want = pthio::load_checkpoint(pthio_test::fixture("t1/small.pth"), o);
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(hostile_dir() / "controls")) {
      if (!e.path().filename().string().starts_with("small")) continue;
      CAPTURE(e.path());
      auto got = pthio::load_checkpoint(e.path(), o);
      pthio::visit_tensors(want.root, [&](const std::string& key, const pthio::value& v) {
        const pthio::value* g = got.root.find(key);
        REQUIRE(g);
        CHECK(g->as_tensor().shape() == v.as_tensor().shape());
        CHECK(pthio::cli::tensor_sha256(g->as_tensor()) ==
              pthio::cli::tensor_sha256(v.as_tensor()));
        ++n;
      });
    }
    CHECK(n > 0);
  }

  TEST_CASE("scan: torch's fixtures are safe unless they name classes outside the allowlist") {
    // Which fixtures name such classes is what PyTorch wrote (whole models, argparse values,
    // TorchScript, a .pt2 with pickled subclasses): the names are checked below, and
    // tests/scan_torch.py checks every verdict against torch.load(weights_only=True).
    const auto& files = pthio_test::manifest()["files"];
    std::size_t safe = 0;
    for (const auto& f : files) {
      const std::string rel = f["file"];
      if (!f["error"].is_null()) continue;
      CAPTURE(rel);
      const pthio::scan_report r = pthio::scan_file(pthio_test::fixture(rel));
      CHECK(r.error_count == 0);
      CHECK(r.dangerous.empty());
      if (r.verdict() == pthio::scan_verdict::safe) {
        ++safe;
        continue;
      }
      // Only classes of a model or program: never a finding, never a function of the stdlib.
      for (const auto& u : r.unsafe) {
        CAPTURE(u);
        CHECK(!u.starts_with("<"));
        CHECK((u.starts_with("whole_models.") || u.starts_with("torch.nn.") ||
               u.starts_with("__torch__.") || u.starts_with("torch.jit._pickle.") ||
               u.starts_with("argparse.") || u.starts_with("torch.") ||
               u.starts_with("__main__.")));
      }
    }
    CHECK(safe > 30);
  }

  TEST_CASE("scan: the command's exit status and JSON follow the verdict" * pthio_test::needs_cli) {
    using pthio_test::run_cli;
    using pthio_test::shell_quote;
    auto json_of = [&](const fs::path& p, int status) {
      auto r = run_cli("scan --json " + shell_quote(p.string()));
      CHECK(r.status == status);
      return nlohmann::json::parse(r.out);
    };
    auto safe = json_of(pthio_test::fixture("t2/linear.pth"), 0);
    CHECK(safe["verdict"] == "safe");
    CHECK(safe["errors"].empty());
    CHECK(safe["globals"][0]["where"][0]["member"] == "linear/data.pkl");
    auto unsafe = json_of(hostile_dir() / "global" / "proto0_os_system.pkl", 1);
    CHECK(unsafe["verdict"] == "unsafe");
    CHECK(unsafe["dangerous"][0] == "os.system");
    // Where the import is: the GLOBAL opcode's offset in the bytes torch would read.
    const auto bytes = pthio_test::read_bytes(hostile_dir() / "global" / "proto0_os_system.pkl");
    bool seen = false;
    for (const auto& g : unsafe["globals"])
      if (g["name"] == "os.system") {
        const std::size_t at = g["where"][0]["offset"];
        REQUIRE(at < bytes.size());
        CHECK(static_cast<char>(bytes[at]) == 'c');
        seen = true;
      }
    CHECK(seen);
    // unknown: exit 3, the first error on stderr, the report on stdout all the same.
    for (const auto& c : hostile_manifest()["cases"]) {
      if (c["verdict"] != "unknown") continue;
      auto r = run_cli("scan --json " +
                       shell_quote((hostile_dir() / c["file"].get<std::string>()).string()));
      CHECK(r.status == 3);
      CHECK(nlohmann::json::parse(r.out)["verdict"] == "unknown");
      CHECK(!nlohmann::json::parse(r.out)["errors"].empty());
      CHECK(r.err.find("not read in full") != std::string::npos);
    }
  }

  TEST_CASE(
      "scan: a pickle after junk, a pickle after STOP, a hidden member: found whatever the cut") {
    // The second of two pickles calls os.system; junk of every length before it.
    using namespace std::string_literals;
    const std::string first = "\x80\x02}q\x00."s;
    const std::string second =
        "\x80\x02"
        "cos\nsystem\nq\x00X\x04\x00\x00\x00"
        "echo\x85R."s;
    for (std::size_t junk = 0; junk < 40; ++junk) {
      std::string s = first + std::string(junk, '\xff') + second;
      std::vector<std::byte> b(s.size());
      std::memcpy(b.data(), s.data(), s.size());
      CAPTURE(junk);
      auto r = pthio::scan_bytes(b);
      CHECK(listed(r.dangerous, "os.system"));
      CHECK((r.error_count > 0) == (junk > 0));
      // Cut anywhere: never safe.
      for (std::size_t cut = 1; cut < b.size(); cut += 3) {
        if (cut == first.size()) continue;  // the first pickle whole: a safe file
        auto part = pthio::scan_bytes(std::span<const std::byte>(b).first(cut));
        CHECK(part.verdict() != pthio::scan_verdict::safe);
      }
    }
  }
}
