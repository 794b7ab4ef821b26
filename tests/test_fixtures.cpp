// Every fixture written by real PyTorch reads exactly as fixtures/manifest.json (what PyTorch
// itself saw) says: tensors, key paths, dtypes, shapes, strides, offsets, SHA-256 of the
// elements, shared storages, and every non-tensor value through the dump rendering.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/json.h"
#include "manifest.h"
#include "pthio/pthio.hpp"
#include "support.h"
#include "torch/internal.h"

using nlohmann::json;
using pthio_test::first_difference;
using pthio_test::fixture;

using pthio_test::manifest;

using pthio_test::cpu_options;

namespace {

json expected_ls(const json& entry, const std::string& file) {
  return json{{"file", file}, {"format", entry["format"]}, {"tensors", entry["tensors"]}};
}

// TorchScript lists attributes in the class's order, state_dict in its own: compare by key.
json sorted_tensors(json tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const json& a, const json& b) {
    return a["key"].get<std::string>() < b["key"].get<std::string>();
  });
  return tensors;
}

// A lazy load lists every tensor as PyTorch saw it (but for its bytes and device: placeholders on
// the meta device), and load_tensor(key) gives each one's bytes.
void check_lazy(const json& e, const pthio::checkpoint& ck) {
  const bool lazy_format =
      e["format"] == "zip" || e["format"] == "torchscript" || e["format"] == "pt2";
  if (!lazy_format || e["tensors"].empty()) {
    CHECK_FALSE(ck.is_lazy());  // legacy files load eagerly in lazy mode
    return;
  }
  REQUIRE(ck.is_lazy());
  std::map<std::string, json> want;
  for (const auto& t : e["tensors"]) want[t["key"].get<std::string>()] = t;
  std::size_t seen = 0;
  pthio::visit_tensors(ck.root, [&](const std::string& key, const pthio::value& v) {
    INFO("tensor ", key);
    const pthio::tensor& t = v.as_tensor();
    if (!want.count(key)) return;  // TorchScript: tensors beyond the state dict
    ++seen;
    const json& w = want[key];
    // numpy arrays carry their bytes inside the pickle: they are loaded with it.
    const bool in_pickle =
        e["file"].get<std::string>().find("numpy") != std::string::npos && key.starts_with("arr");
    CHECK(t.dev().type() == (in_pickle ? pthio::device_type::cpu : pthio::device_type::meta));
    CHECK((t.get_storage().data() == nullptr) == !in_pickle);
    CHECK(std::string(pthio::dtype_name(t.dtype())) == w["dtype"].get<std::string>());
    CHECK(json(t.shape()) == w["shape"]);
    CHECK(json(t.strides()) == w["stride"]);
    CHECK(t.storage_offset() == w["storage_offset"].get<std::int64_t>());
    // Its bytes, read now: the same tensor as PyTorch's (sha256 of the elements), on the CPU.
    pthio::value loaded(ck.load_tensor(key), v.is_parameter());
    CHECK(loaded.as_tensor().dev() == pthio::cpu_device);
    json got = json::parse(pthio::cli::tensor_json(loaded, &key));
    json expect = w;
    if (e["format"] == "torchscript") {
      got.erase("requires_grad");
      expect.erase("requires_grad");
    }
    CHECK_MESSAGE(bool(got == expect),
                  "load_tensor differs from PyTorch: ", first_difference(got, expect));
  });
  CHECK(seen == want.size());
}

