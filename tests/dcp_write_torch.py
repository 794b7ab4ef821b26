#!/usr/bin/env python3
"""Folders written by `pthio convert F DIR --to dcp` load in torch.distributed.checkpoint.

For real-torch fixtures (fixtures/t2: training checkpoints with Adam, AdamW and SGD state, nested
dicts, lists, non-tensor values, bf16, int64, views), with the torch running this script:

- the folder holds exactly .metadata and __0_0.distcp, and its metadata says what torch's own
  torch_save_to_dcp(F) says: the same state_dict_metadata (dtype, size, chunks), planner_data,
  storage_data keys in the same order, the same blob offsets and lengths;
- (a) torch.distributed.checkpoint.load into torch.load(F) with every tensor replaced by
  zeros_like (no process group) fills every tensor with F's elements, optimizer state included,
  and sets every non-tensor value to F's;
- (b) dcp_to_torch_save(DIR) gives what it gives for torch's own folder (the nested dict
  torch's flatten/unflatten makes of F: str keys, lists where torch walked them);
- the same with every blob in a zstd frame (dcp_save_options::zstd, through pthio_dcp_zstd),
  loaded with torch's ZStandard extension.

Exit 77 (skipped) under torch < 2.4, whose torch.distributed.checkpoint predates this layout.

usage: dcp_write_torch.py PTHIO PTHIO_DCP_ZSTD OUT_DIR
"""
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
warnings.filterwarnings("ignore")

major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
if (major, minor) < (2, 4):
    print(f"SKIP: torch {torch.__version__} predates the DCP layout pthio writes (2.4+)")
    sys.exit(77)

import torch.distributed.checkpoint as dcp  # noqa: E402
from torch.distributed.checkpoint._nested_dict import flatten_state_dict  # noqa: E402
from torch.distributed.checkpoint._traverse import get_element  # noqa: E402
from torch.distributed.checkpoint.format_utils import (  # noqa: E402
    dcp_to_torch_save,
    torch_save_to_dcp,
)

