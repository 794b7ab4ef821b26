#!/usr/bin/env python3
"""pthio reads torch.export archives (.pt2) as torch does.

For every .pt2 of fixtures/manifest.json (torch 2.6's export zip, torch 2.8's archive with pickled
weights, torch 2.15's archive; fixtures/generate.py), this script asks the torch running it for
its own answer now: torch.export.load(path), whose state_dict followed by its constants is what
pthio gives (for the AOTInductor package, the weights torch's load_pt2(load_weights_from_disk=True)
path builds: each data/weights/ blob torch.load'ed and as_strided as weights_config.json says).
Then it runs

- `pthio convert F OUT.pth` and checks torch.load(OUT.pth): the same keys in the same order, every
  tensor of the same dtype, shape and bits (NaN payloads, -0.0), a Parameter where torch's is one
  and requires_grad as torch's, object constants equal, the same storages shared, and the
  `signature` attribute equal to what torch's ExportGraphSignature says (generate.export_signature);
- `pthio convert F OUT.safetensors` and checks safetensors.torch.load_file(OUT) against the tensors
  (a dtype safetensors cannot store must be refused, naming it);
- `pthio ls F --json` and checks each tensor's key, dtype and shape.

Under torch 2.9+ every fixture must be checked; an older torch loads only the layouts it knows
(the rest are skipped, said so). Under torch 1.13 (no torch.export) the
script prints the skip marker.

usage: pt2_torch.py PTHIO OUT_DIR
"""
import collections
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, FIXTURES)
warnings.filterwarnings("ignore")

import torch  # noqa: E402

if not hasattr(torch, "export") or not hasattr(torch.export, "load"):
    print("PTHIO_TEST_SKIPPED: torch %s has no torch.export" % torch.__version__)
    sys.exit(0)

import generate as g  # noqa: E402  (export_signature: the summary's rules)
import whole_models  # noqa: E402,F401  (classes the pickled fixtures name)

try:
    import safetensors.torch as st
except ImportError:
    st = None

VERSION = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what)
    return cond


def same_bits(a, b):
    def raw(t):
        return t.detach().contiguous().reshape(-1).view(torch.uint8)
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(raw(a), raw(b))


def torch_answer(path):
    """(root, ep): torch's state dict then constants, or the AOTInductor weights (ep None)."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        top = names[0].split("/")[0]
        config = top + "/data/aotinductor/model/weights_config.json"
        if config in names and not any(n.startswith(top + "/models/") for n in names):
            root = collections.OrderedDict()
            for key, (rec, shape, stride, offset) in json.loads(z.read(config)).items():
                whole = torch.load(io.BytesIO(z.read(top + "/data/weights/" + rec)),
                                   weights_only=False)
                root[key] = whole.as_strided(shape, stride, offset)
            return root, None
    if VERSION >= (2, 15) and "export_pickled" in path:
        from torch._library.opaque_object import register_custom_class
        try:
            register_custom_class(whole_models.Vocabulary, typ="constant")
        except Exception:
            pass  # registered already
    ep = torch.export.load(path)
    root = collections.OrderedDict()
    for k, v in list(ep.state_dict.items()) + list(ep.constants.items()):
        root[k] = v
    return root, ep


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


def check_pth(name, pthio, path, out, want, ep):
    r = run([pthio, "convert", path, out])
    if not check(r.returncode == 0, "%s: convert to .pth failed: %s" % (name, r.stderr)):
        return
    got = torch.load(out, weights_only=False)
    check(list(got.keys()) == list(want.keys()),
          "%s: keys %s, torch %s" % (name, list(got.keys()), list(want.keys())))
    for k, w in want.items():
        v = got.get(k)
        if isinstance(w, torch.Tensor):
            if not check(isinstance(v, torch.Tensor), "%s: %s is no tensor" % (name, k)):
                continue
            check(same_bits(v, w), "%s: tensor %s differs" % (name, k))
            check(isinstance(v, torch.nn.Parameter) == isinstance(w, torch.nn.Parameter),
                  "%s: %s Parameter %s, torch %s" % (name, k, type(v), type(w)))
            check(v.requires_grad == w.requires_grad, "%s: %s requires_grad" % (name, k))
        else:
            check(type(v) is type(w) and v == w, "%s: constant %s differs" % (name, k))
    # Storages torch shares are shared.
    def groups(d):
        seen = collections.defaultdict(list)
        for k, t in d.items():
            if isinstance(t, torch.Tensor):
                seen[t.untyped_storage().data_ptr()].append(k)
        return sorted(sorted(v) for v in seen.values() if len(v) > 1)
    check(groups(got) == groups(want), "%s: shared %s, torch %s" % (name, groups(got),
                                                                    groups(want)))
    if ep is not None:
        sig = getattr(got, "signature", None)
        check(sig == g.export_signature(ep),
              "%s: signature %s, torch %s" % (name, sig, g.export_signature(ep)))


def check_safetensors(name, pthio, path, out, want):
    tensors = collections.OrderedDict((k, v) for k, v in want.items()
                                      if isinstance(v, torch.Tensor))
    r = run([pthio, "convert", path, out])
    storable = all(v.dtype not in (torch.complex32,) for v in tensors.values())
    if not storable:
        check(r.returncode != 0 and "complex32" in r.stderr,
              "%s: a complex32 tensor should be refused for safetensors: %s" % (name, r.stderr))
        return
    if not check(r.returncode == 0, "%s: convert to .safetensors failed: %s" % (name, r.stderr)):
        return
    if st is None:
        return
    got = st.load_file(out)
    check(sorted(got.keys()) == sorted(tensors.keys()), "%s: safetensors keys" % name)
    for k, w in tensors.items():
        if k in got:
            check(same_bits(got[k], w), "%s: safetensors tensor %s differs" % (name, k))


def check_ls(name, pthio, path, want):
    r = run([pthio, "ls", path, "--json"])
    if not check(r.returncode == 0, "%s: ls failed: %s" % (name, r.stderr)):
        return
    got = [(t["key"], t["dtype"], t["shape"]) for t in json.loads(r.stdout)["tensors"]]
    exp = [(k, g.dtype_name(v.dtype), list(v.shape)) for k, v in want.items()
           if isinstance(v, torch.Tensor)]
    check(got == exp, "%s: ls %s, torch %s" % (name, got, exp))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: pt2_torch.py PTHIO OUT_DIR")
    pthio, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(FIXTURES, "manifest.json"), encoding="utf-8") as f:
        files = [e["file"] for e in json.load(f)["files"] if e["format"] == "pt2"]
    check(len(files) >= 20, "the manifest lists %d .pt2 fixtures" % len(files))
    checked = 0
    for rel in files:
        path = os.path.join(FIXTURES, rel)
        name = rel
        try:
            want, ep = torch_answer(path)
        except Exception as e:  # a layout newer than this torch
            print("torch %s cannot load %s (%s): skipped" % (torch.__version__, rel,
                                                             type(e).__name__))
            continue
        stem = os.path.join(out_dir, rel.replace("/", "_"))
        check_pth(name, pthio, path, stem + ".pth", want, ep)
        check_safetensors(name, pthio, path, stem + ".safetensors", want)
        check_ls(name, pthio, path, want)
        checked += 1
        print("ok   " + rel)
    # torch 2.9+ reads every layout (the older ones through its compatibility paths): all of
    # them must be checked; an older torch skips the layouts newer than itself.
    if VERSION >= (2, 9):
        check(checked == len(files), "only %d of %d fixtures checked" % (checked, len(files)))
    print("%d .pt2 fixtures checked against torch %s, %d failures"
          % (checked, torch.__version__, len(FAILURES)))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
