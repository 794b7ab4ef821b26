// save(): byte-identical to torch.save for the state-dict fixtures, round trips through pthio,
// shared storages written once, and atomic replacement (a failed or killed save leaves the
// previous file intact).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/json.h"
#include "manifest.h"
#include "pthio/pthio.hpp"
#include "support.h"

using nlohmann::json;
using pthio_test::fixture;

using pthio_test::manifest;

using pthio_test::cpu_options;

namespace {

std::vector<std::byte> save_to_memory(const pthio::value& v, const pthio::save_options& o) {
  pthio::memory_sink sink;
  pthio::save(sink, v, o);
  return sink.buffer();
}

std::string record_text(const std::filesystem::path& p, const std::string& name) {
  pthio::zip_reader zip(pthio::byte_source::map_file(p));
  const auto* e = zip.find(name);
  REQUIRE(e);
  auto b = zip.read(*e);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

TEST_SUITE("save") {
  TEST_CASE("save: a dict keyed by tensors with equal elements keeps every key through a save") {
    // Python keys tensors by identity: two views of zeros are two keys, in torch and here.
    auto zeros = pthio::tensor::from_values<float>({0, 0, 0, 0, 0, 0}, {6});
    pthio::value d = pthio::value::make_dict();
    d.as_dict().set(pthio::value(zeros.as_strided({3}, {1}, 0)), pthio::value("first"));
    d.as_dict().set(pthio::value(zeros.as_strided({3}, {1}, 3)), pthio::value("second"));
    d.as_dict().set(pthio::value(zeros.as_strided({3}, {1}, 3)), pthio::value("again"));
    REQUIRE(d.as_dict().size() == 2);  // the same view twice is one key
    for (auto format : {pthio::checkpoint_format::zip, pthio::checkpoint_format::legacy}) {
      pthio::save_options o;
      o.format = format;
      auto back = pthio::load_checkpoint(pthio::byte_source::from_vector(save_to_memory(d, o)),
                                         cpu_options())
                      .root;
      REQUIRE(back.as_dict().size() == 2);
      CHECK(back.as_dict().entries()[0].second.as_str() == "first");
      CHECK(back.as_dict().entries()[1].second.as_str() == "again");
      CHECK(back.as_dict().entries()[1].first.as_tensor().storage_offset() == 3);
    }
  }

  TEST_CASE(
      "save: state dicts are byte-identical to what torch.save wrote (1.13 and 2.x layouts)") {
    for (const char* stem : {"linear", "conv2d", "cnn_bn", "lstm", "tied", "mlp", "views", "small",
                             "param", "tensor", "dtypes"}) {
      for (const char* gen : {"t1", "t2"}) {
        std::string rel =
            std::string(gen) + "/" + stem +
            (std::string(stem) == "mlp"                                        ? ".bin"
             : (std::string(stem) == "param" || std::string(stem) == "tensor") ? ".pt"
                                                                               : ".pth");
        INFO(rel);
        auto path = fixture(rel);
        auto original = pthio_test::read_bytes(path);
        pthio::value root = pthio::load(path, cpu_options());
        pthio::save_options o;
        o.archive_name = stem;
        if (std::string(gen) == "t1") {
          o.layout = pthio::torch_layout::v1_13;
        } else {
          o.layout = pthio::torch_layout::v2;
          o.serialization_id = record_text(path, std::string(stem) + "/.data/serialization_id");
        }
        auto written = save_to_memory(root, o);
        CHECK(written.size() == original.size());
        CHECK(written == original);
      }
    }
  }

  TEST_CASE(
      "save: an eager load copies records on several threads to the same tensors, and a corrupt "
      "record is the same CRC-32 error") {
    // Records of 9 MiB: three 4 MiB pieces each, the last one short, copied by 4 threads.
    const std::int64_t n = (std::int64_t{9} << 20) / 4;
    pthio::state_dict sd;
    for (int i = 0; i < 3; ++i) {
      std::vector<float> v(static_cast<std::size_t>(n));
      for (std::int64_t k = 0; k < n; ++k)
        v[static_cast<std::size_t>(k)] = static_cast<float>(k % 9973) * static_cast<float>(i + 1);
      sd.set("w" + std::to_string(i), pthio::tensor::from_values<float>(v, {n}));
    }
    pthio::memory_sink out;
    pthio::save(out, sd.to_value());
    auto load = [](const std::vector<std::byte>& b, unsigned threads) {
      pthio::load_options o = pthio_test::cpu_options();
      o.threads = threads;
      return pthio::load_checkpoint(pthio::byte_source::from_vector(b, "nine.pth"), o).root;
    };
    const pthio::value one = load(out.buffer(), 1);
    CHECK(load(out.buffer(), 4) == one);
    CHECK(load(out.buffer(), 0) == one);
    CHECK(one.find("w2")->as_tensor().at<float>({n - 1}) ==
          static_cast<float>((n - 1) % 9973) * 3.0f);

    // One byte of the middle record's middle piece flipped: both ways the reader's error for it.
    std::vector<std::byte> bad = out.buffer();
    const pthio::zip_reader zip(pthio::byte_source::borrow(bad, "nine.pth"));
    const pthio::zip_entry* e = nullptr;
    for (const auto& entry : zip.entries())
      if (entry.name.ends_with("/data/1")) e = &entry;
    REQUIRE(e != nullptr);
    bad[e->data_offset + (std::size_t{5} << 20)] ^= std::byte{1};
    const pthio::error seq = pthio_test::error_of([&] { load(bad, 1); });
    const pthio::error par = pthio_test::error_of([&] { load(bad, 4); });
    CHECK(seq.kind() == pthio::errc::corrupt_zip);
    CHECK(std::string(seq.what()).find("CRC-32 mismatch") != std::string::npos);
    CHECK(std::string(seq.what()).find(e->name) != std::string::npos);
    CHECK(std::string(par.what()) == std::string(seq.what()));
  }

  TEST_CASE("save: compute_crc32 = false writes CRC 0 and nothing else differs") {
    // As torch 2.5+ after torch.serialization.set_crc32_options(False); torch loading such files is
    // checked by tests/torch_roundtrip.py (variant zip-v2-nocrc).
    auto path = fixture("t2/ckpt_adam.pth");
    pthio::value root = pthio::load(path, cpu_options());
    pthio::save_options o;
    o.serialization_id = "1234567890123456789012345678901234567890";
    auto with = save_to_memory(root, o);
    o.compute_crc32 = false;
    auto without = save_to_memory(root, o);
    REQUIRE(with.size() == without.size());
    pthio::zip_reader a(pthio::byte_source::borrow(with)), b(pthio::byte_source::borrow(without));
    REQUIRE(a.entries().size() == b.entries().size());
    std::size_t differing = 0;
    for (std::size_t i = 0; i < with.size(); ++i) differing += with[i] != without[i];
    std::size_t nonzero = 0;
    for (std::size_t i = 0; i < a.entries().size(); ++i) {
      const auto& x = a.entries()[i];
      const auto& y = b.entries()[i];
      CHECK(x.name == y.name);
      CHECK(x.data_offset == y.data_offset);
      CHECK(y.crc32 == 0);
      nonzero += x.crc32 != 0;
    }
    // Each CRC is written twice (descriptor and central directory): only those bytes differ.
    CHECK(differing > 0);
    CHECK(differing <= 8 * nonzero);
    pthio::load_options lo = cpu_options();
    lo.verify_crc = true;
    auto back = pthio::load_checkpoint(pthio::byte_source::borrow(without), lo).root;
    CHECK(pthio::cli::dump_json(back) == pthio::cli::dump_json(root));
  }

  TEST_CASE("save: the archive folder is named after the file, as torch names it") {
    auto root = pthio::load(fixture("t2/linear.pth"), cpu_options());
    auto p = pthio_test::scratch_dir() / "my_model.pth";
    pthio::save(p, root);
    auto ck = pthio::load_checkpoint(p);
    CHECK(ck.archive_name == "my_model");
    CHECK(record_text(p, "my_model/byteorder") == "little");
    CHECK(record_text(p, "my_model/version") == "3\n");
    auto id = record_text(p, "my_model/.data/serialization_id");
    CHECK(id.size() == 40);
    CHECK(std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }));
    CHECK(pthio::load_checkpoint(pthio::byte_source::from_vector(save_to_memory(root, {})))
              .archive_name == "archive");
  }

