// Bad input at the checkpoint level: every prefix, flipped bytes, garbage, missing records and
// hand-built hostile pickles inside a valid zip. Each must give a pthio::error (with offset and
// context where one applies), never a crash, hang or unbounded allocation.
#include <doctest/doctest.h>

#include <cstring>
#include <exception>
#include <random>
#include <stdexcept>

#include "cli_support.h"
#include "pthio/pthio.hpp"

using pthio_test::fixture;
using namespace std::string_literals;

namespace {

pthio::checkpoint load_bytes(const std::vector<std::byte>& b,
                             pthio::load_mode mode = pthio::load_mode::eager) {
  pthio::load_options o;
  o.mode = mode;
  o.map_location = pthio::map_location("cpu");
  return pthio::load_checkpoint(pthio::byte_source::from_vector(b, "test.pth"), o);
}

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());  // an empty vector's data() is null
  return b;
}

// A zip checkpoint whose data.pkl is `pkl` and with the given storage records.
std::vector<std::byte> checkpoint_with_pickle(
    std::string_view pkl, std::vector<std::pair<std::string, std::string>> records = {}) {
  pthio::memory_sink out;
  pthio::zip_writer zip(out);
  zip.add("archive/data.pkl", bytes_of(pkl));
  for (const auto& [name, data] : records) zip.add("archive/data/" + name, bytes_of(data));
  zip.add("archive/version", bytes_of("3\n"));
  zip.finish();
  return out.buffer();
}

// Pickle building blocks (protocol 2), spelled out so no escape sequence runs into the next byte.
std::string le32(long long v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i)
    s[i] = static_cast<char>((static_cast<unsigned long long>(v) >> (8 * i)) & 0xff);
  return s;
}
std::string unicode(const std::string& s) {
  std::string out(1, 'X');
  out += le32(static_cast<long long>(s.size()));
  out += s;
  return out;
}
std::string binint(long long v) {
  std::string out(1, 'J');
  out += le32(v);
  return out;
}
std::string global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}

// The data.pkl of a one-tensor dict: {'w': _rebuild_tensor_v2(storage '0' of `numel_in_pid` floats,
// offset, (shape0,), (stride0,), False, OrderedDict())}.
std::string tensor_pickle(long long numel_in_pid, long long shape0, long long stride0 = 1,
                          long long offset = 0) {
  std::string pid = "(" + unicode("storage") + global("torch", "FloatStorage") + unicode("0") +
                    unicode("cpu") + binint(numel_in_pid) + "t";
  std::string args = "(" + pid + "Q" + binint(offset) + binint(shape0) + "\x85" + binint(stride0) +
                     "\x85" + "\x89" + global("collections", "OrderedDict") + ")R" + "t";
  return "\x80\x02}" + unicode("w") + global("torch._utils", "_rebuild_tensor_v2") + args + "Rs.";
}

// The error loading `b` throws; a load that succeeds, or throws anything else, fails the test.
pthio::error load_error(const std::vector<std::byte>& b) {
  try {
    load_bytes(b);
  } catch (const pthio::error& e) {
    return e;
  }
  FAIL("loaded");
  throw std::logic_error("unreachable");
}

// Reads every byte of every tensor of `root`: a view a damaged file made reach outside its
// storage shows here (under ASan, or as a crash), not later in a user's code.
void read_every_tensor(const pthio::value& root) {
  unsigned sum = 0;
  pthio::visit_tensors(root, [&](const std::string&, const pthio::value& v) {
    const auto bytes = v.as_tensor().contiguous().bytes();
    for (std::byte b : bytes) sum += static_cast<unsigned>(b);
  });
  volatile unsigned keep = sum;
  (void)keep;
}

void check_every_prefix_fails(const std::vector<std::byte>& whole, const char* what) {
  INFO(what);
  std::size_t failures = 0;
  for (std::size_t n = 0; n < whole.size(); ++n) {
    std::vector<std::byte> prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    try {
      load_bytes(prefix);
      FAIL_CHECK("a prefix of " << n << " bytes loaded");
    } catch (const pthio::error&) {
      ++failures;
    }
  }
  CHECK(failures == whole.size());
}

}  // namespace

