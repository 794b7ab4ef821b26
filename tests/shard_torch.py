#!/usr/bin/env python3
"""`pthio convert --max-shard-size`: Hugging Face shards that torch and safetensors read back.

torch saves a state dict (float32, bfloat16, int64 and bool tensors; a tied weight, i.e. two keys
of one tensor; a view at an offset into a larger storage; a tensor larger than the shard limit).
pthio converts it, streaming, into sharded safetensors and sharded .bin output, and this script
checks, against what it computes here with torch:

- the files are the ones save_pretrained names (model-0000K-of-0000N.safetensors,
  pytorch_model-0000K-of-0000N.bin, and their *.index.json), and the index text is exactly
  json.dumps({"metadata": {"total_size": ...}, "weight_map": ...}, indent=2, sort_keys=True)
  + "\\n" for the split huggingface_hub's split_state_dict_into_shards_factory makes (restated
  below: tensors in order; a new shard when the next tensor would take the current one past the
  limit; a tensor past the limit alone, the open shard carrying on; for torch storages, tensors of
  one storage in the shard of its first tensor, the storage counted once);
- every safetensors shard loads with safetensors.torch.load_file, every .bin shard with
  torch.load(weights_only=True), holding exactly the tensors the index gives it, equal to torch's
  (tied tensors in a .bin shard still share one storage);
- pthio reads each index back (`pthio ls`), and converts the safetensors index to one .pth file
  that torch.load gives back equal;
- a limit larger than the whole gives one model.safetensors and no index, as save_pretrained.

usage: shard_torch.py PTHIO OUT_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import torch

try:
    import safetensors.torch as st
except ImportError:
    st = None

PTHIO, OUT = sys.argv[1], sys.argv[2]
LIMIT = 10_000  # "10KB"


def storage_of(t):
    # untyped_storage() is torch 2's; torch 1.13's typed storage has the same nbytes and data_ptr.
    return t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()


def run(*args):
    r = subprocess.run([PTHIO, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"pthio {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def split(state, size_of, storage_id, limit, stem, ext):
    """huggingface_hub's split, as documented: returns (total_size, {file: [keys]})."""
    shards, current, current_size, total, groups = [], [], 0, 0, {}
    for key, t in state.items():
        sid = storage_id(t)
        if sid is not None:
            if sid in groups:
                groups[sid].append(key)
                continue
            groups[sid] = [key]
        size = size_of(t)
        total += size
        if size > limit:
            shards.append([key])
            continue
        if current_size + size > limit:
            shards.append(current)
            current, current_size = [], 0
        current.append(key)
        current_size += size
    if current:
        shards.append(current)
    for keys in groups.values():
        for shard in shards:
            if keys[0] in shard:
                shard.extend(keys[1:])
                break
    n = len(shards)
    if n == 1:
        return total, {stem + ext: shards[0]}
    return total, {f"{stem}-{k + 1:05d}-of-{n:05d}{ext}": s for k, s in enumerate(shards)}


def index_text(total, files):
    weight_map = {key: f for f, keys in files.items() for key in keys}
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2,
                      sort_keys=True) + "\n"


