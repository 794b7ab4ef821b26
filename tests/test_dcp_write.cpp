// save_dcp (dcp.hpp) and convert to DCP: the folder layout of torch's FileSystemWriter for one
// rank, the .metadata pickle's objects and globals, flattening as torch's traverse_state_dict,
// bad inputs, stale files, and no temporaries after a failure. tests/dcp_write_torch.py loads
// what is written here in torch itself.
#include <doctest/doctest.h>
#include <zstd.h>

#include <algorithm>
#include <set>

#include "pthio/pthio.hpp"
#include "support.h"

namespace {

namespace fs = std::filesystem;
using pthio::value;

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

struct parsed_metadata {
  value root;
  std::set<std::string> globals;
};

parsed_metadata parse_metadata(const fs::path& dir) {
  const auto bytes = pthio_test::read_bytes(dir / ".metadata");
  parsed_metadata r;
  pthio::unpickle_options o;  // permissive: every class an inert object
  o.on_global = [&](const pthio::global_ref& g, std::size_t) { r.globals.insert(g.qualified()); };
  auto res = pthio::unpickle(bytes, o);
  CHECK(res.consumed == bytes.size());
  r.root = res.root;
  return r;
}

const pthio::opaque_object& obj(const value& v, const std::string& type) {
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  CHECK(o.type.qualified() == type);
  return o;
}

// The field of a dataclass written as NEWOBJ + BUILD(__dict__).
const value& field(const value& v, const std::string& type, const char* name) {
  const auto& o = obj(v, type);
  CHECK(o.created_by_new);
  REQUIRE(o.has_state);
  const value* f = o.state.find(name);
  REQUIRE_MESSAGE(f != nullptr, type << " has no " << name);
  return *f;
}

const std::string md = "torch.distributed.checkpoint.metadata.";

std::vector<std::int64_t> torch_size(const value& v) {
  const auto& o = obj(v, "torch.Size");
  CHECK_FALSE(o.created_by_new);
  REQUIRE(o.args.as_tuple().size() == 1);
  std::vector<std::int64_t> dims;
  for (const auto& d : o.args.as_tuple()[0].as_tuple()) dims.push_back(d.as_int());
  return dims;
}

std::vector<std::string> keys_of(const value& dict) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : dict.as_dict().entries()) keys.push_back(k.as_str());
  return keys;
}

pthio::tensor arange(pthio::dtype dt, pthio::shape_t shape) {
  auto t = pthio::tensor::zeros(pthio::dtype::float32, shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i) + 0.5f;
  return t.to(dt);
}

value dict_of(std::initializer_list<std::pair<value, value>> entries) {
  value d = value::make_dict();
  for (const auto& [k, v] : entries) d.as_dict().set(k, v);
  return d;
}

// A blob of the data file: torch.save's zip, or the zstd frame around it.
value load_blob(const fs::path& dir, const value& info) {
  const auto& path =
      field(info, "torch.distributed.checkpoint.filesystem._StorageInfo", "relative_path").as_str();
  const auto off = field(info, "torch.distributed.checkpoint.filesystem._StorageInfo", "offset");
  const auto len = field(info, "torch.distributed.checkpoint.filesystem._StorageInfo", "length");
  const auto all = pthio_test::read_bytes(dir / path);
  REQUIRE(static_cast<std::size_t>(off.as_int() + len.as_int()) <= all.size());
  std::vector<std::byte> blob(all.begin() + off.as_int(),
                              all.begin() + off.as_int() + len.as_int());
  if (info.as_object().state.find("transform_descriptors")) {
    const auto n = ZSTD_getFrameContentSize(blob.data(), blob.size());
    REQUIRE(n != ZSTD_CONTENTSIZE_ERROR);
    // A frame written by a stream need not record its size: decompress through a stream.
    std::vector<std::byte> out;
    ZSTD_DCtx* d = ZSTD_createDCtx();
    ZSTD_inBuffer in{blob.data(), blob.size(), 0};
    std::vector<std::byte> buf(ZSTD_DStreamOutSize());
    std::size_t r = 1;
    while (r != 0 && in.pos < in.size) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      r = ZSTD_decompressStream(d, &o, &in);
      REQUIRE_FALSE(ZSTD_isError(r));
      out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(o.pos));
    }
    ZSTD_freeDCtx(d);
    CHECK(r == 0);  // one whole frame
    CHECK(in.pos == in.size);
    blob = std::move(out);
  }
  return pthio::load_checkpoint(pthio::byte_source::from_vector(std::move(blob)),
                                pthio_test::cpu_options())
      .root;
}

