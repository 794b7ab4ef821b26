"""Cross-checks pthio's safetensors against the safetensors package and torch, both ways.

    python st_roundtrip.py PTHIO_CLI SCRATCH_DIR FIXTURES_DIR

1. torch checkpoints converted by `pthio convert` load with safetensors.torch.load_file as the
   flattened torch.load(weights_only=True) of the original (key paths joined by '.', every tensor
   equal in dtype, shape and bits), and the package rewrites them byte for byte.
2. files the package wrote, converted by pthio to .pth, load in torch.load(weights_only=True)
   as load_file returns them, in the same order.
3. sharded indexes, converted to one file, equal the merged shards.
Needs torch 2.x and safetensors (registered by tests/safetensors.cmake only where they exist).
"""
import collections
import os
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

cli, scratch, fixtures = sys.argv[1:4]
os.makedirs(scratch, exist_ok=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def pthio(*args):
    r = subprocess.run([cli, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"pthio {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def flatten(obj, prefix=""):
    """Tensors by key path, as pthio's visit_tensors names them."""
    out = collections.OrderedDict()

    def walk(o, path):
        if isinstance(o, torch.Tensor):
            out[path] = o
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{path}.{i}" if path else str(i))

    walk(obj, prefix)
    return out


def same(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    x = a.detach().contiguous().reshape(-1).view(torch.uint8)
    y = b.detach().contiguous().reshape(-1).view(torch.uint8)
    return torch.equal(x, y)


def fixture(rel):
    return os.path.join(fixtures, rel)


# 1. torch -> safetensors
for rel in ["t2/linear.pth", "t2/conv2d.pth", "t2/cnn_bn.pth", "t2/tied.pth", "t2/views.pth", "t2/lstm.pth",
            "t2/ckpt_adam.pth", "t2/ckpt_sgd.pth", "t2/mlp.bin", "t1/linear.pth", "t1/ckpt_adam.pth",
            "st/dtypes.pth", "st/simple.pth"]:
    out = os.path.join(scratch, rel.replace("/", "_") + ".safetensors")
    pthio("convert", fixture(rel), out)
    want = flatten(torch.load(fixture(rel), map_location="cpu", weights_only=True))
    got = load_file(out)
    check(set(got) == set(want), f"{rel}: keys {sorted(got)} vs {sorted(want)}")
    for k in want:
        check(k in got and same(got[k], want[k]), f"{rel}: tensor {k}")
    again = os.path.join(scratch, "again.safetensors")
    save_file(got, again)
    with open(out, "rb") as f, open(again, "rb") as g:
        check(f.read() == g.read(), f"{rel}: the package writes other bytes for the same tensors")

# 2. safetensors (written by the package) -> pth
for rel in ["st/simple.safetensors", "st/meta.safetensors", "st/dtypes.safetensors", "st/shapes.safetensors",
            "st/unaligned.safetensors", "st/mx.safetensors", "st/sharded/whole.safetensors"]:
    out = os.path.join(scratch, rel.replace("/", "_") + ".pth")
    pthio("convert", fixture(rel), out)
    want = load_file(fixture(rel))
    got = torch.load(out, weights_only=True)
    check(list(got) == list(want), f"{rel}: order {list(got)} vs {list(want)}")
    for k in want:
        check(k in got and same(got[k], want[k]), f"{rel}: tensor {k}")
    with safe_open(fixture(rel), framework="pt") as f:
        meta = f.metadata()
    check(getattr(got, "__metadata__", None) == meta, f"{rel}: __metadata__ {getattr(got, '__metadata__', None)} vs {meta}")
    # and back: pthio keeps __metadata__ through the .pth
    back = os.path.join(scratch, "back.safetensors")
    pthio("convert", out, back)
    with safe_open(back, framework="pt") as f:
        check(f.metadata() == meta, f"{rel}: metadata after pth and back")

# 3. sharded -> one file
for rel in ["st/sharded/model.safetensors.index.json", "st/sharded/pytorch_model.bin.index.json"]:
    st = os.path.join(scratch, os.path.basename(rel) + ".safetensors")
    pth = os.path.join(scratch, os.path.basename(rel) + ".pth")
    pthio("convert", fixture(rel), st)
    pthio("convert", fixture(rel), pth)
    whole = load_file(fixture("st/sharded/whole.safetensors"))
    a, b = load_file(st), torch.load(pth, weights_only=True)
    check(set(a) == set(whole), f"{rel}: keys")
    for k in whole:
        check(same(a[k], whole[k]) and same(b[k], whole[k]), f"{rel}: tensor {k}")

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
print("safetensors round trips agree with the package and torch")
