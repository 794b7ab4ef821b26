#!/usr/bin/env python3
"""pthio's progress line in a real terminal (docs/cli.md: progress on stderr).

    progress_tty.py PTHIO SCRATCH

Writes a 256 MiB safetensors file, then:
1. under `script` (a pseudo-terminal, every byte recorded): `convert` and `verify` draw a line that
   updates (several frames, bytes done rising to the total) and erase it ("\\r\\033[K") before
   their report; stdout carries exactly what it carries without a terminal; `--quiet` draws
   nothing; with stderr a file, nothing is drawn either;
2. in tmux: `diff` of the file with itself, the pane captured while it runs shows the progress
   line, and the final pane shows the report and no trace of the line.
PTHIO_PROGRESS_AFTER_MS=0 makes the line appear at once instead of after a second, and
PTHIO_PROGRESS_EVERY_MS=0 redraws it at every step instead of every 100 ms (under script; tmux
sees the usual 100 ms redraws).
Prints PTHIO_TEST_SKIPPED when `script` or tmux is missing.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

pthio, scratch = os.path.abspath(sys.argv[1]), sys.argv[2]
for tool in ("script", "tmux"):
    if not shutil.which(tool):
        print(f"PTHIO_TEST_SKIPPED: {tool} is not installed")
        sys.exit(0)
os.makedirs(scratch, exist_ok=True)
big = os.path.join(scratch, "big.safetensors")
tensors, each = 64, 4 << 20  # 64 tensors of 4 MiB
if not os.path.exists(big) or os.path.getsize(big) < tensors * each:
    header, offset = {}, 0
    for i in range(tensors):
        header[f"layer{i}.weight"] = {"dtype": "F32", "shape": [each // 4],
                                      "data_offsets": [offset, offset + each]}
        offset += each
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(big + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        block = bytes(range(256)) * (each // 256)
        for _ in range(tensors):
            f.write(block)
    os.replace(big + ".tmp", big)

env = dict(os.environ, PTHIO_PROGRESS_AFTER_MS="0", PTHIO_PROGRESS_EVERY_MS="0")
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def in_terminal(args):
    """Runs pthio under script(1): returns the terminal's bytes and the exit status."""
    record = os.path.join(scratch, "typescript")
    cmd = " ".join([pthio] + [f"'{a}'" for a in args])
    r = subprocess.run(["script", "-qfec", cmd, record], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = open(record, "rb").read().decode("utf-8", "replace")
    # script adds a first "Script started" line and a last "Script done" line.
    lines = data.split("\n")
    body = "\n".join(l for l in lines if not l.startswith("Script started")
                     and not l.startswith("Script done"))
    return body, r.returncode


def plain(args, stderr_file=False):
    r = subprocess.run([pthio] + args, env=env, capture_output=True, text=True)
    return r.stdout, r.stderr, r.returncode


frame = re.compile(r"\r(\w+): ([0-9.]+ (?:B|KiB|MiB|GiB)) of ([0-9.]+ (?:B|KiB|MiB|GiB))")


def units(text):
    n, u = text.split()
    return float(n) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[u]


for label, args in (("convert", ["convert", big, os.path.join(scratch, "out.pth")]),
                    ("verify", ["verify", os.path.join(scratch, "out.pth")])):
    term, rc = in_terminal(args)
    check(rc == 0, f"{label}: exit 0 in a terminal")
    frames = [m for m in frame.finditer(term) if m.group(1) == label]
    done = [units(m.group(2)) for m in frames]
    check(len(frames) >= 2, f"{label}: the line is drawn and redrawn ({len(frames)} frames)")
    check(done == sorted(done) and len(set(done)) >= 2, f"{label}: the bytes done rise: {done[:6]}")
    check(bool(frames) and units(frames[0].group(3)) >= 200 * (1 << 20),
          f"{label}: the total is the data's size")
    last = term.rfind("\r\033[K")
    check(last > (frames[-1].start() if frames else 0),
          f"{label}: the line is erased after its last frame")
    # What is left once the terminal has applied \r and erase: the report alone, as on a pipe.
    out, err, prc = plain(args)
    shown = "".join(re.sub(r"^.*\r", "", l.replace("\r\033[K", "\r")) + "\n"
                    for l in term.replace("\r\n", "\n").split("\n") if l.strip())
    check(prc == 0 and err == "", f"{label}: nothing on stderr when it is not a terminal")
    check(shown.strip() == out.strip(), f"{label}: stdout in a terminal is stdout on a pipe")
    quiet, rc = in_terminal(args + ["--quiet"])
    check(rc == 0 and frame.search(quiet) is None, f"{label}: --quiet draws nothing")

# tmux: the pane while diff runs, then at the end.
session = f"pthio-progress-{os.getpid()}"
done_mark = os.path.join(scratch, "diff.done")
if os.path.exists(done_mark):
    os.remove(done_mark)
cmd = (f"PTHIO_PROGRESS_AFTER_MS=0 '{pthio}' diff '{big}' '{big}' --atol 1e-9; "
       f"echo EXIT $? > '{done_mark}'; sleep 60")
subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "20", cmd],
               check=True)
seen_progress, final = False, ""
try:
    deadline = time.time() + 60
    while time.time() < deadline:
        pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout
        if re.search(r"^diff: [0-9.]+ \S+ of 512\.0 MiB", pane, re.M):
            seen_progress = True
        if os.path.exists(done_mark) and open(done_mark).read().strip():
            final = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                   capture_output=True, text=True).stdout
            break
        time.sleep(0.01)
finally:
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
check(seen_progress, "tmux: the pane shows diff's progress line while it runs")
check(open(done_mark).read().strip() == "EXIT 0", "tmux: diff exits 0")
lines = [l for l in final.splitlines() if l.strip()]
check(lines == [f"{tensors} equal, 0 differ, 0 only in A, 0 only in B"],
      f"tmux: the final pane holds the report alone: {lines}")

os.remove(os.path.join(scratch, "out.pth"))
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all progress checks passed")