const std::set<std::string> allowed_globals = {
    md + "Metadata",
    md + "TensorStorageMetadata",
    md + "TensorProperties",
    md + "_MEM_FORMAT_ENCODING",
    md + "ChunkStorageMetadata",
    md + "BytesStorageMetadata",
    md + "MetadataIndex",
    md + "StorageMeta",
    "torch.distributed.checkpoint.filesystem._StorageInfo",
    "torch.Size",
    "torch.serialization._get_layout",
    "pathlib.PosixPath",
    "torch.float32",
    "torch.bfloat16",
    "torch.int64",
};

}  // namespace

TEST_CASE("save_dcp: FileSystemWriter's single-rank folder, .metadata's objects, blobs in order") {
  const fs::path dir = pthio_test::scratch_dir() / "dcp_layout";
  auto w = arange(pthio::dtype::float32, {2, 3});
  auto b = arange(pthio::dtype::bfloat16, {3});
  auto steps = arange(pthio::dtype::int64, {4});
  // A transposed view: written contiguous, its shape kept.
  auto wt = arange(pthio::dtype::float32, {3, 2}).transpose(0, 1);
  value root = dict_of({
      {"model", dict_of({{"w", w}, {"b", b}})},
      {"step", 7},
      {"lst", value::make_list({value(steps), value(5), dict_of({{"x", 1}})})},
      {"plain", value::make_list({value(1), value(2)})},
      {"tup", value::make_tuple({value(w)})},
      {"empty", value::make_dict()},
      {3, wt},
  });
  pthio::save_dcp(dir, root);
  CHECK(names_in(dir) == std::set<std::string>{".metadata", "__0_0.distcp"});

  auto m = parse_metadata(dir);
  for (const auto& g : m.globals) CHECK_MESSAGE(allowed_globals.contains(g), g);
  CHECK(m.globals.contains(md + "Metadata"));
  const value& root_md = m.root;
  CHECK(field(root_md, md + "Metadata", "version").as_str() == "1.0.0");

  // torch's flatten_state_dict: the empty dict gives nothing, a list with a tensor or dict is
  // walked (int parts), a list of plain values and a tuple are one value each, int keys by str().
  const std::vector<std::string> flat = {"model.w", "model.b", "step", "lst.0", "lst.1",
                                         "lst.2.x", "plain",   "tup",  "3"};
  const value& sdm = field(root_md, md + "Metadata", "state_dict_metadata");
  CHECK(keys_of(sdm) == flat);
  const value& planner = field(root_md, md + "Metadata", "planner_data");
  CHECK(keys_of(planner) == flat);
  CHECK(*planner.find("lst.2.x") == value::make_tuple({value("lst"), value(2), value("x")}));
  CHECK(*planner.find("3") == value::make_tuple({value("3")}));
  CHECK(*planner.find("model.w") == value::make_tuple({value("model"), value("w")}));

  // A tensor's entry: properties as a 5-tuple state, its size, one chunk at zero offsets.
  const value& tw = *sdm.find("model.b");
  const auto& props =
      obj(field(tw, md + "TensorStorageMetadata", "properties"), md + "TensorProperties");
  CHECK(props.created_by_new);
  REQUIRE(props.state.is_tuple());
  REQUIRE(props.state.as_tuple().size() == 5);
  CHECK(props.state.as_tuple()[0].as_global().qualified() == "torch.bfloat16");
  CHECK(obj(props.state.as_tuple()[1], "torch.serialization._get_layout").args ==
        value::make_tuple({value("torch.strided")}));
  CHECK(props.state.as_tuple()[2] == value(false));
  CHECK(obj(props.state.as_tuple()[3], md + "_MEM_FORMAT_ENCODING").args ==
        value::make_tuple({value(0)}));
  CHECK(props.state.as_tuple()[4] == value(false));
  CHECK(torch_size(field(tw, md + "TensorStorageMetadata", "size")) ==
        std::vector<std::int64_t>{3});
  const value& chunks = field(tw, md + "TensorStorageMetadata", "chunks");
  REQUIRE(chunks.as_list().items.size() == 1);
  CHECK(torch_size(field(chunks.as_list().items[0], md + "ChunkStorageMetadata", "offsets")) ==
        std::vector<std::int64_t>{0});
  CHECK(torch_size(field(chunks.as_list().items[0], md + "ChunkStorageMetadata", "sizes")) ==
        std::vector<std::int64_t>{3});
  CHECK(torch_size(field(*sdm.find("3"), md + "TensorStorageMetadata", "size")) ==
        std::vector<std::int64_t>{2, 3});
  obj(*sdm.find("step"), md + "BytesStorageMetadata");

  // storage_data: the non-tensor items first, then the tensors, each blob right after the last.
  const value& storage = field(root_md, md + "Metadata", "storage_data");
  std::vector<std::string> order;
  std::int64_t next = 0;
  for (const auto& [index, info] : storage.as_dict().entries()) {
    const auto& fqn = field(index, md + "MetadataIndex", "fqn").as_str();
    order.push_back(fqn);
    const value& st = index.as_object().state;
    const bool is_tensor = sdm.find(fqn)->as_object().type.name == "TensorStorageMetadata";
    if (is_tensor) {
      CHECK(*st.find("index") == value(0));
      CHECK(torch_size(*st.find("offset")) ==
            std::vector<std::int64_t>(is_tensor ? (fqn == "model.w" || fqn == "3" ? 2 : 1) : 0, 0));
    } else {
      CHECK(st.find("index")->is_none());
      CHECK(st.find("offset") == nullptr);  // MetadataIndex.__init__ sets it only when given
    }
    const auto& si = info.as_object();
    CHECK(si.state.find("transform_descriptors") == nullptr);
    CHECK(si.state.find("relative_path")->as_str() == "__0_0.distcp");
    CHECK(si.state.find("offset")->as_int() == next);
    next += si.state.find("length")->as_int();
  }
  CHECK(order == std::vector<std::string>{"step", "lst.1", "lst.2.x", "plain", "tup", "model.w",
                                          "model.b", "lst.0", "3"});
  CHECK(static_cast<std::uintmax_t>(next) == fs::file_size(dir / "__0_0.distcp"));

  // Each blob is a torch.save zip of its value; tensors contiguous.
  auto blob = [&](const std::string& fqn) -> value {
    for (const auto& [index, info] : storage.as_dict().entries())
      if (index.as_object().state.find("fqn")->as_str() == fqn) return load_blob(dir, info);
    FAIL("no blob for " << fqn);
    return {};
  };
  CHECK(blob("model.w") == value(w));
  CHECK(blob("model.b") == value(b));
  CHECK(blob("lst.0") == value(steps));
  CHECK(blob("3") == value(wt));
  CHECK(blob("3").as_tensor().is_contiguous());
  CHECK(blob("step") == value(7));
  CHECK(blob("lst.2.x") == value(1));
  CHECK(blob("plain") == value::make_list({value(1), value(2)}));
  CHECK(blob("tup") == value::make_tuple({value(w)}));

  const value& sm = field(root_md, md + "Metadata", "storage_meta");
  CHECK(field(sm, md + "StorageMeta", "save_id").as_str().size() == 36);
  CHECK(field(sm, md + "StorageMeta", "load_id").is_none());
  obj(field(sm, md + "StorageMeta", "checkpoint_id"), "pathlib.PosixPath");
}

