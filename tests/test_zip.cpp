// zip_reader and zip_writer: round trips, files written by torch and by Python's zipfile,
// byte-for-byte equality with torch's writer, zip64 past 4 GiB and 65535 entries, and hostile
// archives.
#include <doctest/doctest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pthio/error.hpp"
#include "pthio/io.hpp"
#include "pthio/zip.hpp"
#include "support.h"

namespace {

using bytes = std::vector<std::byte>;
using pthio::errc;

std::filesystem::path zip_data(const std::string& name) {
  return pthio_test::fixtures_dir().parent_path() / "tests" / "data" / "zip" / name;
}

bytes to_bytes(std::string_view s) {
  bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string to_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::uint64_t get_le(const bytes& b, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i)
    v = (v << 8) | static_cast<std::uint8_t>(b.at(at + static_cast<std::size_t>(i)));
  return v;
}

void put_le(bytes& b, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i)
    b.at(at + static_cast<std::size_t>(i)) = static_cast<std::byte>((v >> (8 * i)) & 0xFF);
}

struct named_data {
  std::string name;
  std::string data;
};

bytes write_zip(const std::vector<named_data>& entries, std::uint32_t alignment = 64) {
  pthio::memory_sink sink;
  pthio::zip_writer w(sink, alignment);
  for (const auto& e : entries) w.add(e.name, to_bytes(e.data));
  w.finish();
  return sink.buffer();
}

pthio::zip_reader open_zip(const bytes& b, pthio::zip_read_options o = {}) {
  return pthio::zip_reader(pthio::byte_source::from_vector(b, "test.zip"), o);
}

// Parses the archive, then reads (and CRC-checks) every entry: what a loader does.
void open_and_read(const bytes& b, pthio::zip_read_options o = {}) {
  auto r = open_zip(b, o);
  for (const auto& e : r.entries()) r.read(e, true);
}

std::optional<pthio::error> error_of(const bytes& b, pthio::zip_read_options o = {}) {
  try {
    open_and_read(b, o);
  } catch (const pthio::error& e) {
    return e;
  }
  return std::nullopt;
}

// Where the records of a (comment-free unless found) archive lie, read straight from the bytes.
struct raw_layout {
  std::size_t end = 0;
  std::optional<std::size_t> zip64_end, locator;
  std::size_t cd = 0;
  std::vector<std::size_t> central;  // offset of each central directory entry
  std::vector<std::size_t> local;    // offset of each local header, in central order
};

raw_layout layout_of(const bytes& b) {
  raw_layout l;
  REQUIRE(b.size() >= 22);
  std::size_t p = b.size() - 22;
  while (get_le(b, p, 4) != 0x06054b50) {
    REQUIRE(p > 0);
    --p;
  }
  l.end = p;
  if (p >= 20 && get_le(b, p - 20, 4) == 0x07064b50) {
    l.locator = p - 20;
    l.zip64_end = static_cast<std::size_t>(get_le(b, p - 20 + 8, 8));
  }
  std::uint64_t count = get_le(b, l.end + 10, 2);
  l.cd = static_cast<std::size_t>(get_le(b, l.end + 16, 4));
  if (l.zip64_end) {
    count = get_le(b, *l.zip64_end + 32, 8);
    l.cd = static_cast<std::size_t>(get_le(b, *l.zip64_end + 48, 8));
  }
  std::size_t c = l.cd;
  for (std::uint64_t i = 0; i < count; ++i) {
    REQUIRE(get_le(b, c, 4) == 0x02014b50);
    l.central.push_back(c);
    l.local.push_back(static_cast<std::size_t>(get_le(b, c + 42, 4)));
    c += 46 + get_le(b, c + 28, 2) + get_le(b, c + 30, 2) + get_le(b, c + 32, 2);
  }
  return l;
}

const std::vector<named_data> three = {
    {"archive/data.pkl", std::string("\x80\x02}q\x00.", 6)},
    {"archive/data/0", std::string(100, 'x')},
    {"archive/version", "3\n"},
};

}  // namespace

