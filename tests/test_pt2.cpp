// torch.export archives (.pt2): the layouts torch 2.6, 2.8 and 2.15 wrote (fixtures/t26, t28, t2;
// test_fixtures compares every tensor with torch.export.load's), recognised by their records,
// and every damaged config, record or archive refused with an error that names the entry.
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli_support.h"
#include "pthio/pthio.hpp"
#include "support.h"

using pthio_test::cpu_options;
using pthio_test::error_of;
using pthio_test::fixture;
using pthio_test::run_cli;
using pthio_test::shell_quote;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string text_of(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The fixture `rel` rebuilt with records replaced (a value) or dropped (nullopt), in its order;
// `added` come last.
std::vector<std::byte> rebuilt(const std::string& rel,
                               const std::map<std::string, std::optional<std::string>>& changes,
                               const std::vector<std::pair<std::string, std::string>>& added = {}) {
  pthio::zip_reader zip(pthio::byte_source::map_file(fixture(rel)));
  pthio::memory_sink out;
  pthio::zip_writer w(out);
  for (const auto& e : zip.entries()) {
    auto it = changes.find(e.name);
    if (it == changes.end())
      w.add(e.name, zip.read(e));
    else if (it->second)
      w.add(e.name, bytes_of(*it->second));
  }
  for (const auto& [name, data] : added) w.add(name, bytes_of(data));
  w.finish();
  return out.buffer();
}

std::string record_text(const std::string& rel, const std::string& name) {
  pthio::zip_reader zip(pthio::byte_source::map_file(fixture(rel)));
  const pthio::zip_entry* e = zip.find(name);
  REQUIRE(e);
  return text_of(zip.read(*e));
}

pthio::checkpoint load_bytes(std::vector<std::byte> b,
                             pthio::load_mode mode = pthio::load_mode::eager) {
  return pthio::load_checkpoint(pthio::byte_source::from_vector(std::move(b), "crafted.pt2"),
                                cpu_options(mode));
}

const std::string constants_fixture = "t2/export_constants.pt2";
const std::string weights_config = "export_constants/data/weights/model_weights_config.json";

// export_constants' weights config with `edit` applied to its parsed JSON.
std::vector<std::byte> with_config(const std::function<void(nlohmann::ordered_json&)>& edit) {
  auto cfg = nlohmann::ordered_json::parse(record_text(constants_fixture, weights_config));
  edit(cfg);
  return rebuilt(constants_fixture, {{weights_config, cfg.dump()}});
}

// The error loading `b` gives, checked to be of `kind` and to mention every one of `words`.
void refused(std::vector<std::byte> b, pthio::errc kind, std::vector<std::string> words) {
  for (auto mode : {pthio::load_mode::eager, pthio::load_mode::lazy}) {
    auto e = error_of([&] { load_bytes(b, mode); });
    const std::string what = e.what();
    INFO(what);
    CHECK(e.kind() == kind);
    for (const auto& w : words) CHECK(std::string(e.what()).find(w) != std::string::npos);
  }
}

}  // namespace