void check_entry(const json& e, pthio::load_mode mode, unsigned threads = 0) {
  const std::string rel = e["file"];
  const auto path = fixture(rel);
  INFO("fixture ", rel, " (", e["description"].get<std::string>(), ")");
  pthio::load_options opts = cpu_options(mode);
  opts.threads = threads;
  if (!e["error"].is_null()) {
    const std::string kind = e["error"]["kind"];
    const std::string contains = e["error"]["contains"];
    try {
      pthio::load_checkpoint(path, opts);
      FAIL("loaded a file PyTorch 2.x rejects");
    } catch (const pthio::error& err) {
      CHECK(std::string(pthio::errc_name(err.kind())) ==
            std::string(kind == "corrupt_checkpoint" ? "corrupt checkpoint" : kind));
      CHECK(std::string(err.what()).find(contains) != std::string::npos);
    }
    return;
  }
  pthio::checkpoint ck = pthio::load_checkpoint(path, opts);
  if (mode == pthio::load_mode::lazy) {
    check_lazy(e, ck);
    ck.materialize();
    CHECK_FALSE(ck.is_lazy());
  }
  CHECK(pthio::format_name(ck.format) == e["format"].get<std::string>());
  if (!e["archive"].is_null()) CHECK(ck.archive_name == e["archive"].get<std::string>());

  json ls = json::parse(pthio::cli::ls_json(ck, path.string()));
  json want = expected_ls(e, path.string());
  if (e["format"] == "torchscript") {
    // The manifest lists module.state_dict(), whose tensors are detached (requires_grad false);
    // the archive's parameters carry requires_grad true, as torch.jit.load shows them.
    ls["tensors"] = sorted_tensors(ls["tensors"]);
    want["tensors"] = sorted_tensors(want["tensors"]);
    for (auto& t : ls["tensors"]) t.erase("requires_grad");
    for (auto& t : want["tensors"]) t.erase("requires_grad");
  }
  CHECK_MESSAGE(bool(ls == want), "ls differs from PyTorch: ", first_difference(ls, want));

  if (!e["dump"].is_null()) {
    json dump = json::parse(pthio::cli::dump_json(ck.root));
    CHECK_MESSAGE(bool(dump == e["dump"]),
                  "dump differs from PyTorch: ", first_difference(dump, e["dump"]));
  }

  // Tensors PyTorch saw sharing one storage share one here too.
  std::map<std::string, const std::byte*> base;
  pthio::visit_tensors(ck.root, [&](const std::string& k, const pthio::value& v) {
    base[k] = v.as_tensor().get_storage().data();
  });
  for (const auto& group : e["shared"]) {
    std::set<const std::byte*> storages;
    for (const auto& k : group) storages.insert(base.at(k.get<std::string>()));
    CHECK_MESSAGE(storages.size() == 1, "keys ", group.dump(), " should share one storage");
  }
}

}  // namespace