  TEST_CASE("save: every fixture round-trips through pthio in zip and legacy formats") {
    for (const auto& e : manifest()["files"]) {
      if (!e["error"].is_null() || e["format"] == "torchscript") continue;
      const std::string rel = e["file"];
      INFO(rel);
      if (rel.find("quantized") != std::string::npos) {
        CHECK_THROWS_WITH_AS(save_to_memory(pthio::load(fixture(rel), cpu_options()), {}),
                             doctest::Contains("scale and zero point"), pthio::error);
        continue;
      }
      auto ck = pthio::load_checkpoint(fixture(rel), cpu_options());
      for (auto fmt : {pthio::checkpoint_format::zip, pthio::checkpoint_format::legacy}) {
        pthio::save_options o;
        o.format = fmt;
        auto back = pthio::load_checkpoint(
            pthio::byte_source::from_vector(save_to_memory(ck.root, o)), cpu_options());
        CHECK(back.root == ck.root);
        CHECK(pthio::cli::dump_json(back.root) == pthio::cli::dump_json(ck.root));
      }
    }
  }

  TEST_CASE(
      "save: a storage shared by several tensors is written once, views keep offset and strides") {
    auto root = pthio::load(fixture("t1/views.pth"), cpu_options());
    auto bytes = save_to_memory(root, {});
    pthio::zip_reader zip(pthio::byte_source::from_vector(bytes));
    std::size_t data_records = 0;
    for (const auto& e : zip.entries())
      if (e.name.find("/data/") != std::string::npos) ++data_records;
    CHECK(data_records ==
          5);  // base and its 7 views share one; expanded, expanded_scalar, channels_last, other
    auto back = pthio::load_checkpoint(pthio::byte_source::from_vector(bytes), cpu_options()).root;
    const auto& base = back.find("base")->as_tensor();
    const auto& tr = back.find("transposed")->as_tensor();
    CHECK(base.get_storage().same(tr.get_storage()));
    CHECK(tr.strides() == pthio::shape_t{1, 8});
    CHECK(back.find("block")->as_tensor().storage_offset() == 10);
  }