PTHIO, DCP_ZSTD, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
FILES = ["ckpt_adam.pth", "ckpt_adamw.pth", "ckpt_sgd.pth", "cnn_bn.pth", "lstm.pth",
         "dtypes.pth", "tied.pth", "views.pth", "small.pth"]
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def same(a, b, where):
    """Deep equality: tensors by dtype, shape and bytes (NaN payloads included)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return fail(f"{where}: {type(a).__name__} vs {type(b).__name__}")
        if a.dtype != b.dtype or a.shape != b.shape:
            return fail(f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
        ab = a.detach().contiguous().reshape(-1).view(torch.uint8)
        bb = b.detach().contiguous().reshape(-1).view(torch.uint8)
        if not torch.equal(ab, bb):
            fail(f"{where}: elements differ")
        return
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a.keys()) != list(b.keys()):
            return fail(f"{where}: keys {list(a.keys())[:8]} vs {list(b.keys())[:8]}")
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return fail(f"{where}: {type(a).__name__}[{len(a)}] vs {type(b).__name__}[{len(b)}]")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}.{i}")
        return
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    if type(a) is not type(b) or a != b:
        fail(f"{where}: {a!r} vs {b!r}")


def zeros_like_tree(v):
    if isinstance(v, torch.Tensor):
        return torch.zeros_like(v)
    if isinstance(v, dict):
        return type(v)((k, zeros_like_tree(x)) for k, x in v.items()) if type(v) is not dict \
            else {k: zeros_like_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [zeros_like_tree(x) for x in v]
    return v  # non-tensor leaves: replaced by the load


def read_metadata(d):
    with open(os.path.join(d, ".metadata"), "rb") as f:
        return pickle.load(f)


def compare_metadata(ours_dir, ref_dir, name):
    ours, ref = read_metadata(ours_dir), read_metadata(ref_dir)
    if ours.version != ref.version:
        fail(f"{name}: version {ours.version!r} vs torch's {ref.version!r}")
    if list(ours.state_dict_metadata) != list(ref.state_dict_metadata):
        fail(f"{name}: state_dict_metadata keys differ from torch's")
    for k, m in ours.state_dict_metadata.items():
        r = ref.state_dict_metadata.get(k)
        if type(m) is not type(r):
            fail(f"{name} {k}: {type(m).__name__} vs torch's {type(r).__name__}")
        elif hasattr(m, "size"):
            pm, pr = m.properties, r.properties
            if (m.size, m.chunks, pm.dtype, pm.layout, pm.memory_format, pm.pin_memory) != (
                    r.size, r.chunks, pr.dtype, pr.layout, pr.memory_format, pr.pin_memory):
                fail(f"{name} {k}: {m} vs torch's {r}")
    if ours.planner_data != ref.planner_data:
        fail(f"{name}: planner_data differs from torch's")
    if list(ours.storage_data) != list(ref.storage_data):
        fail(f"{name}: storage_data keys (or their order) differ from torch's")
    for (ki, si), (kr, sr) in zip(ours.storage_data.items(), ref.storage_data.items()):
        if (ki.fqn, ki.offset, ki.index) != (kr.fqn, kr.offset, kr.index):
            fail(f"{name}: MetadataIndex {ki} vs torch's {kr}")
        # Same blobs in the same order: pthio's torch.save zips have torch's lengths (the random
        # serialization id aside, they are torch's bytes), so every offset agrees too.
        if (si.relative_path, si.offset, si.length) != (sr.relative_path, sr.offset, sr.length) \
                or si.transform_descriptors is not None:
            fail(f"{name} {ki.fqn}: {si} vs torch's {sr}")
    if ours.storage_meta is None or not ours.storage_meta.save_id:
        fail(f"{name}: no storage_meta.save_id")
    return ours, ref


def tensor_pairs(a, b, where):
    """The tensors of src and of the target made from it, side by side (their real keys)."""
    if isinstance(a, torch.Tensor):
        yield where, a, b
    elif isinstance(a, dict):
        for k in a:
            yield from tensor_pairs(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        for i, x in enumerate(a):
            yield from tensor_pairs(x, b[i], f"{where}.{i}")


def check_load(d, src, name):
    """(a): dcp.load into zeros of the same shapes. Tensors are copied into the target's own
    tensors; other values are set along the flat key's path of str parts (torch's set_element),
    where they are looked up."""
    target = zeros_like_tree(src)
    dcp.load(target, checkpoint_id=d)
    n = 0
    for where, a, b in tensor_pairs(src, target, name):
        n += 1
        same(a, b, f"{where} (dcp.load)")
    flat_src, mapping = flatten_state_dict(src)
    for fqn, v in flat_src.items():
        if not isinstance(v, torch.Tensor):
            same(v, get_element(target, mapping[fqn]), f"{name} (dcp.load) {fqn}")
    if n != sum(isinstance(v, torch.Tensor) for v in flat_src.values()):
        fail(f"{name}: {n} tensors in the tree, not as many as torch flattens")
    return n


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
known = {f["file"] for f in manifest["files"]}
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)
checked = 0
for rel in FILES:
    path = os.path.join(FIXTURES, "t2", rel)
    if f"t2/{rel}" not in known or not os.path.exists(path):
        fail(f"fixture t2/{rel} missing")
        continue
    src = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(src, dict):
        fail(f"{rel}: not a dict")
        continue
    if not all(isinstance(k, str) for k in src):
        # dcp.load sorts the root's keys: torch itself cannot load such a dict.
        print(f"SKIP {rel}: root keys are not all str")
        continue
    ours = os.path.join(OUT, rel + ".dcp")
    ref = os.path.join(OUT, rel + ".torch-dcp")
    out = run([PTHIO, "convert", path, ours, "--to", "dcp"])
    if not out.startswith(f"wrote {ours} (dcp, "):
        fail(f"{rel}: convert printed {out!r}")
    if sorted(os.listdir(ours)) != [".metadata", "__0_0.distcp"]:
        fail(f"{rel}: folder holds {sorted(os.listdir(ours))}")
    torch_save_to_dcp(path, ref)
    compare_metadata(ours, ref, rel)
    if os.path.getsize(os.path.join(ours, "__0_0.distcp")) != \
            os.path.getsize(os.path.join(ref, "__0_0.distcp")):
        fail(f"{rel}: data file size differs from torch's")
    n = check_load(ours, src, rel)
    # (b) dcp_to_torch_save: the same as for torch's own folder.
    dcp_to_torch_save(ours, os.path.join(OUT, rel + ".back.pth"))
    dcp_to_torch_save(ref, os.path.join(OUT, rel + ".torch-back.pth"))
    same(torch.load(os.path.join(OUT, rel + ".back.pth"), weights_only=False),
         torch.load(os.path.join(OUT, rel + ".torch-back.pth"), weights_only=False),
         f"{rel} (dcp_to_torch_save)")
    # zstd frames, read through torch's ZStandard extension.
    z = os.path.join(OUT, rel + ".zstd.dcp")
    run([DCP_ZSTD, path, z])
    zm = read_metadata(z)
    if any(s.transform_descriptors != ["stream.zstd/1"] for s in zm.storage_data.values()):
        fail(f"{rel}: zstd folder without stream.zstd/1 descriptors")
    check_load(z, src, rel + " zstd")
    print(f"ok {rel}: {n} tensors, {len(flatten_state_dict(src)[0]) - n} other values")
    checked += 1

# A second convert into the same folder replaces the first checkpoint.
ours = os.path.join(OUT, "ckpt_sgd.pth.dcp")
run([PTHIO, "convert", os.path.join(FIXTURES, "t2", "linear.pth"), ours, "--to", "dcp"])
if sorted(os.listdir(ours)) != [".metadata", "__0_0.distcp"]:
    fail(f"rewrite: folder holds {sorted(os.listdir(ours))}")
linear = torch.load(os.path.join(FIXTURES, "t2", "linear.pth"), weights_only=True)
check_load(ours, linear, "linear over ckpt_sgd")

# Refusals: a root that is not a dict and a duplicate flat key exit 3 and write nothing;
# --max-shard-size does not apply (exit 2).
t = torch.ones(2)
dup = os.path.join(OUT, "dup.pth")
torch.save({"a.b": t, "a": {"b": t}}, dup)
for args, rc, words in [
        ([os.path.join(FIXTURES, "t2", "tensor.pt"), os.path.join(OUT, "no1")], 3, "must be a dict"),
        ([dup, os.path.join(OUT, "no2")], 3, "'a.b'"),
        ([dup, os.path.join(OUT, "no3"), "--max-shard-size", "5GB"], 2, "--max-shard-size")]:
    r = subprocess.run([PTHIO, "convert", *args, "--to", "dcp"], capture_output=True, text=True)
    if r.returncode != rc or words not in r.stderr or os.path.exists(args[1]):
        fail(f"convert {args} --to dcp: exit {r.returncode} ({r.stderr.strip()[:120]})")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print(f"all {checked} fixtures load in torch {torch.__version__}")