TEST_SUITE("fixtures") {
  TEST_CASE("fixtures: the manifest covers both torch generations") {
    const auto& m = manifest();
    REQUIRE(m["generators"].contains("t1"));
    REQUIRE(m["generators"].contains("t2"));
    CHECK(m["generators"]["t1"]["torch"].get<std::string>().starts_with("1."));
    CHECK(m["generators"]["t2"]["torch"].get<std::string>().starts_with("2."));
    CHECK(m["files"].size() >= 50);
  }

  TEST_CASE("fixtures: every file reads as PyTorch read it, eager") {
    for (const auto& e : manifest()["files"]) check_entry(e, pthio::load_mode::eager);
  }

  TEST_CASE(
      "fixtures: every file reads as PyTorch read it, eager, its records copied by 3 threads") {
    // load_options::threads 0 leaves these small files to the calling thread: 3 forces the
    // threaded copies, CRC-32s and byte swaps of host_copies.
    for (const auto& e : manifest()["files"]) check_entry(e, pthio::load_mode::eager, 3);
  }

  TEST_CASE(
      "fixtures: every file reads as PyTorch read it, eager, without the unpickler's fast path "
      "for tensor records") {
    // The general path (tuples, persistent_load, _rebuild_tensor_v2's handler) must stay right
    // on its own: torch's records normally take the fast path.
    pthio::detail::tensor_record_fast_path() = false;
    for (const auto& e : manifest()["files"]) check_entry(e, pthio::load_mode::eager);
    pthio::detail::tensor_record_fast_path() = true;
  }

  TEST_CASE("fixtures: torch's tensor records take the unpickler's fast path") {
    // In a state dict of one dtype, the first record names the storage class, the location and
    // OrderedDict (GLOBAL opcodes, which the fast path leaves to the general one); later records
    // name them through the memo and are read in one go, except the few during which the
    // general path would grow the stack's block (it charges and checks that growth at moments
    // of its own, so those records are left to it). Both paths load the same.
    struct case_t {
      const char* file;
      std::uint64_t tensors;
    };
    for (const auto& c : {case_t{"t2/many_tensors.pth", 10000}, case_t{"t1/mlp.bin", 6},
                          case_t{"t2/mlp.bin", 6}, case_t{"t1/linear.pth", 2}}) {
      INFO(c.file);
      const std::uint64_t before = pthio::detail::tensor_records_read();
      auto fast = pthio::load_checkpoint(fixture(c.file), cpu_options());
      const std::uint64_t read = pthio::detail::tensor_records_read() - before;
      CHECK(read <= c.tensors - 1);
      CHECK(read >= 1);
      if (c.tensors >= 1000) CHECK(read >= c.tensors * 99 / 100);
      pthio::detail::tensor_record_fast_path() = false;
      auto general = pthio::load_checkpoint(fixture(c.file), cpu_options());
      pthio::detail::tensor_record_fast_path() = true;
      CHECK(pthio::detail::tensor_records_read() - before == read);  // none with it off
      CHECK(fast.root == general.root);
      CHECK(pthio::cli::dump_json(fast.root) == pthio::cli::dump_json(general.root));
    }
  }

  TEST_CASE("fixtures: the fast path for tensor records refuses at the same max_memory") {
    // The unpickler charges a record read in one go as the general path charges it: over the
    // data.pkl of torch's state dicts, the smallest max_memory that unpickles with the fast path
    // off unpickles with it on, and one byte less refuses both with the same message.
    for (const char* rel : {"t2/mlp.bin", "t1/cnn_bn.pth", "t2/many_tensors.pth"}) {
      INFO(rel);
      const pthio::zip_reader zip(pthio::byte_source::map_file(fixture(rel)));
      const pthio::zip_entry* pkl = nullptr;
      for (const auto& e : zip.entries())
        if (e.name.ends_with("/data.pkl")) pkl = &e;
      REQUIRE(pkl);
      const auto bytes = zip.read(*pkl, true);
      // Storages as the loader would make them (zeroed bytes of each record's size), one per key.
      std::map<std::string, pthio::storage> made;
      auto storage_for = [&](const std::string& key, std::uint64_t nbytes) {
        auto [it, fresh] = made.try_emplace(key);
        if (fresh) it->second = pthio::storage::allocate(nbytes);
        return it->second;
      };
      pthio::detail::pid_memory last;
      auto attempt = [&](std::uint64_t budget, bool fast, std::string& why) {
        pthio::unpickle_options u;
        u.globals = &pthio::torch_globals();
        u.limits.max_memory = budget;
        u.context = "data.pkl";
        u.persistent_load = [&](const pthio::value& pid) {
          pthio::detail::storage_spec sp = pthio::detail::parse_pid(pid, false, last);
          pthio::storage_value sv;
          sv.data = storage_for(sp.key, sp.nbytes);
          sv.dtype = sp.t;
          sv.numel = sp.numel;
          sv.key = sp.key;
          return pthio::value::make_storage(std::move(sv));
        };
        if (fast)
          u.load_tensor_record = [&](const pthio::tensor_record& r) -> std::optional<pthio::value> {
            pthio::detail::storage_spec sp =
                pthio::detail::parse_pid_fields(*r.storage_class, r.key, r.location, r.numel, last);
            return pthio::value(pthio::tensor(storage_for(sp.key, sp.nbytes), sp.t,
                                              pthio::shape_t(r.size.begin(), r.size.end()),
                                              pthio::shape_t(r.stride.begin(), r.stride.end()),
                                              r.storage_offset, r.requires_grad));
          };
        try {
          (void)pthio::unpickle(bytes, u);
          why.clear();
        } catch (const pthio::error& e) {
          why = e.what();
        }
        return why.empty();
      };
      std::string why;
      std::uint64_t lo = 0, hi = std::uint64_t{1} << 28;  // refused at lo, unpickled at hi
      REQUIRE(attempt(hi, false, why));
      REQUIRE_FALSE(attempt(lo, false, why));
      while (hi - lo > 1) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        (attempt(mid, false, why) ? hi : lo) = mid;
      }
      std::string general_why, fast_why;
      CHECK(attempt(hi, true, fast_why));
      CHECK_FALSE(attempt(lo, false, general_why));
      CHECK_FALSE(attempt(lo, true, fast_why));
      CHECK(fast_why == general_why);
      CHECK(general_why.find("max_memory") != std::string::npos);
    }
  }

  TEST_CASE("fixtures: every file reads as PyTorch read it, mmap") {
    for (const auto& e : manifest()["files"]) check_entry(e, pthio::load_mode::mmap);
  }

  TEST_CASE(
      "fixtures: every file reads as PyTorch read it, lazy (listed without data, then read)") {
    for (const auto& e : manifest()["files"]) check_entry(e, pthio::load_mode::lazy);
  }

  TEST_CASE("fixtures: mmap tensors are views into the mapped file when aligned") {
    auto ck = pthio::load_checkpoint(fixture("t2/linear.pth"), cpu_options(pthio::load_mode::mmap));
    const auto& w = ck.root.find("weight")->as_tensor();
    // A mapped storage is kept alive by the map (its owner), not by a private allocation.
    auto eager = pthio::load_checkpoint(fixture("t2/linear.pth"), cpu_options());
    CHECK(w.bytes() == eager.root.find("weight")->as_tensor().bytes());
    CHECK(reinterpret_cast<std::uintptr_t>(w.raw_data()) % 64 == 0);
  }

  TEST_CASE("fixtures: GPU-saved files need a map_location on a machine without CUDA") {
    for (const char* rel :
         {"t1/cuda.pth", "t2/cuda.pth", "t1/cuda_legacy.pth", "t2/cuda_legacy.pth"}) {
      INFO(rel);
      if (pthio::cuda_available()) continue;
      try {
        pthio::load_checkpoint(fixture(rel));
        FAIL("loaded cuda:0 storages without CUDA");
      } catch (const pthio::error& err) {
        CHECK(err.kind() == pthio::errc::cuda);
        CHECK(std::string(err.what()).find("map_location") != std::string::npos);
        CHECK(std::string(err.what()).find("cuda:0") != std::string::npos);
      }
      // A mapping from the saved location to the CPU loads it.
      pthio::load_options o;
      o.map_location = pthio::map_location::mapping({{"cuda:0", "cpu"}});
      auto ck = pthio::load_checkpoint(fixture(rel), o);
      std::size_t n = 0;
      pthio::visit_tensors(ck.root, [&](const std::string&, const pthio::value& v) {
        CHECK(v.as_tensor().dev().is_cpu());
        ++n;
      });
      CHECK(n == 4);
    }
  }

  TEST_CASE("fixtures: strict mode loads every torch-written state dict") {
    for (const char* rel :
         {"t1/linear.pth", "t2/ckpt_adam.pth", "t1/legacy_ckpt.pth", "t2/dtypes_new.pth"}) {
      INFO(rel);
      auto o = cpu_options();
      o.strict = true;
      CHECK_NOTHROW(pthio::load_checkpoint(fixture(rel), o));
    }
  }

  TEST_CASE("fixtures: a file loads the same from memory as from its path") {
    for (const char* rel : {"t1/mlp.bin", "t2/legacy_views.pth", "t2/scripted.pt"}) {
      INFO(rel);
      auto bytes = pthio_test::read_bytes(fixture(rel));
      auto a = pthio::load_checkpoint(pthio::byte_source::from_vector(bytes, rel), cpu_options());
      auto b = pthio::load_checkpoint(fixture(rel), cpu_options());
      CHECK(a.root == b.root);
    }
  }

}  // TEST_SUITE

