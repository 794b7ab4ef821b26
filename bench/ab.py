#!/usr/bin/env python3
"""Interleaved A/B timing of shell commands that print pthio_bench JSON lines.

    python3 bench/ab.py --rounds 7 'CMD_A' 'CMD_B' ...

Runs every command once per round, in an order shuffled per round, for --rounds rounds after one
warm-up round, and prints each one's median "seconds" (the last JSON line it printed; --field picks
another key) and its ratio to the first command's median. Used for the before/after figures in
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
    ap.add_argument("--field", default="seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()
    samples = {c: [] for c in a.commands}
    rng = random.Random(a.seed)
    for rnd in range(a.rounds + 1):
        order = list(a.commands)
        rng.shuffle(order)
        for c in order:
            out = subprocess.run(c, shell=True, capture_output=True, text=True, check=True).stdout
            v = json.loads(out.strip().splitlines()[-1])[a.field]
            if rnd > 0:
                samples[c].append(v)
    base = statistics.median(samples[a.commands[0]])
    for c in a.commands:
        m = statistics.median(samples[c])
        print(f"{m:12.6f}  x{m / base:6.3f}  [{min(samples[c]):.6f} .. {max(samples[c]):.6f}]  {c}")


if __name__ == "__main__":
    main()