  TEST_CASE("save: tensors built in C++ save and load back, GPU location tags kept") {
    auto w = pthio::tensor::from_values<float>({1, 2, 3, 4, 5, 6}, {2, 3});
    w.set_requires_grad(true);  // nn.Parameter's default
    pthio::value sd = pthio::value::make_ordered_dict();
    sd.as_dict().set("fc.weight", pthio::value(w, true));
    sd.as_dict().set("fc.bias",
                     pthio::value(pthio::tensor::from_values<float>({0.5f, -0.5f}, {2})));
    sd.as_dict().set("step", pthio::value(std::int64_t{7}));
    auto back = pthio::load_checkpoint(pthio::byte_source::from_vector(save_to_memory(sd, {})),
                                       cpu_options())
                    .root;
    CHECK(back == sd);
    CHECK(back.find("fc.weight")->is_parameter());
    CHECK(back.find("fc.weight")->as_tensor().requires_grad());
  }

  TEST_CASE("save: a failing save leaves the previous file intact and no temporary behind") {
    auto dir = pthio_test::scratch_dir() / "atomic-fail";
    std::filesystem::create_directories(dir);
    auto target = dir / "model.pth";
    std::filesystem::copy_file(fixture("t2/linear.pth"), target,
                               std::filesystem::copy_options::overwrite_existing);
    auto before = pthio_test::read_bytes(target);
    // A meta tensor has no data: the save fails after the temporary was created.
    pthio::value bad = pthio::value::make_dict();
    bad.as_dict().set("ok", pthio::value(pthio::tensor::from_values<float>({1, 2}, {2})));
    bad.as_dict().set(
        "meta", pthio::value(pthio::tensor(
                    pthio::storage::borrow(nullptr, 0, pthio::device(pthio::device_type::meta)),
                    pthio::dtype::float32, {4}, {1}, 0)));
    CHECK_THROWS_AS(pthio::save(target, bad), pthio::error);
    CHECK(pthio_test::read_bytes(target) == before);
    std::size_t files = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir)) (void)f, ++files;
    CHECK(files == 1);
  }

  TEST_CASE("save: a process killed mid-save leaves the previous file intact and loadable") {
    auto dir = pthio_test::scratch_dir() / "atomic-kill";
    std::filesystem::create_directories(dir);
    auto target = dir / "big.pth";
    std::filesystem::copy_file(fixture("t2/linear.pth"), target,
                               std::filesystem::copy_options::overwrite_existing);
    auto before = pthio_test::read_bytes(target);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // 64 tensors of 16 MiB: long enough to be killed in the middle.
      pthio::value sd = pthio::value::make_dict();
      for (int i = 0; i < 64; ++i)
        sd.as_dict().set(std::string(1, 't').append(std::to_string(i)),
                         pthio::value(pthio::tensor::zeros(pthio::dtype::float32, {4 << 20})));
      try {
        pthio::save(target, sd);
      } catch (...) {}
      _exit(0);
    }
    // Wait until the temporary exists and has grown, then kill the writer.
    bool seen = false;
    for (int i = 0; i < 2000 && !seen; ++i) {
      for (const auto& f : std::filesystem::directory_iterator(dir))
        if (f.path().filename().string().find(".pthio-tmp-") != std::string::npos &&
            f.file_size() > (8u << 20))
          seen = true;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(seen);
    CHECK(pthio_test::read_bytes(target) == before);
    CHECK_NOTHROW(pthio::load(target, cpu_options()));
  }

}  // TEST_SUITE
