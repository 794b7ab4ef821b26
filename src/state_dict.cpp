#include "pthio/state_dict.hpp"

#include <set>

#include "pthio/checkpoint.hpp"
#include "pthio/cuda.hpp"
#include "torch/internal.h"

namespace pthio {

// ---- state_dict ---------------------------------------------------------------------------------

void state_dict::set(std::string name, tensor t) {
  if (auto it = index_.find(name); it != index_.end()) {
    entries_[it->second].second = std::move(t);
    return;
  }
  index_.emplace(name, entries_.size());
  entries_.emplace_back(std::move(name), std::move(t));
}

const tensor* state_dict::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

tensor* state_dict::find(std::string_view name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const tensor& state_dict::at(std::string_view name) const {
  if (const tensor* t = find(name)) return *t;
  throw error(errc::mismatch, "state_dict has no key \"" + std::string(name) + "\"");
}

bool state_dict::erase(std::string_view name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  return true;
}

std::vector<std::string> state_dict::keys() const {
  std::vector<std::string> k;
  k.reserve(entries_.size());
  for (const auto& [name, t] : entries_) k.push_back(name);
  return k;
}

state_dict state_dict::from_value(const value& v) {
  state_dict sd;
  visit_tensors(v, [&](const std::string& key, const value& t) { sd.set(key, t.as_tensor()); });
  if (v.is_dict())
    if (const value* m = v.as_dict().attr("_metadata")) sd.metadata = *m;
  return sd;
}

value state_dict::to_value() const {
  value v = value::make_ordered_dict();
  auto& d = v.as_dict();
  for (const auto& [name, t] : entries_) d.set(value(name), value(t));
  if (!metadata.is_none()) d.attrs.emplace_back("_metadata", metadata);
  return v;
}

// ---- models saved whole ---------------------------------------------------------------------

namespace {

// The attribute dict of a pickled nn.Module (BUILD's state, or the dict of a (dict, slots) pair)
// when it holds `_parameters`, `_buffers` and `_modules` dicts; null otherwise.
const dict_object* module_attributes(const value& v) {
  if (!v.is_object()) return nullptr;
  const opaque_object& o = v.as_object();
  if (!o.has_state) return nullptr;
  const value* state = &o.state;
  if (state->is_tuple() && state->items().size() == 2 && state->items()[0].is_dict())
    state = &state->items()[0];
  if (!state->is_dict()) return nullptr;
  const dict_object& d = state->as_dict();
  for (const char* name : {"_parameters", "_buffers", "_modules"}) {
    const value* field = d.get(name);
    if (!field || !field->is_dict()) return nullptr;
  }
  return &d;
}

// The class attribute `_version` torch writes into `_metadata` for a module: 2 for torch's batch
// and instance norms (their _NormBase sets it; torch 1.13 and 2.x alike), 1 (nn.Module's) for
// every other class. A class of the file's own code that sets `_version` cannot be seen.
std::int64_t module_version(const global_ref& type) {
  if (type.module != "torch.nn.modules.batchnorm" && type.module != "torch.nn.modules.instancenorm")
    return 1;
  static const std::set<std::string, std::less<>> norms = {
      "BatchNorm1d",     "BatchNorm2d",        "BatchNorm3d",        "LazyBatchNorm1d",
      "LazyBatchNorm2d", "LazyBatchNorm3d",    "SyncBatchNorm",      "_BatchNorm",
      "_NormBase",       "_LazyNormBase",      "InstanceNorm1d",     "InstanceNorm2d",
      "InstanceNorm3d",  "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d",
      "_InstanceNorm"};
  return norms.count(type.name) ? 2 : 1;
}

std::string module_where(const std::string& prefix, const global_ref& type) {
  return "module " + (prefix.empty() ? std::string("(the root)") : "'" + prefix + "'") + " (" +
         type.qualified() + ")";
}

}  // namespace

bool is_module(const value& v) { return module_attributes(v) != nullptr; }

state_dict module_state_dict(const value& module) {
  if (!is_module(module))
    throw error(errc::mismatch,
                std::string("not a pickled nn.Module: a ") + std::string(module.type_name()) +
                    (module.is_object() ? " of class " + module.as_object().type.qualified() : "") +
                    " without _parameters, _buffers and _modules dicts in its state");
  // Shared submodules are visited once per name, as torch does: bound what that writes out.
  detail::check_expansion(module, "module state dict");
  state_dict sd;
  value metadata = value::make_ordered_dict();
  // torch's Module.state_dict, depth first: a module's `_metadata` entry, its parameters, its
  // persistent buffers, then each child under "<prefix><name>.".
  struct pending {
    const value* module;
    std::string prefix;
  };
  std::vector<pending> work{{&module, ""}};
  while (!work.empty()) {
    pending p = std::move(work.back());
    work.pop_back();
    const dict_object& attrs = *module_attributes(*p.module);
    const global_ref& type = p.module->as_object().type;
    value local = value::make_dict();
    local.as_dict().set(value("version"), value(module_version(type)));
    std::string name = p.prefix.empty() ? "" : p.prefix.substr(0, p.prefix.size() - 1);
    metadata.as_dict().set(value(name), std::move(local));

    std::set<std::string, std::less<>> transient;  // _non_persistent_buffers_set
    if (const value* np = attrs.get("_non_persistent_buffers_set"); np && np->is_object())
      for (const value& item : np->as_object().list_items)
        if (item.is_str()) transient.insert(item.as_str());

    auto take = [&](const char* field, bool buffers) {
      for (const auto& [k, v] : attrs.get(field)->as_dict().entries()) {
        if (!k.is_str())
          throw error(errc::unsupported, module_where(p.prefix, type) + ": " + field +
                                             " has a key of type " + std::string(k.type_name()));
        if (v.is_none() || (buffers && transient.count(k.as_str()))) continue;
        if (!v.is_tensor())
          throw error(errc::unsupported, module_where(p.prefix, type) + ": " + field + "['" +
                                             k.as_str() + "'] is a " + std::string(v.type_name()) +
                                             ", not a tensor");
        tensor t = v.as_tensor();  // detached, as state_dict() gives it
        t.set_requires_grad(false);
        sd.set(p.prefix + k.as_str(), std::move(t));
      }
    };
    take("_parameters", false);
    take("_buffers", true);

    const auto& children = attrs.get("_modules")->as_dict().entries();
    for (auto it = children.rbegin(); it != children.rend(); ++it) {
      const auto& [k, child] = *it;
      if (child.is_none()) continue;
      if (!k.is_str() || !is_module(child))
        throw error(errc::unsupported,
                    module_where(p.prefix, type) + ": child " +
                        (k.is_str() ? "'" + k.as_str() + "'" : std::string(k.type_name())) +
                        " is not a pickled nn.Module (a " +
                        (child.is_object() ? child.as_object().type.qualified()
                                           : std::string(child.type_name())) +
                        ")");
      work.push_back({&child, p.prefix + k.as_str() + "."});
    }
  }
  sd.metadata = std::move(metadata);
  return sd;
}

namespace {

// A dict is a state dict as it is; a module gives its state_dict().
state_dict state_dict_of(const value& v) {
  return is_module(v) ? module_state_dict(v) : state_dict::from_value(v);
}

// A TorchScript module (class __torch__.*): its attributes are its parameters, buffers and
// submodules, by name.
bool is_script_module(const value& v) {
  return v.is_object() && v.as_object().type.module.starts_with("__torch__") &&
         v.as_object().has_state && v.as_object().state.is_dict();
}

}  // namespace

state_dict extract_state_dict(const value& root, std::string_view key) {
  if (!key.empty()) {
    const value* v = root.find(key);
    if (!v) throw error(errc::mismatch, "the checkpoint has no key \"" + std::string(key) + "\"");
    return state_dict_of(*v);
  }
  if (is_module(root)) return module_state_dict(root);
  if (is_script_module(root)) return state_dict::from_value(root);
  if (root.is_dict()) {
    for (const auto& [k, v] : root.as_dict().entries())
      if (v.is_tensor()) return state_dict::from_value(root);
    for (const char* name :
         {"model_state_dict", "state_dict", "model", "module", "net", "network", "ema"})
      if (const value* v = root.find(name); v && (v->is_dict() || is_module(*v)))
        return state_dict_of(*v);
  }
  throw error(errc::mismatch,
              "no state dict found: the root is not a model saved whole and holds no tensors, "
              "and it has no model_state_dict, state_dict, model, module, net, network or ema "
              "entry that is a dict or a model; name the key to use");
}

// ---- loading ------------------------------------------------------------------------------------

std::string key_remap::apply(std::string key) const {
  if (strip_data_parallel && key.starts_with("module.")) key.erase(0, 7);
  if (!strip_prefix.empty() && key.starts_with(strip_prefix)) key.erase(0, strip_prefix.size());
  if (!add_prefix.empty()) key.insert(0, add_prefix);
  for (const auto& [pattern, replacement] : rename)
    key = std::regex_replace(key, pattern, replacement);
  return key;
}

namespace {

std::string torch_size(const shape_t& s) { return "torch.Size(" + shape_string(s) + ")"; }

std::string quoted_list(const std::vector<std::string>& keys) {
  std::string out;
  for (std::size_t i = 0; i < keys.size(); ++i) out += (i ? ", \"" : "\"") + keys[i] + "\"";
  return out;
}

}  // namespace

std::string load_report::message(std::string_view model_name) const {
  // torch/nn/modules/module.py load_state_dict: missing first, then unexpected, then the rest.
  std::vector<std::string> msgs;
  if (!missing.empty())
    msgs.push_back("Missing key(s) in state_dict: " + quoted_list(missing) + ". ");
  if (!unexpected.empty())
    msgs.push_back("Unexpected key(s) in state_dict: " + quoted_list(unexpected) + ". ");
  for (const auto& m : mismatched)
    msgs.push_back("size mismatch for " + m.key + ": copying a param with shape " +
                   torch_size(m.checkpoint_shape) +
                   " from checkpoint, the shape in current model is " + torch_size(m.model_shape) +
                   ".");
  for (const auto& k : dtype_mismatched)
    msgs.push_back("dtype mismatch for " + k +
                   ": set convert_dtypes to convert the checkpoint's tensor.");
  if (msgs.empty()) return "";
  std::string out = "Error(s) in loading state_dict for " + std::string(model_name) + ":";
  for (const auto& m : msgs) out += "\n\t" + m;
  return out;
}

namespace {

// The keys of `source` no module of `target` claims, in the order torch reports them: torch walks
// the modules depth first (each module's prefix first seen in the target's key order) and, for
// each, lists the source keys under its prefix whose next name is neither one of its own
// parameters or buffers nor a child module (torch/nn/modules/module.py _load_from_state_dict).
std::vector<std::string> unexpected_keys(
    const state_dict& target, const std::vector<std::pair<std::string, const tensor*>>& source) {
  std::vector<std::string> modules{""};
  std::map<std::string, std::set<std::string>> local, children;
  std::set<std::string> known{""};
  for (const auto& [key, t] : target) {
    std::string prefix;
    std::size_t start = 0;
    for (std::size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
      std::string child = key.substr(start, dot - start);
      children[prefix].insert(child);
      prefix += child + ".";
      if (known.insert(prefix).second) modules.push_back(prefix);
      start = dot + 1;
    }
    local[prefix].insert(key.substr(start));
  }
  std::vector<std::string> out;
  for (const auto& m : modules)
    for (const auto& [key, t] : source) {
      if (!key.starts_with(m)) continue;
      std::string rest = key.substr(m.size());
      std::string name = rest.substr(0, rest.find('.'));
      if (!children[m].count(name) && !local[m].count(rest)) out.push_back(key);
    }
  return out;
}

// The "version" torch reads from a state dict's `_metadata` for each module (named without its
// trailing dot, "" the root), the module names renamed as the keys are: "module.bn" with
// "module." stripped is "bn", and "module" is the root, as torch 2.x's
// consume_prefix_in_state_dict_if_present renames them (a later entry replaces an earlier one that
// lands on the same name, as there). Modules without an entry, or whose entry has no int
// "version", are absent (torch: None).
using version_map = std::map<std::string, std::int64_t, std::less<>>;

version_map module_versions(const value& metadata, const key_remap& remap) {
  version_map out;
  if (!metadata.is_dict()) return out;
  for (const auto& [k, local] : metadata.as_dict().entries()) {
    if (!k.is_str()) continue;
    std::string name = k.as_str().empty() ? remap.apply("") : remap.apply(k.as_str() + ".");
    if (name.ends_with('.')) name.pop_back();
    const value* version = local.find("version");
    if (version && version->is_int())
      out.insert_or_assign(std::move(name), version->as_int());
    else
      out.erase(name);
  }
  return out;
}

// Whether torch fills in target key `key` rather than calling it missing: torch's
// _NormBase._load_from_state_dict (BatchNorm, SyncBatchNorm, InstanceNorm tracking running stats)
// puts a num_batches_tracked into the state dict when the checkpoint has none and the module's
// metadata version is absent or below 2 (the buffer came with version 2, torch 0.4.1). pthio sees
// no module classes, so a module is taken for one of these when the target holds its
// running_mean, running_var and num_batches_tracked.
bool filled_in_by_torch(const state_dict& target, std::string_view key,
                        const version_map& versions) {
  constexpr std::string_view leaf = "num_batches_tracked";
  if (!key.ends_with(leaf)) return false;
  std::string prefix(key.substr(0, key.size() - leaf.size()));
  if (!prefix.empty() && !prefix.ends_with('.')) return false;
  if (!target.contains(prefix + "running_mean") || !target.contains(prefix + "running_var"))
    return false;
  if (!prefix.empty()) prefix.pop_back();
  auto it = versions.find(prefix);
  return it == versions.end() || it->second < 2;
}

}  // namespace

load_report load_state_dict(state_dict& target, const state_dict& source,
                            const load_state_dict_options& options) {
  load_report report;
  // Remap source keys first; two source keys landing on one name is an error in the remap.
  std::vector<std::pair<std::string, const tensor*>> renamed;
  std::map<std::string, const tensor*, std::less<>> by_name;
  for (const auto& [key, t] : source) {
    std::string k = options.remap.apply(key);
    if (!by_name.emplace(k, &t).second)
      throw error(errc::invalid_argument,
                  "key remapping maps two checkpoint keys onto \"" + k + "\"");
    renamed.emplace_back(std::move(k), &t);
  }
  const auto versions = module_versions(source.metadata, options.remap);
  std::vector<std::pair<tensor*, const tensor*>> copies;
  for (auto& [k, dst] : const_cast<std::vector<state_dict::entry>&>(target.entries())) {
    auto it = by_name.find(k);
    if (it == by_name.end()) {
      // torch fills an old BatchNorm's counter in with the module's own (torch 2.x; 1.13 used 0):
      // the target keeps what it has.
      (filled_in_by_torch(target, k, versions) ? report.kept : report.missing).push_back(k);
      continue;
    }
    const tensor* src = it->second;
    if (dst.shape() != src->shape()) {
      report.mismatched.push_back({k, src->shape(), dst.shape()});
    } else if (dst.dtype() != src->dtype() && !options.convert_dtypes) {
      report.dtype_mismatched.push_back(k);
    } else {
      if (!dst.dev().is_cpu() && !(dst.dev().is_cuda() && cuda_built()))
        throw error(errc::unsupported,
                    "loading into " + dst.dev().str() + " tensors in place needs CUDA support");
      copies.emplace_back(&dst, src);
      report.loaded.push_back(k);
    }
  }
  report.unexpected = unexpected_keys(target, renamed);
  // Strict mode refuses before touching anything; non-strict ignores missing and unexpected keys
  // (torch's strict=False) but still refuses mismatched shapes, as torch does.
  bool refuse = options.strict ? !report.ok()
                               : (!report.mismatched.empty() || !report.dtype_mismatched.empty());
  if (refuse) {
    load_report shown = report;
    if (!options.strict) shown.missing.clear(), shown.unexpected.clear();
    throw error(errc::mismatch, shown.message(options.model_name));
  }
  // tensor::copy_from moves the bytes between devices where one of the two is a GPU.
  for (auto& [dst, src] : copies) dst->copy_from(*src);
  return report;
}

// ---- optimizers ---------------------------------------------------------------------------------

optimizer_state optimizer_state::from_value(const value& v) {
  const char* what = "optimizer state_dict";
  if (!v.is_dict())
    throw error(errc::mismatch,
                std::string(what) + " is a " + std::string(v.type_name()) + ", not a dict");
  optimizer_state o;
  const value* st = v.find("state");
  const value* groups = v.find("param_groups");
  if (!st || !st->is_dict() || !groups || !groups->is_list())
    throw error(errc::mismatch,
                std::string(what) + " needs a 'state' dict and a 'param_groups' list");
  for (const auto& [k, per] : st->as_dict().entries()) {
    if (!k.is_int() || !per.is_dict())
      throw error(errc::mismatch,
                  std::string(what) + ": state is keyed by parameter index, each a dict");
    auto& slot = o.state[k.as_int()];
    for (const auto& [name, val] : per.as_dict().entries()) {
      if (!name.is_str())
        throw error(errc::mismatch, std::string(what) + ": state names must be str");
      slot.emplace_back(name.as_str(), val);
    }
  }
  for (const auto& g : groups->as_list().items) {
    if (!g.is_dict())
      throw error(errc::mismatch, std::string(what) + ": each param group must be a dict");
    auto& fields = o.param_groups.emplace_back();
    for (const auto& [name, val] : g.as_dict().entries()) {
      if (!name.is_str())
        throw error(errc::mismatch, std::string(what) + ": param group keys must be str");
      fields.emplace_back(name.as_str(), val);
    }
  }
  return o;
}

value optimizer_state::to_value() const {
  value root = value::make_dict();
  value st = value::make_dict();
  for (const auto& [index, fields] : state) {
    value per = value::make_dict();
    for (const auto& [name, val] : fields) per.as_dict().set(value(name), val);
    st.as_dict().set(value(index), per);
  }
  std::vector<value> groups;
  for (const auto& fields : param_groups) {
    value g = value::make_dict();
    for (const auto& [name, val] : fields) g.as_dict().set(value(name), val);
    groups.push_back(g);
  }
  root.as_dict().set(value("state"), st);
  root.as_dict().set(value("param_groups"), value::make_list(std::move(groups)));
  return root;
}

const tensor& optimizer_state::tensor_at(std::int64_t index, std::string_view name) const {
  auto it = state.find(index);
  if (it != state.end())
    for (const auto& [n, v] : it->second)
      if (n == name && v.is_tensor()) return v.as_tensor();
  throw error(errc::mismatch, "optimizer state has no tensor '" + std::string(name) +
                                  "' for parameter " + std::to_string(index));
}

const value* optimizer_state::group_field(std::size_t g, std::string_view name) const {
  if (g >= param_groups.size()) return nullptr;
  for (const auto& [n, v] : param_groups[g])
    if (n == name) return &v;
  return nullptr;
}

void optimizer_state::set_group_field(std::size_t g, std::string_view name, value v) {
  if (g >= param_groups.size())
    throw error(errc::invalid_argument, "no param group " + std::to_string(g) + " (there are " +
                                            std::to_string(param_groups.size()) + ")");
  auto& fields = param_groups[g];
  for (auto& [n, old] : fields)
    if (n == name) {
      old = std::move(v);
      return;
    }
  auto at = fields.end();
  if (!fields.empty() && fields.back().first == "params") --at;
  fields.insert(at, {std::string(name), std::move(v)});
}

const value* optimizer_state::state_field(std::int64_t index, std::string_view name) const {
  auto it = state.find(index);
  if (it == state.end()) return nullptr;
  for (const auto& [n, v] : it->second)
    if (n == name) return &v;
  return nullptr;
}

namespace {

// torch's defaults are the int 0 for weight_decay and dampening; a set value is a float.
value number(double d) { return d == 0 ? value(0) : value(d); }

value param_indices(std::int64_t n) {
  std::vector<value> p;
  for (std::int64_t i = 0; i < n; ++i) p.emplace_back(i);
  return value::make_list(std::move(p));
}

}  // namespace

std::vector<std::pair<std::string, value>> adam_param_group(const adam_options& o,
                                                            std::int64_t n_params) {
  // torch 2.x Adam / AdamW param_groups, in its order (torch/optim/adam.py defaults).
  return {{"lr", value(o.lr)},
          {"betas", value::make_tuple({value(o.beta1), value(o.beta2)})},
          {"eps", value(o.eps)},
          {"weight_decay", o.decoupled ? value(o.weight_decay) : number(o.weight_decay)},
          {"amsgrad", value(o.amsgrad)},
          {"maximize", value(false)},
          {"foreach", value()},
          {"capturable", value(false)},
          {"differentiable", value(false)},
          {"fused", value()},
          {"decoupled_weight_decay", value(o.decoupled)},
          {"params", param_indices(n_params)}};
}

std::vector<std::pair<std::string, value>> sgd_param_group(const sgd_options& o,
                                                           std::int64_t n_params) {
  return {{"lr", value(o.lr)},
          {"momentum", number(o.momentum)},
          {"dampening", number(o.dampening)},
          {"weight_decay", number(o.weight_decay)},
          {"nesterov", value(o.nesterov)},
          {"maximize", value(false)},
          {"foreach", value()},
          {"differentiable", value(false)},
          {"fused", value()},
          {"params", param_indices(n_params)}};
}

}  // namespace pthio
