#!/usr/bin/env python3
"""Checkpoints past the classic zip limits, both ways with real PyTorch (zip64 read and written):
an archive with more than 65,535 records and a tensor of more than 4 GiB.

usage: giant.py PTHIO MAKE_GIANT SCRATCH_DIR
Skips (exit 0, saying so) when SCRATCH_DIR's disk has less than 14 GB free.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import torch

pthio, make_giant, scratch = sys.argv[1:4]
os.makedirs(scratch, exist_ok=True)
free = shutil.disk_usage(scratch).free
if free < 14 * 10**9:
    print(f"SKIP giant checkpoints: only {free / 1e9:.1f} GB free in {scratch}")
    print("0 passed, 0 failed, 4 skipped")
    sys.exit(0)

RECORDS = 70_000
BIG = 4 * 2**30 + 4096  # bytes of one float32 tensor: its record needs zip64
passed = 0


def ls(path):
    r = subprocess.run([pthio, "ls", "--json", "--mmap", path], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["tensors"]


def big_tensor():
    t = torch.zeros(BIG // 4, dtype=torch.float32)
    t[0], t[t.numel() // 2], t[-1] = 1.0, 3.0, 2.0
    return t


try:
    # 1. torch writes 70,000 records; pthio reads every one.
    p = os.path.join(scratch, "torch_records.pth")
    torch.save({f"t{i}": torch.tensor([float(i)]) for i in range(RECORDS)}, p)
    rows = ls(p)
    assert len(rows) == RECORDS, len(rows)
    for i in (0, 1, 65535, 65536, RECORDS - 1):
        want = hashlib.sha256(torch.tensor([float(i)]).numpy().tobytes()).hexdigest()
        assert rows[i]["key"] == f"t{i}" and rows[i]["sha256"] == want, rows[i]
    os.remove(p)
    passed += 1
    print("ok   torch -> pthio: 70,000 records")

    # 2. pthio writes 70,000 records; torch reads every one.
    p = os.path.join(scratch, "pthio_records.pth")
    subprocess.run([make_giant, p, "records", str(RECORDS)], check=True)
    sd = torch.load(p)
    assert len(sd) == RECORDS and all(sd[f"t{i}"].item() == float(i) for i in range(RECORDS))
    os.remove(p)
    passed += 1
    print("ok   pthio -> torch: 70,000 records")

    # 3. torch writes a tensor over 4 GiB; pthio reads it (SHA-256 of its elements).
    p = os.path.join(scratch, "torch_big.pth")
    t = big_tensor()
    torch.save({"big": t}, p)
    want = hashlib.sha256(t.numpy().tobytes()).hexdigest()
    del t
    rows = ls(p)
    assert rows[0]["shape"] == [BIG // 4] and rows[0]["sha256"] == want, rows[0]
    os.remove(p)
    passed += 1
    print("ok   torch -> pthio: a 4 GiB tensor")

    # 4. pthio writes a tensor over 4 GiB; torch reads it.
    p = os.path.join(scratch, "pthio_big.pth")
    subprocess.run([make_giant, p, "big", str(BIG)], check=True)
    got = torch.load(p)["big"]
    assert torch.equal(got, big_tensor())
    os.remove(p)
    passed += 1
    print("ok   pthio -> torch: a 4 GiB tensor")
finally:
    print(f"{passed} passed, {4 - passed} failed")
sys.exit(0 if passed == 4 else 1)