TEST_CASE("save_dcp: lists walked only where torch's _is_terminal says; key spellings") {
  const fs::path dir = pthio_test::scratch_dir() / "dcp_terminal";
  auto t = arange(pthio::dtype::float32, {2});
  value root = dict_of({
      // the outer list holds a list holding a tensor: walked; its first item, plain, is a leaf
      {"a",
       value::make_list({value::make_list({value(1), value(2)}), value::make_list({value(t)})})},
      {"b", value::make_list({value::make_tuple({value(t)})})},  // a tuple: the list is a leaf
      {"c", value::make_list()},
      {value(), 1},
      {value(true), 2},
  });
  pthio::save_dcp(dir, root);
  auto m = parse_metadata(dir);
  const value& planner = field(m.root, md + "Metadata", "planner_data");
  CHECK(keys_of(planner) == std::vector<std::string>{"a.0", "a.1.0", "b", "c", "None", "True"});
  CHECK(*planner.find("a.1.0") == value::make_tuple({value("a"), value(1), value(0)}));
}

TEST_CASE("save_dcp: bad inputs leave the folder untouched") {
  const fs::path dir = pthio_test::scratch_dir() / "dcp_bad";
  auto t = arange(pthio::dtype::float32, {2});
  auto kind_of = [&](const value& root, const pthio::dcp_save_options& o = {}) {
    try {
      pthio::save_dcp(dir, root, o);
    } catch (const pthio::error& e) {
      return e.kind();
    }
    return pthio::errc::io;  // not reached when the call throws as it should
  };
  CHECK(kind_of(value::make_list({value(t)})) == pthio::errc::invalid_argument);
  CHECK(kind_of(value(t)) == pthio::errc::invalid_argument);
  CHECK_FALSE(fs::exists(dir));
  // flatten_state_dict's "duplicated flatten key"
  fs::create_directories(dir);
  pthio_test::write_bytes(dir / ".metadata", {std::byte{1}});
  CHECK(kind_of(dict_of({{"a.b", t}, {"a", dict_of({{"b", t}})}})) ==
        pthio::errc::invalid_argument);
  CHECK(kind_of(dict_of({{"1", t}, {1, t}})) == pthio::errc::invalid_argument);
  for (const char* name : {"", "../x.distcp", "a/b.distcp", ".metadata", "__0.metadata"}) {
    pthio::dcp_save_options o;
    o.data_file = name;
    CHECK_MESSAGE(kind_of(dict_of({{"a", t}}), o) == pthio::errc::invalid_argument, name);
  }
  CHECK(names_in(dir) == std::set<std::string>{".metadata"});
  CHECK(fs::file_size(dir / ".metadata") == 1);
}

