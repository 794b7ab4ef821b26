// pthio — torch.distributed.checkpoint (DCP) folders, read and written, without torch or ranks.
//
// A DCP checkpoint is a folder that the ranks of a job wrote together:
//   .metadata            a pickle (protocol 4, pickle.dump) of
//                        torch.distributed.checkpoint.metadata.Metadata: for every flat key
//                        ("model.layers.0.weight") its TensorStorageMetadata (dtype, size, the
//                        chunks each rank saved: offsets and sizes per dimension) or
//                        BytesStorageMetadata (a non-tensor value); planner_data, the nested path
//                        of every flat key; storage_data, where each chunk's bytes are
//                        (filesystem._StorageInfo: relative path, offset, length, transforms)
//   __R.metadata         the same, one per rank, when saved with use_collectives=False (torch 2.9+)
//   __R_I.distcp         data files: each chunk and each non-tensor value is a complete torch.save
//                        zip blob at [offset, offset + length); "stream.zstd/1" wraps the blob in
//                        a zstd frame; with SerializationFormat.SAFETENSORS a file holds one
//                        safetensors blob whose DCP_SHARDING_INFO names each tensor's chunk
// Hugging Face's HuggingFaceStorageWriter folders (safetensors files whose __metadata__ has
// DCP_SHARDING_INFO "saved_offsets", as under its sharded/ folder) load the same way, chunks
// gathered from every *.safetensors file; a folder with a model.safetensors.index.json (or any
// *.index.json) loads as that index (sharded.hpp).
//
// The .metadata pickle is data, never code: only the classes named above (and torch.Size, dtypes,
// torch.strided, pathlib paths) are recognised, each with the arguments and state torch gives
// it; any other global is corrupt_checkpoint. Loading gives the nested state dict
// torch.distributed.checkpoint.format_utils.dcp_to_torch_save would save: keys in .metadata's
// order, nested along planner_data (str keys make dicts, int keys lists), each tensor contiguous
// with its chunks assembled, requires_grad false; non-tensor values are loaded from their blobs
// (options.strict applies torch's weights-only allowlist to them).
//
// Checked (corrupt_checkpoint, naming the key, the chunk and the file): the chunks of a tensor
// tile it exactly (no gap, no overlap, none outside it); every chunk has storage data; its file
// exists inside the folder and [offset, offset + length) lies inside it; the blob holds one tensor
// of the chunk's sizes and the tensor's dtype; a transform pthio does not know is unsupported.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/dtype.hpp"
#include "pthio/export.hpp"
#include "pthio/value.hpp"

