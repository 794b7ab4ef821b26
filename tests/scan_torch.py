#!/usr/bin/env python3
"""`pthio scan` agrees with torch's own weights-only loader.

For every fixture of fixtures/manifest.json that torch wrote (and could read back) in a format
torch.load reads (zip, legacy, TorchScript), this script
asks the torch running it for its answer now, torch.load(path, weights_only=True), and runs
`pthio scan --json`:

- a file scan calls safe must load weights-only in torch;
- a file torch refuses weights-only because of a global it does not allow must not be safe for
  scan (torch 1.13 and 2.x word that refusal differently; both name the global);
- scan never reports an error on a file torch wrote.

One difference is pthio's on purpose: numpy arrays and scalars (numpy.ndarray, numpy.dtype,
numpy.core.multiarray._reconstruct/scalar) are on pthio's allowlist, since pthio rebuilds them
as tensors without calling numpy, where torch 2.x refuses a numpy scalar by default. A refusal
that names only a numpy global is reported and accepted. torch 1.13's weights-only loader is
narrower than its successors' (opcodes, the rebuild functions of newer dtypes), so the comparison
needs torch 2.x; under 1.13 the script prints the skip marker.

The hostile corpus's benign controls (tests/data/hostile/controls, a checkpoint re-emitted by
the corpus's own zip writer) load weights-only in torch with the fixture's tensors, and scan
calls them safe. Nothing hostile is handed to torch.

usage: scan_torch.py PTHIO
"""
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
FIXTURES = os.path.join(ROOT, "fixtures")
CONTROLS = os.path.join(ROOT, "tests", "data", "hostile", "controls")
warnings.filterwarnings("ignore")

import torch  # noqa: E402


def scan(pthio, path):
    r = subprocess.run([pthio, "scan", "--json", path], capture_output=True, text=True)
    report = json.loads(r.stdout)
    want = {"safe": 0, "unsafe": 1, "unknown": 3}[report["verdict"]]
    if r.returncode != want:
        raise AssertionError(f"{path}: exit {r.returncode} for verdict {report['verdict']}")
    return report


def torch_weights_only(path):
    """None when torch loads it weights-only, else the refusal's text."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return None
    except Exception as e:  # torch words refusals as UnpicklingError, RuntimeError, ...
        return f"{type(e).__name__}: {e}"


def refuses_a_global(text):
    # torch 1.13: "Unsupported class M.N"; 2.x: "Unsupported global: GLOBAL M.N was not an
    # allowed global by default".
    t = text.lower()
    return "unsupported class" in t or "unsupported global" in t or "not an allowed global" in t


def main():
    pthio = sys.argv[1]
    if int(torch.__version__.split(".")[0]) < 2:
        print(f"PTHIO_TEST_SKIPPED: torch {torch.__version__}'s weights-only loader predates the "
              "allowlist pthio follows")
        return
    manifest = json.load(open(os.path.join(FIXTURES, "manifest.json")))
    failures, checked, refused = [], 0, 0
    for f in manifest["files"]:
        # torch.load's own formats (a .pt2 is torch.export.load's, a DCP folder dcp.load's).
        if f.get("error") is not None or f.get("format") not in ("zip", "legacy", "torchscript"):
            continue
        path = os.path.join(FIXTURES, f["file"])
        report = scan(pthio, path)
        verdict = report["verdict"]
        answer = torch_weights_only(path)
        checked += 1
        if report["errors"]:
            failures.append(f"{f['file']}: scan reports errors {report['errors'][:2]}")
        if verdict == "safe" and answer is not None and "numpy" in answer:
            print(f"{f['file']}: torch refuses a numpy global pthio allows (rebuilt inertly)")
            continue
        if verdict == "safe" and answer is not None:
            failures.append(f"{f['file']}: scan says safe, torch refuses weights-only: {answer[:200]}")
        if answer is not None and refuses_a_global(answer):
            refused += 1
            if verdict == "safe":
                failures.append(f"{f['file']}: torch refuses a global, scan says safe")
    for name in sorted(os.listdir(CONTROLS)):
        if not name.startswith("small"):
            continue
        path = os.path.join(CONTROLS, name)
        if scan(pthio, path)["verdict"] != "safe":
            failures.append(f"controls/{name}: not safe")
        answer = torch_weights_only(path)
        if answer is not None:
            failures.append(f"controls/{name}: torch refuses it weights-only: {answer[:200]}")
            continue
        got = torch.load(path, map_location="cpu", weights_only=True)
        want = torch.load(os.path.join(FIXTURES, "t1", "small.pth"), map_location="cpu",
                          weights_only=True)
        if list(got) != list(want) or any(not torch.equal(got[k], want[k]) for k in want):
            failures.append(f"controls/{name}: tensors differ from t1/small.pth")
    print(f"torch {torch.__version__}: {checked} fixtures, {refused} refused by torch for a global")
    if refused == 0:
        failures.append("no fixture was refused for a global: the check of unsafe files did not run")
    for line in failures:
        print("FAIL", line)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
