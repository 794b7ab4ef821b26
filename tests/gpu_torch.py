#!/usr/bin/env python3
"""pthio against a CUDA PyTorch on a GPU machine (scripts/gpu-check.sh runs it there).

torch saves checkpoints from cuda:0 (zip and legacy formats; every common dtype; views of one
storage; tied weights; a record larger than the staging buffers). For each file:
  - `pthio ls --json --map-location cuda:0` loads every storage to the GPU: each tensor must be
    reported on cuda:0 with torch's dtype, shape, stride and the SHA-256 of torch's elements;
  - `pthio convert FILE OUT.pth --map-location cuda:0` loads to the GPU and writes from it: torch
    loads OUT on cuda:0 and finds every tensor equal to what it saved, storages shared as saved.

usage: gpu_torch.py PTHIO SCRATCH_DIR [--cpu]
--cpu runs the same checks on the CPU (map location cpu): a check of this script where there is
no GPU.
Exits 1 with FAILED lines on any difference; prints the skip marker when torch sees no GPU.
"""
import hashlib
import json
import os
import subprocess
import sys

import torch

DTYPE_NAMES = {
    torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float64: "float64", torch.int64: "int64", torch.int32: "int32", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool", torch.complex64: "complex64",
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAILED: " + msg, flush=True)


def elements_sha256(t):
    """SHA-256 of t's elements in row-major order, little-endian, at the dtype's size."""
    c = t.detach().contiguous().cpu()
    if c.dtype == torch.bool:
        c = c.to(torch.uint8)
    raw = c.view(torch.uint8) if c.numel() else c
    return hashlib.sha256(raw.numpy().tobytes() if c.numel() else b"").hexdigest()


def flatten(prefix, v, out):
    if isinstance(v, torch.Tensor):
        out[prefix] = v
    elif isinstance(v, dict):
        for k, x in v.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), x, out)
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            flatten(f"{prefix}.{i}" if prefix else str(i), x, out)
    return out


def checkpoints(dev):
    g = torch.Generator(device="cpu").manual_seed(7)

    def rnd(*shape, dtype=torch.float32):
        x = torch.randn(*shape, generator=g)
        if dtype == torch.bool:
            return (x > 0).to(dev)
        if not dtype.is_floating_point and not dtype.is_complex:
            return (x * 100).to(dtype).to(dev)
        return x.to(dtype).to(dev)

    dtypes = {DTYPE_NAMES[d]: rnd(5, 7, dtype=d) for d in DTYPE_NAMES}
    base = rnd(8, 12)
    views = {"base": base, "t": base.t(), "narrow": base.narrow(1, 3, 5), "row": base[2],
             "strided": base[::2, 1::3]}
    lin = torch.nn.Linear(64, 32).to(dev)
    tied = {"embed": lin.weight, "head": lin.weight, "bias": lin.bias}
    big = {"big": rnd(40 << 20 >> 2), "small": rnd(3)}  # 40 MiB: several staging buffers
    ckpt = {"model": lin.state_dict(), "opt": {"state": {0: {"exp_avg": rnd(32, 64)}}},
            "epoch": 3}
    return {"dtypes": dtypes, "views": views, "tied": tied, "big": big, "ckpt": ckpt}


def pthio(exe, *args):
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"pthio {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return None
    return r.stdout


LOCATION = "cuda:0"


def check_file(exe, path, saved, scratch, name):
    want = flatten("", saved, {})
    out = pthio(exe, "ls", "--json", "--map-location", LOCATION, path)
    if out is not None:
        listing = {t["key"]: t for t in json.loads(out)["tensors"]}
        if set(listing) != set(want):
            fail(f"{name}: ls keys {sorted(listing)} != torch's {sorted(want)}")
        for k, t in want.items():
            got = listing.get(k)
            if got is None:
                continue
            for field, value in (("device", LOCATION), ("dtype", DTYPE_NAMES[t.dtype]),
                                 ("shape", list(t.shape)), ("stride", list(t.stride())),
                                 ("sha256", elements_sha256(t))):
                if got[field] != value:
                    fail(f"{name}: {k}: ls {field} {got[field]!r}, torch {value!r}")
    converted = os.path.join(scratch, name + ".converted.pth")
    if pthio(exe, "convert", path, converted, "--map-location", LOCATION) is None:
        return
    back = torch.load(converted, map_location=LOCATION, weights_only=False)
    got = flatten("", back, {})
    if set(got) != set(want):
        fail(f"{name}: converted keys {sorted(got)} != {sorted(want)}")
        return
    for k, t in want.items():
        if str(got[k].device) != LOCATION or got[k].dtype != t.dtype or not torch.equal(got[k], t):
            fail(f"{name}: {k}: converted tensor differs from torch's")
    # Storages shared when saved are shared when loaded back.
    keys = sorted(want)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            saved_same = want[a].untyped_storage().data_ptr() == want[b].untyped_storage().data_ptr()
            got_same = got[a].untyped_storage().data_ptr() == got[b].untyped_storage().data_ptr()
            if saved_same != got_same:
                fail(f"{name}: {a} and {b} shared a storage: {saved_same} saved, {got_same} now")


def main():
    global LOCATION
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] != "--cpu"):
        sys.exit(__doc__)
    exe, scratch = sys.argv[1], sys.argv[2]
    if len(sys.argv) == 4:
        LOCATION = "cpu"
    elif not torch.cuda.is_available():
        if os.environ.get("PTHIO_TESTS_REQUIRE_CUDA") == "1":
            sys.exit("FAILED: PTHIO_TESTS_REQUIRE_CUDA=1, but torch sees no CUDA device")
        print("PTHIO_TEST_SKIPPED: torch sees no CUDA device")
        return
    os.makedirs(scratch, exist_ok=True)
    dev = torch.device(LOCATION)
    print(f"torch {torch.__version__} on "
          f"{torch.cuda.get_device_name(0) if LOCATION != 'cpu' else 'the CPU'}")
    count = 0
    for name, saved in checkpoints(dev).items():
        for legacy in (False, True):
            fname = f"{name}{'_legacy' if legacy else ''}"
            path = os.path.join(scratch, fname + ".pth")
            torch.save(saved, path, _use_new_zipfile_serialization=not legacy)
            check_file(exe, path, saved, scratch, fname)
            count += 1
    if failures:
        sys.exit(f"{len(failures)} failure(s)")
    print(f"gpu_torch: {count} files saved by torch on {LOCATION} load and convert on {LOCATION}"
          " as torch")


if __name__ == "__main__":
    main()