TEST_SUITE("fixtures") {
  TEST_CASE("fixtures: a big-endian checkpoint is byte-swapped on load, as torch swaps it") {
    const json& m = manifest("bigendian/manifest.json");
    for (auto [mode, threads] : {std::pair{pthio::load_mode::eager, 0u},
                                 {pthio::load_mode::eager, 3u},
                                 {pthio::load_mode::mmap, 0u}}) {
      auto opts = cpu_options(mode);
      opts.threads = threads;
      auto ck = pthio::load_checkpoint(fixture("bigendian/big.pth"), opts);
      CHECK(ck.byte_order == std::endian::big);
      json ls = json::parse(pthio::cli::ls_json(ck, "big.pth"));
      CHECK_MESSAGE(bool(ls["tensors"] == m["tensors"]),
                    first_difference(ls["tensors"], m["tensors"]));
      CHECK(json::parse(pthio::cli::dump_json(ck.root)) == m["dump"]);
      // The view still shares its base's (swapped) storage.
      CHECK(ck.root.find("view")->as_tensor().get_storage().same(
          ck.root.find("f32")->as_tensor().get_storage()));
    }
  }

  TEST_CASE(
      "fixtures: a checkpoint written with CRC-32 off reads without a false corruption report") {
    auto path = pthio_test::fixtures_dir().parent_path() / "tests/data/zip/torch2_nocrc.pth";
    CHECK_NOTHROW(pthio::load_checkpoint(path, cpu_options()));
  }

  TEST_CASE(
      "fixtures: storages mapped to another device stay shared, legacy as zip (meta, no GPU "
      "needed)") {
    // map_location maps storages: tensors sharing one in the file share one on the target device.
    const pthio::device meta(pthio::device_type::meta);
    for (const char* rel :
         {"t1/legacy_views.pth", "t2/legacy_views.pth", "t2/legacy_ckpt.pth", "t2/views.pth"}) {
      INFO(rel);
      pthio::load_options to_meta;
      to_meta.map_location =
          pthio::map_location::function([&](const pthio::device&) { return meta; });
      pthio::checkpoint want = pthio::load_checkpoint(fixture(rel), cpu_options());
      pthio::checkpoint got = pthio::load_checkpoint(fixture(rel), to_meta);
      std::vector<pthio::tensor> w, g;
      pthio::visit_tensors(want.root, [&](const std::string&, const pthio::value& v) {
        w.push_back(v.as_tensor());
      });
      pthio::visit_tensors(
          got.root, [&](const std::string&, const pthio::value& v) { g.push_back(v.as_tensor()); });
      REQUIRE(g.size() == w.size());
      std::set<const void*> storages;
      for (std::size_t i = 0; i < g.size(); ++i) {
        INFO(i);
        storages.insert(w[i].get_storage().id());
        CHECK(g[i].dev() == meta);
        CHECK(g[i].dtype() == w[i].dtype());
        CHECK(g[i].shape() == w[i].shape());
        CHECK(g[i].strides() == w[i].strides());
        CHECK(g[i].storage_offset() == w[i].storage_offset());
        CHECK(g[i].get_storage().nbytes() == w[i].get_storage().nbytes());
        for (std::size_t j = 0; j < g.size(); ++j)
          CHECK(g[i].get_storage().same(g[j].get_storage()) ==
                w[i].get_storage().same(w[j].get_storage()));
      }
      if (std::string(rel).find("views") != std::string::npos) CHECK(storages.size() < w.size());
    }
  }

}  // TEST_SUITE

