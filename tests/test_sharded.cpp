// Sharded checkpoints: Hugging Face index files over safetensors and torch.save shards
// (fixtures/st/ sharded, written as transformers lays them out), through the library and the
// command, and the index errors one by one.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/json.h"
#include "cli_support.h"
#include "manifest.h"
#include "pthio/pthio.hpp"

using nlohmann::json;
using pthio::value;
using pthio_test::error_of;
using pthio_test::fixture;
using pthio_test::run_cli;
using pthio_test::shell_quote;

using pthio_test::cpu_options;
using pthio_test::manifest;

namespace {

std::vector<std::string> keys_of(const value& root) {
  std::vector<std::string> out;
  for (const auto& [k, v] : root.as_dict().entries()) out.push_back(k.as_str());
  return out;
}

// A scratch folder holding copies of the safetensors shards and an index with the given text.
std::filesystem::path folder_with_index(const std::string& name, const std::string& index_text) {
  auto dir = pthio_test::scratch_dir() / ("sharded_" + name);
  std::filesystem::create_directories(dir);
  for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                            "pytorch_model-00001-of-00002.bin"})
    std::filesystem::copy_file(fixture(std::string("st/sharded/") + shard), dir / shard,
                               std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "model.safetensors.index.json", std::ios::binary | std::ios::trunc)
      << index_text;
  return dir / "model.safetensors.index.json";
}

const char* shard1 = "model-00001-of-00002.safetensors";
const char* shard2 = "model-00002-of-00002.safetensors";

// The fixture's weight_map with `edit` applied to its JSON.
std::string index_text(const std::function<void(json&)>& edit) {
  std::ifstream in(fixture("st/sharded/model.safetensors.index.json"));
  json j = json::parse(in);
  edit(j);
  return j.dump(2);
}

}  // namespace