namespace pthio {

// Where one chunk's (or one non-tensor value's) bytes are.
struct dcp_storage {
  std::string relative_path;            // the data file, relative to the folder
  std::uint64_t offset = 0;             // the blob's first byte in that file
  std::uint64_t length = 0;             // its length (SAFETENSORS format: the tensor's bytes)
  std::vector<std::string> transforms;  // "stream.zstd/1"; empty: none
};

struct dcp_chunk {
  std::vector<std::int64_t> offsets;  // where the chunk starts in the tensor, per dimension
  std::vector<std::int64_t> sizes;    // its extent, per dimension
  dcp_storage storage;
};

struct dcp_item {
  std::string fqn;          // the flat key
  std::vector<value> path;  // planner_data's nested path (str or int parts); empty: [fqn]
  bool is_tensor = false;   // false: a non-tensor value (BytesStorageMetadata)
  pthio::dtype dtype = dtype::float32;
  std::vector<std::int64_t> size;  // the whole tensor's shape
  bool requires_grad = false;      // as saved; loading gives false, as torch's conversion does
  std::vector<dcp_chunk> chunks;   // tensors: in .metadata's order; values: one, its blob
};

// What the .metadata file(s) say, checked.
struct dcp_metadata {
  std::vector<dcp_item> items;  // in .metadata's order
  std::string version;          // Metadata.version ("" when None)
  // The files that described it: ".metadata", or the "__R.metadata" files merged (rank order).
  std::vector<std::string> metadata_files;
  bool safetensors_blobs = false;  // SerializationFormat.SAFETENSORS or a Hugging Face folder
};

// True when `path` is a folder holding a .metadata, __R.metadata files or (and no *.index.json)
// *.safetensors files, read as Hugging Face's DCP reader reads them, or is such a .metadata file
// itself.
PTHIO_API bool is_dcp(const std::filesystem::path& path);

// Parses one .metadata pickle. `name` is used in error messages. Throws corrupt_checkpoint (a
// global outside the DCP classes, a structure torch would not write), corrupt_pickle,
// limit_exceeded.
PTHIO_API dcp_metadata read_dcp_metadata(std::span<const std::byte> bytes,
                                         const std::string& name = ".metadata");

// Reads the metadata of the folder at `path` (or of the folder of a .metadata file).
PTHIO_API dcp_metadata read_dcp_folder_metadata(const std::filesystem::path& path);

// One blob of a folder: a tensor chunk's or a value's bytes (what verify and scan read).
struct dcp_blob {
  std::string what;  // "chunk 0 of \"model.w\"", "value \"epoch\""
  std::string fqn;
  bool tensor = false;
  dcp_storage storage;
  // The most a zstd frame may decompress to: a chunk's elements plus 4 MiB of pickle and zip
  // structure; a value's blob 1 GiB or 64 times its compressed size.
  std::uint64_t max_bytes = 0;
};
PTHIO_API std::vector<dcp_blob> dcp_blobs(const dcp_metadata& metadata);

// A blob's bytes as torch reads them: its range of its file (checked to lie inside it), a zstd
// frame decompressed (to at most blob.max_bytes: more is corrupt_checkpoint for a chunk,
// limit_exceeded for a value; the memory grows with what the frame really holds, whatever size it
// declares). Throws corrupt_checkpoint, unsupported (an unknown transform), io.
PTHIO_API byte_source read_dcp_blob(const std::filesystem::path& folder, const dcp_blob& blob);

// True for the globals a .metadata pickle may name (torch's metadata classes, torch.Size, dtypes,
// torch.strided's _get_layout, pathlib paths): what scan judges a metadata pickle by.
PTHIO_API bool is_dcp_metadata_global(std::string_view module, std::string_view name);

// load_checkpoint(path) calls this for a DCP folder (or a path to its .metadata). All three modes:
// lazy lists every tensor from the metadata alone (load_tensor(key) reads that tensor's chunks,
// load_slice only the chunks the slice meets), mmap views a single-chunk tensor stored without
// transform in the file's map, eager (and mmap otherwise) assembles each tensor in memory.
// Non-tensor values are read from their blobs in every mode (a tensor inside one, lazily too).
// Data files are opened only while something is read from them (at most 16 at a time), so a
// folder of thousands of ranks' files needs no more file descriptors. A folder holding an
// *.index.json loads as that index (load_sharded). checkpoint::format is checkpoint_format::dcp.
// Limits: a zstd frame decompresses to at most its chunk's size plus 4 MiB (a value's: 1 GiB or
// 64 times its compressed size); the metadata's items and chunks to the pickle's memory budget
// (64 bytes per byte of it, at least load_options::limits.max_memory); lists nested along
// planner_data to as many slots as the checkpoint has items.
PTHIO_API checkpoint load_dcp(const std::filesystem::path& path, const load_options& options = {});

struct dcp_save_options {
  // Wrap every blob in a zstd frame ("stream.zstd/1"), as torch's ZStandard extension does.
  bool zstd = false;
  // The data file's name in the folder.
  std::string data_file = "__0_0.distcp";
  // Told the bytes of the data file written so far, as they are written (a progress display).
  std::function<void(std::uint64_t written)> on_progress;
};

// Writes `root` (a dict, nested as torch's flatten_state_dict walks it) as the single-rank folder
// torch.distributed.checkpoint's FileSystemWriter writes: every tensor one chunk (a torch.save
// blob of it, contiguous), every other leaf value a torch.save blob, .metadata last (the
// checkpoint is complete once it exists). `dir` is created if missing; files of an earlier
// checkpoint there are replaced: its .metadata is removed first, then its __R.metadata and *.distcp
// files (other files stay), so the folder holds no checkpoint until the new .metadata is renamed
// into place; the data file is written under a temporary name, fsync'd and renamed, and a failure
// leaves no temporary. The layout is described in docs/format.md. Throws invalid_argument (root
// not a dict, a duplicate flat key, a data_file that is not a plain file name), unsupported (a
// value torch.save cannot hold, such as a lazy checkpoint's placeholder: convert() reads those),
// io.
PTHIO_API void save_dcp(const std::filesystem::path& dir, const value& root,
                        const dcp_save_options& options = {});

}  // namespace pthio