TEST_SUITE("pt2") {
  TEST_CASE("pt2: the three layouts are told apart by their records") {
    struct expect {
      std::string file;
      pthio::pt2_layout layout;
      std::string root;
    };
    for (const auto& x :
         {expect{"t2/export_mlp_bn.pt2", pthio::pt2_layout::archive, "export_mlp_bn"},
          expect{"t28/export_mlp_bn.pt2", pthio::pt2_layout::archive_pickled, "export_mlp_bn"},
          expect{"t26/export_mlp_bn.pt2", pthio::pt2_layout::export_zip, ""}}) {
      INFO(x.file);
      pthio::zip_reader zip(pthio::byte_source::map_file(fixture(x.file)));
      auto info = pthio::read_pt2_info(zip);
      REQUIRE(info);
      CHECK(info->layout == x.layout);
      CHECK(info->root == x.root);
      REQUIRE(info->models.size() == 1);
      CHECK(info->models[0].name == "model");
      CHECK_FALSE(info->models[0].sample_inputs_record.empty());
      // Not the file name: the same bytes in memory, under another name, load as .pt2.
      auto ck = load_bytes(pthio_test::read_bytes(fixture(x.file)));
      CHECK(ck.format == pthio::checkpoint_format::pt2);
      CHECK(ck.archive_name == x.root);
      CHECK(ck.root.as_dict().attr("signature") != nullptr);
    }
    // Ordinary checkpoints are not .pt2.
    pthio::zip_reader plain(pthio::byte_source::map_file(fixture("t2/mlp.bin")));
    CHECK_FALSE(pthio::read_pt2_info(plain));
  }

  TEST_CASE("pt2: the configs' entries and the records torch unpickles") {
    pthio::zip_reader zip(pthio::byte_source::map_file(fixture("t2/export_pickled.pt2")));
    auto info = pthio::read_pt2_info(zip);
    REQUIRE(info);
    const auto& m = info->models.at(0);
    REQUIRE(m.weights.size() == 2);
    CHECK(m.weights[0].name == "weight");
    CHECK(m.weights[0].use_pickle);
    CHECK(m.weights[0].is_param);
    CHECK(m.weights[1].name == "bias");
    CHECK_FALSE(m.weights[1].use_pickle);
    REQUIRE(m.weights[1].meta);
    CHECK(m.weights[1].meta->type == pthio::dtype::float32);
    CHECK(m.weights[1].meta->sizes == pthio::shape_t{2});
    REQUIRE(m.constants.size() == 1);
    CHECK(m.constants[0].record == "export_pickled/data/constants/opaque_obj_0");
    CHECK_FALSE(m.constants[0].meta);
    std::map<std::string, bool> pickles;
    for (const auto& p : pthio::pt2_pickles(zip, *info)) pickles[p.record] = p.torch_save;
    CHECK(pickles.at(m.weights[0].record) == true);
    CHECK(pickles.at("export_pickled/data/constants/opaque_obj_0") == false);
    CHECK(pickles.at("export_pickled/data/sample_inputs/model.pt") == true);
    CHECK(pickles.size() == 3);
  }

  TEST_CASE("pt2: pickled records follow the weights-only rules under strict") {
    auto e = error_of([] {
      pthio::load_options o = cpu_options();
      o.strict = true;
      pthio::load_checkpoint(fixture("t2/export_pickled.pt2"), o);
    });
    CHECK(e.kind() == pthio::errc::unsafe_global);
    CHECK(std::string(e.what()).find("whole_models.ScaledTensor") != std::string::npos);
    // Nothing but tensors: strict loads it.
    pthio::load_options o = cpu_options();
    o.strict = true;
    for (const char* f : {"t2/export_conv.pt2", "t28/export_conv.pt2", "t26/export_conv.pt2"})
      CHECK_NOTHROW(pthio::load_checkpoint(fixture(f), o));
  }

  TEST_CASE("pt2: map_location and lazy slices") {
    pthio::load_options meta;
    meta.map_location = pthio::map_location("meta");
    auto m = pthio::load_checkpoint(fixture("t2/export_conv.pt2"), meta);
    pthio::visit_tensors(m.root, [](const std::string&, const pthio::value& v) {
      CHECK(v.as_tensor().dev().type() == pthio::device_type::meta);
    });
    if (!pthio::cuda_available()) {
      pthio::load_options gpu;
      gpu.map_location = pthio::map_location("cuda:0");
      CHECK(error_of([&] { pthio::load_checkpoint(fixture("t2/export_conv.pt2"), gpu); }).kind() ==
            pthio::errc::cuda);
    }
    // A lazy .pt2 reads one tensor's part: the same elements as the eager tensor's slice.
    for (const char* f :
         {"t2/export_constants.pt2", "t28/export_constants.pt2", "t26/export_constants.pt2"}) {
      INFO(f);
      auto eager = pthio::load_checkpoint(fixture(f), cpu_options());
      auto lazy = pthio::load_checkpoint(fixture(f), cpu_options(pthio::load_mode::lazy));
      CHECK(lazy.is_lazy());
      for (const char* key : {"mix", "hi", "proj.weight"}) {
        auto s = pthio::slice::parse("1:3");
        auto a = lazy.load_slice(key, s);
        auto b = eager.load_slice(key, s);
        CHECK(a.shape() == b.shape());
        CHECK(std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
      }
    }
  }

  TEST_CASE("pt2: a tensor saved on a GPU goes where map_location sends its device") {
    auto b = with_config([](auto& c) {
      c["config"]["proj.weight"]["tensor_meta"]["device"] =
          nlohmann::ordered_json{{"type", "cuda"}, {"index", 1}};
    });
    // Mapped: cuda:1 -> cpu by a mapping that names it, and by a plain "cpu".
    pthio::load_options o;
    o.map_location = pthio::map_location::mapping({{"cuda:1", "cpu"}});
    auto ck = pthio::load_checkpoint(pthio::byte_source::from_vector(b, "gpu.pt2"), o);
    CHECK(ck.root.as_dict().get("proj.weight")->as_tensor().dev() == pthio::cpu_device);
    auto lazy = load_bytes(b, pthio::load_mode::lazy);
    CHECK(lazy.load_tensor("proj.weight").dev() == pthio::cpu_device);
    if (!pthio::cuda_available()) {
      // Kept on cuda:1 with no GPU: refused, naming the device.
      auto e = error_of([&] {
        pthio::load_checkpoint(pthio::byte_source::from_vector(b, "gpu.pt2"),
                               pthio::load_options{});
      });
      CHECK(e.kind() == pthio::errc::cuda);
      CHECK(std::string(e.what()).find("cuda:1") != std::string::npos);
    }
    // Another backend's device ("xpu") is a location like any other: mapped to the CPU here. A
    // type that is no device tag is corrupt, named.
    auto xpu = with_config([](auto& c) {
      c["config"]["proj.bias"]["tensor_meta"]["device"] =
          nlohmann::ordered_json{{"type", "xpu"}, {"index", 0}};
    });
    CHECK(load_bytes(xpu).root.as_dict().get("proj.bias")->as_tensor().dev() == pthio::cpu_device);
    refused(with_config([](auto& c) {
              c["config"]["proj.bias"]["tensor_meta"]["device"] =
                  nlohmann::ordered_json{{"type", "Not A Device"}, {"index", nullptr}};
            }),
            pthio::errc::corrupt_checkpoint, {"\"proj.bias\"", "Not A Device"});
  }

  TEST_CASE("pt2: tied weights and views share one record's storage") {
    for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap, pthio::load_mode::lazy}) {
      auto ck = pthio::load_checkpoint(fixture("t2/export_constants.pt2"), cpu_options(mode));
      const auto& d = ck.root.as_dict();
      const auto& lo = d.get("lo")->as_tensor();
      const auto& hi = d.get("hi")->as_tensor();
      CHECK(lo.get_storage().id() == hi.get_storage().id());
      CHECK(hi.storage_offset() == 6);
      CHECK(d.get("mix")->as_tensor().strides() == pthio::shape_t{1, 3});
    }
  }

  TEST_CASE("pt2: every config field is checked, naming the entry") {
    using E = pthio::errc;
    refused(with_config([](auto& c) { c["config"]["proj.weight"]["colour"] = 1; }),
            E::corrupt_checkpoint, {"\"proj.weight\"", "colour", weights_config});
    refused(with_config([](auto& c) { c["config"]["proj.weight"].erase("is_param"); }),
            E::corrupt_checkpoint, {"\"proj.weight\"", "is_param"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["tensor_meta"].erase("strides"); }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "strides"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["tensor_meta"]["dtype"] = 99; }),
            E::unsupported, {"\"proj.bias\"", "dtype code 99"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["tensor_meta"]["layout"] = 1; }),
            E::unsupported, {"\"proj.bias\"", "SparseCoo"});
    refused(with_config([](auto& c) {
              c["config"]["proj.bias"]["tensor_meta"]["sizes"][0] =
                  nlohmann::ordered_json{{"as_expr", {{"expr_str", "s0"}}}};
            }),
            E::unsupported, {"\"proj.bias\"", "symbolic"});
    refused(with_config([](auto& c) {
              c["config"]["proj.bias"]["tensor_meta"]["storage_offset"]["as_int"] = 1000;
            }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "bytes of storage"});
    refused(with_config([](auto& c) {
              c["config"]["proj.bias"]["tensor_meta"]["sizes"][0]["as_int"] = -4;
            }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "negative"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["path_name"] = "../weight_0"; }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "path_name"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["path_name"] = "weight_99"; }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "weight_99", "missing"});
    // lo's record holds 10 float32 values, 40 bytes: no whole number of complex128 ones.
    refused(with_config([](auto& c) { c["config"]["lo"]["tensor_meta"]["dtype"] = 11; }),
            E::corrupt_checkpoint, {"\"lo\"", "whole number", "complex128"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["tensor_meta"]["dtype"] = 5; }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "needs 32 bytes"});
    refused(with_config([](auto& c) { c["config"]["proj.bias"]["is_param"] = "yes"; }),
            E::corrupt_checkpoint, {"\"proj.bias\"", "is_param"});
    refused(with_config([](auto& c) { c["extra"] = 1; }), E::corrupt_checkpoint, {"extra"});
    // Not JSON, nested past the reader's depth, a name twice.
    auto text = record_text(constants_fixture, weights_config);
    refused(rebuilt(constants_fixture, {{weights_config, text.substr(0, text.size() / 2)}}),
            E::corrupt_checkpoint, {weights_config});
    refused(rebuilt(constants_fixture,
                    {{"export_constants/models/model.json",
                      "{\"graph_module\": {\"x\": " + std::string(200, '[') + "}}"}}),
            E::corrupt_checkpoint, {"nesting", "models/model.json"});
    auto first = text.find("\"proj.weight\"");
    REQUIRE(first != std::string::npos);
    std::string twice = text;
    twice.replace(twice.find("\"proj.bias\""), 11, "\"proj.weight\"");
    refused(rebuilt(constants_fixture, {{weights_config, twice}}), E::corrupt_checkpoint,
            {"listed twice"});
  }

  TEST_CASE("pt2: damaged archives") {
    using E = pthio::errc;
    const std::string p = "export_constants/";
    refused(rebuilt(constants_fixture, {{p + "archive_format", "pt3"}}), E::corrupt_checkpoint,
            {"archive_format", "pt3"});
    refused(rebuilt(constants_fixture, {{p + "archive_version", "1"}}), E::unsupported,
            {"archive_version"});
    refused(rebuilt(constants_fixture, {{weights_config, std::nullopt}}), E::corrupt_checkpoint,
            {"model_weights_config.json"});
    refused(rebuilt(constants_fixture, {{p + "data/weights/weight_0", std::nullopt}}),
            E::corrupt_checkpoint, {"weight_0", "missing"});
    // A record one byte short of its view.
    pthio::zip_reader zip(pthio::byte_source::map_file(fixture(constants_fixture)));
    auto w0 = text_of(zip.read(*zip.find(p + "data/weights/weight_0")));
    refused(
        rebuilt(constants_fixture, {{p + "data/weights/weight_0", w0.substr(0, w0.size() - 4)}}),
        E::corrupt_checkpoint, {"\"proj.weight\""});
    // A pickled record that is no torch.save blob.
    refused(rebuilt("t28/export_conv.pt2", {{"export_conv/data/weights/model.pt", "garbage"}}),
            E::corrupt_zip, {"export_conv/data/weights/model.pt"});
    refused(rebuilt("t26/export_conv.pt2", {{"serialized_state_dict.pt", std::nullopt}}),
            E::corrupt_checkpoint, {"serialized_state_dict.pt"});
    // An AOTInductor package that compiled its weights into its library.
    pthio::memory_sink out;
    pthio::zip_writer w(out);
    w.add("pkg/data/aotinductor/model/abc.wrapper.so", bytes_of("\x7f"
                                                                "ELF"));
    w.add("pkg/archive_format", bytes_of("pt2"));
    w.add("pkg/archive_version", bytes_of("0"));
    w.finish();
    refused(out.buffer(), E::unsupported, {"AOTInductor", "compiled library", "pickle_weights"});
    // ... or into the binary_blob format, whose layout only the library knows.
    pthio::memory_sink out2;
    pthio::zip_writer w2(out2);
    w2.add("pkg/data/aotinductor/model/abc.wrapper.so", bytes_of("\x7f"
                                                                 "ELF"));
    w2.add("pkg/data/aotinductor/model/abc.wrapper_weights.blob", bytes_of("0123"));
    w2.add("pkg/archive_format", bytes_of("pt2"));
    w2.finish();
    refused(out2.buffer(), E::unsupported, {"AOTInductor", "binary_blob"});
  }

  TEST_CASE("pt2: an empty record stands for zeros, as torch reads a fake tensor's") {
    const std::string p = "export_constants/data/weights/";
    auto cfg = nlohmann::ordered_json::parse(record_text(constants_fixture, weights_config));
    const std::string bias_record = p + cfg["config"]["proj.bias"]["path_name"].get<std::string>();
    auto ck = load_bytes(rebuilt(constants_fixture, {{bias_record, ""}}));
    const auto& t = ck.root.as_dict().get("proj.bias")->as_tensor();
    REQUIRE(t.shape() == pthio::shape_t{4});
    for (int i = 0; i < 4; ++i) CHECK(t.data<float>()[i] == 0.0f);
    // Zeros past max_memory are refused rather than allocated.
    cfg["config"]["proj.bias"]["tensor_meta"]["sizes"][0]["as_int"] = std::int64_t{1} << 40;
    refused(rebuilt(constants_fixture, {{bias_record, ""}, {weights_config, cfg.dump()}}),
            pthio::errc::limit_exceeded, {"\"proj.bias\"", "max_memory"});
  }

  TEST_CASE("pt2: the torch 2.1-2.2 name serialized_state_dict.json is read as the blob it is") {
    pthio::zip_reader zip(pthio::byte_source::map_file(fixture("t26/export_conv.pt2")));
    auto blob = text_of(zip.read(*zip.find("serialized_state_dict.pt")));
    auto renamed = rebuilt("t26/export_conv.pt2", {{"serialized_state_dict.pt", std::nullopt}},
                           {{"serialized_state_dict.json", blob}});
    auto a = load_bytes(renamed);
    auto b = pthio::load_checkpoint(fixture("t26/export_conv.pt2"), cpu_options());
    CHECK(a.root.as_dict().size() == b.root.as_dict().size());
    for (const auto& [k, v] : b.root.as_dict().entries()) {
      INFO(k.as_str());
      const pthio::value* got = a.root.as_dict().get(k);
      REQUIRE(got);
      CHECK(*got == v);
    }
  }

  TEST_CASE(
      "pt2: as torch: constants are never Parameters, a shared record keeps its first dtype") {
    const std::string cc = "export_constants/data/constants/model_constants_config.json";
    auto cfg = nlohmann::ordered_json::parse(record_text(constants_fixture, cc));
    const std::string first = cfg["config"].begin().key();
    cfg["config"][first]["is_param"] = true;
    auto ck = load_bytes(rebuilt(constants_fixture, {{cc, cfg.dump()}}));
    CHECK_FALSE(ck.root.as_dict().get(first)->is_parameter());
    // "hi" names lo's record as float16: torch's flat tensor is float32 (the first entry's), and
    // as_strided keeps that dtype.
    auto b = with_config([](auto& c) { c["config"]["hi"]["tensor_meta"]["dtype"] = 6; });
    auto again = load_bytes(b);
    CHECK(again.root.as_dict().get("hi")->as_tensor().dtype() == pthio::dtype::float32);
  }

  TEST_CASE("pt2: hostile archives: nesting, many zeros, one pickled record named many times") {
    // An export zip whose state-dict blob is an export zip, 50 deep: torch.load reads no .pt2
    // inside a .pt2, and neither does pthio (no recursion at all).
    pthio::zip_reader z(pthio::byte_source::map_file(fixture("t26/export_half.pt2")));
    std::string blob = text_of(z.read(*z.find("serialized_state_dict.pt")));
    for (int i = 0; i < 50; ++i) {
      pthio::memory_sink out;
      pthio::zip_writer w(out);
      w.add("serialized_exported_program.json", bytes_of("{}"));
      w.add("serialized_state_dict.pt", bytes_of(blob));
      w.finish();
      blob = text_of(out.buffer());
    }
    refused(bytes_of(blob), pthio::errc::corrupt_checkpoint, {"data.pkl"});
    // 40 empty records each standing for 64 MiB of zeros: refused at max_memory for them all.
    auto zeros = with_config([](auto& c) {
      for (int i = 0; i < 40; ++i)
        c["config"]["z" + std::to_string(i)] = {
            {"path_name", "empty_" + std::to_string(i)},
            {"is_param", false},
            {"use_pickle", false},
            {"tensor_meta", c["config"]["proj.bias"]["tensor_meta"]}};
      for (int i = 0; i < 40; ++i)
        c["config"]["z" + std::to_string(i)]["tensor_meta"]["sizes"][0]["as_int"] = 16777215;
    });
    {
      // The records the entries name, all empty.
      pthio::zip_reader zz(pthio::byte_source::from_vector(zeros, "z"));
      pthio::memory_sink out;
      pthio::zip_writer w(out);
      for (const auto& e : zz.entries()) w.add(e.name, zz.read(e));
      for (int i = 0; i < 40; ++i)
        w.add("export_constants/data/weights/empty_" + std::to_string(i), {});
      w.finish();
      refused(out.buffer(), pthio::errc::limit_exceeded, {"max_memory", "empty records"});
    }
    // Fifty entries naming one pickled record: loaded once, one storage for all.
    const std::string wc = "export_pickled/data/weights/model_weights_config.json";
    auto cfg = nlohmann::ordered_json::parse(record_text("t2/export_pickled.pt2", wc));
    for (int i = 0; i < 50; ++i) cfg["config"]["dup" + std::to_string(i)] = cfg["config"]["weight"];
    auto ck = load_bytes(rebuilt("t2/export_pickled.pt2", {{wc, cfg.dump()}}));
    const void* id = ck.root.as_dict().get("weight")->as_tensor().get_storage().id();
    for (int i = 0; i < 50; ++i)
      CHECK(ck.root.as_dict().get("dup" + std::to_string(i))->as_tensor().get_storage().id() == id);
  }

  TEST_CASE("pt2: every file under models/ is a program, as torch counts them") {
    const std::string p = "export_constants/";
    auto program = record_text(constants_fixture, p + "models/model.json");
    auto ck = load_bytes(rebuilt(constants_fixture, {{p + "models/model.json", std::nullopt}},
                                 {{p + "models/model.JSON", program}}));
    CHECK(ck.root.as_dict().get("proj.weight") != nullptr);
    // No program and no AOTInductor package: nothing torch would load.
    refused(rebuilt(constants_fixture, {{p + "models/model.json", std::nullopt}}),
            pthio::errc::corrupt_checkpoint, {"no program"});
  }

  TEST_CASE("pt2: scan reads every record torch would unpickle" * pthio_test::needs_cli) {
    const auto dir = pthio_test::scratch_dir() / "pt2-scan";
    std::filesystem::create_directories(dir);
    auto scan = [&](const std::string& name, const std::vector<std::byte>& b) {
      const auto path = dir / name;
      pthio_test::write_bytes(path, b);
      return run_cli("scan " + shell_quote(path.string()));
    };
    // A pickle that would run `id` in torch (pickle.loads), as protocol 2 bytes.
    std::string evil = "\x80\x02";
    evil += "cos\nsystem\nX";
    evil += std::string("\x02\0\0\0", 4);
    evil += "id\x85R.";
    const std::string p = "export_constants/";
    const std::string cc = p + "data/constants/model_constants_config.json";
    // (1) An opaque_obj_ record the config calls unpickled: torch unpickles it by its name.
    auto cfg = nlohmann::ordered_json::parse(record_text(constants_fixture, cc));
    cfg["config"]["scale"]["path_name"] = "opaque_obj_0";
    cfg["config"]["scale"]["tensor_meta"]["sizes"][0]["as_int"] = 1;
    auto r = scan("opaque.pt2", rebuilt(constants_fixture, {{cc, cfg.dump()}},
                                        {{p + "data/constants/opaque_obj_0", evil}}));
    CHECK(r.status == 1);
    CHECK(r.out.find("os.system") != std::string::npos);
    CHECK(r.out.find("DANGEROUS") != std::string::npos);
    // (2) An extra .pkl member does not make scan overlook the archive's pickled records.
    r = scan("extra.pt2", rebuilt("t2/export_pickled.pt2", {},
                                  {{"export_pickled/extra/readme.pkl", "\x80\x02}."}}));
    CHECK(r.status == 1);
    CHECK(r.out.find("(pt2 format)") != std::string::npos);
    CHECK(r.out.find("whole_models.ScaledTensor") != std::string::npos);
    // (3) A second program under models/sub/ with an object constant.
    r = scan("sub.pt2",
             rebuilt(constants_fixture, {},
                     {{p + "models/sub/m.json", "{}"},
                      {p + "data/weights/sub/m_weights_config.json", "{\"config\": {}}"},
                      {p + "data/constants/sub/m_constants_config.json",
                       "{\"config\": {\"v\": {\"path_name\": \"opaque_obj_1\", \"is_param\": "
                       "false, \"use_pickle\": true, \"tensor_meta\": null}}}"},
                      {p + "data/constants/opaque_obj_1", evil}}));
    CHECK(r.status == 1);
    CHECK(r.out.find("os.system") != std::string::npos);
    // (4) An object constant no config names is scanned all the same.
    r = scan("unnamed.pt2",
             rebuilt(constants_fixture, {}, {{p + "data/constants/opaque_obj_7", evil}}));
    CHECK(r.status == 1);
    CHECK(r.out.find("os.system") != std::string::npos);
    // The fixtures: only tensors (safe), or a subclass and an object constant (unsafe).
    CHECK(run_cli("scan " + shell_quote(fixture("t2/export_conv.pt2").string())).status == 0);
    CHECK(run_cli("scan " + shell_quote(fixture("t26/export_conv.pt2").string())).status == 0);
    CHECK(run_cli("scan " + shell_quote(fixture("t28/export_conv.pt2").string())).status == 0);
    CHECK(run_cli("scan " + shell_quote(fixture("t2/export_pickled.pt2").string())).status == 1);
  }

  TEST_CASE("pt2: verify reports corruption it found even where a feature stops the rest" *
            pthio_test::needs_cli) {
    const auto dir = pthio_test::scratch_dir() / "pt2-verify";
    std::filesystem::create_directories(dir);
    // A sparse layout pthio does not read, and then also a flipped byte in a weight record.
    const std::string p = "export_constants/";
    auto b = with_config([](auto& c) { c["config"]["proj.bias"]["tensor_meta"]["layout"] = 1; });
    auto flipped = b;
    {
      pthio::zip_reader zz(pthio::byte_source::from_vector(b, "b"));
      const pthio::zip_entry* e = zz.find(p + "data/weights/weight_0");
      REQUIRE(e);
      flipped[static_cast<std::size_t>(e->data_offset)] ^= std::byte{1};
    }
    pthio_test::write_bytes(dir / "both.pt2", flipped);
    auto r = run_cli("verify " + shell_quote((dir / "both.pt2").string()));
    CHECK(r.out.find("BAD CRC") != std::string::npos);
    CHECK(r.out.find("UNSUPPORTED") != std::string::npos);
    CHECK(r.out.find("verify: corruption found") != std::string::npos);
    CHECK(r.status == 1);
    pthio_test::write_bytes(dir / "unsupported.pt2", b);
    r = run_cli("verify " + shell_quote((dir / "unsupported.pt2").string()));
    CHECK(r.status == 3);
    CHECK(r.out.find("verify: structure not checked") != std::string::npos);
  }
}
