#!/usr/bin/env python3
"""pthio against torch, safetensors and page-cache reads, in one process, interleaved.

Run with the torch 2.x interpreter (torch + safetensors + numpy):

    /opt/torch2/bin/python bench/compare.py --bench build/pthio_bench [--data /work/bench-data]
                                            [--rounds 7] [--out bench/results.json] [--only NAMES]

It writes the checkpoints once with torch (kept in --data, never in the repository):
  ckpt_1g     1 GiB of float32 in 1,000 tensors      (eager/mmap load, save)
  ckpt_256m   256 MiB in 1,000 tensors                (mmap flatness)
  ckpt_64m    64 MiB in 1,000 tensors                 (mmap flatness, eager)
  many_10k    10,000 small tensors (16 float32 each)  (metadata parse)
  many_1k     1,000 small tensors (16 float32 each)   (per-tensor slope, with many_10k)
each as .pt (torch.save) and .safetensors (safetensors.torch.save_file) of the same tensors.

Nothing is dropped from the page cache: every file is read whole before each round, so all runs
are warm. Each round runs every measurement once, in an order shuffled per round (seeded), so
background load on the machine spreads over all of them alike; round 0 is a warm-up and is not
counted; the figure reported is the median of the remaining rounds. pthio's times are measured
inside pthio_bench around the operation alone; torch's and safetensors' inside this process
around the call alone; `cat FILE > /dev/null` from here around the subprocess (it includes
starting cat, about a millisecond).

References (same run): `read fresh` is read() of the whole file from the page cache into a newly
allocated buffer: the least an eager load can do, since it must fault in as many fresh pages as the
file has bytes. `read reuse` is read() into an already-faulted buffer (the copy alone), and `cat`
the shell's page-cache read.
"""
import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import torch
import safetensors
import safetensors.torch

MIB = 1 << 20

CHECKPOINTS = {
    # name: (total bytes, tensor count)
    "ckpt_1g": (1024 * MIB, 1000),
    "ckpt_256m": (256 * MIB, 1000),
    "ckpt_64m": (64 * MIB, 1000),
    "many_10k": (10_000 * 64, 10_000),
    "many_1k": (1_000 * 64, 1_000),
}


def state_dict(total, count):
    per = total // 4 // count
    g = torch.Generator().manual_seed(count)
    return {f"layers.{i}.weight": torch.randn(per, generator=g) for i in range(count)}


def make_files(data):
    os.makedirs(data, exist_ok=True)
    for name, (total, count) in CHECKPOINTS.items():
        pt = os.path.join(data, name + ".pt")
        st = os.path.join(data, name + ".safetensors")
        if os.path.exists(pt) and os.path.exists(st):
            continue
        print(f"writing {name} ({total / MIB:.1f} MiB, {count} tensors)", file=sys.stderr)
        sd = state_dict(total, count)
        torch.save(sd, pt)
        safetensors.torch.save_file(sd, st)
        del sd
        gc.collect()


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 * MIB):
            pass


