#!/usr/bin/env python3
"""Keeps README.md honest (registered by examples/readme/readme.cmake).

1. A fenced code block right after `<!-- snippet: PATH -->` must appear in PATH (relative to the
   repository root) literally: the block's lines, in order, as consecutive whole lines of the file.
   Every ```cpp and ```c block must carry such a tag, so all C and C++ in the README is compiled
   (and run: examples/readme/readme.cmake builds and tests each PATH).
2. A fenced block right after `<!-- command-output -->` is a shell transcript: each line starting
   with "$ " is run with bash (stdout and stderr together) in a scratch folder where `fixtures` (and `tests/data`)
   links to the repository's fixtures and `pthio` is the command just built; the lines after it, up
   to the next "$ " line, are what it must print. A line "..." in the expected text stands for any
   number of lines (including none).

usage: readme_check.py --readme README.md --root REPO --pthio PATH --scratch DIR
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

TAG = re.compile(r"^<!--\s*(snippet:\s*(?P<path>\S+)|(?P<cmd>command-output))\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


def blocks(lines):
    """Yields (tag match or None, language, first line number, block lines) for each fence."""
    i, pending = 0, None
    while i < len(lines):
        line = lines[i]
        tag = TAG.match(line)
        if tag:
            pending = (tag, i + 1)
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            start = i + 1
            j = start
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            if j == len(lines):
                raise SystemExit(f"README line {i + 1}: unterminated code fence")
            # The tag must be the line just before the fence (blank lines allowed between).
            tag_for_block = None
            if pending is not None and all(not l.strip() for l in lines[pending[1]:i]):
                tag_for_block = pending[0]
            yield tag_for_block, fence.group("lang"), i + 1, lines[start:j]
            pending = None
            i = j + 1
            continue
        if line.strip():
            pending = None if not line.lstrip().startswith("<!--") else pending
        i += 1


def contains_lines(haystack, needle):
    n = len(needle)
    return any(haystack[k:k + n] == needle for k in range(len(haystack) - n + 1))


def match_output(expected, got):
    """expected may hold "..." lines, each matching any run of lines."""
    def rec(e, g):
        if e == len(expected):
            return g == len(got)
        if expected[e] == "...":
            return any(rec(e + 1, k) for k in range(g, len(got) + 1))
        return g < len(got) and expected[e] == got[g] and rec(e + 1, g + 1)
    return rec(0, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--pthio", required=True)
    ap.add_argument("--scratch", required=True)
    a = ap.parse_args()

    with open(a.readme, encoding="utf-8") as f:
        lines = f.read().split("\n")

    shutil.rmtree(a.scratch, ignore_errors=True)
    os.makedirs(a.scratch)
    bindir = os.path.join(a.scratch, "bin")
    os.makedirs(bindir)
    os.symlink(os.path.abspath(a.pthio), os.path.join(bindir, "pthio"))
    os.symlink(os.path.join(os.path.abspath(a.root), "fixtures"), os.path.join(a.scratch, "fixtures"))
    os.makedirs(os.path.join(a.scratch, "tests"), exist_ok=True)
    os.symlink(os.path.join(os.path.abspath(a.root), "tests", "data"),
               os.path.join(a.scratch, "tests", "data"))
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), LC_ALL="C")

    failures, snippets, commands = [], 0, 0
    for tag, lang, line_no, body in blocks(lines):
        where = f"README.md:{line_no}"
        if tag is None:
            if lang in ("cpp", "c", "c++", "cxx"):
                failures.append(f"{where}: a ```{lang} block without <!-- snippet: examples/readme/FILE -->")
            continue
        if tag.group("path"):
            snippets += 1
            path = os.path.join(a.root, tag.group("path"))
            try:
                with open(path, encoding="utf-8") as f:
                    source = f.read().split("\n")
            except OSError as e:
                failures.append(f"{where}: {tag.group('path')}: {e}")
                continue
            if not body or not contains_lines(source, body):
                failures.append(f"{where}: this ```{lang} block is not, line for line, in {tag.group('path')}")
            continue
        # A transcript.
        k = 0
        while k < len(body):
            if not body[k].startswith("$ "):
                failures.append(f"{where}: transcript line {k + 1} is output before any command")
                break
            cmd = body[k][2:]
            k += 1
            expected = []
            while k < len(body) and not body[k].startswith("$ "):
                expected.append(body[k])
                k += 1
            commands += 1
            r = subprocess.run(["bash", "-c", cmd], cwd=a.scratch, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            got = r.stdout.decode("utf-8", "replace").split("\n")
            if got and got[-1] == "":
                got.pop()
            if not match_output(expected, got):
                failures.append(f"{where}: `{cmd}` printed (exit {r.returncode}):\n" +
                                "\n".join("    " + l for l in got) + "\n  the README shows:\n" +
                                "\n".join("    " + l for l in expected))

    for f in failures:
        print(f, file=sys.stderr)
    print(f"{snippets} snippets, {commands} commands checked; {len(failures)} problems")
    if snippets == 0 or commands == 0:
        print("no tagged blocks found: the tags are gone?", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
