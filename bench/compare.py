#!/usr/bin/env python3
"""pthio against torch, safetensors and page-cache reads, in one process, interleaved.

Run with the torch 2.x interpreter (torch + safetensors + numpy: the venv scripts/deps.sh makes,
$PTHIO_VENV, by default ~/.cache/pthio/venv-torch2); run by another Python without torch, the
script starts itself again under that one:

    $PTHIO_VENV/bin/python bench/compare.py --bench build/pthio_bench [--data DIR]
                                            [--rounds 7] [--out bench/results.json] [--only NAMES]
                                            [--torch1-python PY]

torch is measured three ways: torch.load(weights_only=True) ("torch.load"), weights_only=False
("torch.load full", CPython's C unpickler without the weights-only checks), and mmap=True. A
second torch (--torch1-python, default $PTHIO_TORCH1_PYTHON or Debian's /usr/bin/python3 with
python3-torch, torch 1.13) is measured with weights_only=False in a process of its own, timing the
load alone ("torch1 load full"): its unpickler is the fastest of the torches the tests use.

It writes the checkpoints once with torch (kept in --data, by default ~/.cache/pthio/bench-data,
never in the repository):
  ckpt_1g     1 GiB of float32 in 1,000 tensors      (eager/mmap load, save)
  ckpt_256m   256 MiB in 1,000 tensors                (mmap flatness)
  ckpt_64m    64 MiB in 1,000 tensors                 (mmap flatness, eager)
  many_10k    10,000 small tensors (16 float32 each)  (metadata parse)
  many_1k     1,000 small tensors (16 float32 each)   (per-tensor slope, with many_10k)
each as .pt (torch.save) and .safetensors (safetensors.torch.save_file) of the same tensors.

Nothing is dropped from the page cache: the file a measurement uses is read whole right before
it (untimed), so all runs are warm. Right before, not once a round: on the VM these figures come
from, memory the guest leaves untouched for some seconds is reclaimed by the host, and touching it
again costs far more than a page-cache hit (a 1 GiB file fully in the page cache: opening its
1,000-entry zip, `pthio_bench zip FILE`, took 1.0-2.8 ms run after run, 84 ms after 15 s idle).

Each round runs every measurement once, in an order shuffled per round (seeded), so
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
import resource
import statistics
import subprocess
import sys
import time


def _torch_python():
    """This interpreter when it has torch; else the environment scripts/deps.sh makes."""
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("PTHIO_VENV") or os.path.join(os.path.expanduser("~"), ".cache", "pthio",
                                                        "venv-torch2")
    py = os.path.join(venv, "bin", "python")
    if os.environ.get("PTHIO_COMPARE_REEXEC") or not os.path.exists(py):
        sys.exit(f"compare.py needs torch, safetensors and numpy: run it with {py} "
                 "(bash scripts/deps.sh makes it), or set PTHIO_VENV")
    os.environ["PTHIO_COMPARE_REEXEC"] = "1"
    os.execv(py, [py, *sys.argv])


_torch_python()
import torch  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402

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


def remove(path):
    """Every saver starts without its previous output (truncating 1 GiB of page cache is not saving)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def first_byte(sd):
    t = next(iter(sd.values()))
    return t.reshape(-1)[0].item() if t.numel() else None


