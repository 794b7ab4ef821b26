// pthio — state dicts: the name -> tensor maps models are saved as, and loading them into a model
// with torch's strict / non-strict semantics.
//
// A state_dict is ordered (insertion order, like the OrderedDict torch saves) and may carry the
// `_metadata` attribute torch attaches (per-module versions), which to_value() writes back.
// load_state_dict(target, source) copies source tensors into the target's tensors in place (the
// target's tensors are the model's parameters and buffers, so every view of them sees the new
// values). It checks everything first: in strict mode any missing key, unexpected key or shape
// mismatch throws pthio::error(errc::mismatch) with torch's wording and leaves the target
// untouched; non-strict mode ignores missing and unexpected keys, loads every key that matches and
// returns the report, but still throws mismatch (target untouched) for a shape or dtype mismatch,
// as torch does.
//
// Old BatchNorm checkpoints: a checkpoint saved before torch 0.4.1 has no `num_batches_tracked`,
// and torch (_NormBase._load_from_state_dict) fills it in instead of calling it missing when the
// module's `_metadata` version is absent or below 2; at version 2 or above it is missing. pthio
// does the same for a target key `<prefix>num_batches_tracked` whose `<prefix>running_mean` and
// `<prefix>running_var` are also in the target (pthio sees keys, not module classes, so any module
// holding those three buffers counts as a BatchNorm): absent from the source, it is not missing,
// is left as the target has it (torch 2.x keeps the module's own; torch 1.13 wrote 0) and is
// listed in load_report::kept. The versions are the source's `metadata`, its module names renamed
// by the key remapping as the keys are (so "module.bn" with "module." stripped is "bn"); a module
// with no entry counts as old, so a DDP-prefixed checkpoint loaded without stripping leaves every
// BatchNorm counter filled in and reports the rest, as torch does.
//
// Ownership: a state_dict holds tensor handles, not copies. from_value() and extract_state_dict()
// share the checkpoint's storages (the tensors keep them, and an mmap, alive); set() stores the
// handle it is given. Errors are pthio::error: mismatch for absent keys and wrong layouts,
// invalid_argument for bad arguments.
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pthio/export.hpp"
#include "pthio/value.hpp"

namespace pthio {

class PTHIO_API state_dict {
 public:
  using entry = std::pair<std::string, tensor>;

  state_dict() = default;

