#!/usr/bin/env python3
"""Interleaved A/B timing of shell commands that print pthio_bench JSON lines.

    python3 bench/ab.py --rounds 7 'CMD_A' 'CMD_B' ...

Runs every command once per round, in an order shuffled per round, for --rounds rounds after one
warm-up round, and prints each one's median "seconds" and "cpu_seconds" (from the last JSON line it
printed; --field adds another key) and their ratios to the first command's medians. Used for the before/after figures in
BENCHMARKS.md: the same file, the old and new binaries, in one run.
"""
import argparse
import json
import random
import statistics
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--field", default=None, help="another key to report")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()
    fields = ["seconds", "cpu_seconds"] + ([a.field] if a.field else [])
    samples = [{f: [] for f in fields} for _ in a.commands]  # by position: a command may repeat (A/A)
    rng = random.Random(a.seed)
    for rnd in range(a.rounds + 1):
        order = list(range(len(a.commands)))
        rng.shuffle(order)
        for c in order:
            out = subprocess.run(a.commands[c], shell=True, capture_output=True, text=True, check=True).stdout
            j = json.loads(out.strip().splitlines()[-1])
            if rnd > 0:
                for f in fields:
                    if f in j:
                        samples[c][f].append(j[f])
    print("  ".join(f"{f + ' median':>18} {'ratio':>7}" for f in fields) + "  command")
    for c, cmd in enumerate(a.commands):
        cols = []
        for f in fields:
            v, b = samples[c][f], samples[0][f]
            if v and b:
                m = statistics.median(v)
                cols.append(f"{m:18.6f} {m / statistics.median(b):7.3f}")
            else:
                cols.append(f"{'-':>18} {'-':>7}")
        print("  ".join(cols) + "  " + cmd)


if __name__ == "__main__":
    main()
