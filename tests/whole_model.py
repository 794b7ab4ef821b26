#!/usr/bin/env python3
"""Models saved whole, exported by pthio, load into the model in PyTorch.

For every fixture in fixtures/manifest.json that records state dicts (the models saved whole,
fixtures/generate.py f_whole) and that this torch can load, `pthio convert IN OUT --state-dict
[KEY]` writes the model's state dict as a .pth file (and, where the safetensors package is
installed, as a .safetensors file). The torch running this script then checks each export
against model.state_dict() of the model torch.load gives (weights_only=False, which runs the
classes of fixtures/whole_models.py):

- the .pth loads with torch.load(weights_only=True): an OrderedDict with the same keys in the same
  order, the same _metadata, each tensor of the same dtype (half stays half), shape and elements,
  not requiring grad, and keys sharing a storage in torch's state dict sharing one here;
- the .safetensors holds the same keys and tensors;
- a copy of the model with every parameter and buffer zeroed takes the export with
  load_state_dict(strict=True) and then gives torch's state dict again, element for element.

usage: whole_model.py PTHIO OUT_DIR
"""
import collections
import copy
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
sys.path.insert(0, FIXTURES)
import whole_models  # noqa: E402,F401  (the fixtures' classes, for torch.load)
import torch  # noqa: E402

try:
    import safetensors.torch as st
except ImportError:
    st = None

warnings.filterwarnings("ignore")  # legacy files' SourceChangeWarning: the source is never run
MAJOR = int(torch.__version__.split(".")[0])
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what)


def storage_key(t):
    if hasattr(t, "untyped_storage"):
        return t.untyped_storage().data_ptr()
    return t.storage().data_ptr()


def same_tensor(a, b):
    """Bit for bit (so -0.0 and NaN payloads count)."""
    def raw(t):
        return t.detach().reshape(-1).contiguous().view(torch.uint8)
    return torch.equal(raw(a), raw(b))


def compare(where, got, want, ordered):
    if ordered:
        check(list(got) == list(want), "%s: keys %s, torch has %s" % (where, list(got), list(want)))
    else:
        check(sorted(got) == sorted(want), "%s: keys differ from torch's" % where)
    for k, w in want.items():
        if k not in got:
            continue
        g = got[k]
        check(g.dtype == w.dtype, "%s: %s is %s, torch has %s" % (where, k, g.dtype, w.dtype))
        check(tuple(g.shape) == tuple(w.shape), "%s: %s has shape %s" % (where, k, tuple(g.shape)))
        check(not g.requires_grad, "%s: %s requires grad" % (where, k))
        if g.dtype == w.dtype and g.shape == w.shape:
            check(same_tensor(g, w), "%s: %s differs from torch's" % (where, k))


def refill(model, sd, where):
    """A zeroed copy of `model` takes `sd` strictly and must then hold torch's values again."""
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for t in fresh.state_dict().values():
            t.zero_()
    fresh.load_state_dict(sd, strict=True)
    compare(where + " loaded into the model", fresh.state_dict(), model.state_dict(), True)


def main():
    pthio, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    done = 0
    for e in manifest["files"]:
        if "state_dicts" not in e:
            continue
        folder = e["file"].split("/")[0]
        if folder == "t2" and MAJOR < 2:
            continue  # torch 1.13 cannot unpickle every module torch 2.x pickles
        src = os.path.join(FIXTURES, e["file"])
        obj = torch.load(src, map_location="cpu", weights_only=False)
        for selector in e["state_dicts"]:
            if selector:
                model = obj[selector]
            else:
                model = obj if isinstance(obj, torch.nn.Module) else obj["model"]
            want = model.state_dict()
            stem = e["file"].replace("/", "_").rsplit(".", 1)[0] + "-" + (selector or "default")
            targets = [".pth"] + ([".safetensors"] if st is not None else [])
            for ext in targets:
                out = os.path.join(outdir, stem + ext)
                where = "%s --state-dict %s -> %s" % (e["file"], selector or "(found)", ext)
                cmd = [pthio, "convert", src, out, "--state-dict"] + ([selector] if selector else [])
                r = subprocess.run(cmd, capture_output=True, text=True)
                check(r.returncode == 0, "%s: pthio exited %d: %s" % (where, r.returncode, r.stderr))
                if r.returncode != 0:
                    continue
                if ext == ".pth":
                    sd = torch.load(out, map_location="cpu", weights_only=True)
                    check(isinstance(sd, collections.OrderedDict), where + ": not an OrderedDict")
                    compare(where, sd, want, True)
                    check(getattr(sd, "_metadata", None) == want._metadata,
                          "%s: _metadata %s, torch has %s"
                          % (where, getattr(sd, "_metadata", None), want._metadata))
                    groups = collections.defaultdict(set)
                    for k, t in want.items():
                        groups[storage_key(t)].add(k)
                    for keys in groups.values():
                        if len(keys) > 1:
                            check(len({storage_key(sd[k]) for k in keys if k in sd}) == 1,
                                  "%s: %s no longer share a storage" % (where, sorted(keys)))
                else:
                    sd = st.load_file(out)
                    compare(where, sd, want, False)
                refill(model, sd, where)
                done += 1
    print("%d exports checked, %d failures (torch %s)" % (done, len(FAILURES), torch.__version__))
    if done == 0:
        print("FAIL: no whole-model fixture found")
        return 1
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
