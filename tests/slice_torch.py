#!/usr/bin/env python3
"""Slices cross-checked with torch and the safetensors package.

torch writes a checkpoint holding a tensor of every dtype this torch has, and views of several
(transposes, narrows, offsets into a shared storage, expanded strides); a copy of it with deflated
records; and safetensors writes a file of the contiguous ones. For many slice specs,
`pthio cat FILE KEY --slice SPEC --raw` must print exactly the bytes of torch's
t[spec].contiguous() (for the .pth files) and of safe_open(...).get_slice(name)[spec] (for the
safetensors file). Bad specs must exit 2, out-of-range ones 3.

usage: slice_torch.py PTHIO_CLI SCRATCH_DIR
"""
import io
import os
import subprocess
import sys
import zipfile

import torch

cli, scratch = sys.argv[1], sys.argv[2]
# In sanitizer builds each pthio process takes a good part of a second to start: `--sample K`
# checks every K-th slice (tensors and specs take turns); the normal build checks them all.
SAMPLE = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--sample" else 1
_turn = [0]


def take_turn():
    _turn[0] += 1
    return _turn[0] % SAMPLE == 0

os.makedirs(scratch, exist_ok=True)
torch.manual_seed(19)


def raw(t):
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    flat = t.reshape(-1)
    return bytes(flat.view(torch.uint8).numpy().tobytes())


def make(dtype, shape):
    n = 1
    for s in shape:
        n *= s
    size = torch.empty((), dtype=dtype).element_size()
    b = torch.randint(0, 256, (n * size,), dtype=torch.uint8)
    return b.view(dtype).reshape(shape)


dtypes = [getattr(torch, n) for n in (
    "float64", "float32", "float16", "bfloat16", "complex128", "complex64", "complex32", "int64",
    "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool", "float8_e4m3fn",
    "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
    "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2") if hasattr(torch, n)]
tensors = {}
for d in dtypes:
    name = str(d).replace("torch.", "")
    t = make(d, (7, 6, 5))
    if d == torch.bool:
        t = torch.randint(0, 2, (7, 6, 5), dtype=torch.uint8).bool()
    try:
        torch.save(t, io.BytesIO())
    except Exception:  # an older torch cannot save it (torch 1.13: complex32)
        continue
    tensors[name] = t
    tensors[name + ".t"] = t.transpose(0, 2)  # a transposed view
base = make(torch.float32, (16, 12))
tensors["view.narrow"] = base.narrow(1, 3, 5)  # a column range: a storage offset, row stride 12
tensors["view.rows"] = base[4:9]  # the same storage, an offset
tensors["view.perm"] = make(torch.int16, (4, 5, 6)).permute(1, 2, 0)
tensors["view.step"] = base[::3, 1::2]
tensors["scalar"] = torch.tensor(3.5, dtype=torch.float64)
tensors["empty"] = torch.zeros(0, 4)
tensors["vector"] = torch.arange(50, dtype=torch.int32)

pth = os.path.join(scratch, "slices.pth")
torch.save(tensors, pth)
# The same records deflated (other writers do that): pthio inflates the record and slices it.
deflated = os.path.join(scratch, "slices_deflated.pth")
with zipfile.ZipFile(pth) as zin, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        zout.writestr(info.filename, zin.read(info.filename))

specs = ["", "0", "-1", "1:", ":-1", "::2", "1::3", "-3:", "5:2", ":,1:", ":,::2", "0,1:3",
         "1:100:7,::2", ":,-2", "-1,-1", ":,:,1", "1:,::3,:", "::2,1::2,::2", "2:4,1:3,0:5:2",
         "-100:100", "3,2,1"]


def python_index(spec):
    items = []
    if spec.strip() == "":
        return ()
    for part in spec.split(","):
        if ":" in part:
            bits = [int(b) if b.strip() else None for b in part.split(":")]
            items.append(slice(*bits))
        else:
            items.append(int(part))
    return tuple(items)


def pthio_raw(path, key, spec):
    return subprocess.run([cli, "cat", path, key, "--slice", spec, "--raw"], capture_output=True)


checked = 0
failures = []
for path in (pth, deflated):
    for key, t in tensors.items():
        for spec in specs:
            if not take_turn():
                continue
            try:
                want = raw(t[python_index(spec)])
            except IndexError:
                r = pthio_raw(path, key, spec)
                if r.returncode != 3 or b"out of range" not in r.stderr and b"indices" not in r.stderr:
                    failures.append(f"{path} {key}[{spec}]: torch raises, pthio exit {r.returncode} "
                                    f"{r.stderr[-200:]!r}")
                continue
            except RuntimeError:
                continue  # torch cannot copy this dtype here: nothing to compare with
            r = pthio_raw(path, key, spec)
            if r.returncode != 0 or r.stdout != want:
                failures.append(f"{path} {key}[{spec}]: exit {r.returncode}, {len(r.stdout)} bytes vs "
                                f"{len(want)} {r.stderr[-300:]!r}")
            checked += 1

# safetensors: the package's own get_slice on the file it wrote.
try:
    from safetensors import safe_open
    from safetensors.torch import save_file
except ImportError:
    safe_open = None
if safe_open is not None:
    st_tensors = {k: v.contiguous() for k, v in tensors.items()
                  if v.dtype not in (getattr(torch, n, None) for n in
                                     ("complex32", "bits8", "bits16", "bits1x8", "bits2x4",
                                      "bits4x2", "uint16", "uint32", "uint64", "float8_e4m3fnuz",
                                      "float8_e5m2fnuz", "float4_e2m1fn_x2", "complex128"))
                  and k != "scalar"}
    st = os.path.join(scratch, "slices.safetensors")
    try:
        save_file(st_tensors, st)
    except Exception:  # an older package refuses some dtype: keep the ones it takes
        st_tensors = {k: v for k, v in st_tensors.items()
                      if v.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                     torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
                                     torch.float64)}
        save_file(st_tensors, st)
    with safe_open(st, framework="pt") as f:
        for key in f.keys():
            sl = f.get_slice(key)
            for spec in specs:
                if not take_turn():
                    continue
                idx = python_index(spec)
                if len(idx) == 0:
                    continue
                try:
                    want = raw(sl[idx])
                except Exception:
                    continue  # out of range or not supported by get_slice: covered above
                r = pthio_raw(st, key, spec)
                if r.returncode != 0 or r.stdout != want:
                    failures.append(f"{st} {key}[{spec}]: exit {r.returncode}, {len(r.stdout)} "
                                    f"bytes vs {len(want)} {r.stderr[-300:]!r}")
                checked += 1

# Usage errors: exit 2.
for bad in ["1:2:0", "a", "1,,2", "::-1"]:
    r = pthio_raw(pth, "float32", bad)
    if r.returncode != 2:
        failures.append(f"--slice {bad!r}: exit {r.returncode}, want 2")

print(f"{checked} slices compared, {len(failures)} failures")
for f in failures[:40]:
    print(f)
sys.exit(1 if failures or checked < 500 // SAMPLE else 0)