TEST_SUITE("zip") {
  // ------------------------------------------------------------------------------------------------
  // Round trips

  TEST_CASE("zip: crc32_combine of two pieces' CRC-32s is the CRC-32 of the whole") {
    std::mt19937 rng(15);
    bytes data(3 * 4096 + 77);
    for (auto& b : data) b = static_cast<std::byte>(rng());
    const std::span<const std::byte> all(data);
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4096},
                            std::size_t{5000}, data.size() - 1, data.size()}) {
      INFO("cut at ", cut);
      const auto a = all.first(cut), b = all.subspan(cut);
      CHECK(pthio::crc32_combine(pthio::crc32(a), pthio::crc32(b), b.size()) == pthio::crc32(all));
    }
    // Many pieces, folded left to right, as the threaded eager load checks a record.
    std::uint32_t crc = 0;
    for (std::size_t at = 0; at < data.size(); at += 1000) {
      const auto piece = all.subspan(at, std::min<std::size_t>(1000, data.size() - at));
      crc = pthio::crc32_combine(crc, pthio::crc32(piece), piece.size());
    }
    CHECK(crc == pthio::crc32(all));
    // A second piece past 4 GiB (the length's high bits): 4097 MiB of zeros after 100 bytes,
    // run through libdeflate the long way, against one combine with the zeros' CRC-32.
    const bytes zeros(std::size_t{1} << 20);
    const std::uint32_t zeros_crc = pthio::crc32(zeros);
    std::uint32_t running = pthio::crc32(all.first(100)), long_zeros_crc = 0;
    for (int i = 0; i < 4097; ++i) {
      running = pthio::crc32(zeros, running);
      long_zeros_crc = pthio::crc32_combine(long_zeros_crc, zeros_crc, zeros.size());
    }
    CHECK(pthio::crc32_combine(pthio::crc32(all.first(100)), long_zeros_crc,
                               std::uint64_t{4097} << 20) == running);
  }

  TEST_CASE("zip: round-trips entries through memory, file and mmap sources") {
    const auto path = pthio_test::scratch_dir() / "roundtrip.zip";
    {
      pthio::file_sink sink(path);
      pthio::zip_writer w(sink);
      for (const auto& e : three) w.add(e.name, to_bytes(e.data));
      w.finish();
      sink.commit();
    }
    const bytes file = pthio_test::read_bytes(path);
    CHECK(file == write_zip(three));
    CHECK(pthio::looks_like_zip(file));

    std::vector<pthio::byte_source> sources;
    sources.push_back(pthio::byte_source::from_vector(file, "vector"));
    sources.push_back(pthio::byte_source::borrow(file, "borrowed"));
    sources.push_back(pthio::byte_source::read_file(path));
    sources.push_back(pthio::byte_source::map_file(path));
    for (const auto& src : sources) {
      CAPTURE(src.name());
      pthio::zip_reader r(src);
      REQUIRE(r.entries().size() == three.size());
      for (std::size_t i = 0; i < three.size(); ++i) {
        const auto& e = r.entries()[i];
        CHECK(e.name == three[i].name);
        CHECK(e.method == 0);
        CHECK(e.uncompressed_size == three[i].data.size());
        CHECK(e.compressed_size == three[i].data.size());
        CHECK(e.data_offset % 64 == 0);
        CHECK(e.crc32 == pthio::crc32(to_bytes(three[i].data)));
        auto data = r.read(e, true);
        CHECK(to_string(data) == three[i].data);
        CHECK(data.data() == src.bytes().data() + e.data_offset);  // stored entries are zero-copy
        CHECK(r.owner_of(e) == src.owner());
        CHECK(r.compute_crc(e) == e.crc32);
        CHECK(r.find(three[i].name) == &e);
      }
      CHECK(r.find("archive/missing") == nullptr);
    }
  }

  TEST_CASE("zip: round-trips empty entries, which have no data descriptor") {
    const bytes b = write_zip({{"a/empty", ""}, {"a/full", "xyz"}, {"a/empty2", ""}});
    auto r = open_zip(b);
    REQUIRE(r.entries().size() == 3);
    const auto& e = r.entries()[0];
    CHECK(e.uncompressed_size == 0);
    CHECK(e.crc32 == 0);
    CHECK(e.flags == 0x0800);
    CHECK(r.read(e, true).empty());
    // The next local header starts right where the empty entry's data would.
    CHECK(r.entries()[1].local_header_offset == e.data_offset);
    CHECK(r.entries()[1].flags == 0x0808);
    // After "xyz": a 16-byte descriptor PK\7\8, crc, size, size, then the next header.
    const std::size_t d = static_cast<std::size_t>(r.entries()[1].data_offset + 3);
    CHECK(get_le(b, d, 4) == 0x08074b50);
    CHECK(get_le(b, d + 4, 4) == r.entries()[1].crc32);
    CHECK(get_le(b, d + 8, 4) == 3);
    CHECK(get_le(b, d + 12, 4) == 3);
    CHECK(r.entries()[2].local_header_offset == d + 16);
  }

  TEST_CASE("zip: round-trips many entries") {
    std::vector<named_data> entries;
    std::mt19937 rng(42);
    for (int i = 0; i < 1000; ++i) {
      std::string data(rng() % 300, '\0');
      for (auto& c : data) c = static_cast<char>(rng());
      entries.push_back({"many/data/" + std::to_string(i), data});
    }
    const bytes b = write_zip(entries);
    auto r = open_zip(b);
    REQUIRE(r.entries().size() == entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto* e = r.find(entries[i].name);
      REQUIRE(e != nullptr);
      CHECK(e == &r.entries()[i]);
      CHECK(to_string(r.read(*e, true)) == entries[i].data);
    }
  }

  TEST_CASE("zip: aligns every entry's data to the alignment") {
    for (std::uint32_t alignment : {1u, 2u, 64u, 100u, 4096u, 32768u}) {
      CAPTURE(alignment);
      std::vector<named_data> entries;
      for (int n = 1; n <= 80; ++n)
        entries.push_back({std::string(static_cast<std::size_t>(n), 'n') + std::to_string(n),
                           std::string(static_cast<std::size_t>(n * 7 % 97), 'd')});
      const bytes b = write_zip(entries, alignment);
      auto r = open_zip(b);
      REQUIRE(r.entries().size() == entries.size());
      for (const auto& e : r.entries()) {
        CHECK(e.data_offset % alignment == 0);
        // The local extra field is exactly one "FB" field of 'Z' bytes (no zip64 field here).
        const std::size_t lo = static_cast<std::size_t>(e.local_header_offset);
        const std::size_t extra = lo + 30 + e.name.size();
        CHECK(get_le(b, extra, 2) == 0x4246);
        const std::size_t pad = static_cast<std::size_t>(get_le(b, extra + 2, 2));
        CHECK(extra + 4 + pad == e.data_offset);
        CHECK(pad < alignment);
        for (std::size_t i = 0; i < pad; ++i) CHECK(b[extra + 4 + i] == std::byte{'Z'});
      }
    }
  }

  TEST_CASE("zip: streams an entry in pieces to the same bytes as a whole add") {
    std::string data(10000, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
    const bytes whole = write_zip({{"s/data/0", data}, {"s/empty", ""}});

    SUBCASE("size declared") {
      pthio::memory_sink sink;
      pthio::zip_writer w(sink);
      w.begin_entry("s/data/0", data.size());
      const bytes d = to_bytes(data);
      for (std::size_t i = 0; i < d.size(); i += 333)
        w.write(std::span<const std::byte>(d).subspan(i, std::min<std::size_t>(333, d.size() - i)));
      w.write({});
      w.end_entry();
      w.begin_entry("s/empty", 0);
      w.end_entry();
      w.finish();
      CHECK(sink.buffer() == whole);
    }
    SUBCASE("size unknown") {
      pthio::memory_sink sink;
      pthio::zip_writer w(sink);
      w.begin_entry("s/data/0");
      const bytes d = to_bytes(data);
      w.write(std::span<const std::byte>(d).first(1));
      w.write(std::span<const std::byte>(d).subspan(1));
      w.end_entry();
      w.begin_entry("s/empty");  // unknown: flagged with a descriptor, which then says 0 bytes
      w.end_entry();
      w.finish();
      const bytes& b = sink.buffer();
      // Identical up to the empty entry, which is still a valid (descriptor-carrying) entry.
      auto r = open_zip(b);
      REQUIRE(r.entries().size() == 2);
      const std::size_t cut = static_cast<std::size_t>(r.entries()[1].local_header_offset);
      CHECK(std::equal(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(cut), whole.begin()));
      CHECK(to_string(r.read(r.entries()[0], true)) == data);
      CHECK(r.entries()[1].flags == 0x0808);
      CHECK(r.read(r.entries()[1], true).empty());
      CHECK(get_le(b, static_cast<std::size_t>(r.entries()[1].data_offset), 4) == 0x08074b50);
    }
  }

  TEST_CASE(
      "zip: CRC-32s announced ahead (crc_ahead) give the same archive however the entries come") {
    auto pattern = [](std::size_t n, int seed) {
      std::string s(n, '\0');
      for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>(i * 131 + static_cast<std::size_t>(seed) * 7 + (i >> 9));
      return to_bytes(s);
    };
    const bytes a = pattern(300000, 1), b = pattern(5 << 20, 2), c = pattern(70000, 3);
    const bytes other = pattern(1000, 4);
    using sp = std::span<const std::byte>;
    // The same calls, with and without an announcement; `order` is what crc_ahead is told.
    std::size_t ahead = 0;
    auto write = [&](const std::vector<sp>* order, int scenario) {
      pthio::memory_sink sink;
      pthio::zip_writer w(sink);
      if (order) w.crc_ahead(*order);
      w.add("t/data.pkl", other);  // not announced: comes before the announced ones
      if (scenario == 0) {         // as announced: whole, in pieces, and ending early
        w.add("t/data/a", a);
        w.begin_entry("t/data/b", b.size());
        for (std::size_t off = 0; off < b.size(); off += 1 << 20)
          w.write(sp(b).subspan(off, std::min<std::size_t>(1 << 20, b.size() - off)));
        w.end_entry();
        w.add("t/data/c", sp(c).first(1000));
      } else if (scenario == 1) {  // out of the announced order
        w.add("t/data/b", b);
        w.add("t/data/a", a);
        w.add("t/data/c", c);
      } else {  // an entry that leaves its announced span half way
        w.begin_entry("t/data/a");
        w.write(sp(a).first(1000));
        w.write(other);
        w.write(sp(a).subspan(1000));
        w.end_entry();
        w.add("t/data/b", b);
        w.add("t/data/c", c);
      }
      w.add("t/version", other);
      w.finish();
      ahead = w.checksummed_ahead();
      return sink.buffer();
    };
    const std::vector<sp> announced = {a, sp(), b, c};  // an empty span is passed over
    // Entries that took the thread's CRC-32: a and b; a only (b came first, c after it); b and c
    // (a left its span, the announcement goes on with the next). On one core there is no thread.
    const std::size_t expected[] = {2, 1, 2};
    const bool threads = std::thread::hardware_concurrency() > 1;
    for (int scenario = 0; scenario < 3; ++scenario) {
      CAPTURE(scenario);
      const bytes plain = write(nullptr, scenario);
      CHECK(ahead == 0);
      CHECK(write(&announced, scenario) == plain);
      CHECK(ahead == (threads ? expected[scenario] : 0));
      open_and_read(plain);  // every entry's CRC-32 checked against its bytes
    }
    // A writer given up half way (an exception in a save) stops its thread on destruction.
    {
      pthio::memory_sink sink;
      pthio::zip_writer w(sink);
      w.crc_ahead({a, b});
      w.begin_entry("t/data/a", a.size());
      w.write(sp(a).first(100));
    }
  }

  TEST_CASE("zip: a copied reader and read bytes outlive the original") {
    const bytes b = write_zip(three);
    std::optional<pthio::zip_reader> original(open_zip(b));
    pthio::zip_reader copy = *original;
    original.reset();
    const auto* e = copy.find("archive/version");
    REQUIRE(e != nullptr);
    CHECK(to_string(copy.read(*e, true)) == "3\n");
  }

  TEST_CASE("zip: refuses writer misuse") {
    pthio::memory_sink sink;
    pthio::zip_writer w(sink);
    const bytes one = to_bytes("1");
    CHECK_THROWS_WITH_AS(w.write(one), doctest::Contains("begin_entry"), pthio::error);
    CHECK_THROWS_AS(w.end_entry(), pthio::error);
    CHECK_THROWS_AS(w.begin_entry(""), pthio::error);
    CHECK_THROWS_AS(w.begin_entry(std::string("a\0b", 3)), pthio::error);
    CHECK_THROWS_AS(w.begin_entry(std::string(70000, 'n')), pthio::error);
    w.begin_entry("a", 2);
    CHECK_THROWS_AS(w.begin_entry("b"), pthio::error);
    CHECK_THROWS_AS(w.add("b", one), pthio::error);
    CHECK_THROWS_AS(w.finish(), pthio::error);
    w.write(one);
    CHECK_THROWS_WITH_AS(w.end_entry(), doctest::Contains("declared 2 bytes but 1 were written"),
                         pthio::error);
    w.write(one);
    CHECK_THROWS_AS(w.write(one), pthio::error);
    w.end_entry();
    w.add("dup", one);
    w.add("dup", one);
    try {
      w.finish();
      FAIL("duplicate names were accepted");
    } catch (const pthio::error& e) {
      CHECK(e.kind() == errc::invalid_argument);
      CHECK(std::string(e.what()).find("duplicate entry name \"dup\"") != std::string::npos);
    }

    pthio::memory_sink sink2;
    pthio::zip_writer w2(sink2);
    w2.add("x", one);
    w2.finish();
    CHECK_THROWS_AS(w2.add("y", one), pthio::error);
    CHECK_THROWS_AS(w2.begin_entry("y"), pthio::error);
    CHECK_THROWS_AS(w2.write(one), pthio::error);
    CHECK_THROWS_AS(w2.finish(), pthio::error);

    CHECK_THROWS_AS(pthio::zip_writer(sink2, 0), pthio::error);
    CHECK_THROWS_AS(pthio::zip_writer(sink2, 65536), pthio::error);
  }

  // ------------------------------------------------------------------------------------------------
  // torch's layout

  TEST_CASE("zip: writes torch's records field by field") {
    const bytes b = write_zip({{"t/data.pkl", "abc"}, {"t/e", ""}});
    const auto l = layout_of(b);
    // Local header: version 0, flags 0x0808, stored, time/date 0, CRC and sizes 0.
    CHECK(get_le(b, 0, 4) == 0x04034b50);
    CHECK(get_le(b, 4, 2) == 0);
    CHECK(get_le(b, 6, 2) == 0x0808);
    for (std::size_t off = 8; off < 26; off += 2) CHECK(get_le(b, off, 2) == 0);
    CHECK(get_le(b, 26, 2) == 10);
    CHECK(get_le(b, 28, 2) == 24);  // 30 + 10 + 24 = 64
    // Empty entry: flags 0x0800.
    CHECK(get_le(b, l.local[1] + 6, 2) == 0x0800);
    // Central entries: version made by 0, needed 0, flags as local, attributes 0.
    REQUIRE(l.central.size() == 2);
    const std::size_t c = l.central[0];
    CHECK(get_le(b, c + 4, 2) == 0);
    CHECK(get_le(b, c + 6, 2) == 0);
    CHECK(get_le(b, c + 8, 2) == 0x0808);
    CHECK(get_le(b, c + 10, 2) == 0);
    CHECK(get_le(b, c + 12, 4) == 0);
    CHECK(get_le(b, c + 16, 4) == pthio::crc32(to_bytes("abc")));
    CHECK(get_le(b, c + 20, 4) == 3);
    CHECK(get_le(b, c + 24, 4) == 3);
    CHECK(get_le(b, c + 30, 2) == 0);  // no extra field in the central directory
    CHECK(get_le(b, c + 32, 8) == 0);  // comment, disk, internal and external attributes
    CHECK(get_le(b, l.central[1] + 8, 2) == 0x0800);
    // End records: zip64 end (56 bytes), locator (20), end (22), nothing after.
    REQUIRE(l.zip64_end);
    const std::size_t z = *l.zip64_end;
    CHECK(z == b.size() - 98);
    CHECK(get_le(b, z, 4) == 0x06064b50);
    CHECK(get_le(b, z + 4, 8) == 44);
    CHECK(get_le(b, z + 12, 2) == 0x031E);
    CHECK(get_le(b, z + 14, 2) == 0x002D);
    CHECK(get_le(b, z + 16, 8) == 0);
    CHECK(get_le(b, z + 24, 8) == 2);
    CHECK(get_le(b, z + 32, 8) == 2);
    CHECK(get_le(b, z + 40, 8) == z - l.cd);
    CHECK(get_le(b, z + 48, 8) == l.cd);
    CHECK(get_le(b, z + 56, 4) == 0x07064b50);
    CHECK(get_le(b, z + 60, 4) == 0);
    CHECK(get_le(b, z + 64, 8) == z);
    CHECK(get_le(b, z + 72, 4) == 1);
    CHECK(get_le(b, l.end + 4, 4) == 0);
    CHECK(get_le(b, l.end + 8, 2) == 2);
    CHECK(get_le(b, l.end + 10, 2) == 2);
    CHECK(get_le(b, l.end + 12, 4) == z - l.cd);
    CHECK(get_le(b, l.end + 16, 4) == l.cd);
    CHECK(get_le(b, l.end + 20, 2) == 0);
  }

  TEST_CASE("zip: writes an empty archive as torch does") {
    pthio::memory_sink sink;
    pthio::zip_writer w(sink);
    w.finish();
    const bytes& b = sink.buffer();
    REQUIRE(b.size() == 98);
    CHECK(get_le(b, 0, 4) == 0x06064b50);
    CHECK(get_le(b, 40, 8) == 0);  // central directory size
    CHECK(get_le(b, 48, 8) == 0);  // and offset
    CHECK(pthio::looks_like_zip(std::span<const std::byte>(b).subspan(76)));
    auto r = open_zip(b);
    CHECK(r.entries().empty());
  }

  TEST_CASE("zip: reads the records torch 1.13 writes") {
    auto r = pthio::zip_reader(pthio::byte_source::map_file(zip_data("torch113_state.pth")));
    std::vector<std::string> names;
    for (const auto& e : r.entries()) {
      names.push_back(e.name);
      CHECK(e.method == 0);
      CHECK(e.data_offset % 64 == 0);
      CHECK(e.flags == (e.uncompressed_size ? 0x0808 : 0x0800));
      r.read(e, true);
    }
    CHECK(names == std::vector<std::string>{"torch113_state/data.pkl", "torch113_state/data/0",
                                            "torch113_state/data/1", "torch113_state/data/2",
                                            "torch113_state/data/3", "torch113_state/version"});
    const auto* pkl = r.find("torch113_state/data.pkl");
    REQUIRE(pkl);
    auto p = r.read(*pkl);
    REQUIRE(p.size() > 2);
    CHECK(p[0] == std::byte{0x80});
    CHECK(p[1] == std::byte{0x02});
    CHECK(to_string(r.read(*r.find("torch113_state/version"))) == "3\n");
    auto w = r.read(*r.find("torch113_state/data/0"));
    REQUIRE(w.size() == 24);
    float f[6];
    std::memcpy(f, w.data(), sizeof f);
    for (int i = 0; i < 6; ++i) CHECK(f[i] == static_cast<float>(i));
    CHECK(r.find("torch113_state/data/1")->uncompressed_size == 0);

    auto buffer = pthio::zip_reader(pthio::byte_source::read_file(zip_data("torch113_buffer.pth")));
    REQUIRE(buffer.entries().size() == 3);
    CHECK(buffer.entries()[0].name == "archive/data.pkl");
  }

  TEST_CASE("zip: reads torch 2.x records, with CRC-32 and without") {
    for (const char* file : {"torch2_state.pth", "torch2_nocrc.pth"}) {
      CAPTURE(file);
      const std::string stem = std::filesystem::path(file).stem().string();
      auto r = pthio::zip_reader(pthio::byte_source::map_file(zip_data(file)));
      for (const char* rec : {"/data.pkl", "/.format_version", "/.storage_alignment", "/byteorder",
                              "/data/0", "/version", "/.data/serialization_id"})
        CHECK(r.find(stem + rec) != nullptr);
      for (const auto& e : r.entries()) {
        CHECK(e.data_offset % 64 == 0);
        CHECK_NOTHROW(r.read(e, true));  // a CRC of 0 means "not computed", not "corrupt"
      }
      CHECK(to_string(r.read(*r.find(stem + "/byteorder"))) == "little");
      const bool nocrc = stem == "torch2_nocrc";
      CHECK((r.find(stem + "/data.pkl")->crc32 == 0) == nocrc);
    }
  }

  TEST_CASE("zip: reads TorchScript archives, whose code records are deflated") {
    auto r = pthio::zip_reader(pthio::byte_source::read_file(zip_data("torch113_script.pt")));
    const auto* code = r.find("torch113_script/code/__torch__.py");
    REQUIRE(code);
    CHECK(code->method == 8);
    CHECK(code->compressed_size < code->uncompressed_size);
    auto text = r.read(*code, true);
    CHECK(text.size() == code->uncompressed_size);
    CHECK(to_string(text).find("class ") != std::string::npos);
    CHECK(r.read(*code).data() == text.data());  // inflated once, then cached
    CHECK(r.compute_crc(*code) == code->crc32);
    std::size_t deflated = 0;
    for (const auto& e : r.entries()) {
      deflated += e.method == 8;
      CHECK_NOTHROW(r.read(e, true));
    }
    CHECK(deflated >= 2);

    // The inflated bytes live as long as their owner, after the reader is gone.
    std::shared_ptr<const void> owner;
    std::span<const std::byte> kept;
    {
      auto r2 = pthio::zip_reader(pthio::byte_source::read_file(zip_data("torch113_script.pt")));
      const auto* c2 = r2.find("torch113_script/code/__torch__.py");
      kept = r2.read(*c2);
      owner = r2.owner_of(*c2);
      CHECK(owner != r2.source().owner());
    }
    CHECK(to_string(kept) == to_string(text));
  }

  TEST_CASE("zip: reads Python zipfile archives with comments and deflated entries") {
    auto r = pthio::zip_reader(pthio::byte_source::read_file(zip_data("zipfile_deflated.zip")));
    REQUIRE(r.entries().size() == 3);
    std::string expected;
    for (int i = 0; i < 200; ++i) expected += "hello deflate ";
    const auto& text = r.entries()[0];
    CHECK(text.name == "archive/data.txt");
    CHECK(text.method == 8);
    CHECK(to_string(r.read(text, true)) == expected);
    auto bin = r.read(r.entries()[1], true);
    REQUIRE(bin.size() == 256);
    for (std::size_t i = 0; i < 256; ++i) CHECK(bin[i] == static_cast<std::byte>(i));
    CHECK(r.entries()[2].method == 8);
    CHECK(r.read(r.entries()[2], true).empty());

    auto empty = pthio::zip_reader(pthio::byte_source::read_file(zip_data("zipfile_empty.zip")));
    CHECK(empty.entries().empty());
    CHECK(pthio::looks_like_zip(empty.source().bytes()));
  }

  TEST_CASE("zip: writes byte-identical copies of torch's files") {
    for (const char* file :
         {"torch113_state.pth", "torch113_buffer.pth", "torch113_many.pth", "torch2_state.pth"}) {
      CAPTURE(file);
      const bytes original = pthio_test::read_bytes(zip_data(file));
      auto r = open_zip(original);
      SUBCASE("whole entries") {
        pthio::memory_sink sink;
        pthio::zip_writer w(sink);
        for (const auto& e : r.entries()) w.add(e.name, r.read(e));
        w.finish();
        CHECK(sink.buffer() == original);
      }
      SUBCASE("streamed entries") {
        pthio::memory_sink sink;
        pthio::zip_writer w(sink);
        for (const auto& e : r.entries()) {
          auto d = r.read(e);
          w.begin_entry(e.name, d.size());
          for (std::size_t i = 0; i < d.size(); i += 7)
            w.write(d.subspan(i, std::min<std::size_t>(7, d.size() - i)));
          w.end_entry();
        }
        w.finish();
        CHECK(sink.buffer() == original);
      }
    }
  }

  TEST_CASE("zip: clamps the end record past 65535 entries and reads the zip64 count") {
    std::vector<named_data> entries;
    entries.reserve(70000);
    for (int i = 0; i < 70000; ++i)
      entries.push_back({"m/data/" + std::to_string(i), i % 3 ? "ab" : ""});
    const bytes b = write_zip(entries);
    const auto l = layout_of(b);
    CHECK(get_le(b, l.end + 8, 2) == 0xFFFF);
    CHECK(get_le(b, l.end + 10, 2) == 0xFFFF);
    CHECK(get_le(b, *l.zip64_end + 32, 8) == 70000);
    auto r = open_zip(b);
    REQUIRE(r.entries().size() == 70000);
    CHECK(r.entries().back().name == "m/data/69999");
    CHECK(to_string(r.read(*r.find("m/data/69998"), true)) == "ab");
  }

  namespace {

  // A sink over a reserved (not committed) anonymous mapping: writes of the shared zero buffer
  // leave the mapping's zero pages untouched, so a 4 GiB archive costs only its headers' pages.
  class sparse_sink final : public pthio::sink {
   public:
    sparse_sink(std::byte* base, std::size_t cap, const std::byte* zeros)
        : base_(base), cap_(cap), zeros_(zeros) {}
    void write(const void* data, std::size_t n) override {
      REQUIRE(n <= cap_ - pos_);
      if (n != 0 && data != zeros_) std::memcpy(base_ + pos_, data, n);
      pos_ += n;
    }
    std::uint64_t position() const override { return pos_; }

   private:
    std::byte* base_;
    std::size_t cap_;
    const std::byte* zeros_;
    std::size_t pos_ = 0;
  };

  }  // namespace

  TEST_CASE("zip: writes and reads zip64 entries past 4 GiB as torch does") {
    const std::size_t cap = (std::size_t{4} << 30) + (std::size_t{1} << 20);
    void* map = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
      pthio_test::skip("cannot reserve 4 GiB of address space");
      return;
    }
    std::shared_ptr<void> unmap(map, [cap](void* p) { ::munmap(p, cap); });
    auto* base = static_cast<std::byte*>(map);
    static const std::vector<std::byte> zeros(std::size_t{1} << 24);

    // The records of torch.save({'a': torch.zeros(2**32 + 100, dtype=torch.uint8), 'b':
    // torch.arange(3.)}) to big.pth with torch 1.13, whose output pthio's writer was checked to
    // reproduce byte for byte.
    const std::uint64_t big = (std::uint64_t{1} << 32) + 100;
    const std::string pkl(249, 'p');
    const float b3[3] = {0.f, 1.f, 2.f};
    sparse_sink sink(base, cap, zeros.data());
    pthio::zip_writer w(sink);
    w.add("big/data.pkl", to_bytes(pkl));
    w.begin_entry("big/data/0", big);
    for (std::uint64_t left = big; left > 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, zeros.size()));
      w.write(std::span<const std::byte>(zeros).first(n));
      left -= n;
    }
    w.end_entry();
    w.add("big/data/1", std::as_bytes(std::span<const float>(b3)));
    w.add("big/version", to_bytes("3\n"));
    w.finish();
    const std::size_t size = static_cast<std::size_t>(sink.position());
    CHECK(size == 4294968459u);  // torch's big.pth

    auto at = [&](std::uint64_t off, int n) {
      std::uint64_t v = 0;
      for (int i = n - 1; i >= 0; --i)
        v = (v << 8) | static_cast<std::uint8_t>(base[off + static_cast<std::uint64_t>(i)]);
      return v;
    };
    pthio::zip_reader r(pthio::byte_source::borrow({base, size}, "big.pth"));
    REQUIRE(r.entries().size() == 4);
    const auto& e0 = r.entries()[1];
    const auto& e1 = r.entries()[2];
    const auto& e2 = r.entries()[3];
    CHECK(r.entries()[0].data_offset == 64);
    CHECK(e0.data_offset == 448);
    CHECK(e0.uncompressed_size == big);
    CHECK(e0.compressed_size == big);
    CHECK(e0.crc32 == 0xa92a4ce5);  // CRC-32 of 2**32 + 100 zero bytes, as torch wrote it
    CHECK(e1.local_header_offset == 4294967868u);
    CHECK(e1.data_offset == 4294967936u);
    CHECK(e2.data_offset == 4294968064u);
    float got[3];
    std::memcpy(got, r.read(e1, true).data(), sizeof got);
    CHECK(got[2] == 2.f);
    CHECK(to_string(r.read(e2, true)) == "3\n");

    // Big entry's local header: zip64 field (id 1, 16 bytes: size, then a compressed size of 0 as
    // miniz writes it) before the FB padding; then a 24-byte descriptor with 8-byte sizes.
    const std::uint64_t lo = e0.local_header_offset;
    CHECK(at(lo + 28, 2) == 79);
    CHECK(at(lo + 40, 2) == 1);
    CHECK(at(lo + 42, 2) == 16);
    CHECK(at(lo + 44, 8) == big);
    CHECK(at(lo + 52, 8) == 0);
    CHECK(at(lo + 60, 2) == 0x4246);
    CHECK(at(e0.data_offset + big, 4) == 0x08074b50);
    CHECK(at(e0.data_offset + big + 8, 8) == big);
    CHECK(at(e0.data_offset + big + 16, 8) == big);
    // An entry past 4 GiB: zip64 field with the offset only, and still a 24-byte descriptor.
    CHECK(at(e1.local_header_offset + 40, 2) == 1);
    CHECK(at(e1.local_header_offset + 42, 2) == 8);
    CHECK(at(e1.local_header_offset + 44, 8) == e1.local_header_offset);
    CHECK(at(e1.data_offset + 12, 4) == 0x08074b50);
    CHECK(at(e1.data_offset + 12 + 8, 8) == 12);
    CHECK(at(e1.data_offset + 12 + 16, 8) == 12);
    CHECK(at(e1.data_offset + 12 + 24, 4) == 0x04034b50);
    // End record: the central directory offset is past 4 GiB, so clamped to 0xFFFFFFFF.
    CHECK(at(size - 22 + 16, 4) == 0xFFFFFFFFu);
    CHECK(at(size - 22 + 12, 4) == 271);
  }

  // ------------------------------------------------------------------------------------------------
  // Hostile archives: each is a pthio::error, never a crash.

  TEST_CASE("zip: rejects an empty file and garbage") {
    CHECK_THROWS_WITH_AS(open_zip({}),
                         doctest::Contains("too few for an end-of-central-directory record"),
                         pthio::error);
    bytes garbage(5000);
    std::mt19937 rng(7);
    for (auto& b : garbage) b = static_cast<std::byte>(rng());
    CHECK_THROWS_WITH_AS(open_zip(garbage), doctest::Contains("no end-of-central-directory record"),
                         pthio::error);
    CHECK_FALSE(pthio::looks_like_zip(garbage));
    CHECK_FALSE(pthio::looks_like_zip({}));
  }

  TEST_CASE("zip: rejects every truncated prefix of an archive") {
    for (const bytes& full :
         {write_zip(three), pthio_test::read_bytes(zip_data("zipfile_deflated.zip")),
          pthio_test::read_bytes(zip_data("torch113_state.pth"))}) {
      REQUIRE_NOTHROW(open_and_read(full));
      for (std::size_t n = 0; n < full.size(); ++n) {
        const bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        CAPTURE(n);
        CHECK_THROWS_AS(open_and_read(prefix), pthio::error);
      }
    }
  }

  TEST_CASE("zip: survives every single-byte corruption of an archive") {
    for (const bytes& full :
         {write_zip(three), pthio_test::read_bytes(zip_data("zipfile_deflated.zip"))}) {
      for (std::size_t i = 0; i < full.size(); ++i) {
        for (int x : {0x01, 0x80, 0xFF}) {
          bytes b = full;
          b[i] ^= static_cast<std::byte>(x);
          CAPTURE(i);
          try {
            open_and_read(b);
          } catch (const pthio::error&) {}
        }
      }
    }
  }

  TEST_CASE("zip: rejects an end record whose comment length does not match") {
    bytes b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
    const auto l = layout_of(b);
    CHECK(get_le(b, l.end + 20, 2) == 18);
    put_le(b, l.end + 20, 5, 2);
    CHECK_THROWS_WITH_AS(open_zip(b),
                         doctest::Contains("comment length 5 does not match the 18 bytes"),
                         pthio::error);
  }

  TEST_CASE("zip: rejects a central directory outside the file or overlapping the end records") {
    SUBCASE("classic end record") {
      bytes b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
      const auto l = layout_of(b);
      put_le(b, l.end + 16, 0x7FFFFFF0, 4);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("runs past the end records"),
                           pthio::error);
      b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
      put_le(b, l.end + 12, get_le(b, l.end + 12, 4) + 1, 4);
      CHECK_THROWS_AS(open_zip(b), pthio::error);
    }
    SUBCASE("zip64 end record") {
      bytes b = write_zip(three);
      const auto l = layout_of(b);
      put_le(b, l.end + 16, 0xFFFFFFFF, 4);
      put_le(b, *l.zip64_end + 48, 0xFFFFFFFFFFFFFF00ull, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("runs past the end records"),
                           pthio::error);
    }
  }

  TEST_CASE("zip: rejects an entry count larger than the central directory holds") {
    SUBCASE("classic") {
      bytes b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
      const auto l = layout_of(b);
      put_le(b, l.end + 8, 1000, 2);
      put_le(b, l.end + 10, 1000, 2);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("entry count 1000 needs more bytes"),
                           pthio::error);
    }
    SUBCASE("zip64, before allocating") {
      bytes b = write_zip(three);
      const auto l = layout_of(b);
      put_le(b, l.end + 8, 0xFFFF, 2);
      put_le(b, l.end + 10, 0xFFFF, 2);
      put_le(b, *l.zip64_end + 24, 1ull << 40, 8);
      put_le(b, *l.zip64_end + 32, 1ull << 40, 8);
      pthio::zip_read_options o;
      o.max_entries = ~std::uint64_t{0};
      CHECK_THROWS_WITH_AS(open_zip(b, o), doctest::Contains("needs more bytes"), pthio::error);
    }
    SUBCASE("over the limit") {
      const bytes b = write_zip(three);
      pthio::zip_read_options o;
      o.max_entries = 2;
      auto e = error_of(b, o);
      REQUIRE(e);
      CHECK(e->kind() == errc::limit_exceeded);
    }
    SUBCASE("fewer entries than the directory holds") {
      bytes b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
      const auto l = layout_of(b);
      put_le(b, l.end + 8, 2, 2);
      put_le(b, l.end + 10, 2, 2);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("bytes left in the central directory"),
                           pthio::error);
    }
  }

  TEST_CASE("zip: rejects lying zip64 records") {
    const bytes good = write_zip(three);
    const auto l = layout_of(good);
    const std::size_t z = *l.zip64_end, loc = *l.locator;
    SUBCASE("entry count disagrees with the end record") {
      bytes b = good;
      put_le(b, z + 32, 4, 8);
      CHECK_THROWS_WITH_AS(
          open_zip(b),
          doctest::Contains("zip64 end record says entry count 4 but the end record says 3"),
          pthio::error);
    }
    SUBCASE("central directory offset disagrees") {
      bytes b = good;
      put_le(b, z + 48, get_le(b, z + 48, 8) - 1, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("central directory offset"),
                           pthio::error);
    }
    SUBCASE("saturated classic fields, wrong zip64 offset") {
      bytes b = good;
      put_le(b, l.end + 16, 0xFFFFFFFF, 4);
      put_le(b, z + 48, 64, 8);
      CHECK_THROWS_AS(open_zip(b), pthio::error);
    }
    SUBCASE("locator points past itself") {
      bytes b = good;
      put_le(b, loc + 8, z + 1, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("does not leave its 56 bytes"),
                           pthio::error);
      put_le(b, loc + 8, ~std::uint64_t{0} - 10, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("does not leave its 56 bytes"),
                           pthio::error);
    }
    SUBCASE("locator points at something else") {
      bytes b = good;
      put_le(b, loc + 8, z - 8, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("no zip64 end record signature"),
                           pthio::error);
    }
    SUBCASE("zip64 end record size too large") {
      bytes b = good;
      put_le(b, z + 4, 1000, 8);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("zip64 end record size 1000"),
                           pthio::error);
    }
    SUBCASE("multi-disk") {
      bytes b = good;
      put_le(b, loc + 16, 2, 4);
      auto e = error_of(b);
      REQUIRE(e);
      CHECK(e->kind() == errc::unsupported);
      CHECK(std::string(e->what()).find("multi-disk") != std::string::npos);
      b = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
      put_le(b, layout_of(b).end + 4, 1, 2);
      e = error_of(b);
      REQUIRE(e);
      CHECK(e->kind() == errc::unsupported);
    }
    SUBCASE("a 0xFFFFFFFF size with no zip64 extra field") {
      bytes b = good;
      put_le(b, l.central[1] + 24, 0xFFFFFFFF, 4);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("no zip64 extra field"), pthio::error);
    }
  }

  TEST_CASE("zip: rejects a local header that disagrees with the central directory") {
    const bytes good = write_zip(three);
    const auto l = layout_of(good);
    SUBCASE("name") {
      bytes b = good;
      b[l.local[1] + 30 + 7] = std::byte{'X'};
      auto e = error_of(b);
      REQUIRE(e);
      CHECK(e->kind() == errc::corrupt_zip);
      CHECK(e->context() == "test.zip: archive/data/0");
      CHECK(e->offset() == l.local[1] + 30);
      CHECK(std::string(e->what()).find("local header names \"archiveXdata/0\"") !=
            std::string::npos);
    }
    SUBCASE("signature") {
      bytes b = good;
      b[l.local[2]] = std::byte{'Q'};
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("no local header signature"),
                           pthio::error);
    }
    SUBCASE("method") {
      bytes b = good;
      put_le(b, l.local[0] + 8, 8, 2);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("local header says method 8"),
                           pthio::error);
    }
    SUBCASE("local header offset in the central directory") {
      bytes b = good;
      put_le(b, l.central[2] + 42, l.cd - 10, 4);
      CHECK_THROWS_WITH_AS(open_zip(b),
                           doctest::Contains("does not fit before the central directory"),
                           pthio::error);
    }
    SUBCASE("data running into the central directory") {
      bytes b = good;
      put_le(b, l.central[2] + 20, 5000, 4);
      put_le(b, l.central[2] + 24, 5000, 4);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("runs past the central directory"),
                           pthio::error);
    }
    SUBCASE("extra field running into the central directory") {
      bytes b = good;
      put_le(b, l.local[2] + 28, 0xFFFF, 2);
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("run into the central directory"),
                           pthio::error);
    }
    SUBCASE("stored sizes that differ") {
      bytes b = good;
      put_le(b, l.central[1] + 20, 99, 4);
      CHECK_THROWS_WITH_AS(open_zip(b),
                           doctest::Contains("stored entry's compressed size 99 differs"),
                           pthio::error);
    }
  }

  TEST_CASE("zip: rejects overlapping entries") {
    // Entry "a" carries, as its data, a complete local header and data for "b"; pointing the
    // central directory's "b" there gives a well-formed "b" inside "a".
    const bytes inner = write_zip({{"b", "payload"}});
    auto ri = open_zip(inner);
    const auto& ib = ri.entries()[0];
    const std::string embedded(reinterpret_cast<const char*>(inner.data()),
                               static_cast<std::size_t>(ib.data_offset + 7));
    bytes b = write_zip({{"a", embedded}, {"b", "payload"}});
    const auto l = layout_of(b);
    auto r = open_zip(b);
    put_le(b, l.central[1] + 42, r.entries()[0].data_offset, 4);
    CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("entry overlaps \"a\""), pthio::error);
  }

  TEST_CASE("zip: rejects duplicate names and names with NUL") {
    const bytes good = write_zip({{"n/a1", "1"}, {"n/a2", "2"}});
    const auto l = layout_of(good);
    SUBCASE("duplicate") {
      bytes b = good;
      b[l.central[1] + 46 + 3] = std::byte{'1'};
      b[l.local[1] + 30 + 3] = std::byte{'1'};
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains("duplicate entry name"), pthio::error);
    }
    SUBCASE("NUL") {
      bytes b = good;
      b[l.central[0] + 46 + 1] = std::byte{0};
      b[l.local[0] + 30 + 1] = std::byte{0};
      const std::string expected = "test.zip: n\\x00a1: offset " + std::to_string(l.cd + 46) +
                                   ": zip: entry name contains a NUL byte";
      CHECK_THROWS_WITH_AS(open_zip(b), doctest::Contains(expected.c_str()), pthio::error);
    }
  }

  TEST_CASE("zip: refuses encrypted entries and unknown methods as unsupported") {
    const bytes good = write_zip(three);
    const auto l = layout_of(good);
    bytes b = good;
    put_le(b, l.central[0] + 8, 0x0809, 2);
    auto e = error_of(b);
    REQUIRE(e);
    CHECK(e->kind() == errc::unsupported);
    CHECK(std::string(e->what()).find("encrypted") != std::string::npos);

    b = good;
    put_le(b, l.central[0] + 10, 12, 2);
    put_le(b, l.local[0] + 8, 12, 2);
    e = error_of(b);
    REQUIRE(e);
    CHECK(e->kind() == errc::unsupported);
    CHECK(std::string(e->what()).find("compression method 12 (bzip2)") != std::string::npos);
  }

  TEST_CASE("zip: rejects malformed central extra fields and lengths") {
    const bytes good = write_zip(three);
    const auto l = layout_of(good);
    bytes b = good;
    put_le(b, l.central[0] + 30, 3, 2);  // 3 bytes of the next entry's signature: not a field
    CHECK_THROWS_WITH_AS(open_zip(b),
                         doctest::Contains("3 stray bytes at the end of the extra field"),
                         pthio::error);
    b = good;
    put_le(b, l.central[0] + 30, 4, 2);  // "PK" + a length of 0x0201: runs past its 4 bytes
    CHECK_THROWS_WITH_AS(
        open_zip(b), doctest::Contains("extra field 0x4b50 of 513 bytes runs past"), pthio::error);
    b = good;
    put_le(b, l.central[2] + 30, 40, 2);
    CHECK_THROWS_WITH_AS(
        open_zip(b), doctest::Contains("run past the end of the central directory"), pthio::error);
    b = good;
    put_le(b, l.central[0] + 32, 200, 2);
    CHECK_THROWS_WITH_AS(open_zip(b),
                         doctest::Contains("entry 0's name, extra field and comment (216 bytes)"),
                         pthio::error);
  }

  TEST_CASE("zip: detects a CRC-32 mismatch when asked") {
    bytes b = write_zip(three);
    auto r0 = open_zip(b);
    const auto& e0 = r0.entries()[1];
    b[static_cast<std::size_t>(e0.data_offset) + 5] = std::byte{'y'};
    auto r = open_zip(b);
    const auto& e = r.entries()[1];
    CHECK_NOTHROW(r.read(e));
    char expected[64];
    std::snprintf(expected, sizeof expected, "CRC-32 mismatch: expected 0x%08x got 0x%08x", e.crc32,
                  r.compute_crc(e));
    CHECK_THROWS_WITH_AS(r.read(e, true), doctest::Contains(expected), pthio::error);
    try {
      r.read(e, true);
    } catch (const pthio::error& err) {
      CHECK(err.kind() == errc::corrupt_zip);
      CHECK(err.context() == "test.zip: archive/data/0");
      CHECK(err.offset() == e.data_offset);
    }
  }

  TEST_CASE("zip: rejects bad deflate data and sizes") {
    const bytes good = pthio_test::read_bytes(zip_data("zipfile_deflated.zip"));
    const auto l = layout_of(good);
    auto r0 = open_zip(good);
    const auto& text = r0.entries()[0];
    const std::size_t data = static_cast<std::size_t>(text.data_offset);
    SUBCASE("corrupt stream") {
      bytes b = good;
      b[data] = std::byte{0xFF};  // block type 3 is reserved
      auto r = open_zip(b);
      CHECK_THROWS_WITH_AS(r.read(r.entries()[0]), doctest::Contains("corrupt deflate stream"),
                           pthio::error);
    }
    SUBCASE("declares more than it inflates to") {
      bytes b = good;
      put_le(b, l.central[0] + 24, text.uncompressed_size + 10, 4);
      auto r = open_zip(b);
      CHECK_THROWS_WITH_AS(r.read(r.entries()[0]), doctest::Contains("fewer than the declared"),
                           pthio::error);
    }
    SUBCASE("declares less than it inflates to") {
      bytes b = good;
      put_le(b, l.central[0] + 24, text.uncompressed_size - 10, 4);
      auto r = open_zip(b);
      CHECK_THROWS_WITH_AS(r.read(r.entries()[0]), doctest::Contains("more than the declared"),
                           pthio::error);
    }
    SUBCASE("declares a huge size") {
      bytes b = good;
      put_le(b, l.central[0] + 24, 0xFFFFFFF0, 4);
      auto r = open_zip(b);
      CHECK_THROWS_WITH_AS(r.read(r.entries()[0]),
                           doctest::Contains("beyond deflate's 1032:1 limit"), pthio::error);
    }
    SUBCASE("declares more than the limit") {
      bytes b = good;
      pthio::zip_read_options o;
      o.max_inflated_size = 1000;
      auto r = open_zip(b, o);
      try {
        r.read(r.entries()[0]);
        FAIL("limit not enforced");
      } catch (const pthio::error& e) {
        CHECK(e.kind() == errc::limit_exceeded);
        CHECK(std::string(e.what()).find("above the limit of 1000") != std::string::npos);
      }
    }
  }

  TEST_CASE("zip: refuses to read an entry of another archive") {
    auto a = open_zip(write_zip(three));
    auto b = open_zip(write_zip({{"other", "x"}}));
    try {
      a.read(b.entries()[0]);
      FAIL("foreign entry accepted");
    } catch (const pthio::error& err) {
      CHECK(err.kind() == errc::invalid_argument);
    }
    pthio::zip_entry copy = a.entries()[2];
    CHECK(to_string(a.read(copy)) == "3\n");
  }

}  // TEST_SUITE
