#!/usr/bin/env python3
"""`pthio scan` of a 1 GiB checkpoint: it reads pickles, not tensor data.

  PTHIO_VENV/bin/python bench/scan_bench.py PTHIO DIR [--rounds N]

Makes in DIR (once; reused when present) big.pth: torch.save of 1,000 float32 tensors of 1 MiB
each (1 GiB of records, one data.pkl). Then, alternating, N rounds with the file in the page
cache, each timed as its median:
  pthio scan big.pth                    the whole command: exec, map, every member looked at (the
                                        local-header sweep, each record's first bytes), the pass
                                        over data.pkl, the verdict printed
  genops over data.pkl                  the reference static scan in Python: zipfile opens the
                                        archive, pickletools.genops walks data.pkl's opcodes
                                        (what pickle scanners built on pickletools do), in-process
  torch.load(big.pth, weights_only=True, mmap=True)
                                        torch's weights-only loader, mapped (no data read)
"""
import argparse
import io
import os
import pickletools
import statistics
import subprocess
import sys
import time
import zipfile


def make(dir_):
    import torch

    path = os.path.join(dir_, "big.pth")
    if os.path.exists(path):
        return path
    torch.manual_seed(0)
    sd = {f"layer{i}.weight": torch.randn(256, 1024) for i in range(1000)}
    torch.save(sd, path)
    return path


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def genops_scan(path):
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".pkl"):
                for _ in pickletools.genops(io.BytesIO(z.read(name))):
                    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pthio")
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    path = make(a.dir)
    import torch

    # Warm the page cache and the interpreter.
    subprocess.run([a.pthio, "scan", path], capture_output=True, check=True)
    genops_scan(path)
    torch.load(path, weights_only=True, mmap=True)
    runs = {"pthio scan": [], "genops over data.pkl": [], "torch.load weights_only mmap": []}
    for _ in range(a.rounds):
        runs["pthio scan"].append(
            timed(lambda: subprocess.run([a.pthio, "scan", path], capture_output=True, check=True)))
        runs["genops over data.pkl"].append(timed(lambda: genops_scan(path)))
        runs["torch.load weights_only mmap"].append(
            timed(lambda: torch.load(path, weights_only=True, mmap=True)))
    size = os.path.getsize(path)
    print(f"{path}: {size / 2**30:.2f} GiB, 1,000 tensors; median of {a.rounds} rounds "
          f"(torch {torch.__version__}, Python {sys.version.split()[0]})")
    for name, ts in runs.items():
        print(f"  {name:32s} {statistics.median(ts) * 1e3:8.1f} ms   (min {min(ts) * 1e3:.1f})")


if __name__ == "__main__":
    main()
