// Streaming convert (pthio::convert): the bytes it writes are save()'s and save_safetensors()'s for
// the eagerly loaded root; sharded output; shard sizes; and the commands that stream (ls, verify,
// diff, convert) on a file whose records they must not read, or must read piece by piece.
// tests/shard_torch.py checks sharded output against torch and the safetensors package.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

#include "cli_support.h"
#include "pthio/pthio.hpp"
#include "support.h"

namespace {

const std::string id40 = "1234567890123456789012345678901234567890";

std::vector<std::filesystem::path> torch_fixtures() {
  std::vector<std::filesystem::path> out;
  for (const char* dir : {"t1", "t2", "st"})
    for (const auto& e : std::filesystem::directory_iterator(pthio_test::fixture(dir)))
      if (e.is_regular_file() && e.path().extension() != ".py" && e.path().extension() != ".json")
        out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A checkpoint with `n` float32 tensors of `elements` each, whose values differ per tensor.
pthio::value many(int n, std::size_t elements) {
  pthio::value sd = pthio::value::make_ordered_dict();
  for (int k = 0; k < n; ++k) {
    std::vector<float> v(elements);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(k * 1000 + int(i)) + 0.5f;
    sd.as_dict().set(pthio::value("w" + std::to_string(k)),
                     pthio::value(pthio::tensor::from_values<float>(v, {std::int64_t(elements)})));
  }
  return sd;
}

// Flips one byte inside the data of every storage record of a .pth (after the 64-byte aligned
// start of each data/ record): CRC-32s no longer match, the structure is intact.
void damage_records(const std::filesystem::path& path) {
  auto bytes = pthio_test::read_bytes(path);
  pthio::zip_reader zip(pthio::byte_source::read_file(path));
  for (const auto& e : zip.entries())
    if (e.name.find("/data/") != std::string::npos && e.uncompressed_size > 8)
      bytes[static_cast<std::size_t>(e.data_offset) + 4] ^= std::byte{0x55};
  pthio_test::write_bytes(path, bytes);
}

}  // namespace

TEST_SUITE("convert") {
  TEST_CASE("convert: a lazy .pth is written byte for byte as save() writes the eager root") {
    // Every fixture pthio loads (zip, TorchScript, legacy, safetensors; views, shared storages,
    // big-endian files, every dtype): streaming from the lazy checkpoint gives the same file as
    // saving what an eager load returns, with the same serialization id.
    std::size_t compared = 0;
    for (const auto& f : torch_fixtures()) {
      CAPTURE(f);
      pthio::checkpoint eager;
      try {
        eager = pthio::load_checkpoint(f, pthio_test::cpu_options());
      } catch (const pthio::error&) {
        continue;  // damaged on purpose, or a bare pickle
      }
      pthio::save_options so;
      so.serialization_id = id40;
      // One file name in two folders: the archive folder inside is named after it.
      std::filesystem::create_directories(pthio_test::scratch_dir() / "want");
      std::filesystem::create_directories(pthio_test::scratch_dir() / "got");
      const auto want = pthio_test::scratch_dir() / "want" / "convert.pth";
      const auto got = pthio_test::scratch_dir() / "got" / "convert.pth";
      try {
        pthio::save(want, eager.root, so);
      } catch (const pthio::error&) {
        continue;  // quantized tensors and the like: save refuses them, and so must convert
      }
      pthio::convert_options co;
      co.pth = so;
      auto lazy = pthio::load_checkpoint(f, pthio_test::cpu_options(pthio::load_mode::lazy));
      const auto r = pthio::convert(lazy, got, co);
      CHECK(r.files == std::vector<std::filesystem::path>{got});
      CHECK(pthio_test::read_bytes(got) == pthio_test::read_bytes(want));
      ++compared;
    }
    CHECK(compared >= 40);
  }

  TEST_CASE("convert: a lazy checkpoint to safetensors is save_safetensors of the eager root") {
    std::size_t compared = 0;
    for (const auto& f : torch_fixtures()) {
      CAPTURE(f);
      pthio::checkpoint eager;
      try {
        eager = pthio::load_checkpoint(f, pthio_test::cpu_options());
      } catch (const pthio::error&) {
        continue;
      }
      const auto want = pthio_test::scratch_dir() / "convert_want.safetensors";
      const auto got = pthio_test::scratch_dir() / "convert_got.safetensors";
      pthio::safetensors_save_options so;
      so.drop_non_tensors = true;
      try {
        pthio::save_safetensors(want, eager.root, so);
      } catch (const pthio::error&) {
        continue;  // dtypes safetensors lacks, duplicate names
      }
      pthio::convert_options co;
      co.to = pthio::checkpoint_format::safetensors;
      pthio::convert(pthio::load_checkpoint(f, pthio_test::cpu_options(pthio::load_mode::lazy)),
                     got, co);
      CHECK(pthio_test::read_bytes(got) == pthio_test::read_bytes(want));
      ++compared;
    }
    CHECK(compared >= 30);
  }

  TEST_CASE("convert: the path overload loads lazily; a damaged record fails it atomically") {
    const auto src = pthio_test::scratch_dir() / "convert_src.pth";
    const auto out = pthio_test::scratch_dir() / "convert_out.pth";
    pthio::save(src, many(3, 1000));
    auto r = pthio::convert(src, out);
    CHECK(r.tensors == 3);
    auto back = pthio::load_checkpoint(out, pthio_test::cpu_options());
    CHECK(back.load_tensor("w2").data<float>()[999] == 2999.5f);
    // The CRC-32 of each record read is checked: the output is not replaced by a partial file.
    const auto before = pthio_test::read_bytes(out);
    damage_records(src);
    CHECK_THROWS_AS(pthio::convert(src, out), pthio::error);
    CHECK(pthio_test::read_bytes(out) == before);
    for (const auto& e : std::filesystem::directory_iterator(out.parent_path()))
      CHECK(e.path().filename().string().find("convert_out.pth.pthio-tmp") == std::string::npos);
  }

  TEST_CASE("convert: sharding as huggingface_hub splits, names as save_pretrained") {
    // Sizes 4000, 4000, 1200, 12000 (past the limit), 4000 bytes with a 10,000-byte limit: a, b
    // and c fill the open shard to 9200; d, past the limit, becomes a shard of its own at once,
    // while the open shard carries on; e would take it to 13200, so it is closed (after d's) and
    // e opens the third. As huggingface_hub: [d], [a, b, c], [e].
    pthio::value sd = pthio::value::make_ordered_dict();
    auto add = [&](const std::string& k, std::size_t n) {
      std::vector<float> v(n, 1.0f);
      sd.as_dict().set(pthio::value(k),
                       pthio::value(pthio::tensor::from_values<float>(v, {std::int64_t(n)})));
    };
    add("a", 1000);
    add("b", 1000);
    add("c", 300);
    add("d", 3000);
    add("e", 1000);
    const auto src = pthio_test::scratch_dir() / "shard_src.pth";
    pthio::save(src, sd);
    const auto dir = pthio_test::scratch_dir() / "shards";
    std::filesystem::remove_all(dir);
    pthio::convert_options co;
    co.to = pthio::checkpoint_format::safetensors;
    co.max_shard_size = pthio::parse_shard_size("10KB");
    auto r = pthio::convert(src, dir, co);
    REQUIRE(r.files.size() == 4);
    CHECK(r.files[0].filename() == "model-00001-of-00003.safetensors");
    CHECK(r.files[1].filename() == "model-00002-of-00003.safetensors");
    CHECK(r.files[2].filename() == "model-00003-of-00003.safetensors");
    CHECK(r.files[3].filename() == "model.safetensors.index.json");
    CHECK(r.total_size == 25200);
    auto names = [](const std::filesystem::path& p) {
      std::vector<std::string> k;
      pthio::visit_tensors(pthio::load(p),
                           [&](const std::string& s, const pthio::value&) { k.push_back(s); });
      std::sort(k.begin(), k.end());
      return k;
    };
    CHECK(names(r.files[0]) == std::vector<std::string>{"d"});
    CHECK(names(r.files[1]) == std::vector<std::string>{"a", "b", "c"});
    CHECK(names(r.files[2]) == std::vector<std::string>{"e"});
    auto idx = pthio::read_sharded_index(pthio_test::read_bytes(r.files[3]));
    CHECK(idx.weight_map.size() == 5);
    CHECK(pthio::load_checkpoint(r.files[3]).load_tensor("d").numel() == 3000);
    // A limit over the whole: one file, no index.
    std::filesystem::remove_all(dir);
    co.max_shard_size = pthio::parse_shard_size("5GB");
    r = pthio::convert(src, dir, co);
    REQUIRE(r.files.size() == 1);
    CHECK(r.files[0].filename() == "model.safetensors");
  }

  TEST_CASE("convert: shard sizes as transformers' convert_file_size_to_int reads them") {
    CHECK(pthio::parse_shard_size("5GB") == 5000000000ull);
    CHECK(pthio::parse_shard_size("500MiB") == 500ull << 20);
    CHECK(pthio::parse_shard_size("10KB") == 10000);
    CHECK(pthio::parse_shard_size("10kb") == 1250);  // a lowercase final b: bits
    CHECK(pthio::parse_shard_size("5Gb") == 625000000);
    CHECK(pthio::parse_shard_size("2gib") == 2ull << 30);
    CHECK(pthio::parse_shard_size("1KiB") == 1024);
    CHECK(pthio::parse_shard_size("123") == 123);
    for (const char* bad : {"", "GB", "5TB", "-1GB", "1.5GB", "0MB", "5 GB", "99999999999999GiB"})
      CHECK_THROWS_AS(pthio::parse_shard_size(bad), pthio::error);
  }
}

TEST_SUITE("convert" * pthio_test::needs_cli) {
  TEST_CASE("cli: ls lists a file whose every storage record is damaged: no record is read") {
    const auto path = pthio_test::scratch_dir() / "ls_damaged.pth";
    pthio::save(path, many(4, 2000));
    damage_records(path);
    auto ls = pthio_test::run_cli("ls " + pthio_test::shell_quote(path.string()));
    CHECK(ls.status == 0);
    CHECK(ls.out.find("4 tensors, 31.2 KiB (32,000 bytes, zip format)") != std::string::npos);
    CHECK(ls.out.find("w3   float32  [2000]  cpu      8000") != std::string::npos);
    auto dump = pthio_test::run_cli("dump " + pthio_test::shell_quote(path.string()));
    CHECK(dump.status == 0);
    // Reading them is what fails: ls --json hashes, verify checks every CRC-32.
    CHECK(pthio_test::run_cli("ls --json " + pthio_test::shell_quote(path.string())).status == 3);
    auto v = pthio_test::run_cli("verify " + pthio_test::shell_quote(path.string()));
    CHECK(v.status == 1);
    CHECK(v.out.find("BAD CRC  ls_damaged/data/3") != std::string::npos);
  }

  TEST_CASE("cli: verify's piecewise CRC-32 matches the whole record's, past one piece") {
    // 3 MiB and 9 MiB records: the 4 MiB pieces split the second one.
    pthio::value sd = pthio::value::make_ordered_dict();
    sd.as_dict().set(pthio::value("x"), many(1, 3 << 18).find("w0")->as_tensor());
    sd.as_dict().set(pthio::value("y"), many(1, 9 << 18).find("w0")->as_tensor());
    const auto path = pthio_test::scratch_dir() / "verify_big.pth";
    pthio::save(path, sd);
    auto v = pthio_test::run_cli("verify " + pthio_test::shell_quote(path.string()));
    CHECK(v.status == 0);
    CHECK(v.out.find("ok       verify_big/data/1") != std::string::npos);
    auto bytes = pthio_test::read_bytes(path);
    pthio::zip_reader zip(pthio::byte_source::read_file(path));
    const auto* e = zip.find("verify_big/data/1");
    REQUIRE(e != nullptr);
    bytes[static_cast<std::size_t>(e->data_offset) + (6u << 20)] ^= std::byte{1};
    pthio_test::write_bytes(path, bytes);
    v = pthio_test::run_cli("verify " + pthio_test::shell_quote(path.string()));
    CHECK(v.status == 1);
    CHECK(v.out.find("BAD CRC  verify_big/data/1") != std::string::npos);
  }

  TEST_CASE("cli: diff streams both files and still finds a difference in one tensor") {
    const auto a = pthio_test::scratch_dir() / "diff_a.pth";
    const auto b = pthio_test::scratch_dir() / "diff_b.pth";
    pthio::value sd = many(5, 500);
    pthio::save(a, sd);
    sd.as_dict().set(pthio::value("w3"), many(1, 500).find("w0")->as_tensor());
    pthio::save(b, sd);
    auto same = pthio_test::run_cli("diff " + pthio_test::shell_quote(a.string()) + " " +
                                    pthio_test::shell_quote(a.string()));
    CHECK(same.status == 0);
    CHECK(same.out == "5 equal, 0 differ, 0 only in A, 0 only in B\n");
    auto d = pthio_test::run_cli("diff " + pthio_test::shell_quote(a.string()) + " " +
                                 pthio_test::shell_quote(b.string()));
    CHECK(d.status == 1);
    CHECK(d.out ==
          "differs: w3: 500 of 500 elements differ; largest |a-b| = 3000.0 at flat "
          "index 0\n4 equal, 1 differ, 0 only in A, 0 only in B\n");
  }

  TEST_CASE("cli: diff compares large tensors piece by piece with the whole tensor's answer") {
    // Over 512 KiB a side, lazy pairs are compared in pieces of leading rows: the counts, the
    // largest difference and its flat index must still be the whole tensor's.
    const auto a = pthio_test::scratch_dir() / "diff_big_a.pth";
    const auto b = pthio_test::scratch_dir() / "diff_big_b.pth";
    const std::int64_t rows = 3000, cols = 301;  // 3.4 MiB, rows not a power of two
    std::vector<float> va(static_cast<std::size_t>(rows * cols));
    for (std::size_t i = 0; i < va.size(); ++i) va[i] = static_cast<float>(i % 977) * 0.25f;
    std::vector<std::int64_t> ia(va.size());
    for (std::size_t i = 0; i < ia.size(); ++i) ia[i] = static_cast<std::int64_t>(i) * 3;
    auto ckpt = [&](const std::vector<float>& f, const std::vector<std::int64_t>& n) {
      pthio::value sd = pthio::value::make_ordered_dict();
      sd.as_dict().set(pthio::value("f"),
                       pthio::value(pthio::tensor::from_values<float>(f, {rows, cols})));
      sd.as_dict().set(pthio::value("n"), pthio::value(pthio::tensor::from_values<std::int64_t>(
                                              n, {std::int64_t(n.size())})));
      return sd;
    };
    pthio::save(a, ckpt(va, ia));
    // Three changes in different pieces: +0.5 at 7, +2.0 at 600000 and at 900001 (the first of
    // the largest is reported), and +1 on one int64 element in the last piece.
    auto vb = va;
    vb[7] += 0.5f;
    vb[600000] += 2.0f;
    vb[900001] += 2.0f;
    auto ib = ia;
    ib.back() += 1;
    pthio::save(b, ckpt(vb, ib));
    const std::string files =
        pthio_test::shell_quote(a.string()) + " " + pthio_test::shell_quote(b.string());
    auto exact = pthio_test::run_cli("diff " + files);
    CHECK(exact.status == 1);
    CHECK(exact.out ==
          "differs: f: 3 of 903000 elements differ; largest |a-b| = 2.0 at flat index 600000\n"
          "differs: n: elements differ\n0 equal, 2 differ, 0 only in A, 0 only in B\n");
    auto loose = pthio_test::run_cli("diff --atol 1 " + files);
    CHECK(loose.out ==
          "differs: f: 2 of 903000 elements differ; largest |a-b| = 2.0 at flat index 600000\n"
          "1 equal, 1 differ, 0 only in A, 0 only in B\n");  // n's one difference of 1 is within
                                                             // the tolerance
    auto none = pthio_test::run_cli("diff --atol 2 " + files);
    CHECK(none.status == 0);
    CHECK(none.out == "2 equal, 0 differ, 0 only in A, 0 only in B\n");
  }

  TEST_CASE("cli: convert --max-shard-size, and its usage errors") {
    const auto src = pthio_test::scratch_dir() / "cli_shard.pth";
    pthio::save(src, many(4, 1000));
    const auto dir = pthio_test::scratch_dir() / "cli_shards";
    std::filesystem::remove_all(dir);
    auto r = pthio_test::run_cli("convert " + pthio_test::shell_quote(src.string()) + " " +
                                 pthio_test::shell_quote(dir.string()) +
                                 " --to pth --max-shard-size 9KB");
    CHECK(r.status == 0);
    CHECK(r.out.find("(pth, 4 tensors in 3 files)") != std::string::npos);
    CHECK(std::filesystem::exists(dir / "pytorch_model-00001-of-00002.bin"));
    CHECK(std::filesystem::exists(dir / "pytorch_model-00002-of-00002.bin"));
    CHECK(std::filesystem::exists(dir / "pytorch_model.bin.index.json"));
    auto ls = pthio_test::run_cli(
        "ls " + pthio_test::shell_quote((dir / "pytorch_model.bin.index.json").string()));
    CHECK(ls.out.find("4 tensors, 15.6 KiB (16,000 bytes") != std::string::npos);
    CHECK(pthio_test::run_cli("convert " + pthio_test::shell_quote(src.string()) + " " +
                              pthio_test::shell_quote(dir.string()) + " --max-shard-size 5XB")
              .status == 2);
    CHECK(
        pthio_test::run_cli("ls " + pthio_test::shell_quote(src.string()) + " --max-shard-size 5GB")
            .status == 2);
  }
}