def same(a, b, what):
    if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
        sys.exit(f"{what}: {a.dtype} {tuple(a.shape)} differs from torch's {b.dtype} {tuple(b.shape)}")


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    g = torch.Generator().manual_seed(19)
    big = torch.randn(4000, generator=g)  # 16,000 bytes: past the limit, alone in its shard
    base = torch.randn(3000, generator=g)
    embed = torch.randn(500, 4, generator=g)
    state = {
        "embed.weight": embed,
        "layer.0.weight": torch.randn(1000, generator=g),
        "layer.0.bias": torch.randn(700, generator=g).to(torch.bfloat16),
        "big": big,
        "layer.1.steps": torch.arange(900, dtype=torch.int64),
        "layer.1.mask": torch.rand(333, generator=g) > 0.5,
        "view": base[1000:1600],  # 600 elements at offset 1000 of a 12,000-byte storage
        "layer.2.weight": torch.randn(2000, generator=g),
        "lm_head.weight": embed,  # tied to embed.weight: one storage
        "\u00e9t\u00e9.\U0001d4b3": torch.ones(3),  # names json.dumps writes with \\u escapes
    }
    src = os.path.join(OUT, "src.pth")
    torch.save(state, src)

    # .bin shards: storage sizes, tied keys together.
    out_pt = os.path.join(OUT, "pt")
    run("convert", src, out_pt, "--to", "pth", "--max-shard-size", "10KB")
    total, files = split(state, lambda t: storage_of(t).nbytes(),
                         lambda t: storage_of(t).data_ptr(), LIMIT, "pytorch_model", ".bin")
    if len(files) < 3:
        sys.exit(f"the test state should make several .bin shards, made {len(files)}")
    names = sorted(os.listdir(out_pt))
    want = sorted(list(files) + ["pytorch_model.bin.index.json"])
    if names != want:
        sys.exit(f".bin output: files {names}, expected {want}")
    with open(os.path.join(out_pt, "pytorch_model.bin.index.json"), encoding="utf-8") as f:
        text = f.read()
    if text != index_text(total, files):
        sys.exit(f".bin index:\n{text}\nexpected:\n{index_text(total, files)}")
    for name, keys in files.items():
        shard = torch.load(os.path.join(out_pt, name), weights_only=True)
        if sorted(shard) != sorted(keys):
            sys.exit(f"{name}: keys {sorted(shard)}, expected {sorted(keys)}")
        for k in keys:
            same(shard[k], state[k], f"{name}: {k}")
        if "lm_head.weight" in shard and (storage_of(shard["lm_head.weight"]).data_ptr() !=
                                          storage_of(shard["embed.weight"]).data_ptr()):
            sys.exit(f"{name}: tied weights no longer share a storage")
    if "tensors" not in run("ls", os.path.join(out_pt, "pytorch_model.bin.index.json")):
        sys.exit("pthio ls of the .bin index printed no summary")

    if st is None:
        print("safetensors not installed: safetensors shards not checked")
        return
    # safetensors shards: each tensor's own bytes, tied tensors copied.
    out_st = os.path.join(OUT, "st")
    run("convert", src, out_st, "--max-shard-size", "10KB", "--to", "safetensors")
    total, files = split(state, lambda t: t.numel() * t.element_size(), lambda t: None, LIMIT,
                         "model", ".safetensors")
    names = sorted(os.listdir(out_st))
    want = sorted(list(files) + ["model.safetensors.index.json"])
    if names != want:
        sys.exit(f"safetensors output: files {names}, expected {want}")
    index = os.path.join(out_st, "model.safetensors.index.json")
    with open(index, encoding="utf-8") as f:
        text = f.read()
    if text != index_text(total, files):
        sys.exit(f"safetensors index:\n{text}\nexpected:\n{index_text(total, files)}")
    for name, keys in files.items():
        shard = st.load_file(os.path.join(out_st, name))
        if sorted(shard) != sorted(keys):
            sys.exit(f"{name}: keys {sorted(shard)}, expected {sorted(keys)}")
        for k in keys:
            same(shard[k], state[k], f"{name}: {k}")
    run("ls", index)
    one = os.path.join(OUT, "from_index.pth")
    run("convert", index, one)
    back = torch.load(one, weights_only=True)
    if set(back) != set(state):
        sys.exit(f"index -> .pth: keys {sorted(back)}")
    for k, t in state.items():
        same(back[k], t, f"index -> .pth: {k}")

    # Everything fits: one file, no index.
    out_one = os.path.join(OUT, "one")
    run("convert", src, out_one, "--to", "safetensors", "--max-shard-size", "5GB")
    if os.listdir(out_one) != ["model.safetensors"]:
        sys.exit(f"one shard: files {os.listdir(out_one)}")
    shard = st.load_file(os.path.join(out_one, "model.safetensors"))
    for k, t in state.items():
        same(shard[k], t, f"model.safetensors: {k}")
    print("ok")


main()