TEST_CASE("save_dcp: an earlier checkpoint's files are replaced, other files kept") {
  const fs::path dir = pthio_test::scratch_dir() / "dcp_stale";
  fs::create_directories(dir);
  for (const char* name : {".metadata", "__0.metadata", "__1.metadata", "__0_0.distcp",
                           "__1_0.distcp", "__0_1.distcp", "notes.txt"})
    pthio_test::write_bytes(dir / name, {std::byte{7}});
  pthio::dcp_save_options o;
  o.zstd = true;
  auto t = arange(pthio::dtype::float32, {64});
  pthio::save_dcp(dir, dict_of({{"t", t}, {"n", 3}}), o);
  CHECK(names_in(dir) == std::set<std::string>{".metadata", "__0_0.distcp", "notes.txt"});
  auto m = parse_metadata(dir);
  const value& storage = field(m.root, md + "Metadata", "storage_data");
  REQUIRE(storage.as_dict().size() == 2);
  for (const auto& [index, info] : storage.as_dict().entries()) {
    const value* td = info.as_object().state.find("transform_descriptors");
    REQUIRE(td != nullptr);
    CHECK(*td == value::make_list({value("stream.zstd/1")}));
    const auto fqn = index.as_object().state.find("fqn")->as_str();
    CHECK(load_blob(dir, info) == (fqn == "t" ? value(t) : value(3)));
  }
  // zstd frames: the file starts with the frame magic.
  const auto bytes = pthio_test::read_bytes(dir / "__0_0.distcp");
  REQUIRE(bytes.size() > 4);
  CHECK(bytes[0] == std::byte{0x28});
  CHECK(bytes[3] == std::byte{0xfd});
}

TEST_CASE("save_dcp: a failure part way leaves no temporary and no .metadata") {
  const fs::path dir = pthio_test::scratch_dir() / "dcp_fail";
  // A lazy checkpoint's placeholders have no bytes: save_dcp without the checkpoint cannot write
  // them (convert can: it reads them from the file).
  const fs::path src = pthio_test::scratch_dir() / "dcp_fail_src.pth";
  pthio::save(src, dict_of({{"a", arange(pthio::dtype::float32, {8})}, {"b", 2}}));
  auto lazy = pthio::load_checkpoint(src, pthio_test::cpu_options(pthio::load_mode::lazy));
  REQUIRE(lazy.is_lazy());
  fs::create_directories(dir);
  pthio_test::write_bytes(dir / ".metadata", {std::byte{1}});
  CHECK_THROWS_AS(pthio::save_dcp(dir, lazy.root), pthio::error);
  CHECK(names_in(dir).empty());

  // convert reads them, one at a time.
  pthio::convert_options co;
  co.to = pthio::checkpoint_format::dcp;
  auto r = pthio::convert(lazy, dir, co);
  CHECK(r.tensors == 1);
  REQUIRE(r.files.size() == 2);
  CHECK(r.files[1] == dir / ".metadata");
  CHECK(names_in(dir) == std::set<std::string>{".metadata", "__0_0.distcp"});
  auto m = parse_metadata(dir);
  for (const auto& [index, info] :
       field(m.root, md + "Metadata", "storage_data").as_dict().entries())
    if (index.as_object().state.find("fqn")->as_str() == "a")
      CHECK(load_blob(dir, info) == value(arange(pthio::dtype::float32, {8})));
  co.max_shard_size = 100;
  CHECK_THROWS_AS(pthio::convert(lazy, dir, co), pthio::error);
}
