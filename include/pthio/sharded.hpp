// pthio — sharded checkpoints as Hugging Face lays them out: an index file
// (`pytorch_model.bin.index.json`, `model.safetensors.index.json`) naming, for every tensor, the
// shard file that holds it:
//
//   {"metadata": {"total_size": 123456},
//    "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", ...}}
//
// Shards are torch files or safetensors files, named relative to the index's folder. Loading an
// index (load_checkpoint(path) does it for any file whose first non-blank byte is '{') loads every
// shard named once, in order of first mention, and gives one checkpoint whose root is an
// OrderedDict of every tensor, in weight_map order; `metadata`, when present, is the root dict's
// attribute "metadata". The format is the first shard's; a lazy load reads tensors from their
// shards.
//
// Checked: the index is UTF-8 JSON, an object with a "weight_map" object of str -> str (other
// members are ignored, as transformers ignores them); a tensor name is listed once; a shard path is
// relative and has no ".." part (an index cannot reach files outside its folder); every tensor the
// weight_map lists is in the shard it names. Tensors a shard holds but the weight_map does not
// list are kept, after the listed ones, as transformers keeps them (it loads each shard whole);
// sharded_checkpoint::unlisted names them. A tensor found in two shards is an error. Index errors
// are pthio::error(corrupt_checkpoint) with the offset in the index file; errors loading a shard
// (io, corrupt_zip, corrupt_safetensors ...) propagate as that file's loader reports them.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/export.hpp"

namespace pthio {

struct sharded_index {
  value metadata;  // the index's "metadata" member as values (None when absent)
  std::vector<std::pair<std::string, std::string>>
      weight_map;                   // tensor name -> shard path, in file order
  std::vector<std::string> shards;  // distinct shard paths, in order of first mention
};

// True when the first byte that is not JSON whitespace is '{' (an index, not a checkpoint).
PTHIO_API bool is_sharded_index(std::span<const std::byte> bytes) noexcept;

// Parses and checks an index. `name` is used in error messages.
PTHIO_API sharded_index read_sharded_index(std::span<const std::byte> bytes,
                                           const std::string& name = "index");

struct sharded_checkpoint {
  checkpoint merged;
  sharded_index index;
  std::vector<std::string> unlisted;  // tensors found in shards but absent from weight_map
};

// Loads the index at `index_file` and all its shards with `options`.
PTHIO_API sharded_checkpoint load_sharded(const std::filesystem::path& index_file,
                                          const load_options& options = {});

}  // namespace pthio
