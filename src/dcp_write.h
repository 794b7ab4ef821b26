// save_dcp's streaming form, for convert (src/convert.cpp).
#pragma once

#include <cstddef>
#include <filesystem>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/dcp.hpp"
#include "pthio/value.hpp"

namespace pthio::detail {

struct dcp_write_result {
  std::vector<std::filesystem::path> files;  // the data file, then .metadata
  std::size_t tensors = 0;                   // tensor items (TensorStorageMetadata)
  std::size_t values = 0;                    // other items (BytesStorageMetadata)
};

// save_dcp with the tensors of `root` read from `source` when it is lazy: each tensor item is read
// (checkpoint::load_elements) just before its blob is written and released after, and a
// non-tensor item holding placeholders is written with their records read in turn, so at most one
// tensor is in memory at a time. `source` may be null (root is loaded).
dcp_write_result save_dcp(const std::filesystem::path& dir, const value& root,
                          const dcp_save_options& options, const checkpoint* source);

}  // namespace pthio::detail