class stopwatch:
    """Wall time and this process's CPU time (all threads) around a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.result = {"seconds": time.perf_counter() - self.w0, "cpu_seconds": time.process_time() - self.c0}


TORCH1_LOAD = r"""
import gc, json, resource, sys, time
import torch
gc.collect()
t0, c0 = time.perf_counter(), time.process_time()
sd = torch.load(sys.argv[1])
t = next(iter(sd.values()))
t.reshape(-1)[0].item()
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                  "torch": torch.__version__}))
"""


def torch1_python(option):
    """The interpreter with the second torch: --torch1-python, $PTHIO_TORCH1_PYTHON, or Debian's
    python3 when it has torch 1.x; None when there is none."""
    candidates = [option] if option else [os.environ.get("PTHIO_TORCH1_PYTHON", ""), "/usr/bin/python3"]
    for py in candidates:
        if not py or not os.path.exists(py):
            continue
        r = subprocess.run([py, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
        if r.returncode == 0 and (option or r.stdout.startswith("1.")):
            return py
    return None


def load_torch1(py, path):
    r = subprocess.run([py, "-c", TORCH1_LOAD, path], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def measurements(bench, data, out_dir, torch1=None):
    """name -> (checkpoint, callable returning a dict with at least 'seconds')."""
    m = {}

    def pt(n):
        return os.path.join(data, n + ".pt")

    def st(n):
        return os.path.join(data, n + ".safetensors")

    def load_torch(path, mmap, weights_only=True):
        def run():
            gc.collect()
            with stopwatch() as w:
                sd = torch.load(path, weights_only=weights_only, mmap=mmap)
                first_byte(sd)
            del sd
            gc.collect()
            return w.result
        return run

    def load_st(path):
        def run():
            gc.collect()
            with stopwatch() as w:
                sd = safetensors.torch.load_file(path)
                first_byte(sd)
            del sd
            gc.collect()
            return w.result
        return run

    def cp(src, dst):
        def run():
            remove(dst)
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["cp", src, dst], check=True)
            s = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            return {"seconds": s, "cpu_seconds": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime}
        return run

    def cat(path):
        def run():
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
            s = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            return {"seconds": s, "cpu_seconds": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime}
        return run

    for n in CHECKPOINTS:
        m[f"{n}/pthio eager"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--eager"))
        m[f"{n}/pthio mmap"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--mmap"))
        m[f"{n}/pthio lazy"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--lazy"))
        m[f"{n}/torch.load"] = (n, load_torch(pt(n), False))
        m[f"{n}/torch.load mmap"] = (n, load_torch(pt(n), True))
        m[f"{n}/torch.load full"] = (n, load_torch(pt(n), False, weights_only=False))
        if torch1:
            m[f"{n}/torch1 load full"] = (n, lambda p=pt(n): load_torch1(torch1, p))
        m[f"{n}/safetensors load_file"] = (n, load_st(st(n)))
        m[f"{n}/read fresh"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "fresh"))
    for n in ("ckpt_1g", "ckpt_64m"):
        m[f"{n}/pthio eager no-crc"] = (n, lambda p=pt(n): bench_json(bench, "load", p, "--eager", "--no-crc"))
        m[f"{n}/read reuse"] = (n, lambda p=pt(n): bench_json(bench, "read", p, "--method", "reuse"))
        m[f"{n}/cat"] = (n, cat(pt(n)))
        m[f"{n}/crc32 file"] = (n, lambda p=pt(n): bench_json(bench, "crc", p))

    # Saves of the same tensors: each side loads the .pt untimed, then times the save alone. Every
    # save and write goes to one path, removed before (untimed) and after: several GiB of dirty
    # page cache left behind would throttle whichever writer ran next.
    def then_remove(fn, path):
        def run():
            try:
                return fn()
            finally:
                remove(path)
        return run

    for n in ("ckpt_1g", "many_10k"):
        dst = os.path.join(out_dir, "save")

        def save_torch(src=pt(n), dst=dst + "_torch.pt"):
            sd = torch.load(src, weights_only=True)
            remove(dst)
            gc.collect()
            with stopwatch() as w:
                torch.save(sd, dst)
            del sd
            gc.collect()
            return w.result

        def save_st(src=pt(n), dst=dst + ".safetensors"):
            sd = torch.load(src, weights_only=True)
            remove(dst)
            gc.collect()
            with stopwatch() as w:
                safetensors.torch.save_file(sd, dst)
            del sd
            gc.collect()
            return w.result

        m[f"{n}/torch.save"] = (n, then_remove(save_torch, dst + "_torch.pt"))
        m[f"{n}/safetensors save_file"] = (n, then_remove(save_st, dst + ".safetensors"))
        for sink in ("nofsync", "file", "null"):
            m[f"{n}/pthio save {sink}"] = (
                n, then_remove(lambda src=pt(n), d=dst + "_pthio.pt", s=sink:
                               bench_json(bench, "save", d, "--from", src, "--sink", s, "--crc"), dst + "_pthio.pt"))
        # The same save with CRC fields 0 (save_options::compute_crc32 = false): the difference is
        # what the CRC-32 costs the save.
        for sink in ("nofsync", "null"):
            m[f"{n}/pthio save {sink} no-crc"] = (
                n, then_remove(lambda src=pt(n), d=dst + "_pthio.pt", s=sink:
                               bench_json(bench, "save", d, "--from", src, "--sink", s, "--no-crc"), dst + "_pthio.pt"))
    # The write floor for a 1 GiB save: the same number of bytes from memory to a new file, no fsync.
    size = CHECKPOINTS["ckpt_1g"][0] // MIB
    for method in ("plain", "big", "crc-chunked"):
        d = os.path.join(out_dir, "save.bin")
        m[f"ckpt_1g/write {method}"] = ("ckpt_1g", then_remove(lambda d=d, me=method: bench_json(
            bench, "write", d, "--size-mib", str(size), "--method", me), d))
    # cp of the 1 GiB file to a new file (page cache to page cache, no fsync): the shell's floor.
    d = os.path.join(out_dir, "save.cp")
    m["ckpt_1g/cp"] = ("ckpt_1g", then_remove(cp(pt("ckpt_1g"), d), d))
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
                     "rss_anon_delta_kib": j.get("rss_anon_delta_kib"),
                     "rss_file_delta_kib": j.get("rss_file_delta_kib"), "file_bytes": os.path.getsize(path)}
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
    repo = os.path.join(here, "..")
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "pthio_bench"))
    ap.add_argument("--data", default=os.path.join(os.path.expanduser("~"), ".cache", "pthio", "bench-data"))
    ap.add_argument("--rounds", type=int, default=7, help="counted rounds (after one warm-up round)")
    ap.add_argument("--out", default=os.path.join(here, "results.json"))
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching measurements")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--save-dir", default="", help="where saves are written (default: /dev/shm/pthio-bench)")
    ap.add_argument("--torch1-python", default="",
                    help="a Python with a second torch, measured with weights_only=False "
                         "(default: $PTHIO_TORCH1_PYTHON, or /usr/bin/python3 when it has torch 1.x)")
    a = ap.parse_args()
    if a.rounds < 5:
        ap.error("--rounds must be at least 5")
    torch.set_num_threads(os.cpu_count() or 1)

    make_files(a.data)
    # Saves, writes and cp go to --save-dir: by default a tmpfs (/dev/shm), where a write is the
    # cost of producing the bytes in the page cache. On a disk, 1 GiB of dirty pages per run sends
    # later writers into the kernel's writeback throttling: medians then swung 10x between runs
    # (0.24 s to 2.2 s for the same write), measuring the disk's backlog rather than the writer.
    out_dir = a.save_dir or (os.path.join("/dev/shm", "pthio-bench") if os.path.isdir("/dev/shm")
                             else os.path.join(a.data, "out"))
    os.makedirs(out_dir, exist_ok=True)
    torch1 = torch1_python(a.torch1_python)
    m = measurements(os.path.abspath(a.bench), a.data, out_dir, torch1)
    if a.only:
        keys = [s.strip() for s in a.only.split(",") if s.strip()]
        m = {k: v for k, v in m.items() if any(s in k for s in keys)}

    extras = {k: [] for k in m}
    rng = random.Random(a.seed)
    load_before = os.getloadavg()
    for rnd in range(a.rounds + 1):
        order = list(m)
        rng.shuffle(order)
        t0 = time.perf_counter()
        for k in order:
            warm(os.path.join(a.data, m[k][0] + (".safetensors" if "safetensors load" in k else ".pt")))
            r = m[k][1]()
            if rnd > 0:
                extras[k].append(r)
        print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''}: {time.perf_counter() - t0:.1f} s, "
              f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    load_after = os.getloadavg()

    def med(k, field="seconds"):
        v = [e[field] for e in extras.get(k, []) if e.get(field) is not None]
        return statistics.median(v) if v else None

    def ratio(a_, b_, field):
        x, y = med(a_, field), med(b_, field)
        return x / y if x and y else None

    RATIOS = [
        ("eager 1g / read fresh 1g (target <= 1.0)", "ckpt_1g/pthio eager", "ckpt_1g/read fresh"),
        ("eager 1g / read reuse 1g (copy only, no page faults)", "ckpt_1g/pthio eager", "ckpt_1g/read reuse"),
        ("eager 1g / cat 1g", "ckpt_1g/pthio eager", "ckpt_1g/cat"),
        ("eager no-crc 1g / read fresh 1g", "ckpt_1g/pthio eager no-crc", "ckpt_1g/read fresh"),
        ("eager 64m / read fresh 64m", "ckpt_64m/pthio eager", "ckpt_64m/read fresh"),
        ("torch.load 1g / pthio eager 1g", "ckpt_1g/torch.load", "ckpt_1g/pthio eager"),
        ("torch.load full 1g / pthio eager 1g (target >= 3)", "ckpt_1g/torch.load full", "ckpt_1g/pthio eager"),
        ("torch1 load full 1g / pthio eager 1g", "ckpt_1g/torch1 load full", "ckpt_1g/pthio eager"),
        ("safetensors load_file 1g / pthio eager 1g", "ckpt_1g/safetensors load_file", "ckpt_1g/pthio eager"),
        ("torch.load mmap 1g / pthio mmap 1g", "ckpt_1g/torch.load mmap", "ckpt_1g/pthio mmap"),
        ("safetensors load_file 1g / pthio mmap 1g", "ckpt_1g/safetensors load_file", "ckpt_1g/pthio mmap"),
        ("pthio mmap 1g / pthio mmap 64m (flat: 1.0)", "ckpt_1g/pthio mmap", "ckpt_64m/pthio mmap"),
        ("pthio mmap 256m / pthio mmap 64m (flat: 1.0)", "ckpt_256m/pthio mmap", "ckpt_64m/pthio mmap"),
        ("pthio lazy 1g / pthio lazy 64m (flat: 1.0)", "ckpt_1g/pthio lazy", "ckpt_64m/pthio lazy"),
        ("torch.load 10k / pthio mmap 10k (weights-only, target >= 30)", "many_10k/torch.load", "many_10k/pthio mmap"),
        ("torch.load full 10k / pthio mmap 10k (target >= 10)", "many_10k/torch.load full", "many_10k/pthio mmap"),
        ("torch1 load full 10k / pthio mmap 10k (target >= 10)", "many_10k/torch1 load full", "many_10k/pthio mmap"),
        ("torch.load 10k / pthio eager 10k", "many_10k/torch.load", "many_10k/pthio eager"),
        ("torch.load 10k / pthio lazy 10k", "many_10k/torch.load", "many_10k/pthio lazy"),
        ("torch.load mmap 10k / pthio mmap 10k", "many_10k/torch.load mmap", "many_10k/pthio mmap"),
        ("safetensors load_file 10k / pthio mmap 10k", "many_10k/safetensors load_file", "many_10k/pthio mmap"),
        ("torch.save 1g / pthio save nofsync 1g (target >= 4)", "ckpt_1g/torch.save", "ckpt_1g/pthio save nofsync"),
        ("torch.save 1g / pthio save file+fsync 1g", "ckpt_1g/torch.save", "ckpt_1g/pthio save file"),
        ("safetensors save_file 1g / pthio save nofsync 1g", "ckpt_1g/safetensors save_file",
         "ckpt_1g/pthio save nofsync"),
        ("pthio save nofsync 1g / write plain 1g (the floor)", "ckpt_1g/pthio save nofsync", "ckpt_1g/write plain"),
        ("torch.save 1g / write plain 1g", "ckpt_1g/torch.save", "ckpt_1g/write plain"),
        ("pthio save nofsync 1g / cp 1g", "ckpt_1g/pthio save nofsync", "ckpt_1g/cp"),
        ("torch.save 1g / cp 1g", "ckpt_1g/torch.save", "ckpt_1g/cp"),
        ("pthio save nofsync no-crc 1g / pthio save nofsync 1g", "ckpt_1g/pthio save nofsync no-crc",
         "ckpt_1g/pthio save nofsync"),
        ("write big (64 MiB calls) 1g / write plain (1 MiB) 1g", "ckpt_1g/write big", "ckpt_1g/write plain"),
        ("write crc-chunked 1g / write plain 1g", "ckpt_1g/write crc-chunked", "ckpt_1g/write plain"),
        ("torch.save 10k / pthio save nofsync 10k", "many_10k/torch.save", "many_10k/pthio save nofsync"),
    ]
    fields = ("seconds", "cpu_seconds")
    ratios = {f: {name: ratio(x, y, f) for name, x, y in RATIOS} for f in fields}
    derived = {}
    for f in fields:
        d = {}
        t10, t1 = med("many_10k/pthio mmap", f), med("many_1k/pthio mmap", f)
        if t10 and t1:
            d["per-tensor overhead, mmap, (t10k - t1k) / 9000 [us] (target <= 1)"] = (t10 - t1) / 9000 * 1e6
            d["per-tensor cost, mmap, t10k / 10000 [us]"] = t10 / 10000 * 1e6
        for sink in ("nofsync", "null"):
            k = f"ckpt_1g/pthio save {sink}"
            c = med(k, "crc_seconds" if f == "seconds" else "crc_cpu_seconds")
            if c and med(k, f):
                d[f"crc32 alone over the bytes / pthio save {sink} 1g"] = c / med(k, f)
            w, wo = med(k, f), med(k + " no-crc", f)
            if w and wo:
                d[f"crc32 share of pthio save {sink} 1g, 1 - no-crc/crc (target <= 0.10)"] = 1 - wo / w
        for n in ("ckpt_64m", "ckpt_256m", "ckpt_1g", "many_1k", "many_10k"):
            if med(f"{n}/pthio mmap", f):
                d[f"mmap open+parse+first tensor {n} [ms] (target < 5 for ckpt_1g)"] = med(f"{n}/pthio mmap", f) * 1e3
            if med(f"{n}/pthio lazy", f):
                d[f"lazy open+parse+first tensor read {n} [ms]"] = med(f"{n}/pthio lazy", f) * 1e3
        derived[f] = d
    for n in ("ckpt_64m", "ckpt_256m", "ckpt_1g", "many_10k"):
        for what, key in (("RSS", "rss_delta_kib"), ("anonymous RSS", "rss_anon_delta_kib"),
                          ("file-page RSS", "rss_file_delta_kib")):
            if med(f"{n}/pthio mmap", key) is not None:
                derived.setdefault("memory", {})[f"mmap load: {what} added {n} [KiB]"] = med(f"{n}/pthio mmap", key)
    rss = rss_figures(os.path.abspath(a.bench), a.data) if not a.only else {}

    keys = sorted(k for k in extras if extras[k])
    width = max(len(k) for k in keys) if keys else 10
    print(f"\n{'measurement':<{width}}  {'wall med s':>10}  {'min':>10}  {'max':>10}  {'cpu med s':>10}  n")
    for k in keys:
        v = [e["seconds"] for e in extras[k]]
        c = med(k, "cpu_seconds")
        print(f"{k:<{width}}  {med(k):>10.6f}  {min(v):>10.6f}  {max(v):>10.6f}  "
              f"{c if c is not None else float('nan'):>10.6f}  {len(v)}")
    print("\nratios of medians, same run:                                        wall      cpu")
    for name, _, _ in RATIOS:
        w, c = ratios["seconds"][name], ratios["cpu_seconds"][name]
        if w is not None:
            print(f"  {name:<64} {w:8.3f} {c if c is not None else float('nan'):8.3f}")
    print("\nderived                                                                       wall        cpu")
    for name in derived["seconds"]:
        w, c = derived["seconds"][name], derived["cpu_seconds"].get(name)
        print(f"  {name:<72} {w:10.3f} {c if c is not None else float('nan'):10.3f}")
    for name, v in derived.get("memory", {}).items():
        print(f"  {name:<72} {v:10.0f}")
    if rss:
        print("\nresident memory, 1 GiB / 1,000 tensors, one load (KiB)")
        for mode, r in rss.items():
            print(f"  {mode:<6} /usr/bin/time -v max RSS {r['time_v_max_rss_kib']:>9}  "
                  f"RSS added by the load {r['rss_delta_kib']:>9} (anonymous {r['rss_anon_delta_kib']}, "
                  f"file pages {r['rss_file_delta_kib']})  file {r['file_bytes'] // 1024:>9}")
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")

    result = {
        "machine": machine(),
        # Relative to the repository: no path of the machine that ran it.
        "command": " ".join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), repo)] + sys.argv[1:]),
        "bench": os.path.relpath(os.path.abspath(a.bench), repo),
        "rounds": a.rounds,
        "load_average_before_after": [load_before, load_after],
        "medians": {k: {f: med(k, f) for f in fields} for k in keys},
        "ratios": ratios,
        "derived": derived,
        "rss": rss,
        "runs": extras,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"\nwrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
