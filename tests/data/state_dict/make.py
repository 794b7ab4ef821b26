#!/usr/bin/env python3
"""Records what torch's Module.load_state_dict says for mismatching state dicts.

Each scenario builds a module tree from (key, shape) pairs, loads a state dict of zeros with other
(key, shape) pairs, and records torch's RuntimeError text (strict) and the missing/unexpected
lists (strict=False). Run with /usr/bin/python3 (torch 1.13): writes torch_messages.json here.
"""
import json
import os

import torch
import torch.nn as nn


class Net(nn.Module):
    pass


def build(keys):
    root = Net()
    for key, shape in keys:
        *path, leaf = key.split(".")
        mod = root
        for name in path:
            if name not in mod._modules:
                mod.add_module(name, Net())
            mod = mod._modules[name]
        mod.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


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
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_messages.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
