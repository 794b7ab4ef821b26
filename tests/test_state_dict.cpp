// State dicts: extraction from checkpoints, load_state_dict with torch's strict / non-strict
// semantics and torch's exact messages (recorded from real torch in
// tests/data/state_dict/torch_messages.json), key remapping, dtype conversion, optimizer state.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/json.h"
#include "pthio/pthio.hpp"
#include "manifest.h"
#include "support.h"

using nlohmann::json;
using pthio_test::fixture;

using pthio_test::cpu_options;

namespace {

json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

const json& manifest_entry(const std::string& rel) {
  for (const auto& e : pthio_test::manifest()["files"])
    if (e["file"] == rel) return e;
  throw std::runtime_error("no manifest entry " + rel);
}

pthio::shape_t shape_of(const json& j) { return j.get<pthio::shape_t>(); }

pthio::state_dict zeros_like(const json& pairs, const json* order = nullptr) {
  std::map<std::string, pthio::shape_t> shapes;
  for (const auto& p : pairs) shapes[p[0].get<std::string>()] = shape_of(p[1]);
  pthio::state_dict sd;
  if (order) {
    for (const auto& k : *order) sd.set(k, pthio::tensor::zeros(pthio::dtype::float32, shapes.at(k)));
  } else {
    for (const auto& p : pairs) sd.set(p[0], pthio::tensor::zeros(pthio::dtype::float32, shape_of(p[1])));
  }
  return sd;
}

}  // namespace

TEST_SUITE("state_dict") {

TEST_CASE("state_dict: load_state_dict says what torch says, strict and not") {
  json data = read_json(pthio_test::fixtures_dir().parent_path() / "tests/data/state_dict/torch_messages.json");
  REQUIRE(data["scenarios"].size() >= 4);
  for (const auto& s : data["scenarios"]) {
    INFO(s["name"].get<std::string>());
    pthio::state_dict target = zeros_like(s["target"], &s["target_order"]);
    pthio::state_dict source = zeros_like(s["source"]);
    pthio::load_state_dict_options o;
    o.model_name = "Net";
    if (s["strict_message"].is_null()) {
      CHECK(pthio::load_state_dict(target, source, o).ok());
    } else {
      try {
        pthio::load_state_dict(target, source, o);
        FAIL("strict load accepted what torch refuses");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == pthio::errc::mismatch);
        CHECK(e.message() == s["strict_message"].get<std::string>());
      }
    }
    o.strict = false;
    const auto& ns = s["non_strict"];
    if (!ns["error"].is_null()) {
      CHECK_THROWS_WITH_AS(pthio::load_state_dict(target, source, o), ns["error"].get<std::string>().c_str(),
                           pthio::error);
    } else {
      auto r = pthio::load_state_dict(target, source, o);
      CHECK(r.missing == ns["missing"].get<std::vector<std::string>>());
      CHECK(r.unexpected == ns["unexpected"].get<std::vector<std::string>>());
    }
  }
}

TEST_CASE("state_dict: a strict failure leaves the model untouched") {
  pthio::state_dict target;
  target.set("a", pthio::tensor::from_values<float>({1, 2}, {2}));
  target.set("b", pthio::tensor::from_values<float>({3}, {1}));
  pthio::state_dict source;
  source.set("a", pthio::tensor::from_values<float>({9, 9}, {2}));
  source.set("c", pthio::tensor::from_values<float>({9}, {1}));
  CHECK_THROWS_AS(pthio::load_state_dict(target, source), pthio::error);
  CHECK(target.at("a").at<float>({0}) == 1.0f);
  pthio::load_state_dict_options o;
  o.strict = false;
  auto r = pthio::load_state_dict(target, source, o);
  CHECK(r.loaded == std::vector<std::string>{"a"});
  CHECK(target.at("a").at<float>({1}) == 9.0f);
  CHECK(target.at("b").at<float>({0}) == 3.0f);
}

TEST_CASE("state_dict: keys remap: DataParallel's module., prefixes, patterns") {
  pthio::state_dict target;
  target.set("backbone.fc.weight", pthio::tensor::zeros(pthio::dtype::float32, {2}));
  pthio::state_dict source;
  source.set("module.fc.weight", pthio::tensor::from_values<float>({1, 2}, {2}));
  pthio::load_state_dict_options o;
  o.remap.strip_data_parallel = true;
  o.remap.add_prefix = "backbone.";
  CHECK(pthio::load_state_dict(target, source, o).ok());
  CHECK(target.at("backbone.fc.weight").at<float>({1}) == 2.0f);
  pthio::load_state_dict_options p;
  p.remap.rename.emplace_back(std::regex("^module\\.fc"), "backbone.fc");
  CHECK(pthio::load_state_dict(target, source, p).ok());
  pthio::state_dict twice;
  twice.set("module.x", pthio::tensor::zeros(pthio::dtype::float32, {1}));
  twice.set("x", pthio::tensor::zeros(pthio::dtype::float32, {1}));
  pthio::load_state_dict_options q;
  q.remap.strip_data_parallel = true;
  CHECK_THROWS_AS(pthio::load_state_dict(target, twice, q), pthio::error);
}

