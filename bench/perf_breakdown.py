#!/usr/bin/env python3
"""Where the time of one operation goes, from a `perf record --call-graph dwarf` profile.

    perf record -e cpu-clock -F 10000 --call-graph dwarf,16384 -o P.data \
        build/pthio_bench load FILE --mmap --repeat 5
    perf script -i P.data | python3 bench/perf_breakdown.py --root pthio::load_checkpoint

Only samples whose stack contains --root count (so the benchmark's own setup and teardown are
left out). Each is charged to the innermost of its frames below the root that matches one of the
buckets below (substring of the symbol); the rest fall in "(other, self)". Prints
each bucket's share of the root's samples, then the hottest leaf symbols.
"""
import argparse
import collections
import re
import sys

# (bucket, substring of a frame's symbol); the innermost frame that matches one names the bucket
# (malloc, free and the kernel match none, so they are charged to the pthio code that called them).
BUCKETS = [
    ("unpickle: machine teardown (~machine)", "machine::~machine"),
    ("unpickle: persistent_load (storage lookup, zip find, materialize)", "load_zip(pthio::byte_source const&, pthio::load_options const&)::{lambda"),
    ("unpickle: rebuild tensor (_rebuild_tensor_v2)", "rebuild_tensor"),
    ("unpickle: memo put", "memo_put"),
    ("unpickle: dict set (SETITEMS)", "set_items"),
    ("unpickle: call (REDUCE)", "machine::call"),
    ("unpickle: loop (other opcodes)", "machine::loop"),
    ("zip_reader: parse central directory / local headers", "zip_reader::zip_reader"),
    ("zip_reader::read (CRC-32 of records)", "zip_reader::read"),
    ("materialize (allocate + memcpy)", "materialize"),
    ("storage::allocate (memset)", "storage::allocate"),
    ("crc32 (libdeflate)", "crc32"),
    ("pickle_root (pickler)", "pickle_root"),
    ("zip_writer::write (write + CRC)", "zip_writer::write"),
    ("zip_writer other", "zip_writer::"),
    ("file_sink::commit (fsync, rename)", "file_sink::commit"),
    ("file_sink::write", "file_sink::write"),
    ("sink write", "_sink::write"),
    ("byte_source::map_file (mmap)", "map_file"),
    ("munmap / release of the map", "munmap"),
]


def parse(stream):
    """Yields each sample's frames, leaf first, as symbol strings."""
    frames = []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if line.startswith((" ", "\t")):
            m = re.match(r"\s+[0-9a-f]+\s+(.*?)(\s+\(.*\))?$", line)
            if m:
                frames.append(m.group(1))
    if frames:
        yield frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="pthio::load_checkpoint")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    buckets = collections.Counter()
    leaves = collections.Counter()
    total = 0
    for frames in parse(sys.stdin):
        top_down = list(reversed(frames))
        idx = next((i for i, f in enumerate(top_down) if a.root in f), None)
        if idx is None:
            continue
        total += 1
        leaves[frames[0]] += 1
        name = "(other, self)"
        for f in reversed(top_down[idx + 1:]):
            hit = next((b for b, s in BUCKETS if s in f), None)
            if hit:
                name = hit
                break
        buckets[name] += 1
    if not total:
        print(f"no samples under {a.root}")
        return
    print(f"{total} samples under {a.root}")
    for name, n in buckets.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("hottest leaf symbols:")
    for name, n in leaves.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {name[:150]}")


if __name__ == "__main__":
    main()
