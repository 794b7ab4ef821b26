#!/usr/bin/env python3
"""Summarises the fuzzing logs of tests/fuzz/run.sh as the Markdown tables of FUZZING.md.

    python3 tests/fuzz/summarize.py [build-fuzz/logs]

One row per run (target, start time from the log's name, seconds fuzzed, executions, executions
per second, coverage and features at the end, how the run ended), then the totals per target.
The time of a run is executions / libFuzzer's average executions per second (its final stats),
so a run stopped early counts what it did, not what it was asked to do.
"""
import collections
import os
import re
import sys


def parse(path):
    text = open(path, "rb").read().decode("utf-8", "replace")
    name = os.path.basename(path)
    m = re.match(r"(.+)-(\d{8}T\d{6}Z)\.log$", name)
    target, when = (m.group(1), m.group(2)) if m else (name, "?")
    execs = re.findall(r"stat::number_of_executed_units:\s+(\d+)", text)
    rate = re.findall(r"stat::average_exec_per_sec:\s+(\d+)", text)
    last = None
    for line in text.splitlines():
        if re.match(r"#\d+\s", line) and " cov: " in line:
            last = line
    if last is None:
        return None
    n = int(re.match(r"#(\d+)", last).group(1))
    cov = re.search(r"cov: (\d+)", last).group(1)
    ft = re.search(r"ft: (\d+)", last).group(1)
    corp = re.search(r"corp: (\S+)", last).group(1)
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    if execs and rate and int(rate[-1]) > 0:
        n = int(execs[-1])
        seconds = n / int(rate[-1])
    elif done:
        seconds = int(done.group(2))
    else:
        # Stopped without final stats: the last status line's rate.
        r = re.search(r"exec/s: (\d+)", last)
        seconds = n / int(r.group(1)) if r and int(r.group(1)) else 0
    if done:
        end = "time limit, clean"
    elif re.search(r"ERROR: libFuzzer: timeout|ALARM: working on the last Unit for", text):
        end = "timeout (see Findings)"
    elif re.search(r"==ERROR|SUMMARY: (Address|Undefined|Leak)|deadly signal|libFuzzer: out-of-memory", text):
        end = "finding (see Findings)"
    else:
        end = "stopped early"
    when_text = f"{when[0:4]}-{when[4:6]}-{when[6:8]} {when[9:11]}:{when[11:13]}" if when != "?" else "?"
    return {"target": target, "when": when_text, "seconds": seconds, "execs": n,
            "rate": round(n / seconds) if seconds else 0, "cov": cov, "ft": ft, "corp": corp, "end": end}


def main():
    logs = sys.argv[1] if len(sys.argv) > 1 else "build-fuzz/logs"
    runs = [r for r in (parse(os.path.join(logs, f)) for f in sorted(os.listdir(logs)) if f.endswith(".log")) if r]
    runs.sort(key=lambda r: (r["target"], r["when"]))
    print("| target | started (UTC) | seconds | executions | exec/s | cov | ft | corpus | ended |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for r in runs:
        print(f"| `{r['target']}` | {r['when']} | {r['seconds']:.0f} | {r['execs']:,} | {r['rate']:,} | {r['cov']} | "
              f"{r['ft']} | {r['corp']} | {r['end']} |")
    tot = collections.OrderedDict()
    for r in runs:
        t = tot.setdefault(r["target"], {"runs": 0, "seconds": 0.0, "execs": 0, "cov": 0})
        t["runs"] += 1
        t["seconds"] += r["seconds"]
        t["execs"] += r["execs"]
        t["cov"] = max(t["cov"], int(r["cov"]))
    print()
    print("| target | runs | minutes in total | executions in total | highest cov |")
    print("|---|---:|---:|---:|---:|")
    for k, t in tot.items():
        print(f"| `{k}` | {t['runs']} | {t['seconds'] / 60:.1f} | {t['execs']:,} | {t['cov']} |")


if __name__ == "__main__":
    main()