TEST_SUITE("fixtures") {
  TEST_CASE(
      "fixtures: a model saved whole gives torch's state_dict(): names, order, bytes, metadata") {
    std::size_t checked = 0;
    for (const auto& e : manifest()["files"]) {
      if (!e.contains("state_dicts")) continue;
      const std::string rel = e["file"];
      for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
        pthio::checkpoint ck = pthio::load_checkpoint(fixture(rel), cpu_options(mode));
        for (const auto& [selector, want] : e["state_dicts"].items()) {
          INFO(rel, " state dict '", selector, "'");
          pthio::state_dict sd = pthio::extract_state_dict(ck.root, selector);
          json got = json::array();
          for (const auto& [key, t] : sd) {
            pthio::value v(t);
            got.push_back(json::parse(pthio::cli::tensor_json(v, &key)));
          }
          CHECK_MESSAGE(bool(got == want["tensors"]),
                        "differs from torch: ", first_difference(got, want["tensors"]));
          json meta = json::array();
          REQUIRE(sd.metadata.is_dict());
          for (const auto& [name, local] : sd.metadata.as_dict().entries())
            meta.push_back(json::array({name.as_str(), local.find("version")->as_int()}));
          CHECK(meta == want["metadata"]);
          for (const auto& group : want["shared"]) {
            std::set<const void*> storages;
            for (const auto& k : group)
              storages.insert(sd.at(k.get<std::string>()).get_storage().id());
            CHECK_MESSAGE(storages.size() == 1, "keys ", group.dump(), " should share one storage");
          }
          ++checked;
        }
      }
    }
    CHECK(checked >= 2 * 2 * 6);  // both torches, two modes, five files and an ema
  }
}

TEST_SUITE("fixtures") {
  TEST_CASE(
      "fixtures: a TorchScript archive's state dict holds what torch.jit.load's state_dict has") {
    std::size_t checked = 0;
    for (const auto& e : manifest()["files"]) {
      if (e["format"] != "torchscript") continue;
      const std::string rel = e["file"];
      INFO(rel);
      pthio::checkpoint ck = pthio::load_checkpoint(fixture(rel), cpu_options());
      pthio::state_dict sd = pthio::extract_state_dict(ck.root);
      json got = json::array();
      for (const auto& [key, t] : sd) {
        pthio::value v(t);
        json j = json::parse(pthio::cli::tensor_json(v, &key));
        j.erase("requires_grad");  // the archive's parameters require grad; state_dict detaches
        got.push_back(j);
      }
      json want = e["tensors"];
      for (auto& t : want) t.erase("requires_grad");
      // The archive lists attributes in the class's order, state_dict in its own.
      CHECK(sorted_tensors(got) == sorted_tensors(want));
      ++checked;
    }
    CHECK(checked == 2);
  }
}