TEST_SUITE("sharded") {
  TEST_CASE(
      "sharded: both index fixtures load as one state dict in weight_map order, eager and mmap") {
    for (const auto& f : manifest("st/manifest.json")["files"]) {
      std::string rel = f["file"];
      if (!rel.ends_with(".index.json")) continue;
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
        INFO(std::string(rel));
        pthio::checkpoint ck = pthio::load_checkpoint(fixture(rel), cpu_options(mode));
        CHECK(ck.format == (rel.ends_with("bin.index.json")
                                ? pthio::checkpoint_format::zip
                                : pthio::checkpoint_format::safetensors));
        CHECK(ck.root.as_dict().class_name == "collections.OrderedDict");
        const auto& want = f["tensors"];
        REQUIRE(ck.root.as_dict().size() == want.size());
        std::size_t i = 0;
        for (const auto& [k, v] : ck.root.as_dict().entries()) {
          const auto& w = want[i++];
          CHECK(k.as_str() == w["key"].get<std::string>());
          CHECK(pthio::dtype_name(v.as_tensor().dtype()) == w["dtype"].get<std::string>());
          CHECK(v.as_tensor().shape() == w["shape"].get<pthio::shape_t>());
          CHECK(pthio::cli::tensor_sha256(v.as_tensor()) == w["sha256"].get<std::string>());
        }
        const value* meta = ck.root.as_dict().attr("metadata");
        REQUIRE(meta);
        CHECK(meta->find("total_size")->as_int() ==
              f["metadata"]["total_size"].get<std::int64_t>());
      }
    }
  }

  TEST_CASE("sharded: load_sharded reports the index, its shards and no unlisted tensors") {
    auto s = pthio::load_sharded(fixture("st/sharded/model.safetensors.index.json"), cpu_options());
    CHECK(s.index.shards == std::vector<std::string>{shard1, shard2});
    REQUIRE(s.index.weight_map.size() == 7);
    CHECK(s.index.weight_map[0] == std::pair<std::string, std::string>{"embed.weight", shard1});
    CHECK(s.unlisted.empty());
    CHECK(pthio::is_sharded_index(
        pthio_test::read_bytes(fixture("st/sharded/model.safetensors.index.json"))));
    CHECK_FALSE(pthio::is_sharded_index(pthio_test::read_bytes(fixture("st/simple.safetensors"))));
  }

  TEST_CASE("cli: ls, diff and convert accept an index file" * pthio_test::needs_cli) {
    auto idx = shell_quote(fixture("st/sharded/model.safetensors.index.json").string());
    auto bin = shell_quote(fixture("st/sharded/pytorch_model.bin.index.json").string());
    auto whole = shell_quote(fixture("st/sharded/whole.safetensors").string());
    auto r = run_cli("ls " + idx);
    CHECK(r.status == 0);
    CHECK(r.out.ends_with("7 tensors, 456 bytes (safetensors format)\n"));
    CHECK(r.out.find("lm_head.weight   float32  [10, 4]  cpu       160\n") != std::string::npos);
    r = run_cli("diff " + idx + " " + whole);
    CHECK(r.status == 0);
    CHECK(r.out == "7 equal, 0 differ, 0 only in A, 0 only in B\n");
    r = run_cli("diff " + bin + " " + idx);
    CHECK(r.status == 0);
    auto out = pthio_test::scratch_dir() / "merged.safetensors";
    r = run_cli("convert " + bin + " " + shell_quote(out.string()));
    CHECK(r.status == 0);
    CHECK(r.out == "wrote " + out.string() + " (safetensors, 7 tensors)\n");
    r = run_cli("diff " + shell_quote(out.string()) + " " + whole);
    CHECK(r.status == 0);
    auto pth = pthio_test::scratch_dir() / "merged.pth";
    CHECK(run_cli("convert " + idx + " " + shell_quote(pth.string())).status == 0);
    CHECK(run_cli("diff " + shell_quote(pth.string()) + " " + bin).status == 0);
  }

  TEST_CASE("sharded: tensors a shard holds but weight_map omits are kept after the listed ones") {
    auto path = folder_with_index("unlisted", index_text([](json& j) {
                                    j["weight_map"].erase("layers.0.bias");
                                    j["weight_map"].erase("norm.weight");
                                  }));
    auto s = pthio::load_sharded(path, cpu_options());
    CHECK(s.unlisted == std::vector<std::string>{"layers.0.bias", "norm.weight"});
    CHECK(keys_of(s.merged.root) == std::vector<std::string>{"embed.weight", "layers.0.weight",
                                                             "layers.1.bias", "layers.1.weight",
                                                             "lm_head.weight", "layers.0.bias",
                                                             "norm.weight"});
  }

  TEST_CASE("sharded: each kind of bad index is refused with its rule") {
    struct bad_case {
      const char* what;
      std::string text;
      pthio::errc kind;
      std::string message;
      std::optional<std::uint64_t> offset;
    };
    const auto ce = pthio::errc::corrupt_checkpoint;
    const bad_case cases[] = {
        {"tensor missing from its shard",
         index_text([](json& j) { j["weight_map"]["ghost"] = shard1; }),
         ce,
         "weight_map puts tensor \"ghost\" in shard \"model-00001-of-00002.safetensors\", which "
         "holds no such tensor",
         {}},
        {"tensor in another shard",
         index_text([](json& j) { j["weight_map"]["norm.weight"] = shard1; }),
         ce,
         "weight_map puts tensor \"norm.weight\" in shard \"model-00001-of-00002.safetensors\", "
         "but shard "
         "\"model-00002-of-00002.safetensors\" holds it",
         {}},
        {"tensor in two shards",
         index_text([](json& j) { j["weight_map"]["extra"] = "pytorch_model-00001-of-00002.bin"; }),
         ce,
         "tensor \"embed.weight\" is in shard \"model-00001-of-00002.safetensors\" and in shard "
         "\"pytorch_model-00001-of-00002.bin\"",
         {}},
        {"absolute shard path", R"({"weight_map": {"a": "/etc/passwd"}})", ce,
         "shard path \"/etc/passwd\" of \"a\" is absolute; shards are named relative to the "
         "index's folder",
         21},
        {"shard path leaving the folder", R"({"weight_map": {"a": "../x.safetensors"}})", ce,
         "shard path \"../x.safetensors\" of \"a\" has a '..' part", 21},
        {"empty shard path", R"({"weight_map": {"a": ""}})", ce,
         "shard path \"\" of \"a\" is empty", 21},
        {"tensor listed twice", R"({"weight_map": {"a": "x", "a": "y"}})", ce,
         "weight_map lists tensor \"a\" twice", 26},
        {"no weight_map", R"({"metadata": {}})", ce, "the index has no weight_map", 0},
        {"weight_map not an object", R"({"weight_map": ["a"]})", ce,
         "weight_map must be a JSON object", 15},
        {"shard not a string", R"({"weight_map": {"a": 1}})", ce,
         "weight_map entry \"a\" must name a shard file (a string)", 21},
        {"not UTF-8", "{\"weight_map\": {\"\xff\": \"x\"}}", ce, "the index is not valid UTF-8",
         17},
        {"trailing garbage", R"({"weight_map": {}} x)", ce, "unexpected bytes after the JSON value",
         19},
        {"truncated", R"({"weight_map": {"a": "x")", ce, "expected ',' or '}' in weight_map", 24},
        {"missing shard file",
         R"({"weight_map": {"a": "absent.safetensors"}})",
         pthio::errc::io,
         "cannot open",
         {}},
    };
    for (const auto& c : cases) {
      INFO(std::string(c.what));
      auto path = folder_with_index("bad", c.text);
      auto e = error_of([&] { pthio::load_checkpoint(path, cpu_options()); });
      CHECK(e.kind() == c.kind);
      CHECK_MESSAGE(e.message().find(c.message) != std::string::npos, std::string(e.what()));
      if (c.offset) CHECK_MESSAGE(e.offset() == c.offset, std::string(e.what()));
      if (c.kind != pthio::errc::io) CHECK(std::string(e.what()).starts_with(path.string()));
    }
    // An empty weight_map is an empty state dict.
    auto empty = folder_with_index("empty", R"({"metadata": {"total_size": 0}, "weight_map": {}})");
    CHECK(pthio::load(empty, cpu_options()).as_dict().size() == 0);
  }

  TEST_CASE(
      "sharded: a lazy load of an index is lazy; load_tensor and materialize give the eager "
      "bytes") {
    for (const char* rel :
         {"st/sharded/model.safetensors.index.json", "st/sharded/pytorch_model.bin.index.json"}) {
      INFO(rel);
      pthio::checkpoint eager = pthio::load_checkpoint(fixture(rel), cpu_options());
      pthio::checkpoint ck =
          pthio::load_checkpoint(fixture(rel), cpu_options(pthio::load_mode::lazy));
      REQUIRE(ck.is_lazy());
      std::vector<std::pair<std::string, pthio::tensor>> want;
      pthio::visit_tensors(eager.root, [&](const std::string& k, const value& v) {
        want.emplace_back(k, v.as_tensor());
      });
      REQUIRE(want.size() >= 2);
      for (const auto& [key, w] : want) {
        INFO(key);
        pthio::tensor got = ck.load_tensor(key);
        CHECK(got.dev() == pthio::cpu_device);
        CHECK(got.dtype() == w.dtype());
        CHECK(got.shape() == w.shape());
        CHECK(got.contiguous().bytes() == w.contiguous().bytes());
      }
      ck.materialize();
      CHECK_FALSE(ck.is_lazy());
      std::size_t i = 0;
      pthio::visit_tensors(ck.root, [&](const std::string& k, const value& v) {
        REQUIRE(i < want.size());
        INFO(k);
        CHECK(k == want[i].first);
        CHECK(v.as_tensor().dev() == pthio::cpu_device);
        CHECK(v.as_tensor().contiguous().bytes() == want[i].second.contiguous().bytes());
        ++i;
      });
      CHECK(i == want.size());
    }
  }

  TEST_CASE("sharded: every truncated prefix of an index gives an error, never a crash") {
    auto full = pthio_test::read_bytes(fixture("st/sharded/model.safetensors.index.json"));
    for (std::size_t n = 0; n + 1 < full.size(); ++n) {
      std::vector<std::byte> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
      auto e = error_of([&] { (void)pthio::read_sharded_index(prefix); });
      CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
    }
    // The metadata member is kept whatever it holds.
    std::string text =
        R"({"metadata": {"n": 12345678901234567890123, "f": 1.5e300, "l": [true, null, "s"]}, "weight_map": {}})";
    std::vector<std::byte> b(text.size());
    std::memcpy(b.data(), text.data(), text.size());
    auto idx = pthio::read_sharded_index(b);
    CHECK(idx.metadata.find("n")->is_big_int());
    CHECK(idx.metadata.find("f")->as_float() == 1.5e300);
    CHECK(idx.metadata.find("l")->items().size() == 3);
  }

}  // TEST_SUITE
