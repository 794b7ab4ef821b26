#!/usr/bin/env python3
"""Records what torch's Module.load_state_dict says for mismatching state dicts.

Each scenario builds a module tree from (key, shape) pairs, loads a state dict of zeros with other
(key, shape) pairs, and records torch's RuntimeError text (strict) and the missing/unexpected
lists (strict=False). A pair with a third item names a dtype other than float32.

The BatchNorm scenarios build their target with real nn.BatchNorm1d modules ((name, "bn", features)
in the target list) and derive the source from the model's own state_dict(): keys dropped, renamed
or resized, and `_metadata` (the per-module versions torch decides on) absent or set per prefix;
"strip_prefix" applies consume_prefix_in_state_dict_if_present first. Each BatchNorm's
num_batches_tracked starts at NUM_BATCHES_TRACKED, and "after" records it after the strict=False
load: torch 2.x keeps the module's own value where the checkpoint has none, torch 1.13 wrote 0.

The file follows torch 2.x: run `python make.py` with a torch 2.x python (writes
torch_messages.json here). torch 1.13 (Debian's /usr/bin/python3) words every message the same,
but writes 0 into "after" and, in "data parallel prefix stripped, version 2 without
num_batches_tracked", loads without error: its consume_prefix_in_state_dict_if_present looks for
a "_metadata" key instead of the attribute, so leaves the versions under "module.bn".
"""
import collections
import json
import os

import torch
import torch.nn as nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

NUM_BATCHES_TRACKED = 7


class Net(nn.Module):
    pass


def build(keys):
    root = Net()
    for key, *rest in keys:
        *path, leaf = key.split(".")
        mod = root
        for name in path:
            if name not in mod._modules:
                mod.add_module(name, Net())
            mod = mod._modules[name]
        if rest[0] == "bn":
            bn = nn.BatchNorm1d(rest[1])
            bn.num_batches_tracked.fill_(NUM_BATCHES_TRACKED)
            mod.add_module(leaf, bn)
        else:
            mod.register_parameter(leaf, nn.Parameter(torch.zeros(rest[0])))
    return root


def pair(key, t):
    """[key, shape], with the dtype third when it is not float32."""
    dtype = str(t.dtype).removeprefix("torch.")
    return [key, list(t.shape)] + ([] if dtype == "float32" else [dtype])


def expand(keys):
    """The target list as the C++ test reads it: each BatchNorm spelled out as its tensors."""
    out = []
    for key, *rest in keys:
        if rest[0] == "bn":
            prefix = key + "."
            out += [pair(k, t) for k, t in build([(key, *rest)]).state_dict().items() if k.startswith(prefix)]
        else:
            out.append([key, rest[0]])
    return out


CNN = [("conv.weight", [4, 3]), ("bn", "bn", 4), ("fc.weight", [2, 4]), ("fc.bias", [2])]


def checkpoint(keys, drop=(), prefix="", versions=None, resize=None, extra=()):
    """The model's state_dict as an older or other checkpoint would hold it: `drop` keys removed,
    `resize` {key: shape}, `extra` (key, shape) pairs added, every key under `prefix`; `versions`
    None: no _metadata; else the model's _metadata (under `prefix` as DDP's state_dict() writes it,
    "" its own root) with {module: version} overriding."""
    sd = build(keys).state_dict()
    out = collections.OrderedDict()
    for k, t in sd.items():
        if k not in drop:
            out[prefix + k] = torch.zeros((resize or {}).get(k, t.shape), dtype=t.dtype)
    for k, shape in extra:
        out[prefix + k] = torch.zeros(shape)
    if versions is not None:
        meta = collections.OrderedDict()
        if prefix:
            meta[""] = {"version": 1}
        for m, local in sd._metadata.items():
            meta[(prefix + m).rstrip(".")] = dict(local)
        for m, v in versions.items():
            meta[m]["version"] = v
        out._metadata = meta
    return out


SCENARIOS = {
    "missing and unexpected": (
        [("fc.weight", [10, 20]), ("fc.bias", [10]), ("out.weight", [3, 10]), ("out.bias", [3])],
        [("fc.weight", [10, 20]), ("fc.bias", [10]), ("head.weight", [3, 10]), ("head.bias", [3])]),
    "size mismatch": (
        [("fc.weight", [10, 30]), ("fc.bias", [10])],
        [("fc.weight", [10, 20]), ("fc.bias", [10])]),
    "everything at once": (
        [("enc.0.weight", [4, 4]), ("enc.0.bias", [4]), ("enc.1.weight", [4, 4]), ("scale", []), ("dec.weight", [2, 4])],
        [("dec.weight", [2, 5]), ("enc.0.weight", [4, 4]), ("enc.extra", [1]), ("extra", [2]),
         ("enc.1.weight", [4, 4]), ("enc.0.bias", [5]), ("zzz.weight", [1]), ("enc.1.bias", [4])]),
    "data parallel prefix": (
        [("fc.weight", [2, 2])],
        [("module.fc.weight", [2, 2])]),
}