def bench_json(bench, *args):
    r = subprocess.run([bench, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{bench} {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def first_byte(sd):
    t = next(iter(sd.values()))
    return t.reshape(-1)[0].item() if t.numel() else None


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    s = time.perf_counter() - t0
    del out
    gc.collect()
    return s


def measurements(bench, data, out_dir):
    """name -> (checkpoint, callable returning a dict with at least 'seconds')."""
    m = {}

    def pt(n):
        return os.path.join(data, n + ".pt")

    def st(n):
        return os.path.join(data, n + ".safetensors")

    def load_torch(path, mmap):
        def run():
            t0 = time.perf_counter()
            sd = torch.load(path, weights_only=True, mmap=mmap)
            first_byte(sd)
            s = time.perf_counter() - t0
            del sd
            gc.collect()
            return {"seconds": s}
        return run

    def load_st(path):
        def run():
            t0 = time.perf_counter()
            sd = safetensors.torch.load_file(path)
            first_byte(sd)
            s = time.perf_counter() - t0
            del sd
            gc.collect()
            return {"seconds": s}
        return run

    def cat(path):
        def run():
            t0 = time.perf_counter()
            subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)
            return {"seconds": time.perf_counter() - t0}
        return run

    for n in CHECKPOINTS:
        m[f"{n}/pthio eager"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--eager"))
        m[f"{n}/pthio mmap"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--mmap"))
        m[f"{n}/torch.load"] = (n, load_torch(pt(n), False))
        m[f"{n}/torch.load mmap"] = (n, load_torch(pt(n), True))
        m[f"{n}/safetensors load_file"] = (n, load_st(st(n)))
        m[f"{n}/read fresh"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "fresh"))
    for n in ("ckpt_1g", "ckpt_64m"):
        m[f"{n}/pthio eager no-crc"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--eager", "--no-crc"))
        m[f"{n}/read reuse"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "reuse"))
        m[f"{n}/read fresh-thp"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "fresh-thp"))
        m[f"{n}/read mmap-memcpy"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "mmap-memcpy"))
        m[f"{n}/cat"] = (n, cat(pt(n)))
        m[f"{n}/crc32 file"] = (n, lambda p=pt(n): bench_json(bench, "crc", p))

    # Saves of the same tensors: each side loads the .pt untimed, then times the save alone.
    for n in ("ckpt_1g", "many_10k"):
        dst = os.path.join(out_dir, f"save_{n}")

        def save_torch(src=pt(n), dst=dst + "_torch.pt"):
            sd = torch.load(src, weights_only=True)
            gc.collect()
            t0 = time.perf_counter()
            torch.save(sd, dst)
            s = time.perf_counter() - t0
            del sd
            gc.collect()
            return {"seconds": s}

        def save_st(src=pt(n), dst=dst + ".safetensors"):
            sd = torch.load(src, weights_only=True)
            gc.collect()
            t0 = time.perf_counter()
            safetensors.torch.save_file(sd, dst)
            s = time.perf_counter() - t0
            del sd
            gc.collect()
            return {"seconds": s}

        m[f"{n}/torch.save"] = (n, save_torch)
        m[f"{n}/safetensors save_file"] = (n, save_st)
        for sink in ("nofsync", "file", "null"):
            m[f"{n}/pthio save {sink}"] = (
                n, lambda src=pt(n), d=dst + "_pthio.pt", s=sink:
                bench_json(bench, "save", d, "--from", src, "--sink", s, "--crc"))
    return m


def rss_figures(bench, data):
    """Peak resident memory of one load per mode, from /usr/bin/time -v and getrusage."""
    out = {}
    path = os.path.join(data, "ckpt_1g.pt")
    for mode in ("eager", "mmap"):
        r = subprocess.run(["/usr/bin/time", "-v", bench, "load", path, "--" + mode],
                           capture_output=True, text=True, check=True)
        line = [l for l in r.stderr.splitlines() if "Maximum resident set size" in l]
        j = json.loads(r.stdout.strip().splitlines()[-1])
        out[mode] = {"time_v_max_rss_kib": int(line[0].split(":")[1]) if line else None,
                     "getrusage_max_rss_kib": j["max_rss_kib"], "rss_delta_kib": j["rss_delta_kib"],
                     "file_bytes": os.path.getsize(path)}
    return out


def machine():
    model = ""
    try:
        for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if l.startswith("Model name:"):
                model = l.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpus": os.cpu_count(), "memory_gib": round(mem / (1 << 30), 1), "cpu_model": model,
            "kernel": platform.release(), "torch": torch.__version__, "safetensors": safetensors.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "pthio_bench"))
    ap.add_argument("--data", default="/work/bench-data")
    ap.add_argument("--rounds", type=int, default=7, help="counted rounds (after one warm-up round)")
    ap.add_argument("--out", default=os.path.join(here, "results.json"))
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching measurements")
    ap.add_argument("--seed", type=int, default=6)
    a = ap.parse_args()
    if a.rounds < 5:
        ap.error("--rounds must be at least 5")
    torch.set_num_threads(os.cpu_count() or 1)

    make_files(a.data)
    out_dir = os.path.join(a.data, "out")
    os.makedirs(out_dir, exist_ok=True)
    m = measurements(os.path.abspath(a.bench), a.data, out_dir)
    if a.only:
        keys = [s.strip() for s in a.only.split(",") if s.strip()]
        m = {k: v for k, v in m.items() if any(s in k for s in keys)}

    samples = {k: [] for k in m}
    extras = {k: [] for k in m}
    rng = random.Random(a.seed)
    for rnd in range(a.rounds + 1):
        for n in CHECKPOINTS:
            warm(os.path.join(a.data, n + ".pt"))
            warm(os.path.join(a.data, n + ".safetensors"))
        order = list(m)
        rng.shuffle(order)
        t0 = time.perf_counter()
        for k in order:
            r = m[k][1]()
            if rnd > 0:
                samples[k].append(r["seconds"])
                extras[k].append(r)
        print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in samples.items() if v}

    def get(k):
        return med.get(k)

    def med_extra(k, field):
        v = [e[field] for e in extras.get(k, []) if field in e]
        return statistics.median(v) if v else None

    def ratio(a_, b_):
        x, y = get(a_), get(b_)
        return x / y if x and y else None

    ratios = {
        "eager 1g / read fresh 1g (target <= 1.5)": ratio("ckpt_1g/pthio eager", "ckpt_1g/read fresh"),
        "eager 1g / read reuse 1g": ratio("ckpt_1g/pthio eager", "ckpt_1g/read reuse"),
        "eager 1g / cat 1g": ratio("ckpt_1g/pthio eager", "ckpt_1g/cat"),
        "eager no-crc 1g / read fresh 1g": ratio("ckpt_1g/pthio eager no-crc", "ckpt_1g/read fresh"),
        "torch.load 1g / eager 1g": ratio("ckpt_1g/torch.load", "ckpt_1g/pthio eager"),
        "safetensors load_file 1g / eager 1g": ratio("ckpt_1g/safetensors load_file", "ckpt_1g/pthio eager"),
        "mmap 1g / mmap 64m (flatness)": ratio("ckpt_1g/pthio mmap", "ckpt_64m/pthio mmap"),
        "torch.load 10k / pthio mmap 10k (target >= 10)": ratio("many_10k/torch.load", "many_10k/pthio mmap"),
        "torch.load 10k / pthio eager 10k": ratio("many_10k/torch.load", "many_10k/pthio eager"),
        "torch.load mmap 10k / pthio mmap 10k": ratio("many_10k/torch.load mmap", "many_10k/pthio mmap"),
        "torch.save 1g / pthio save nofsync 1g (target >= 4)": ratio("ckpt_1g/torch.save", "ckpt_1g/pthio save nofsync"),
        "torch.save 1g / pthio save file+fsync 1g": ratio("ckpt_1g/torch.save", "ckpt_1g/pthio save file"),
        "safetensors save_file 1g / pthio save nofsync 1g": ratio("ckpt_1g/safetensors save_file",
                                                                  "ckpt_1g/pthio save nofsync"),
        "torch.save 10k / pthio save nofsync 10k": ratio("many_10k/torch.save", "many_10k/pthio save nofsync"),
    }
    derived = {}
    t10, t1 = get("many_10k/pthio mmap"), get("many_1k/pthio mmap")
    if t10 and t1:
        derived["per-tensor overhead, mmap, (t10k - t1k) / 9000 [us] (target <= 2)"] = (t10 - t1) / 9000 * 1e6
        derived["per-tensor cost, mmap, t10k / 10000 [us]"] = t10 / 10000 * 1e6
    for sink in ("nofsync", "file", "null"):
        k = f"ckpt_1g/pthio save {sink}"
        c = med_extra(k, "crc_seconds")
        if c and get(k):
            derived[f"crc32 share of pthio save {sink} 1g (target <= 0.10)"] = c / get(k)
    for n in ("ckpt_64m", "ckpt_256m", "ckpt_1g"):
        if get(f"{n}/pthio mmap"):
            derived[f"mmap open+parse+first tensor {n} [ms] (target < 5)"] = get(f"{n}/pthio mmap") * 1e3
            derived[f"mmap rss delta {n} [KiB]"] = med_extra(f"{n}/pthio mmap", "rss_delta_kib")
    rss = rss_figures(os.path.abspath(a.bench), a.data) if not a.only else {}

    width = max(len(k) for k in med) if med else 10
    print(f"\n{'measurement':<{width}}  {'median s':>10}  {'min s':>10}  {'max s':>10}  n")
    for k in sorted(med):
        v = samples[k]
        print(f"{k:<{width}}  {med[k]:>10.6f}  {min(v):>10.6f}  {max(v):>10.6f}  {len(v)}")
    print("\nratios (medians, same run)")
    for k, v in ratios.items():
        if v is not None:
            print(f"  {k:<60} {v:8.3f}")
    print("\nderived")
    for k, v in derived.items():
        if v is not None:
            print(f"  {k:<72} {v:10.3f}")
    if rss:
        print("\nresident memory, 1 GiB / 1,000 tensors, one load (KiB)")
        for mode, r in rss.items():
            print(f"  {mode:<6} /usr/bin/time -v max RSS {r['time_v_max_rss_kib']:>9}  "
                  f"RSS added by the load {r['rss_delta_kib']:>9}  file {r['file_bytes'] // 1024:>9}")

    result = {
        "machine": machine(),
        "command": " ".join([sys.executable] + sys.argv),
        "rounds": a.rounds,
        "medians_seconds": med,
        "samples_seconds": samples,
        "ratios": ratios,
        "derived": derived,
        "rss": rss,
        "extras": {k: v for k, v in extras.items() if v and isinstance(v[0], dict) and len(v[0]) > 1},
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"\nwrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
