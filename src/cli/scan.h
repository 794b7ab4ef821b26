// The command's scan, diff and convert subcommands.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "pthio/checkpoint.hpp"
#include "pthio/scan.hpp"

namespace pthio::cli {

struct usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// scan's two renderings: --json (docs/cli.md) and the text one.
std::string scan_json(const scan_report& r);
std::string scan_text(const scan_report& r);

// --state-dict [KEY]: a command sees the model's state dict (extract_state_dict, under torch's
// names) instead of the whole file.
struct view_options {
  bool state_dict = false;
  std::string key;  // the entry holding the model; "" lets extract_state_dict look
};
// Loads `file`; with view.state_dict, the root becomes the state dict as an OrderedDict with its
// `_metadata`, as torch.save(model.state_dict()) would write it.
checkpoint open_checkpoint(const std::string& file, const load_options& options,
                           const view_options& view);

// Both stream: with lazy options, tensors are read one (diff: one pair) at a time.
// diff ends with "N equal, M differ, K only in A, L only in B"; with `json`, one object instead
// (docs/cli.md).
// `progress`: show progress on stderr (progress::wanted).
int cmd_diff(const std::vector<std::string>& files, double atol, double rtol,
             const load_options& options, const view_options& view, bool json = false,
             bool progress = false);
// max_shard_size: "" for one file, else as parse_shard_size reads it (OUT is then a folder).
int cmd_convert(const std::vector<std::string>& files, const std::string& to,
                const std::string& max_shard_size, const load_options& options,
                const view_options& view, bool progress = false);

}  // namespace pthio::cli