# name: (target, source state_dict, options)
BATCHNORM_SCENARIOS = {
    "old batchnorm checkpoint, no _metadata": (CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}), {}),
    "old batchnorm checkpoint, _metadata version 1": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, versions={"bn": 1}), {}),
    "batchnorm at version 2 without num_batches_tracked": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, versions={"bn": 2}), {}),
    "old batchnorm checkpoint, another key missing": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked", "fc.weight"}), {}),
    "old batchnorm checkpoint, the batchnorm's running stats missing too": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked", "bn.running_var"}, versions={"bn": 1}), {}),
    "old batchnorm checkpoint, the whole batchnorm missing": (
        CNN, checkpoint(CNN, drop={"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                   "bn.num_batches_tracked"}), {}),
    "old batchnorm checkpoint, size mismatch": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, resize={"bn.running_mean": [5], "fc.weight": [2, 3]}), {}),
    "old batchnorm checkpoint, unexpected keys": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, extra=[("bn.extra", [1]), ("head.weight", [2])]), {}),
    "old batchnorm checkpoint, data parallel prefix": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, prefix="module."), {}),
    # The model's "bn" has no _metadata entry of its own here ("module.bn" is a stranger), so torch
    # takes it as an old one and fills its num_batches_tracked in.
    "data parallel prefix with _metadata version 2": (
        CNN, checkpoint(CNN, prefix="module.", versions={}), {}),
    "data parallel prefix stripped, old batchnorm": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, prefix="module.", versions={"module.bn": 1}),
        {"strip_prefix": "module."}),
    "data parallel prefix stripped, version 2 without num_batches_tracked": (
        CNN, checkpoint(CNN, drop={"bn.num_batches_tracked"}, prefix="module.", versions={"module.bn": 2}),
        {"strip_prefix": "module."}),
    "nested batchnorm, old checkpoint": (
        [("enc.0.weight", [4, 4]), ("enc.1", "bn", 4), ("bn", "bn", 2)],
        checkpoint([("enc.0.weight", [4, 4]), ("enc.1", "bn", 4), ("bn", "bn", 2)],
                   drop={"enc.1.num_batches_tracked", "bn.num_batches_tracked"}, versions={"enc.1": 1, "bn": 2}), {}),
}


def load(model, source, strict, strip_prefix):
    """model.load_state_dict of a copy of `source` (its _metadata too), as a caller would after
    torch.load, the prefix first consumed when given."""
    sd = collections.OrderedDict(source)
    if hasattr(source, "_metadata"):
        sd._metadata = collections.OrderedDict((k, dict(v)) for k, v in source._metadata.items())
    if strip_prefix:
        consume_prefix_in_state_dict_if_present(sd, strip_prefix)
    return model.load_state_dict(sd, strict=strict)


def record(name, target, source, options):
    strip_prefix = options.get("strip_prefix")
    try:
        load(build(target), source, True, strip_prefix)
        strict_message = None
    except RuntimeError as e:
        strict_message = str(e)
    model = build(target)
    try:
        r = load(model, source, False, strip_prefix)
        lenient = {"missing": list(r.missing_keys), "unexpected": list(r.unexpected_keys), "error": None}
    except RuntimeError as e:
        lenient = {"missing": None, "unexpected": None, "error": str(e)}
    after = {k: int(t) for k, t in model.state_dict().items() if k.endswith("num_batches_tracked")}
    meta = getattr(source, "_metadata", None)
    return {"name": name, "target": expand(target), "source": [pair(k, t) for k, t in source.items()],
            "source_metadata": None if meta is None else [[k, v["version"]] for k, v in meta.items()],
            "strip_prefix": strip_prefix,
            "target_order": list(build(target).state_dict().keys()),
            "strict_message": strict_message, "non_strict": lenient,
            "num_batches_tracked_at_start": NUM_BATCHES_TRACKED, "after": after}


def main():
    out = {"torch": torch.__version__, "scenarios": []}
    for name, (target, source) in SCENARIOS.items():
        model = build(target)
        sd = {k: torch.zeros(s) for k, s in source}
        try:
            model.load_state_dict(sd)
            strict_message = None
        except RuntimeError as e:
            strict_message = str(e)
        try:
            r = build(target).load_state_dict(sd, strict=False)
            lenient = {"missing": list(r.missing_keys), "unexpected": list(r.unexpected_keys), "error": None}
        except RuntimeError as e:
            lenient = {"missing": None, "unexpected": None, "error": str(e)}
        out["scenarios"].append({"name": name, "target": target, "source": source,
                                 "target_order": list(build(target).state_dict().keys()),
                                 "strict_message": strict_message, "non_strict": lenient})
    for name, (target, source, options) in BATCHNORM_SCENARIOS.items():
        out["scenarios"].append(record(name, target, source, options))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_messages.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
