// The pthio command's contract (docs/cli.md): --json shapes, key paths, exit statuses.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/sha256.h"
#include "cli_support.h"
#include "manifest.h"
#include "pthio/pthio.hpp"

using nlohmann::json;
using pthio_test::fixture;
using pthio_test::run_cli;
using pthio_test::shell_quote;

using pthio_test::manifest;

TEST_SUITE("cli" * pthio_test::needs_cli) {
  TEST_CASE("cli: ls --json and dump --json of every fixture equal what PyTorch saw") {
    for (const auto& e : manifest()["files"]) {
      const std::string rel = e["file"];
      if (!e["error"].is_null()) continue;
      if (rel == "t2/many_tensors.pth")
        continue;  // covered by the library test; slow to hash twice
      INFO(rel);
      const std::string path = fixture(rel).string();
      auto ls = run_cli("ls " + shell_quote(path) + " --json");
      REQUIRE(ls.status == 0);
      json got = json::parse(ls.out);
      CHECK(got["file"] == path);
      CHECK(got["format"] == e["format"]);
      if (e["format"] != "torchscript")
        CHECK(got["tensors"] == e["tensors"]);
      else
        CHECK(got["tensors"].size() == e["tensors"].size());
      if (!e["dump"].is_null()) {
        auto dump = run_cli("dump --json " + shell_quote(path));
        REQUIRE(dump.status == 0);
        CHECK(json::parse(dump.out) == e["dump"]);
      }
    }
  }

  TEST_CASE("cli: every float in dump --json has a '.' or an 'e'") {
    auto dump = run_cli("dump --json " + shell_quote(fixture("t1/pyvalues.pth").string()));
    REQUIRE(dump.status == 0);
    // Walk the raw text: numbers that parse as floats in the manifest must not print as integers.
    json doc = json::parse(dump.out);
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_number_float()) {
        std::string s = j.dump();
        CHECK((s.find('.') != std::string::npos || s.find('e') != std::string::npos));
      }
      if (j.is_structured())
        for (const auto& c : j) walk(c);
    };
    walk(doc);
    CHECK(dump.out.find("1e-08") != std::string::npos);
  }

  TEST_CASE("cli: cat --raw writes bytes that hash to PyTorch's SHA-256") {
    for (const char* rel : {"t1/linear.pth", "t2/mlp.bin"}) {
      INFO(rel);
      const json* entry = nullptr;
      for (const auto& e : manifest()["files"])
        if (e["file"] == rel) entry = &e;
      REQUIRE(entry);
      const auto& t = (*entry)["tensors"][0];
      auto r = run_cli("cat " + shell_quote(fixture(rel).string()) + " " + shell_quote(t["key"]) +
                       " --raw");
      REQUIRE(r.status == 0);
      // The manifest's digest is hashlib's, of the bytes torch saved.
      CHECK(pthio::cli::sha256_hex(std::as_bytes(std::span(r.out.data(), r.out.size()))) ==
            t["sha256"].get<std::string>());
    }
  }

  TEST_CASE("cli: every command has its help, the same from help COMMAND and COMMAND --help") {
    for (const char* cmd : {"ls", "dump", "cat", "diff", "convert", "scan", "verify", "help"}) {
      INFO(cmd);
      auto a = run_cli(std::string("help ") + cmd);
      auto b = run_cli(std::string(cmd) + " --help");
      auto c = run_cli(std::string(cmd) + " some.pth -h");
      CHECK(a.status == 0);
      CHECK(b.status == 0);
      CHECK(c.status == 0);
      CHECK(a.out.starts_with(std::string("usage: pthio ") + cmd));
      CHECK(a.out == b.out);
      CHECK(a.out == c.out);
      // Each option the general usage lists for the command is explained in its help.
      auto general = run_cli("help").out;
      const auto line = general.find(std::string("  ") + cmd + " ");
      REQUIRE(line != std::string::npos);
      const std::string synopsis = general.substr(line, general.find('\n', line) - line);
      for (std::size_t p = synopsis.find("--"); p != std::string::npos;
           p = synopsis.find("--", p + 2)) {
        const std::string opt = synopsis.substr(p, synopsis.find_first_of(" ]=", p) - p);
        CHECK_MESSAGE(a.out.find(opt) != std::string::npos, opt);
      }
    }
    CHECK(run_cli("help frobnicate").status == 2);
    CHECK(run_cli("frobnicate --help").status == 2);
    CHECK(run_cli("help ls cat").status == 2);
    auto v = run_cli("--version");
    CHECK(v.status == 0);
    CHECK(v.out.starts_with("pthio " PTHIO_TEST_VERSION "\n"));
  }

  TEST_CASE("cli: ls gives sizes in binary units and --sort size lists the largest first") {
    const json* entry = nullptr;
    for (const auto& e : manifest()["files"])
      if (e["file"] == "t2/ckpt_adam.pth") entry = &e;
    REQUIRE(entry);
    // The total from what PyTorch saw: elements times the dtype's size.
    std::uint64_t total = 0;
    std::vector<std::pair<std::uint64_t, std::string>> sizes;
    for (const auto& t : (*entry)["tensors"]) {
      std::uint64_t n = 1;
      for (const auto& d : t["shape"]) n *= d.get<std::uint64_t>();
      const auto dt = pthio::dtype_from_name(t["dtype"].get<std::string>());
      REQUIRE(dt);
      n *= pthio::element_size(*dt);
      total += n;
      sizes.emplace_back(n, t["key"].get<std::string>());
    }
    REQUIRE(total > 1024);
    const std::string path = shell_quote(fixture("t2/ckpt_adam.pth").string());
    auto ls = run_cli("ls " + path);
    REQUIRE(ls.status == 0);
    char kib[32];
    std::snprintf(kib, sizeof kib, "%.1f KiB", static_cast<double>(total) / 1024);
    std::string grouped = std::to_string(total);
    for (int at = static_cast<int>(grouped.size()) - 3; at > 0; at -= 3)
      grouped.insert(static_cast<std::size_t>(at), ",");
    const std::string footer = std::to_string(sizes.size()) + " tensors, " + kib + " (" + grouped +
                               " bytes, zip format)\n";
    CHECK(ls.out.ends_with(footer));
    // --sort size: the manifest's keys, largest first, equal sizes in the file's order.
    std::stable_sort(sizes.begin(), sizes.end(),
                     [](const auto& x, const auto& y) { return x.first > y.first; });
    auto sorted = run_cli("ls " + path + " --sort size --json");
    REQUIRE(sorted.status == 0);
    json got = json::parse(sorted.out)["tensors"];
    REQUIRE(got.size() == sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i) CHECK(got[i]["key"] == sizes[i].second);
    auto text = run_cli("ls " + path + " --sort size");
    REQUIRE(text.status == 0);
    std::size_t at = text.out.find('\n') + 1;
    for (const auto& [n, key] : sizes) {
      CHECK(text.out.compare(at, key.size(), key) == 0);
      at = text.out.find('\n', at) + 1;
    }
    CHECK(run_cli("ls " + path + " --sort name").status == 2);
  }

  TEST_CASE("cli: diff ends with its counts, and --json gives every entry's status") {
    const std::string a = shell_quote(fixture("t1/ckpt_sgd.pth").string());
    const std::string b = shell_quote(fixture("t2/ckpt_adam.pth").string());
    auto j = run_cli("diff " + a + " " + b + " --json");
    CHECK(j.status == 1);
    json d = json::parse(j.out);
    std::size_t n[4] = {0, 0, 0, 0};
    for (const auto& e : d["entries"]) {
      const std::string st = e["status"];
      n[st == "equal" ? 0 : st == "differs" ? 1 : st == "only in A" ? 2 : 3]++;
      CHECK(e.contains("why") == (st == "differs"));
    }
    CHECK(d["equal"] == n[0]);
    CHECK(d["differ"] == n[1]);
    CHECK(d["only_in_a"] == n[2]);
    CHECK(d["only_in_b"] == n[3]);
    CHECK(n[1] + n[2] + n[3] > 0);
    // The text ends with the same counts.
    auto t = run_cli("diff " + a + " " + b);
    CHECK(t.status == 1);
    CHECK(t.out.ends_with(std::to_string(n[0]) + " equal, " + std::to_string(n[1]) + " differ, " +
                          std::to_string(n[2]) + " only in A, " + std::to_string(n[3]) +
                          " only in B\n"));
    // A file against itself: every entry equal.
    auto same = run_cli("diff " + b + " " + b + " --json");
    CHECK(same.status == 0);
    json s = json::parse(same.out);
    CHECK(s["equal"] == s["entries"].size());
    CHECK(s["differ"] == 0);
  }

  TEST_CASE("cli: the manual page renders cleanly and the bash completion completes") {
    const std::string root = pthio_test::fixtures_dir().parent_path().string();
    if (std::system("command -v groff >/dev/null 2>&1") == 0) {
      auto r = pthio_test::run_shell("groff -man -Tutf8 -ww -z " +
                                     shell_quote(root + "/share/man/man1/pthio.1") + " 2>&1");
      CHECK(r.status == 0);
      CHECK_MESSAGE(r.out.empty(), r.out);
    }
    // Completion, as bash runs it: commands, options, a --to value, and cat's keys from ls.
    const std::string cli_dir = std::filesystem::path(PTHIO_CLI_PATH).parent_path().string();
    auto complete = [&](const std::string& words) {
      return pthio_test::run_shell(
          "PATH=" + shell_quote(cli_dir) + ":$PATH bash -c " +
          shell_quote("source " + root + "/share/bash-completion/completions/pthio; COMP_WORDS=(" +
                      words +
                      "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _pthio; "
                      "printf '%s\\n' \"${COMPREPLY[@]}\""));
    };
    CHECK(complete("pthio c").out == "cat\nconvert\n");
    CHECK(complete("pthio ls x.pth --s").out == "--sort\n--state-dict\n--strict\n");
    CHECK(complete("pthio convert a b --to s").out == "safetensors\n");
    CHECK(complete("pthio cat " + fixture("t2/linear.pth").string() + " ''").out ==
          "weight\nbias\n");
    // A key is text from the file: offered as it is, never expanded (a $(...) is not run).
    const auto dir = pthio_test::scratch_dir() / "completion";
    std::filesystem::create_directories(dir);
    const std::string hostile = "$(touch${IFS}" + (dir / "ran").string() + ")";
    pthio::value state = pthio::value::make_dict();
    state.as_dict().set(pthio::value(hostile),
                        pthio::value(pthio::tensor::zeros(pthio::dtype::float32, {2})));
    const auto evil = dir / "evil.pth";
    pthio::save(evil, state);
    CHECK(complete("pthio cat " + evil.string() + " ''").out == hostile + "\n");
    CHECK_FALSE(std::filesystem::exists(dir / "ran"));
  }

  TEST_CASE("cli: exit statuses follow the contract") {
    const std::string good = shell_quote(fixture("t1/linear.pth").string());
    CHECK(run_cli("ls " + good).status == 0);
    CHECK(run_cli("").status == 2);
    CHECK(run_cli("frobnicate " + good).status == 2);
    CHECK(run_cli("ls").status == 2);
    CHECK(run_cli("ls " + good + " --bogus").status == 2);
    CHECK(run_cli("cat " + good + " weight --limit -3").status == 2);
    CHECK(run_cli("ls " + good + " --map-location gpu:x").status == 2);
    auto missing = run_cli("ls /nonexistent/file.pth");
    CHECK(missing.status == 3);
    CHECK(missing.err.find("/nonexistent/file.pth") != std::string::npos);
    auto corrupt = run_cli("ls " + shell_quote(fixture("t2/corrupt_record.pth").string()));
    CHECK(corrupt.status == 3);
    CHECK(corrupt.err.find("record") != std::string::npos);
    CHECK(run_cli("cat " + good + " no.such.key").status == 3);
    CHECK(run_cli("scan " + good).status == 0);
    CHECK(run_cli("verify " + good).status == 0);
    CHECK(run_cli("diff " + good + " " + good).status == 0);
    // t1 and t2 linear.pth hold the same seeded weights; conv2d.pth differs in every key.
    CHECK(run_cli("diff " + good + " " + shell_quote(fixture("t2/linear.pth").string())).status ==
          0);
    auto d = run_cli("diff " + good + " " + shell_quote(fixture("t1/conv2d.pth").string()));
    CHECK(d.status == 1);
    CHECK(d.out.find("differs: weight: float32 [3, 4] vs float32 [8, 3, 3, 3]") !=
          std::string::npos);
  }

  TEST_CASE("cli: a GPU-saved file lists on the CPU by default and names the device asked for") {
    auto r = run_cli("ls --json " + shell_quote(fixture("t1/cuda.pth").string()));
    REQUIRE(r.status == 0);
    const json listing = json::parse(r.out);
    for (const auto& t : listing["tensors"]) CHECK(t["device"] == "cpu");
    if (!pthio::cuda_available()) {
      auto g = run_cli("ls --json --map-location cuda:0 " +
                       shell_quote(fixture("t1/cuda.pth").string()));
      CHECK(g.status == 3);
      CHECK(g.err.find("map_location") != std::string::npos);
    }
  }

  TEST_CASE("cli: verify reports a flipped byte in a storage record, exit 1") {
    auto bytes = pthio_test::read_bytes(fixture("t2/linear.pth"));
    pthio::zip_reader zip(pthio::byte_source::from_vector(bytes));
    const pthio::zip_entry* rec = zip.find("linear/data/0");
    REQUIRE(rec);
    bytes[rec->data_offset + 3] ^= std::byte{0x40};
    auto path = pthio_test::scratch_dir() / "flipped.pth";
    pthio_test::write_bytes(path, bytes);
    auto r = run_cli("verify " + shell_quote(path.string()));
    CHECK(r.status == 1);
    CHECK(r.out.find("linear/data/0") != std::string::npos);
    // The eager loader verifies CRCs too.
    CHECK_THROWS_AS(pthio::load_checkpoint(path), pthio::error);
  }

  TEST_CASE("cli: scan --json reports globals, unsafe and dangerous ones, and a verdict") {
    auto r = run_cli("scan --json " + shell_quote(fixture("t1/ckpt_adam.pth").string()));
    REQUIRE(r.status == 0);
    json j = json::parse(r.out);
    CHECK(j["verdict"] == "safe");
    CHECK(j["unsafe"].empty());
    // count = how many times the stream imports the global (GLOBAL opcodes; later uses are memo
    // gets).
    std::set<std::string> names;
    for (const auto& g : j["globals"]) {
      names.insert(g["name"]);
      CHECK(g["count"].get<int>() >= 1);
    }
    CHECK(names == std::set<std::string>{"collections.OrderedDict",
                                         "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"});

    // A pickle that would run os.system when loaded by Python (protocol 2: GLOBAL, args, REDUCE).
    const char raw[] =
        "\x80\x02"
        "cos\nsystem\n"
        "X\x04\x00\x00\x00"
        "echo"
        "\x85"
        "R.";
    std::string evil(raw, sizeof raw - 1);
    auto path = pthio_test::scratch_dir() / "evil.pkl";
    std::ofstream(path, std::ios::binary) << evil;
    auto s = run_cli("scan --json " + shell_quote(path.string()));
    CHECK(s.status == 1);
    json sj = json::parse(s.out);
    CHECK(sj["verdict"] == "unsafe");
    CHECK(sj["dangerous"] == json::array({"os.system"}));
    CHECK(sj["unsafe"] == json::array({"os.system"}));
    // Loading it in strict mode refuses the global; without strict it stays an inert object.
    CHECK(run_cli("dump --strict " + shell_quote(path.string())).status == 3);
    auto d = run_cli("dump --json " + shell_quote(path.string()));
    CHECK(d.status == 0);
    CHECK(json::parse(d.out)["object"] == "os.system");
  }

  TEST_CASE("cli: --state-dict lists, prints, compares and converts a model saved whole") {
    const json* entry = nullptr;
    for (const auto& e : manifest()["files"])
      if (e["file"] == "t2/whole_ckpt.pt") entry = &e;
    REQUIRE(entry);
    const std::string ck = shell_quote(fixture("t2/whole_ckpt.pt").string());
    auto tensors = [](const pthio_test::run_result& r) {
      REQUIRE(r.status == 0);
      return json::parse(r.out)["tensors"];
    };
    const json& found = (*entry)["state_dicts"][""]["tensors"];
    const json& ema = (*entry)["state_dicts"]["ema"]["tensors"];
    // KEY: after the flag when there is one argument more than the command takes, or after '='.
    CHECK(tensors(run_cli("ls --state-dict --json " + ck)) == found);
    CHECK(tensors(run_cli("ls " + ck + " --json --state-dict")) == found);
    CHECK(tensors(run_cli("ls --state-dict ema " + ck + " --json")) == ema);
    CHECK(tensors(run_cli("ls " + ck + " --state-dict ema --json")) == ema);
    CHECK(tensors(run_cli("ls --state-dict=ema --json " + ck)) == ema);
    auto text = run_cli("ls --state-dict " + ck);
    CHECK(text.out.starts_with("key "));
    CHECK(text.out.find("\nmodel.0.conv.weight ") != std::string::npos);
    CHECK(text.out.find("21 tensors") != std::string::npos);
    auto cat = run_cli("cat " + ck + " model.0.bn.running_var --state-dict ema");
    CHECK(cat.status == 0);
    CHECK(cat.out.starts_with("model.0.bn.running_var: float16 [8]"));
    auto dump = run_cli("dump --state-dict " + ck);
    CHECK(dump.out.find("._metadata = collections.OrderedDict{") != std::string::npos);
    // t1 and t2 hold the same seeded model, trained two steps: equal to float rounding.
    auto d = run_cli("diff --state-dict --atol 1e-6 " + ck + " " +
                     shell_quote(fixture("t1/whole_ckpt.pt").string()));
    CHECK(d.status == 0);
    auto seq =
        run_cli("diff --state-dict " + shell_quote(fixture("t2/whole_sequential.pt").string()) +
                " " + shell_quote(fixture("t2/whole_legacy.pt").string()));
    CHECK(seq.status == 0);
    // convert writes only the state dict, in both formats, half staying half.
    const auto dir = pthio_test::scratch_dir();
    for (const char* name : {"ema.pth", "ema.safetensors"}) {
      INFO(name);
      const std::string out = shell_quote((dir / ("whole_" + std::string(name))).string());
      auto c = run_cli("convert " + ck + " " + out + " --state-dict ema");
      REQUIRE(c.status == 0);
      json got = tensors(run_cli("ls --json " + out));
      REQUIRE(got.size() == ema.size());
      for (std::size_t i = 0; i < ema.size(); ++i) {
        INFO(ema[i]["key"]);
        if (std::string(name).ends_with(".pth")) {
          CHECK(got[i] == ema[i]);
        } else {  // safetensors: contiguous copies, in its own key order
          bool same = false;
          for (const auto& g : got)
            if (g["key"] == ema[i]["key"])
              same = g["sha256"] == ema[i]["sha256"] && g["dtype"] == ema[i]["dtype"];
          CHECK(same);
        }
      }
    }
    // Usage and unreadable: a command without the option, a KEY twice, a KEY that is not there.
    CHECK(run_cli("scan --state-dict " + ck).status == 2);
    CHECK(run_cli("verify " + ck + " --state-dict").status == 2);
    CHECK(run_cli("ls --state-dict=ema " + ck + " --state-dict model").status == 2);
    CHECK(run_cli("ls --state-dict= " + ck).status == 2);
    auto absent = run_cli("ls --state-dict nope " + ck);
    CHECK(absent.status == 3);
    CHECK(absent.err.find("no key \"nope\"") != std::string::npos);
    auto plain = run_cli("ls --state-dict " + shell_quote(fixture("t2/pyvalues.pth").string()));
    CHECK(plain.status == 3);
    CHECK(plain.err.find("no state dict found") != std::string::npos);
  }
}  // TEST_SUITE
