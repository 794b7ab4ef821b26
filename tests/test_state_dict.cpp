// State dicts: extraction from checkpoints, load_state_dict with torch's strict / non-strict
// semantics and torch's exact messages (recorded from real torch in
// tests/data/state_dict/torch_messages.json), key remapping, dtype conversion, optimizer state.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/json.h"
#include "manifest.h"
#include "pthio/pthio.hpp"
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

// [key, shape] pairs, with a dtype third where it is not float32 (make.py's pair()).
pthio::tensor zeros_of(const json& pair) {
  pthio::dtype t = pthio::dtype::float32;
  if (pair.size() > 2) t = pthio::dtype_from_name(pair[2].get<std::string>()).value();
  return pthio::tensor::zeros(t, shape_of(pair[1]));
}

pthio::state_dict zeros_like(const json& pairs, const json* order = nullptr) {
  std::map<std::string, const json*> by_key;
  for (const auto& p : pairs) by_key[p[0].get<std::string>()] = &p;
  pthio::state_dict sd;
  if (order) {
    for (const auto& k : *order) sd.set(k, zeros_of(*by_key.at(k)));
  } else {
    for (const auto& p : pairs) sd.set(p[0], zeros_of(p));
  }
  return sd;
}

json torch_messages() {
  return read_json(pthio_test::fixtures_dir().parent_path() /
                   "tests/data/state_dict/torch_messages.json");
}

bool is_batchnorm_scenario(const json& s) { return s.contains("after"); }

// One scenario of make.py: the strict load refuses with torch's message or loads, the strict=False
// load reports torch's lists, and a BatchNorm's num_batches_tracked ends as torch left it.
void check_scenario(const json& s) {
  INFO(s["name"].get<std::string>());
  auto target_of = [&] {
    pthio::state_dict target = zeros_like(s["target"], &s["target_order"]);
    if (is_batchnorm_scenario(s))
      for (const auto& [key, t] : target)
        if (key.ends_with("num_batches_tracked"))
          t.at<std::int64_t>({}) = s["num_batches_tracked_at_start"].get<std::int64_t>();
    return target;
  };
  pthio::state_dict target = target_of();
  pthio::state_dict source = zeros_like(s["source"]);
  if (s.contains("source_metadata") && !s["source_metadata"].is_null()) {
    source.metadata = pthio::value::make_ordered_dict();
    for (const auto& m : s["source_metadata"]) {
      pthio::value local = pthio::value::make_dict();
      local.as_dict().set(pthio::value("version"), pthio::value(m[1].get<std::int64_t>()));
      source.metadata.as_dict().set(pthio::value(m[0].get<std::string>()), local);
    }
  }
  pthio::load_state_dict_options o;
  o.model_name = "Net";
  if (s.contains("strip_prefix") && !s["strip_prefix"].is_null())
    o.remap.strip_prefix = s["strip_prefix"];
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
  target = target_of();
  const auto& ns = s["non_strict"];
  if (!ns["error"].is_null()) {
    CHECK_THROWS_WITH_AS(pthio::load_state_dict(target, source, o),
                         ns["error"].get<std::string>().c_str(), pthio::error);
  } else {
    auto r = pthio::load_state_dict(target, source, o);
    CHECK(r.missing == ns["missing"].get<std::vector<std::string>>());
    CHECK(r.unexpected == ns["unexpected"].get<std::vector<std::string>>());
    if (is_batchnorm_scenario(s))
      for (const auto& [key, value] : s["after"].items())
        CHECK(target.at(key).item<std::int64_t>() == value.get<std::int64_t>());
  }
}

// A pickled nn.Module as the unpickler gives it: an object of `cls` whose state holds the three
// dicts (and whatever else is passed).
pthio::value module_of(std::string cls, std::vector<std::pair<std::string, pthio::value>> params,
                       std::vector<std::pair<std::string, pthio::value>> buffers,
                       std::vector<std::pair<std::string, pthio::value>> children,
                       std::vector<std::string> transient = {}) {
  auto dict_of = [](const std::vector<std::pair<std::string, pthio::value>>& items) {
    pthio::value d = pthio::value::make_ordered_dict();
    for (const auto& [k, v] : items) d.as_dict().set(pthio::value(k), v);
    return d;
  };
  pthio::value state = pthio::value::make_dict();
  auto& d = state.as_dict();
  d.set(pthio::value("training"), pthio::value(true));
  d.set(pthio::value("_parameters"), dict_of(params));
  d.set(pthio::value("_buffers"), dict_of(buffers));
  pthio::value set = pthio::value::make_object({"builtins", "set"}, pthio::value::make_tuple());
  for (const auto& name : transient) set.as_object().list_items.emplace_back(name);
  d.set(pthio::value("_non_persistent_buffers_set"), set);
  d.set(pthio::value("_modules"), dict_of(children));
  auto dot = cls.rfind('.');
  pthio::value m = pthio::value::make_object({cls.substr(0, dot), cls.substr(dot + 1)},
                                             pthio::value::make_tuple());
  m.as_object().state = state;
  m.as_object().has_state = true;
  return m;
}

