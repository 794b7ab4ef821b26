#!/usr/bin/env python3
"""torch.distributed.checkpoint folders: pthio against torch, measured in the same run.

  PTHIO_VENV/bin/python bench/dcp_bench.py PTHIO DIR [--rounds N]

Makes in DIR (once; reused when present):
  big.dcp/     1 GiB of float32 (16 tensors of 4096 x 4096) saved by 2 ranks over gloo, each tensor
               a DTensor sharded on dim 0 (Shard(0)), as FSDP2 leaves them
  big.pth      the same tensors, whole, saved by torch.save (the "equivalent single .pth")
  many.dcp/    10,000 small float32 tensors (64 elements each) saved by one process
Then, alternating, N rounds (outputs on /dev/shm, so the disk's writeback is not measured):
  pthio convert big.dcp OUT.pth   beside   pthio convert big.pth OUT.pth     (target <= 1.5x)
  pthio ls many.dcp               beside   dcp_to_torch_save(many.dcp, OUT)  (target >= 10x)
  pthio convert big.pth OUT --to dcp  beside  torch_save_to_dcp(big.pth, OUT)
Each pthio figure is the whole process (/usr/bin/time: wall seconds, peak RSS); torch's is the
call alone, in this interpreter, after `import torch` (its startup not counted).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def make_big(dir_):
    import torch
    import torch.multiprocessing as mp

    if os.path.exists(os.path.join(dir_, "big.dcp", ".metadata")) and os.path.exists(
        os.path.join(dir_, "big.pth")
    ):
        return
    g = torch.Generator().manual_seed(0)
    sd = {f"layers.{i}.weight": torch.randn(4096, 4096, generator=g) for i in range(16)}
    torch.save(sd, os.path.join(dir_, "big.pth"))
    del sd
    mp.spawn(_save_rank, args=(dir_,), nprocs=2)


def _save_rank(rank, dir_):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29641")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    whole = torch.load(os.path.join(dir_, "big.pth"), mmap=True)
    sd = {k: distribute_tensor(v, mesh, [Shard(0)]) for k, v in whole.items()}
    dcp.save(sd, checkpoint_id=os.path.join(dir_, "big.dcp"))
    dist.destroy_process_group()


def make_many(dir_):
    import torch
    import torch.distributed.checkpoint as dcp

    path = os.path.join(dir_, "many.dcp")
    if os.path.exists(os.path.join(path, ".metadata")):
        return
    g = torch.Generator().manual_seed(1)
    sd = {f"blocks.{i // 10}.p{i % 10}": torch.randn(64, generator=g) for i in range(10_000)}
    dcp.save(sd, checkpoint_id=path)


def timed(cmd):
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M"] + cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    sec, kb = out.stderr.strip().splitlines()[-1].split()
    return float(sec), int(kb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pthio")
    ap.add_argument("dir")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    make_big(a.dir)
    make_many(a.dir)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save, torch_save_to_dcp
    import shutil

    shm = "/dev/shm/pthio-dcp-bench.pth"
    rows = {"convert_dcp": [], "convert_pth": [], "ls_dcp": [], "torch_dcp_to_torch_save": [],
            "convert_to_dcp": [], "torch_save_to_dcp": []}
    shm_dir = "/dev/shm/pthio-dcp-bench.dcp"
    # Page cache warm for every input.
    for p in ["big.pth"] + [os.path.join("big.dcp", f) for f in os.listdir(os.path.join(a.dir, "big.dcp"))]:
        with open(os.path.join(a.dir, p), "rb") as f:
            while f.read(1 << 24):
                pass
    for _ in range(a.rounds):
        for key, src in (("convert_dcp", "big.dcp"), ("convert_pth", "big.pth")):
            if os.path.exists(shm):
                os.remove(shm)
            rows[key].append(timed([a.pthio, "convert", os.path.join(a.dir, src), shm]))
        os.remove(shm)
        rows["ls_dcp"].append(timed([a.pthio, "ls", os.path.join(a.dir, "many.dcp")]))
        t0 = time.perf_counter()
        dcp_to_torch_save(os.path.join(a.dir, "many.dcp"), shm)
        rows["torch_dcp_to_torch_save"].append((time.perf_counter() - t0, 0))
        os.remove(shm)
        shutil.rmtree(shm_dir, ignore_errors=True)
        rows["convert_to_dcp"].append(
            timed([a.pthio, "convert", os.path.join(a.dir, "big.pth"), shm_dir, "--to", "dcp"]))
        shutil.rmtree(shm_dir)
        t0 = time.perf_counter()
        torch_save_to_dcp(os.path.join(a.dir, "big.pth"), shm_dir)
        rows["torch_save_to_dcp"].append((time.perf_counter() - t0, 0))
        shutil.rmtree(shm_dir)
    med = {k: statistics.median(s for s, _ in v) for k, v in rows.items()}
    for k, v in rows.items():
        print(f"{k:26s} " + "  ".join(f"{s:.3f} s {kb / 1024:.0f} MiB" for s, kb in v))
    print(f"convert 1 GiB DCP (2 ranks) / convert the equivalent .pth: "
          f"{med['convert_dcp'] / med['convert_pth']:.2f}x (target <= 1.5x)")
    print(f"dcp_to_torch_save / pthio ls, 10,000 tensors: "
          f"{med['torch_dcp_to_torch_save'] / med['ls_dcp']:.1f}x (target >= 10x)")
    print(f"torch_save_to_dcp / pthio convert --to dcp, 1 GiB: "
          f"{med['torch_save_to_dcp'] / med['convert_to_dcp']:.1f}x")


if __name__ == "__main__":
    sys.exit(main())