TEST_SUITE("hostile") {
  TEST_CASE("hostile: the hand-built tensor pickle is valid to begin with") {
    auto ck =
        load_bytes(checkpoint_with_pickle(tensor_pickle(4, 4), {{"0", std::string(16, '\1')}}));
    CHECK(ck.root.find("w")->as_tensor().shape() == pthio::shape_t{4});
  }

  TEST_CASE("hostile: every truncated prefix of a zip checkpoint is an error") {
    check_every_prefix_fails(pthio_test::read_bytes(fixture("t1/linear.pth")), "t1/linear.pth");
    check_every_prefix_fails(pthio_test::read_bytes(fixture("t2/param.pt")), "t2/param.pt");
  }

  TEST_CASE("hostile: every truncated prefix of a legacy checkpoint is an error") {
    check_every_prefix_fails(pthio_test::read_bytes(fixture("t1/legacy_views.pth")),
                             "t1/legacy_views.pth");
  }

  TEST_CASE("hostile: flipping any single byte never crashes") {
    // Each flip either loads, every tensor then readable to its last byte, or is a pthio::error.
    // Anything else thrown is a failure naming the byte. In eager mode, a flip inside the pickle or
    // a storage record is always refused: their CRC-32s are checked. (Records a load does not read,
    // such as .data/serialization_id, are not.)
    for (const std::string rel : {"t2/linear.pth", "t1/legacy_views.pth"}) {
      INFO(rel);
      auto whole = pthio_test::read_bytes(fixture(rel));
      // The bytes of the pickle and storage records (none in a legacy file, which has no CRC-32).
      std::vector<bool> crc_covered(whole.size(), false);
      if (pthio::looks_like_zip(whole)) {
        pthio::zip_reader zip(pthio::byte_source::from_vector(whole));
        for (const auto& e : zip.entries())
          if (e.crc32 != 0 &&
              (e.name.ends_with("/data.pkl") || e.name.find("/data/") != std::string::npos))
            for (std::uint64_t i = e.data_offset; i < e.data_offset + e.compressed_size; ++i)
              crc_covered[i] = true;
      }
      std::size_t covered_flips = 0, refused_by_crc = 0;
      for (std::size_t i = 0; i < whole.size(); ++i) {
        auto b = whole;
        b[i] ^= std::byte{0xa5};
        for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap}) {
          try {
            read_every_tensor(load_bytes(b, mode).root);
          } catch (const pthio::error&) {
            if (mode == pthio::load_mode::eager && crc_covered[i]) ++refused_by_crc;
          } catch (const std::exception& e) {
            FAIL_CHECK("byte " << i << " flipped: " << e.what() << " (not a pthio::error)");
          }
        }
        if (crc_covered[i]) ++covered_flips;
      }
      if (pthio::looks_like_zip(whole)) CHECK(covered_flips > 0);
      CHECK(refused_by_crc == covered_flips);
    }
  }

  TEST_CASE("hostile: a lazy placeholder's view must fit its record, as an eager one must") {
    // Offset 2^30 into a record of 4 floats: refused when the pickle builds it, in every mode
    // (a lazy load has no bytes yet, but it knows the record's size).
    const auto far =
        checkpoint_with_pickle(tensor_pickle(4, 4, 1, 1LL << 30), {{"0", std::string(16, '\1')}});
    for (auto mode : {pthio::load_mode::eager, pthio::load_mode::mmap, pthio::load_mode::lazy}) {
      CAPTURE(static_cast<int>(mode));
      CHECK_THROWS_WITH_AS(load_bytes(far, mode), doctest::Contains("bytes of storage"),
                           pthio::error);
    }
    // A record declared empty: the placeholder has no size to check against when built, so
    // reading the view (whole or a slice) is what refuses it.
    const auto empty = checkpoint_with_pickle(tensor_pickle(0, 4), {{"0", std::string()}});
    auto ck = load_bytes(empty, pthio::load_mode::lazy);
    CHECK_THROWS_AS(ck.load_tensor("w"), pthio::error);
    CHECK_THROWS_WITH_AS(ck.load_slice("w", pthio::slice::parse("1:3")),
                         doctest::Contains("reaches past the record's 0 bytes"), pthio::error);
  }

  TEST_CASE("hostile: a big-endian byte view of a float storage slices as it loads whole") {
    // 'w' names record 0 as 4 float32, 'b' the same record as 16 uint8: the file's bytes are
    // swapped by the storage's element type (float32), so b's bytes are the swapped floats.
    auto pid = [](const char* cls, long long numel) {
      return "(" + unicode("storage") + global("torch", cls) + unicode("0") + unicode("cpu") +
             binint(numel) + "t";
    };
    auto rebuild = [&](const char* cls, long long numel) {
      return global("torch._utils", "_rebuild_tensor_v2") + "(" + pid(cls, numel) + "Q" +
             binint(0) + binint(numel) + "\x85" + binint(1) + "\x85" + "\x89" +
             global("collections", "OrderedDict") + ")R" + "tR";
    };
    const std::string pkl = "\x80\x02}(" + unicode("w") + rebuild("FloatStorage", 4) +
                            unicode("b") + rebuild("ByteStorage", 16) + "u.";
    std::string data;
    for (int i = 0; i < 16; ++i) data += static_cast<char>(i + 1);
    pthio::memory_sink out;
    pthio::zip_writer zip(out);
    zip.add("archive/data.pkl", bytes_of(pkl));
    zip.add("archive/byteorder", bytes_of("big"));
    zip.add("archive/data/0", bytes_of(data));
    zip.add("archive/version", bytes_of("3\n"));
    zip.finish();
    auto eager = load_bytes(out.buffer());
    auto lazy = load_bytes(out.buffer(), pthio::load_mode::lazy);
    const pthio::tensor whole = eager.load_tensor("b");
    CHECK(std::to_integer<int>(whole.bytes()[0]) == 4);  // the first float's bytes, reversed
    for (const char* spec : {"0:16", "1:7", "3:", "::3", "5"}) {
      CAPTURE(spec);
      const auto s = pthio::slice::parse(spec);
      CHECK(lazy.load_slice("b", s).bytes() == eager.load_slice("b", s).bytes());
      CHECK(lazy.load_slice("w", pthio::slice::parse("1:3")).bytes() ==
            eager.load_slice("w", pthio::slice::parse("1:3")).bytes());
    }
  }

  TEST_CASE("hostile: a legacy module persistent id is a class and nothing more") {
    // torch.save(model) in the legacy format names each class ('module', class, file, source).
    auto legacy = [](const std::string& pid) {
      const std::string magic = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s;
      return bytes_of(magic + "\x80\x02M\xe9\x03." + "\x80\x02}." + "\x80\x02" + pid + "Q." +
                      "\x80\x02]."s);
    };
    const std::string cls = global("my.models", "Net");
    auto ck = load_bytes(legacy("(" + unicode("module") + cls + unicode("net.py") +
                                unicode("import os\nos.system('boom')\n") + "t"));
    REQUIRE(ck.root.is_global());
    CHECK(ck.root.as_global().qualified() == "my.models.Net");
    for (const std::string& bad :
         {"(" + unicode("module") + cls + unicode("net.py") + "t",
          "(" + unicode("module") + binint(3) + unicode("f") + unicode("s") + "t"}) {
      pthio::error e = load_error(legacy(bad));
      CHECK(e.kind() == pthio::errc::corrupt_checkpoint);
      CHECK(std::string(e.what()).find("('module', class, file, source)") != std::string::npos);
    }
  }

  TEST_CASE("hostile: flipped bytes in a legacy whole model never crash its state dict") {
    auto whole = pthio_test::read_bytes(fixture("t1/whole_legacy.pt"));
    std::size_t extracted = 0;
    // Every byte of the first 4 KiB (the header pickles and the start of the object), then every
    // 13th: most of the file is the classes' source text, which no reader looks at.
    for (std::size_t i = 0; i < whole.size(); i += i < 4096 ? 1 : 13) {
      auto b = whole;
      b[i] ^= std::byte{0xa5};
      try {
        auto ck = load_bytes(b);
        read_every_tensor(pthio::extract_state_dict(ck.root).to_value());
        ++extracted;
      } catch (const pthio::error&) {
      } catch (const std::exception& e) {
        FAIL_CHECK("byte " << i << " flipped: " << e.what() << " (not a pthio::error)");
      }
    }
    CHECK(extracted > 0);  // most flips land in source text, which nothing reads
  }

  TEST_CASE("hostile: empty files and garbage are errors naming the file") {
    CHECK_THROWS_WITH_AS(load_bytes({}), doctest::Contains("test.pth"), pthio::error);
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<std::byte> b(static_cast<std::size_t>(rng() % 4096));
      for (auto& x : b) x = static_cast<std::byte>(rng());
      if (trial % 4 == 0 && b.size() > 4) std::memcpy(b.data(), "PK\3\4", 4);
      if (trial % 4 == 1 && b.size() > 2) std::memcpy(b.data(), "\x80\x02", 2);
      CHECK_THROWS_AS(load_bytes(b), pthio::error);
    }
  }

  TEST_CASE("hostile: a missing or short storage record is refused") {
    auto missing = checkpoint_with_pickle(tensor_pickle(4, 4));
    CHECK_THROWS_WITH_AS(load_bytes(missing), doctest::Contains("archive/data/0 is missing"),
                         pthio::error);
    auto shorter = checkpoint_with_pickle(tensor_pickle(4, 4), {{"0", std::string(15, '\1')}});
    CHECK_THROWS_WITH_AS(load_bytes(shorter), doctest::Contains("holds 15 bytes"), pthio::error);
  }

  TEST_CASE("hostile: views reaching outside their storage are refused") {
    // 4 elements in the storage; the tensor claims 5, or stride 2, or offset 1.
    std::string rec(16, '\1');
    CHECK_THROWS_WITH_AS(load_bytes(checkpoint_with_pickle(tensor_pickle(4, 5), {{"0", rec}})),
                         doctest::Contains("needs 20 bytes"), pthio::error);
    CHECK_THROWS_AS(load_bytes(checkpoint_with_pickle(tensor_pickle(4, 3, 2), {{"0", rec}})),
                    pthio::error);
    CHECK_THROWS_AS(load_bytes(checkpoint_with_pickle(tensor_pickle(4, 4, 1, 1), {{"0", rec}})),
                    pthio::error);
    CHECK_THROWS_AS(load_bytes(checkpoint_with_pickle(tensor_pickle(4, -1), {{"0", rec}})),
                    pthio::error);
    // numel of 2^31 - 1 in the id with a 16-byte record: refused before allocating anything.
    CHECK_THROWS_AS(load_bytes(checkpoint_with_pickle(tensor_pickle(0x7fffffff, 4), {{"0", rec}})),
                    pthio::error);
  }

  TEST_CASE("hostile: broken pickles inside a valid zip carry the record name and offset") {
    struct bad {
      const char* what;
      std::string pkl;
      const char* message;
    };
    std::vector<bad> cases = {
        {"unknown opcode", "\x80\x02\xff."s, "offset 2"},
        {"no STOP", "\x80\x02}q\x00"s, "archive/data.pkl"},
        {"huge BINUNICODE length", "\x80\x02X\xff\xff\xff\x7f"s, "archive/data.pkl"},
        {"BINGET of an undefined memo entry", "\x80\x02h\x07."s, "offset 2"},
        {"LONG_BINPUT past the memo limit", "\x80\x02}r\xff\xff\xff\x7f."s, "archive/data.pkl"},
        {"pop past an empty stack", "\x80\x02s."s, "offset 2"},
        {"persistent id of an unknown type", "\x80\x02"s + unicode("abc") + "\x85Q.",
         "not supported"},
    };
    for (const auto& c : cases) {
      INFO(c.what);
      CHECK_THROWS_WITH_AS(load_bytes(checkpoint_with_pickle(c.pkl)), doctest::Contains(c.message),
                           pthio::error);
    }
  }

  TEST_CASE("hostile: deep nesting is a limit error, not a stack overflow") {
    std::string deep = "\x80\x02";
    for (int i = 0; i < 200000; ++i) deep += "]";  // EMPTY_LIST pushed 200k times ...
    for (int i = 0; i < 199999; ++i) deep += "a";  // ... each appended into the one below
    deep += ".";
    const auto nested = load_error(checkpoint_with_pickle(deep));
    CHECK(nested.kind() == pthio::errc::limit_exceeded);
    CHECK(nested.message() == "pickle: containers nest deeper than max_depth (1000)");
    std::string marks = "\x80\x02" + std::string(1000000, '(') + ".";
    const auto marked = load_error(checkpoint_with_pickle(marks));
    CHECK(marked.kind() == pthio::errc::limit_exceeded);
    CHECK(marked.message() == "pickle: MARK nesting exceeds max_depth (1000)");
  }

  TEST_CASE("hostile: a numpy dtype whose type code is not a str is a corrupt checkpoint") {
    // numpy.dtype(code, False, True) with its BUILD state, as numpy pickles it: the code should be
    // a str ("f4").
    auto numpy_dtype = [](const std::string& code) {
      return global("numpy", "dtype") + code + "\x89\x88\x87R" + "(" + binint(3) + unicode("<") +
             "NNN" + binint(-1) + binint(-1) + binint(0) + "tb";
    };
    // numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') with the state (1, (2,), dtype,
    // False, data).
    auto array = [&](const std::string& code) {
      return global("numpy.core.multiarray", "_reconstruct") + global("numpy", "ndarray") +
             "K\x00\x85"s +
             "C\x01"
             "b" +
             "\x87R" + "(" + binint(1) + "(" + binint(2) + "t" + numpy_dtype(code) + "\x89" +
             "C\x08" + std::string(8, '\0') + "tb";
    };
    // numpy.core.multiarray.scalar(dtype, raw bytes).
    auto scalar = [&](const std::string& code) {
      return global("numpy.core.multiarray", "scalar") + "(" + numpy_dtype(code) + "C\x04" +
             std::string(4, '\0') + "tR";
    };
    auto dict_of = [](const std::string& v) { return "\x80\x02}" + unicode("a") + v + "s."; };
    // The well-formed spelling loads, so the failures below come from the type code alone.
    auto ok = load_bytes(checkpoint_with_pickle(dict_of(array(unicode("f4")))));
    CHECK(ok.root.find("a")->as_tensor().shape() == pthio::shape_t{2});
    CHECK(load_bytes(checkpoint_with_pickle(dict_of(scalar(unicode("f4")))))
              .root.find("a")
              ->as_float() == 0.0);
    for (const std::string& code : {binint(4),
                                    "C\x02"
                                    "f4"s,
                                    "N"s}) {
      for (const auto& v : {array(code), scalar(code)}) {
        try {
          load_bytes(checkpoint_with_pickle(dict_of(v)));
          FAIL_CHECK("loaded");
        } catch (const pthio::error& e) {
          CHECK_MESSAGE(e.kind() == pthio::errc::corrupt_checkpoint, e.what());
          CHECK_MESSAGE(std::string(e.what()).find("numpy") != std::string::npos, e.what());
        } catch (const std::exception& e) {
          FAIL_CHECK("not a pthio::error: " << e.what());
        }
      }
    }
  }

  TEST_CASE("hostile: the command exits 3 on bad input and never dies of a signal" *
            pthio_test::needs_cli) {
    auto dir = pthio_test::scratch_dir();
    auto whole = pthio_test::read_bytes(fixture("t1/linear.pth"));
    for (std::size_t n : {std::size_t{0}, std::size_t{10}, whole.size() / 2, whole.size() - 1}) {
      auto p = dir / ("prefix" + std::to_string(n) + ".pth");
      pthio_test::write_bytes(
          p, std::vector<std::byte>(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n)));
      for (const char* cmd : {"ls", "dump", "scan", "cat"}) {
        auto r = pthio_test::run_cli(std::string(cmd) + " " + pthio_test::shell_quote(p.string()) +
                                     (std::string(cmd) == "cat" ? " weight" : ""));
        INFO(cmd, " on a ", n, "-byte prefix");
        CHECK(r.status == 3);
        CHECK(r.err.find(p.string()) != std::string::npos);
      }
      auto v = pthio_test::run_cli("verify " + pthio_test::shell_quote(p.string()));
      CHECK((v.status == 1 || v.status == 3));
    }
  }

}  // TEST_SUITE
