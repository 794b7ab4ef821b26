// pthio — converting a checkpoint to another file, streaming.
//
// convert() loads its input lazily (load_mode::lazy: the pickle or header only) and writes the
// output tensor by tensor: each storage record is read just before it is written and released
// after, so peak memory is the largest storage (the largest tensor, for safetensors output) plus
// a fixed allowance, not the file. This holds for .pth (zip) and TorchScript archives, safetensors
// files and Hugging Face sharded indexes over them. A legacy file (torch < 1.6) is one stream
// whose storages follow the pickle, so it loads eagerly whatever the mode: converting one holds
// the whole checkpoint in memory.
//
// The .pth written is byte for byte what save() writes for the eagerly loaded root (with the same
// save_options, serialization_id included): storages shared by several tensors are written once,
// with the location map_location gave them. Safetensors output is what save_safetensors() writes
// with drop_non_tensors; tensors that shared a storage are written as separate copies.
//
// Sharded output (max_shard_size > 0) is laid out as transformers' save_pretrained lays it out, in
// the folder `out` (created if missing): shards model-00001-of-0000N.safetensors (or
// pytorch_model-00001-of-0000N.bin for .pth) and the index model.safetensors.index.json (or
// pytorch_model.bin.index.json), {"metadata": {"total_size": N}, "weight_map": {name: shard}} with
// sorted keys and two-space indents, as json.dumps(..., indent=2, sort_keys=True) writes it. When
// everything fits in one shard, the single file model.safetensors (pytorch_model.bin) is written
// and no index, as save_pretrained does. Shards are filled as huggingface_hub's
// split_torch_state_dict_into_shards fills them: tensors in the file's order (key paths as
// visit_tensors spells them); a new shard starts when the next tensor would take the current one
// past max_shard_size; a tensor larger than max_shard_size alone in its own shard. For .pth, a
// tensor's size is its storage's, tensors sharing a storage go into the shard of the first of them
// and the storage counts once; for safetensors a tensor's size is its own bytes. total_size is the
// sum of those sizes. Each shard is a flat {key path: tensor} dict (.pth: a plain dict of
// tensors, as torch.save(shard) writes it; safetensors: with __metadata__ {"format": "pt"}), and
// values that are not tensors are left out (convert_result::dropped).
//
// DCP output (to == checkpoint_format::dcp) is the folder `out` as save_dcp() (dcp.hpp) writes it:
// a single rank's torch.distributed.checkpoint folder, non-tensor values kept. Each tensor is read
// just before its blob is written and released after (peak memory: the largest tensor). Files of
// an earlier checkpoint in the folder are replaced; max_shard_size must be 0.
//
// Every file is written atomically (a temporary beside it, renamed over it when complete); a
// sharded output's index is written last, after every shard is in place. Errors are those of
// load_checkpoint, save and save_safetensors, with the output file's name; invalid_argument for
// options that make no sense (an output format other than zip or safetensors, two tensors with one
// key path in safetensors or sharded output).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/dcp.hpp"
#include "pthio/export.hpp"

namespace pthio {

struct convert_options {
  // checkpoint_format::zip (a .pth as torch.save writes it), checkpoint_format::safetensors or
  // checkpoint_format::dcp (a torch.distributed.checkpoint folder).
  checkpoint_format to = checkpoint_format::zip;
  // 0: one file at `out`. Otherwise the largest shard size in bytes (see above), `out` a folder.
  std::uint64_t max_shard_size = 0;
  // .pth output: layout, archive name (empty: each file's stem), serialization id, CRC-32s.
  // `format` is not used: the output is the zip format.
  save_options pth;
  // DCP output: zstd frames, the data file's name.
  dcp_save_options dcp;
  // Told the bytes written so far, over every file of the output, as they are written (a
  // progress display). For DCP output, dcp.on_progress is used instead when set.
  std::function<void(std::uint64_t written)> on_progress;
};

struct convert_result {
  // written, in order (a sharded output's index last; DCP: the data file, then .metadata)
  std::vector<std::filesystem::path> files;
  std::size_t tensors = 0;  // tensors written
  // Key paths and type names of values left out because they are not tensors (safetensors and
  // sharded output).
  std::vector<std::pair<std::string, std::string>> dropped;
  // safetensors output: groups of tensors that shared a storage, each written as its own copy.
  std::vector<std::vector<std::string>> shared;
  std::uint64_t total_size = 0;  // sharded output: the index's metadata.total_size
};

// Loads `in` with `load` in lazy mode (load.mode is overridden) and converts it.
PTHIO_API convert_result convert(const std::filesystem::path& in, const std::filesystem::path& out,
                                 const convert_options& options = {}, load_options load = {});
// Converts an already loaded checkpoint: streaming when it is lazy (its root may have been
// replaced by part of itself, such as extract_state_dict(...).to_value(): placeholders are read
// from `in`'s records), else written from memory.
PTHIO_API convert_result convert(const checkpoint& in, const std::filesystem::path& out,
                                 const convert_options& options = {});

// A shard size as transformers' convert_file_size_to_int reads it: digits then a unit, "5GB"
// (decimal: KB, MB, GB = 10^3, 10^6, 10^9 bytes), "500MiB" (binary: KiB, MiB, GiB), units in any
// case except that a lowercase final "b" means bits ("5Gb" is 5*10^9/8 bytes); digits alone are
// bytes. Throws invalid_argument for anything else, for 0 and for sizes past 2^64.
PTHIO_API std::uint64_t parse_shard_size(std::string_view text);

}  // namespace pthio