TEST_CASE("state_dict: dtypes convert on request, else are refused") {
  pthio::state_dict target;
  target.set("w", pthio::tensor::zeros(pthio::dtype::float32, {2}));
  pthio::state_dict source;
  source.set("w", pthio::tensor::from_values<float>({1.5f, -2.0f}, {2}).to(pthio::dtype::bfloat16));
  CHECK_THROWS_WITH_AS(pthio::load_state_dict(target, source), doctest::Contains("dtype mismatch for w"), pthio::error);
  pthio::load_state_dict_options o;
  o.convert_dtypes = true;
  CHECK(pthio::load_state_dict(target, source, o).ok());
  CHECK(target.at("w").at<float>({0}) == 1.5f);
  CHECK(target.at("w").at<float>({1}) == -2.0f);
}

TEST_CASE("state_dict: extracted from a training checkpoint, loaded into a model, values as torch saved them") {
  for (const char* rel : {"t1/ckpt_adam.pth", "t2/ckpt_sgd.pth", "t1/legacy_ckpt.pth"}) {
    INFO(rel);
    const json& e = manifest_entry(rel);
    auto root = pthio::load(fixture(rel), cpu_options());
    pthio::state_dict sd = pthio::extract_state_dict(root);
    std::vector<std::string> want_keys;
    pthio::state_dict model;  // a model of the same architecture, zero-initialised
    for (const auto& t : e["tensors"]) {
      std::string key = t["key"];
      if (!key.starts_with("model_state_dict.")) continue;
      want_keys.push_back(key.substr(17));
      model.set(key.substr(17), pthio::tensor::zeros(pthio::dtype::float32, shape_of(t["shape"])));
    }
    CHECK(sd.keys() == want_keys);
    CHECK(pthio::load_state_dict(model, sd).ok());
    for (const auto& t : e["tensors"]) {
      std::string key = t["key"];
      if (key.starts_with("model_state_dict."))
        CHECK(pthio::cli::tensor_sha256(model.at(key.substr(17))) == t["sha256"].get<std::string>());
    }
    CHECK(pthio::extract_state_dict(root, "model_state_dict").keys() == want_keys);
    CHECK_THROWS_AS(pthio::extract_state_dict(root, "nope"), pthio::error);
  }
  // A module's state_dict keeps its _metadata through to_value().
  auto root = pthio::load(fixture("t2/cnn_bn.pth"), cpu_options());
  auto sd = pthio::state_dict::from_value(root);
  CHECK(!sd.metadata.is_none());
  CHECK(pthio::cli::dump_json(sd.to_value()) == pthio::cli::dump_json(root));
}

TEST_CASE("state_dict: optimizer state in torch's layout, read and rebuilt") {
  for (const char* rel : {"t1/ckpt_adam.pth", "t2/ckpt_adamw.pth", "t2/ckpt_sgd.pth"}) {
    INFO(rel);
    auto root = pthio::load(fixture(rel), cpu_options());
    const pthio::value& ov = *root.find("optimizer_state_dict");
    auto o = pthio::optimizer_state::from_value(ov);
    CHECK(o.state.size() == 6);
    CHECK(pthio::cli::dump_json(o.to_value()) == pthio::cli::dump_json(ov));
    for (const auto& t : manifest_entry(rel)["tensors"]) {
      std::string key = t["key"];
      if (!key.starts_with("optimizer_state_dict.state.")) continue;
      std::string rest = key.substr(27);
      auto dot = rest.find('.');
      CHECK(pthio::cli::tensor_sha256(o.tensor_at(std::stoll(rest.substr(0, dot)), rest.substr(dot + 1))) ==
            t["sha256"].get<std::string>());
    }
  }
}

TEST_CASE("state_dict: param groups built in C++ match what torch 2.x wrote") {
  auto group_json = [](const std::vector<std::pair<std::string, pthio::value>>& fields) {
    pthio::value g = pthio::value::make_dict();
    for (const auto& [k, v] : fields) g.as_dict().set(pthio::value(k), v);
    return pthio::cli::dump_json(g);
  };
  auto torch_group = [](const char* rel) {
    auto root = pthio::load(fixture(rel), cpu_options());
    return pthio::cli::dump_json(root.find("optimizer_state_dict")->find("param_groups")->items()[0]);
  };
  CHECK(group_json(pthio::adam_param_group({}, 6)) == torch_group("t2/ckpt_adam.pth"));
  pthio::adam_options w;
  w.weight_decay = 0.01;
  w.amsgrad = true;
  w.decoupled = true;
  CHECK(group_json(pthio::adam_param_group(w, 6)) == torch_group("t2/ckpt_adamw.pth"));
  auto o = pthio::optimizer_state::from_value(*pthio::load(fixture("t1/ckpt_adam.pth"), cpu_options()).find("optimizer_state_dict"));
  CHECK(o.state_field(0, "step")->is_tensor());
  CHECK(o.state_field(0, "nope") == nullptr);
  o.set_group_field(0, "foreach", pthio::value(false));
  o.set_group_field(0, "extra", pthio::value(1));
  CHECK(o.group_field(0, "foreach")->as_bool() == false);
  CHECK(o.param_groups[0].back().first == "params");
  CHECK(o.param_groups[0][o.param_groups[0].size() - 2].first == "extra");
  pthio::sgd_options s;
  s.lr = 0.01;
  s.momentum = 0.9;
  CHECK(group_json(pthio::sgd_param_group(s, 6)) == torch_group("t2/ckpt_sgd.pth"));
}

}  // TEST_SUITE