  // Inserts `name`, or replaces its tensor keeping its position.
  void set(std::string name, tensor t);
  const tensor* find(std::string_view name) const;
  tensor* find(std::string_view name);
  // The tensor; throws pthio::error(mismatch) naming the key when absent.
  const tensor& at(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  bool erase(std::string_view name);
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  const std::vector<entry>& entries() const noexcept { return entries_; }
  std::vector<std::string> keys() const;
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

  // The `_metadata` torch attaches to a module's state_dict (None when absent): {module name:
  // {"version": int, ...}}; load_state_dict reads the versions of the source's.
  value metadata;

  // Every tensor under `v`, keys joined with '.' (nested dicts, lists and tuples, as ls lists
  // them); non-tensor values are skipped. Keeps `_metadata` of an OrderedDict root.
  static state_dict from_value(const value& v);
  // An OrderedDict name -> tensor, with `_metadata` when set: as model.state_dict() gives it,
  // plain tensors (requires_grad as each tensor has it), not Parameters.
  value to_value() const;

 private:
  std::vector<entry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

// Models saved whole. torch.save(model) pickles the nn.Module object itself: its class (which
// only the author's code defines) and its attribute dict, whose `_parameters`, `_buffers` and
// `_modules` dicts hold the weights. pthio reads them without running anything.
//
// Whether `v` is such a module: an object whose state holds `_parameters`, `_buffers` and
// `_modules` dicts (torch.nn.Module's own attributes, whatever the class).
PTHIO_API bool is_module(const value& v);

// What module.state_dict() gives for the default nn.Module.state_dict: each module's parameters,
// then its buffers, then each child's entries under "<child>.", depth first in the pickle's
// order; None parameters, buffers and children left out, as are buffers named in the module's
// `_non_persistent_buffers_set`. The tensors are the file's (shared storages stay shared; a
// submodule or parameter held under two names appears under both), detached: requires_grad is
// false. `metadata` is torch's `_metadata`: {module name: {"version": v}}, "" the root, v 2 for
// torch's batch and instance norms and 1 otherwise.
//
// Nothing is executed, so what a class's own code would add cannot be seen: a class that overrides
// state_dict or _save_to_state_dict, defines get_extra_state (torch adds "<prefix>_extra_state"),
// registers state-dict hooks, or sets its own `_version`, gets the default answer here.
// Throws mismatch when `module` is not a module, unsupported when a parameter or buffer is not a
// tensor or a child is not a module, limit_exceeded when shared submodules would write out more
// than the expansion bound of visit_tensors.
PTHIO_API state_dict module_state_dict(const value& module);

// The model's state dict inside a checkpoint: the value under `key` when given (a dict, or a
// module whose state dict is taken); otherwise, the root's state dict when the root is a module,
// every tensor of a TorchScript root (a __torch__ class: its tensor attributes under their
// attribute paths, torch's names, in the archive's order, which may differ from state_dict()'s),
// the root itself when it holds tensors at its top level, else the first of "model_state_dict",
// "state_dict", "model", "module", "net", "network", "ema" that is a dict or a module (so
// {"model": None, "ema": <module>} gives the ema's). Throws mismatch when none.
PTHIO_API state_dict extract_state_dict(const value& root, std::string_view key = {});

struct shape_mismatch {
  std::string key;
  shape_t checkpoint_shape;  // in the source
  shape_t model_shape;       // in the target
};

struct PTHIO_API load_report {
  std::vector<std::string> missing;     // in the target, not in the source (after remapping)
  std::vector<std::string> unexpected;  // in the source, not in the target
  std::vector<shape_mismatch> mismatched;
  std::vector<std::string> dtype_mismatched;  // differing dtypes, refused (convert_dtypes off)
  std::vector<std::string> loaded;            // keys copied into the target
  // In the target, absent from the source and left as they are, not missing: the
  // num_batches_tracked of BatchNorms saved before torch 0.4.1 (see the top of this file).
  std::vector<std::string> kept;
  bool ok() const noexcept {
    return missing.empty() && unexpected.empty() && mismatched.empty() && dtype_mismatched.empty();
  }
  // torch's wording: "Missing key(s) in state_dict: "a", "b". ", "Unexpected key(s) in
  // state_dict: ... ", "size mismatch for fc.weight: copying a param with shape
  // torch.Size([10, 20]) from checkpoint, the shape in current model is torch.Size([10, 30]).",
  // one per line after "Error(s) in loading state_dict for <model>:".
  std::string message(std::string_view model_name = "Module") const;
};

// How source keys are renamed before matching, applied in this order.
struct PTHIO_API key_remap {
  bool strip_data_parallel = false;  // drop a leading "module." (DataParallel / DDP)
  std::string strip_prefix;          // drop this prefix where present
  std::string add_prefix;            // then prepend this to every key
  std::vector<std::pair<std::regex, std::string>> rename;  // then std::regex_replace each pattern
  std::string apply(std::string key) const;
};

struct load_state_dict_options {
  bool strict = true;
  key_remap remap;
  // Convert source tensors to the target's dtype (e.g. bfloat16 -> float32); off: a dtype
  // difference is reported like a shape mismatch.
  bool convert_dtypes = false;
  // The model's name in strict-mode error messages ("Error(s) in loading state_dict for Net").
  std::string model_name = "Module";
};

// Copies into the target's tensors in place, with tensor::copy_from: CPU tensors, and in a CUDA
// build tensors on CUDA devices (sources on any of them); throws mismatch as described at the top,
// invalid_argument when remapping sends two source keys to one name, unsupported for a target
// tensor on another device (or on a GPU without CUDA support): all these before anything is
// copied. A failure while copying (a device error, out of device memory) leaves the targets
// copied before it updated.
PTHIO_API load_report load_state_dict(state_dict& target, const state_dict& source,
                                      const load_state_dict_options& options = {});

// ---------------------------------------------------------------------------------------------
// Optimizer state dicts, in torch's layout: {'state': {index: {name: tensor or number}},
// 'param_groups': [{'lr': ..., ..., 'params': [index, ...]}]}.

struct PTHIO_API optimizer_state {
  // Per parameter index: "step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer"...
  std::map<std::int64_t, std::vector<std::pair<std::string, value>>> state;
  // Each group's fields in torch's order, "params" last.
  std::vector<std::vector<std::pair<std::string, value>>> param_groups;

  // Reads torch's layout; throws mismatch when `v` is not {'state': dict of index -> dict of str,
  // 'param_groups': list of dicts with str keys}. The tensors are shared with `v`, not copied.
  static optimizer_state from_value(const value& v);
  value to_value() const;
  // The tensor state[index][name]; throws mismatch when absent or not a tensor.
  const tensor& tensor_at(std::int64_t index, std::string_view name) const;
  // A field of group g; nullptr when absent.
  const value* group_field(std::size_t g, std::string_view name) const;
  // Sets a field of group g (replacing it in place, or inserting it before "params");
  // invalid_argument when there is no group g.
  void set_group_field(std::size_t g, std::string_view name, value v);
  // state[index][name], tensor or not ("step" is a number before torch 1.12); nullptr when absent.
  const value* state_field(std::int64_t index, std::string_view name) const;
};

struct adam_options {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
  bool decoupled = false;  // AdamW
};
struct sgd_options {
  double lr = 1e-2;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};
// A param group with every field torch 2.x writes for these optimizers, params 0..n-1.
PTHIO_API std::vector<std::pair<std::string, value>> adam_param_group(const adam_options& o,
                                                                      std::int64_t n_params);
PTHIO_API std::vector<std::pair<std::string, value>> sgd_param_group(const sgd_options& o,
                                                                     std::int64_t n_params);

}  // namespace pthio
