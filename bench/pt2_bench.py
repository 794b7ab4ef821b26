#!/usr/bin/env python3
"""torch.export archives (.pt2): pthio against torch, measured in the same run.

  PTHIO_VENV/bin/python bench/pt2_bench.py PTHIO_BENCH DIR [--rounds N]

Makes in DIR (once; reused when present):
  big.pt2   torch.export.save of 16 Linear(4096, 4096) layers: 1 GiB of float32 weights, one raw
            record per weight and bias (the torch 2.9+ archive layout)
  big.pth   torch.save of the same state dict (the same bytes in torch's checkpoint format)
Then, alternating, N rounds, every file in the page cache:
  pthio_bench load big.pt2 --eager | --mmap | --lazy   (in-process: load_checkpoint and the first
                                                       tensor's first byte; resident memory added)
  pthio_bench load big.pth --eager                     (the same bytes as a zip checkpoint)
  pthio_bench read big.pt2 --method fresh              (read() of the whole file: the floor)
  torch.export.load(big.pt2)                           (timed alone, after `import torch`)
  torch.load(big.pth, weights_only=True)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def make(dir_):
    import torch
    import torch.nn as nn

    pt2 = os.path.join(dir_, "big.pt2")
    pth = os.path.join(dir_, "big.pth")
    if os.path.exists(pt2) and os.path.exists(pth):
        return pt2, pth
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4096, 4096) for _ in range(16)]).eval()
    ep = torch.export.export(model, (torch.randn(2, 4096),))
    torch.export.save(ep, pt2)
    torch.save(model.state_dict(), pth)
    return pt2, pth


def bench(tool, *args):
    out = subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pthio_bench")
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    pt2, pth = make(a.dir)
    import torch

    rows = {}

    def add(name, seconds, mib=None):
        rows.setdefault(name, []).append((seconds, mib))

    for _ in range(a.rounds):
        for mode in ("--eager", "--mmap", "--lazy"):
            r = bench(a.pthio_bench, "load", pt2, mode)
            add("pthio load big.pt2 " + mode[2:], r["seconds"], r.get("rss_delta_kib", 0) / 1024)
        r = bench(a.pthio_bench, "load", pth, "--eager")
        add("pthio load big.pth eager", r["seconds"], r.get("rss_delta_kib", 0) / 1024)
        r = bench(a.pthio_bench, "read", pt2, "--method", "fresh")
        add("read() big.pt2 (floor)", r["seconds"])
        s, ep = timed(lambda: torch.export.load(pt2))
        add("torch.export.load(big.pt2)", s)
        del ep
        s, sd = timed(lambda: torch.load(pth, weights_only=True))
        add("torch.load(big.pth)", s)
        del sd
    size = os.path.getsize(pt2) / 2**20
    print("big.pt2: %.0f MiB; torch %s; %d rounds" % (size, torch.__version__, a.rounds))
    for name, runs in rows.items():
        secs = " / ".join("%.3f" % s for s, _ in runs)
        mib = [m for _, m in runs if m is not None]
        extra = (", %.0f MiB" % statistics.median(mib)) if mib else ""
        print("%-30s %s s (median %.3f)%s" % (name, secs, statistics.median(s for s, _ in runs),
                                             extra))


if __name__ == "__main__":
    sys.exit(main())
