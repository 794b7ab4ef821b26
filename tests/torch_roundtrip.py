#!/usr/bin/env python3
"""Files pthio writes, loaded by real PyTorch.

For every fixture in fixtures/manifest.json, pthio_rewrite loads the torch-written file and saves
it again as a zip (torch 2.x layout, torch 1.13 layout, and, for files of under 100 tensors, torch
2.x layout without CRC-32s) and in the legacy format. The torch
running this script then loads each file and must see exactly what the manifest recorded: every
tensor's key, dtype, shape, stride, offset and SHA-256, and the whole object tree (for a file the
other torch generation wrote, the tree this torch reads from the original, since
nn.Module.__setstate__ fills in the attributes its modules have). Zip files must
also pass zipfile's CRC check, and pthio must not introduce globals outside torch's weights-only
allowlist (with torch >= 2: torch.load(weights_only=True) wherever it loads the original).

usage: torch_roundtrip.py REWRITE_TOOL OUT_DIR
"""
import os
import pickletools
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
sys.path.insert(0, FIXTURES)
import generate  # noqa: E402  (render, walk, tensor_info: the manifest's own definitions)
import torch  # noqa: E402

MAJOR = int(torch.__version__.split(".")[0])


def listing(obj):
    out = []
    generate.walk(obj, None, out)
    rows = []
    for key, t in out:
        info = generate.tensor_info(t)
        rows.append(dict(key=key, **info))
    return rows


def pickle_globals(path):
    """module.name of every GLOBAL / STACK_GLOBAL in a zip checkpoint's data.pkl."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(strings[-2] + "." + strings[-1])
    return names


def weights_only_allowlisted(name):
    """Globals torch's weights-only unpickler accepts that a torch.save of tensors may name."""
    module, _, attr = name.rpartition(".")
    if name == "collections.OrderedDict" or name.startswith("torch._utils._rebuild_"):
        return True
    if module in ("torch", "torch.storage"):
        return attr.endswith("Storage") or isinstance(getattr(torch, attr, None), torch.dtype)
    return False


def loads_weights_only(path):
    if MAJOR < 2:
        return False  # 1.13's weights-only unpickler lacks BINFLOAT: only plain loads compare
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


def reading_of_original(path, fallback):
    try:
        return generate.render(torch.load(path, map_location="cpu", weights_only=False))
    except Exception:  # noqa: BLE001
        return fallback


def main():
    tool, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    manifest = generate.json.load(open(os.path.join(FIXTURES, "manifest.json")))
    passed = failed = skipped = 0
    for entry in manifest["files"]:
        rel = entry["file"]
        if entry["error"] is not None:
            continue
        if entry["format"] == "torchscript":
            print(f"SKIP {rel}: TorchScript module objects are not plain torch.load content")
            skipped += 1
            continue
        missing = sorted({t["dtype"] for t in entry["tensors"] if not hasattr(torch, t["dtype"])})
        if missing:
            print(f"SKIP {rel}: torch {torch.__version__} has no dtype {', '.join(missing)}")
            skipped += 1
            continue
        if any(t["dtype"].startswith("q") for t in entry["tensors"]):
            print(f"SKIP {rel}: pthio does not write quantized tensors (it refuses them)")
            skipped += 1
            continue
        src = os.path.join(FIXTURES, rel)
        variants = [("zip-v2", ["--layout", "2"]), ("zip-1.13", ["--layout", "1.13"]), ("legacy", ["--legacy"])]
        if len(entry["tensors"]) < 100:
            # save_options::compute_crc32 = false: CRC fields 0, as torch 2.5+ writes them after
            # torch.serialization.set_crc32_options(False); torch.load does not check CRCs.
            variants.append(("zip-v2-nocrc", ["--layout", "2", "--no-crc"]))
        for variant, flags in variants:
            out = os.path.join(outdir, rel.replace("/", "_") + "." + variant)
            problems = []
            r = subprocess.run([tool, src, out] + flags, capture_output=True, text=True)
            if r.returncode != 0:
                problems.append("pthio_rewrite failed: " + r.stderr.strip())
            else:
                try:
                    if variant == "zip-v2-nocrc":
                        with zipfile.ZipFile(out) as z:
                            crcs = {i.filename: i.CRC for i in z.infolist() if i.file_size}
                        if any(crcs.values()):
                            problems.append(f"CRC fields not 0 without CRCs: {crcs}")
                    elif variant != "legacy":
                        with zipfile.ZipFile(out) as z:
                            bad = z.testzip()
                        if bad is not None:
                            problems.append(f"zipfile CRC check fails on {bad}")
                        if shutil.which("unzip"):
                            t = subprocess.run(["unzip", "-tqq", out], capture_output=True, text=True)
                            if t.returncode != 0:
                                problems.append("unzip -t: " + (t.stdout + t.stderr).strip())
                        allowed = pickle_globals(src) if entry["format"] == "zip" else set()
                        extra = {g for g in pickle_globals(out) - allowed if not weights_only_allowlisted(g)}
                        if extra and entry["format"] == "zip":
                            problems.append(f"globals the original does not name: {sorted(extra)}")
                        if loads_weights_only(src) and not loads_weights_only(out):
                            problems.append("torch.load(weights_only=True) refuses it but loads the original")
                    obj = torch.load(out, map_location="cpu", weights_only=False)
                    got_tensors = listing(obj)
                    if got_tensors != entry["tensors"]:
                        problems.append("tensors differ from the manifest")
                    want_dump = entry["dump"]
                    if entry["torch"].split(".")[0] != torch.__version__.split(".")[0]:
                        # Another torch wrote the file: this one may read its objects differently
                        # (nn.Module.__setstate__ adds the attributes newer modules have), so the
                        # tree to match is this torch's reading of the original.
                        # (Where this torch cannot read the original at all, as numpy 1 cannot
                        # import numpy 2's names, pthio's rewrite must still match the manifest.)
                        want_dump = reading_of_original(src, want_dump)
                    if generate.render(obj) != want_dump:
                        problems.append("object tree differs from torch's reading of the original")
                except Exception as e:  # noqa: BLE001 - report any load failure
                    problems.append(f"torch.load failed: {type(e).__name__}: {e}")
            if problems:
                failed += 1
                print(f"FAIL {rel} [{variant}]: " + "; ".join(problems))
            else:
                passed += 1
                print(f"ok   {rel} [{variant}]")
    print(f"torch {torch.__version__}: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