pthio::value param(float x) {
  pthio::tensor t = pthio::tensor::zeros(pthio::dtype::float32, {1});
  t.at<float>({0}) = x;
  t.set_requires_grad(true);
  return pthio::value(t, true);
}

}  // namespace

TEST_SUITE("state_dict") {
  TEST_CASE("state_dict: load_state_dict says what torch says, strict and not") {
    json data = torch_messages();
    int n = 0;
    for (const auto& s : data["scenarios"])
      if (!is_batchnorm_scenario(s)) check_scenario(s), ++n;
    CHECK(n >= 4);
  }

  // torch fills in the num_batches_tracked a BatchNorm checkpoint from before torch 0.4.1 lacks
  // (its _metadata version absent or < 2) instead of calling it missing; the messages around it,
  // DDP prefixes, size mismatches and unexpected keys as torch 2.x words them.
  TEST_CASE("state_dict: old BatchNorm checkpoints without num_batches_tracked load as in torch") {
    json data = torch_messages();
    int n = 0;
    for (const auto& s : data["scenarios"])
      if (is_batchnorm_scenario(s)) check_scenario(s), ++n;
    CHECK(n >= 10);
  }

  TEST_CASE("state_dict: num_batches_tracked follows the _metadata versions a saved file carries") {
    // t2/cnn_bn.pth: a torch 2.x model's state_dict, _metadata version 2 for bn1 and bn2.
    auto root = pthio::load(fixture("t2/cnn_bn.pth"), cpu_options());
    pthio::state_dict source = pthio::state_dict::from_value(root);
    pthio::state_dict model;
    for (const auto& [key, t] : source) model.set(key, pthio::tensor::zeros(t.dtype(), t.shape()));
    model.at("bn1.num_batches_tracked").at<std::int64_t>({}) = 5;
    source.erase("bn1.num_batches_tracked");
    source.erase("bn2.num_batches_tracked");
    // At version 2 the counters were saved, so torch calls their absence missing.
    CHECK_THROWS_WITH_AS(
        pthio::load_state_dict(model, source),
        "Error(s) in loading state_dict for Module:\n\tMissing key(s) in state_dict: "
        "\"bn1.num_batches_tracked\", \"bn2.num_batches_tracked\". ",
        pthio::error);
    // Saved before torch 0.4.1 (no _metadata): torch fills them in; the model keeps its own.
    source.metadata = pthio::value();
    pthio::load_report r = pthio::load_state_dict(model, source);
    CHECK(r.ok());
    CHECK(r.kept == std::vector<std::string>{"bn1.num_batches_tracked", "bn2.num_batches_tracked"});
    CHECK(model.at("bn1.num_batches_tracked").item<std::int64_t>() == 5);
    CHECK(pthio::cli::tensor_sha256(model.at("bn1.running_var")) ==
          pthio::cli::tensor_sha256(source.at("bn1.running_var")));
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
    source.set("w",
               pthio::tensor::from_values<float>({1.5f, -2.0f}, {2}).to(pthio::dtype::bfloat16));
    CHECK_THROWS_WITH_AS(pthio::load_state_dict(target, source),
                         doctest::Contains("dtype mismatch for w"), pthio::error);
    pthio::load_state_dict_options o;
    o.convert_dtypes = true;
    CHECK(pthio::load_state_dict(target, source, o).ok());
    CHECK(target.at("w").at<float>({0}) == 1.5f);
    CHECK(target.at("w").at<float>({1}) == -2.0f);
  }

  TEST_CASE(
      "state_dict: extracted from a training checkpoint, loaded into a model, values as torch "
      "saved them") {
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
        model.set(key.substr(17),
                  pthio::tensor::zeros(pthio::dtype::float32, shape_of(t["shape"])));
      }
      CHECK(sd.keys() == want_keys);
      CHECK(pthio::load_state_dict(model, sd).ok());
      for (const auto& t : e["tensors"]) {
        std::string key = t["key"];
        if (key.starts_with("model_state_dict."))
          CHECK(pthio::cli::tensor_sha256(model.at(key.substr(17))) ==
                t["sha256"].get<std::string>());
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
        CHECK(pthio::cli::tensor_sha256(
                  o.tensor_at(std::stoll(rest.substr(0, dot)), rest.substr(dot + 1))) ==
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
      return pthio::cli::dump_json(
          root.find("optimizer_state_dict")->find("param_groups")->items()[0]);
    };
    CHECK(group_json(pthio::adam_param_group({}, 6)) == torch_group("t2/ckpt_adam.pth"));
    pthio::adam_options w;
    w.weight_decay = 0.01;
    w.amsgrad = true;
    w.decoupled = true;
    CHECK(group_json(pthio::adam_param_group(w, 6)) == torch_group("t2/ckpt_adamw.pth"));
    auto o = pthio::optimizer_state::from_value(
        *pthio::load(fixture("t1/ckpt_adam.pth"), cpu_options()).find("optimizer_state_dict"));
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

  TEST_CASE("state_dict: a module's state dict follows torch's walk, built by hand") {
    using pthio::value;
    value shared =
        module_of("torch.nn.modules.linear.Linear", {{"weight", param(1)}, {"bias", {}}}, {}, {});
    value bn =
        module_of("torch.nn.modules.batchnorm.BatchNorm2d", {{"weight", param(2)}},
                  {{"running_mean", param(3)}, {"tmp", param(4)}, {"gone", {}}}, {}, {"tmp"});
    value root = module_of("my.Net", {{"scale", param(5)}}, {{"buf", param(6)}},
                           {{"a", shared}, {"none", {}}, {"bn", bn}, {"b", shared}});
    CHECK(pthio::is_module(root));
    CHECK_FALSE(pthio::is_module(value::make_dict()));
    pthio::state_dict sd = pthio::module_state_dict(root);
    CHECK(sd.keys() == std::vector<std::string>{"scale", "buf", "a.weight", "bn.weight",
                                                "bn.running_mean", "b.weight"});
    CHECK_FALSE(sd.at("scale").requires_grad());  // detached, as state_dict() gives them
    CHECK(sd.at("a.weight").get_storage().same(sd.at("b.weight").get_storage()));
    std::vector<std::pair<std::string, std::int64_t>> meta;
    for (const auto& [k, v] : sd.metadata.as_dict().entries())
      meta.emplace_back(k.as_str(), v.find("version")->as_int());
    CHECK(meta == std::vector<std::pair<std::string, std::int64_t>>{
                      {"", 1}, {"a", 1}, {"bn", 2}, {"b", 1}});
    // The root and its entries: a module anywhere extract_state_dict looks.
    CHECK(pthio::extract_state_dict(root).keys() == sd.keys());
    value ck = value::make_dict();
    ck.as_dict().set(value("epoch"), value(3));
    ck.as_dict().set(value("model"), value());
    ck.as_dict().set(value("ema"), bn);
    CHECK(pthio::extract_state_dict(ck).keys() ==
          std::vector<std::string>{"weight", "running_mean"});
    ck.as_dict().set(value("model"), root);
    CHECK(pthio::extract_state_dict(ck).keys() == sd.keys());
    CHECK(pthio::extract_state_dict(ck, "ema").size() == 2);
    // (dict, slots) state, as a class with __slots__ pickles it.
    value slotted = module_of("my.Slotted", {{"w", param(7)}}, {}, {});
    slotted.as_object().state = value::make_tuple({slotted.as_object().state, value::make_dict()});
    CHECK(pthio::module_state_dict(slotted).keys() == std::vector<std::string>{"w"});
  }

  TEST_CASE("state_dict: what a module's state dict refuses, with where and why") {
    using pthio::value;
    CHECK_THROWS_WITH_AS(pthio::module_state_dict(value::make_dict()),
                         doctest::Contains("not a pickled nn.Module"), pthio::error);
    value odd = module_of("my.Odd", {{"w", value(1.5)}}, {}, {});
    CHECK_THROWS_WITH_AS(
        pthio::module_state_dict(odd),
        doctest::Contains("module (the root) (my.Odd): _parameters['w'] is a float"), pthio::error);
    value stray = module_of("my.Net", {}, {}, {{"head", value::make_list()}});
    CHECK_THROWS_WITH_AS(pthio::module_state_dict(stray),
                         doctest::Contains("child 'head' is not a pickled nn.Module (a list)"),
                         pthio::error);
    // Shared submodules double at each level: written out in full they are bounded as
    // visit_tensors bounds key paths.
    value m = module_of("my.Leaf", {{"w", param(1)}}, {}, {});
    for (int i = 0; i < 40; ++i) m = module_of("my.Pair", {}, {}, {{"a", m}, {"b", m}});
    try {
      pthio::module_state_dict(m);
      FAIL("2^40 entries were not refused");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == pthio::errc::limit_exceeded);
    }
    CHECK_THROWS_WITH_AS(pthio::extract_state_dict(value::make_dict()),
                         doctest::Contains("no state dict found"), pthio::error);
  }
}  // TEST_SUITE
