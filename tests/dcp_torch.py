#!/usr/bin/env python3
"""pthio reads torch.distributed.checkpoint folders as torch does.

For every folder of fixtures/dcp/manifest.json (written by fixtures/generate_dcp.py with real
torch 2.x), this script runs

- `pthio convert DIR OUT.pth` and checks torch.load(OUT.pth) against the whole checkpoint as torch
  sees it: torch's own answer computed now where torch has one (dcp_to_torch_save, the Hugging Face
  consolidated files loaded with safetensors, HuggingFaceStorageReader), compared object by object:
  the same nested structure and types, the same keys in the same order (where torch defines one),
  every tensor of the same dtype and shape, bit for bit (NaN payloads, -0.0), not requiring grad,
  every other value equal; and always against the manifest's record (`dump`: the rendering of
  generate.py, tensors by SHA-256), which is the only expectation for the folders torch cannot
  read whole (per-rank metadata, the SAFETENSORS format in torch 2.15);
- `pthio convert DIR OUT.safetensors` and checks safetensors.torch.load_file(OUT) against the
  checkpoint's tensors under their key paths, and that every value that is not a tensor is listed
  as dropped (docs/cli.md, convert);
- `pthio ls DIR --json` and checks each tensor's key, dtype, shape and sha256.

--self-check puts torch in pthio's place (dcp_to_torch_save, or for the folders it cannot read a
small assembler here: torch.load / safetensors of each chunk, copied into place), which must pass,
then alters that answer (one tensor element changed, one key renamed) and checks that each
alteration is caught. It tests this script, not pthio, and is not run by CTest.

usage: dcp_torch.py PTHIO OUT_DIR [--self-check]
"""
import collections
import copy
import io
import json
import math
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, FIXTURES)
warnings.filterwarnings("ignore")

import torch  # noqa: E402

try:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
except ImportError:
    # torch 1.13 has no torch.distributed.checkpoint.format_utils (nor DTensor, FSDP2)
    print("PTHIO_TEST_SKIPPED: torch %s has no torch.distributed.checkpoint.format_utils "
          "(DCP needs torch 2.x)" % torch.__version__)
    sys.exit(0)

import generate as g  # noqa: E402  (render, walk, tensor_sha256: the manifest's rules)

try:
    import safetensors.torch as st
except ImportError:
    st = None

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what)
    return cond


# --------------------------------------------------------------------------
# comparing
# --------------------------------------------------------------------------

def same_bits(a, b):
    def raw(t):
        return t.detach().contiguous().reshape(-1).view(torch.uint8)
    return torch.equal(raw(a), raw(b))


def same_float(a, b):
    return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


def compare(where, got, want, ordered=True, fails=None, loose=False):
    """Appends to `fails` every difference between got and want (objects as torch.load gives).
    loose: a dict and an OrderedDict count as the same (Hugging Face folders hold no Python types:
    torch's readers give dicts, pthio an OrderedDict as for any safetensors file)."""
    fails = [] if fails is None else fails
    if loose and isinstance(got, dict) and isinstance(want, dict):
        pass
    elif type(got) is not type(want):
        fails.append("%s: %s, torch has %s" % (where, type(got).__name__, type(want).__name__))
        return fails
    if isinstance(want, torch.Tensor):
        if got.dtype != want.dtype or tuple(got.shape) != tuple(want.shape):
            fails.append("%s: %s%s, torch has %s%s" % (where, got.dtype, tuple(got.shape),
                                                       want.dtype, tuple(want.shape)))
        elif not same_bits(got, want):
            fails.append("%s: elements differ from torch's" % where)
        if got.requires_grad:
            fails.append("%s: requires grad" % where)
    elif isinstance(want, dict):
        gk, wk = list(got.keys()), list(want.keys())
        if (gk if ordered else sorted(map(repr, gk))) != (wk if ordered else sorted(map(repr, wk))):
            fails.append("%s: keys %s, torch has %s" % (where, gk, wk))
        for k in wk:
            if k in got:
                compare("%s.%s" % (where, k) if where else str(k), got[k], want[k], ordered, fails,
                        loose)
    elif isinstance(want, (list, tuple)):
        if len(got) != len(want):
            fails.append("%s: %d items, torch has %d" % (where, len(got), len(want)))
        for i, (a, b) in enumerate(zip(got, want)):
            compare("%s.%d" % (where, i), a, b, ordered, fails, loose)
    elif isinstance(want, float):
        if not same_float(got, want):
            fails.append("%s: %r, torch has %r" % (where, got, want))
    elif got != want:
        fails.append("%s: %r, torch has %r" % (where, got, want))
    return fails


def unordered(r, loose=False):
    """A rendering with every dict's entries sorted (for folders whose key order torch leaves
    open); loose: without dict classes and attributes (see compare)."""
    if isinstance(r, list):
        return [unordered(v, loose) for v in r]
    if isinstance(r, dict):
        out = {k: unordered(v, loose) for k, v in r.items()}
        if "dict" in out:
            out["dict"] = sorted(out["dict"], key=lambda kv: json.dumps(kv[0]))
            if loose:
                out.pop("class", None)
                out.pop("attrs", None)
        return out
    return r


def is_loose(entry):
    return entry["folder"].startswith("dcp/hf")


def first_difference(where, a, b):
    if not (isinstance(a, dict) and isinstance(b, dict)) and type(a) is not type(b):
        return "%s: %s vs %s" % (where, json.dumps(a)[:200], json.dumps(b)[:200])
    if isinstance(a, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if a.get(k) != b.get(k):
                return first_difference(where + "/" + k, a.get(k), b.get(k))
    if isinstance(a, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference("%s[%d]" % (where, i), x, y)
    return "%s: %s vs %s" % (where, json.dumps(a)[:200], json.dumps(b)[:200])


def compare_with_manifest(where, got, entry, fails):
    r, want = g.render(got), entry["dump"]
    if entry["key_order"] == "none" or is_loose(entry):
        r, want = unordered(r, is_loose(entry)), unordered(want, is_loose(entry))
    if r != want:
        fails.append("%s: differs from the manifest's record: %s"
                     % (where, first_difference("", r, want)))


def flat_tensors(obj):
    named = []
    g.walk(obj, None, named)
    return collections.OrderedDict(named)


def dropped_paths(obj, path=None, out=None):
    """The key paths convert to safetensors drops: leaves that are not tensors, and empty
    containers below the root (src/safetensors.cpp collect_dropped)."""
    out = [] if out is None else out
    if isinstance(obj, torch.Tensor):
        return out
    if isinstance(obj, dict):
        items = [(g.key_str(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(obj)]
    else:
        out.append(path)
        return out
    if not items and path is not None:
        out.append(path)
    for k, v in items:
        dropped_paths(v, k if path is None else path + "." + k, out)
    return out


# --------------------------------------------------------------------------
# torch's answers
# --------------------------------------------------------------------------

def tload(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def via_dcp_to_torch_save(folder, scratch):
    out = os.path.join(scratch, "torch.pth")
    dcp_to_torch_save(folder, out)
    return tload(out)


def via_consolidated(folder):
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        index = json.load(f)
    out, loaded = collections.OrderedDict(), {}
    for k, shard in index["weight_map"].items():
        if shard not in loaded:
            loaded[shard] = st.load_file(os.path.join(folder, shard))
        out[k] = loaded[shard][k]
    return out


def via_hf_reader(folder):
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict
    sd = {}
    _load_state_dict(sd, storage_reader=HuggingFaceStorageReader(folder),
                     planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    return sd


def torch_answer(entry, folder, scratch):
    """(torch's whole checkpoint now, whether its key order counts), or (None, reason)."""
    how = entry["expected_from"]
    try:
        if how == "dcp_to_torch_save":
            return via_dcp_to_torch_save(folder, scratch), True
        if how == "consolidated_safetensors" and st is not None:
            return via_consolidated(folder), True
        if how == "HuggingFaceStorageReader" or entry["folder"] == "dcp/hf_sharded_only":
            return via_hf_reader(folder), False
    except Exception as e:  # an older torch 2.x without this writer's reader
        return None, "torch %s cannot: %s: %s" % (torch.__version__, type(e).__name__, e)
    return None, "no torch reader gives it whole (expected_from %s): the manifest only" % how


def assemble(folder):
    """The self-check's stand-in for pthio where dcp_to_torch_save cannot read a folder: every
    chunk read by torch (torch.load of its blob, or the safetensors file), copied into place,
    nested along planner_data as dcp_to_torch_save does; __R.metadata files merged in rank order."""
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata
    names = sorted((f for f in os.listdir(folder) if f.endswith(".metadata")),
                   key=lambda f: -1 if f == ".metadata" else int(f[2:-len(".metadata")]))
    root, done, st_files = {}, {}, {}
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            md = pickle.load(f)
        for fqn, m in md.state_dict_metadata.items():
            infos = {k: v for k, v in md.storage_data.items() if k.fqn == fqn}
            if isinstance(m, TensorStorageMetadata):
                t = done.get(fqn)
                if t is None:
                    t = done[fqn] = torch.empty(tuple(m.size), dtype=m.properties.dtype)
                    set_element(root, md.planner_data[fqn], t)
                for c in m.chunks:
                    (si,) = [v for k, v in infos.items() if tuple(k.offset) == tuple(c.offsets)]
                    path = os.path.join(folder, si.relative_path)
                    with open(path, "rb") as f:
                        head = f.read(8)
                    if struct.unpack("<Q", head)[0] < (1 << 24):  # a safetensors file
                        if path not in st_files:
                            st_files[path] = st.load_file(path)
                        piece = st_files[path][fqn]
                    else:
                        with open(path, "rb") as f:
                            f.seek(si.offset)
                            piece = torch.load(io.BytesIO(f.read(si.length)), weights_only=True)
                    view = t
                    for d, (o, n) in enumerate(zip(c.offsets, c.sizes)):
                        view = view.narrow(d, o, n)
                    view.copy_(piece)
            elif fqn not in done:
                (si,) = infos.values()
                with open(os.path.join(folder, si.relative_path), "rb") as f:
                    f.seek(si.offset)
                    done[fqn] = torch.load(io.BytesIO(f.read(si.length)), weights_only=False)
                set_element(root, md.planner_data[fqn], done[fqn])
    return root


# --------------------------------------------------------------------------
# pthio's side (or, under --self-check, torch's)
# --------------------------------------------------------------------------

class Pthio:
    def __init__(self, exe):
        self.exe = exe

    def run(self, *args):
        p = subprocess.run([self.exe] + list(args), capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    def convert(self, folder, out):
        return self.run("convert", folder, out)

    def ls_json(self, folder):
        rc, out, err = self.run("ls", folder, "--json")
        return rc, (json.loads(out) if rc == 0 else None), err


class TorchInPlace:
    """--self-check: torch (and the assembler above) answers in pthio's place, optionally altered."""

    def __init__(self, entries, scratch):
        self.by_folder = {os.path.join(FIXTURES, e["folder"]): e for e in entries}
        self.scratch = scratch
        self.alter = None

    def load(self, folder):
        e = self.by_folder[folder]
        if e["expected_from"] == "dcp_to_torch_save":
            obj = via_dcp_to_torch_save(folder, self.scratch)
        elif e["expected_from"] == "consolidated_safetensors":
            obj = via_consolidated(folder)
        elif e["expected_from"] == "HuggingFaceStorageReader" or e["folder"].startswith("dcp/hf"):
            obj = via_hf_reader(folder)
            order = [t["key"] for t in e["tensors"]]
            obj = collections.OrderedDict((k, obj[k]) for k in order)
        else:
            obj = assemble(folder)
        if self.alter is not None:
            obj = self.alter(obj)
        return obj

    def convert(self, folder, out):
        obj = self.load(folder)
        if out.endswith(".safetensors"):
            flat = flat_tensors(obj)
            st.save_file({k: v.contiguous() for k, v in flat.items()}, out)
            lines = ["wrote %s (safetensors, %d tensors)" % (out, len(flat))]
            drops = dropped_paths(obj)
            if drops:
                lines.append("dropped %d values that are not tensors:" % len(drops))
                lines += ["  %s (value)" % k for k in drops]
            return 0, "\n".join(lines) + "\n", ""
        torch.save(obj, out)
        return 0, "wrote %s (pth, %d tensors)\n" % (out, len(flat_tensors(obj))), ""

    def ls_json(self, folder):
        obj = self.load(folder)
        return 0, {"file": folder, "format": "dcp", "tensors": [
            dict([("key", k)] + list(g.tensor_info(t).items()))
            for k, t in flat_tensors(obj).items()]}, ""


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------

def check_folder(tool, entry, scratch, quiet=False):
    """Every check on one folder; returns the differences found (each also reported unless
    quiet)."""
    name = entry["folder"]
    folder = os.path.join(FIXTURES, name)
    work = os.path.join(scratch, name.replace("/", "_"))
    os.makedirs(work, exist_ok=True)
    fails = []
    want, ordered = torch_answer(entry, folder, work)
    if want is None:
        if not quiet:
            print("  %s: %s" % (name, ordered))
        ordered = entry["key_order"] != "none"
    elif not quiet and g.render(want) != entry["dump"] and \
            unordered(g.render(want), True) != unordered(entry["dump"], True):
        print("  NOTE %s: torch %s's answer differs from the manifest's (torch %s); comparing with "
              "torch's" % (name, torch.__version__, entry["torch"]))

    # convert to .pth
    out = os.path.join(work, "out.pth")
    rc, so, se = tool.convert(folder, out)
    if rc != 0:
        fails.append("%s: convert to .pth exited %d: %s" % (name, rc, (se or so).strip()[:300]))
        got = None
    else:
        got = tload(out)
        if want is not None:
            compare(name + ":pth", got, want, ordered, fails, is_loose(entry))
        else:
            compare_with_manifest(name + ":pth", got, entry, fails)

    # convert to .safetensors
    # the values to be listed as dropped: torch's, or pthio's own once they matched the manifest
    reference = want if want is not None else (got if not fails else None)
    if st is None:
        if not quiet:
            print("  %s: no safetensors package: .safetensors not checked" % name)
    else:
        out = os.path.join(work, "out.safetensors")
        rc, so, se = tool.convert(folder, out)
        if rc != 0:
            fails.append("%s: convert to .safetensors exited %d: %s"
                         % (name, rc, (se or so).strip()[:300]))
        else:
            loaded = st.load_file(out)
            if want is not None:
                compare(name + ":safetensors", dict(sorted(loaded.items())),
                        dict(sorted(flat_tensors(want).items())), True, fails)
            else:  # against the manifest's record, not against pthio's own .pth
                got_t = sorted((k, g.dtype_name(t.dtype), list(t.shape), g.tensor_sha256(t))
                               for k, t in loaded.items())
                want_t = sorted((t["key"], t["dtype"], t["shape"], t["sha256"])
                                for t in entry["tensors"])
                if got_t != want_t:
                    fails.append("%s:safetensors: tensors differ from the manifest's (first: %s)"
                                 % (name, ([w for w in want_t if w not in got_t]
                                           + [x for x in got_t if x not in want_t])[:1]))
            listed = [ln.strip() for ln in so.splitlines() if ln.startswith("  ")]
            for k in dropped_paths(reference) if reference is not None else []:
                if not any(ln.startswith(k + " (") for ln in listed):
                    fails.append("%s: convert to .safetensors did not list %s as dropped"
                                 % (name, k))

    # ls --json against the manifest's tensors
    rc, listing, se = tool.ls_json(folder)
    if rc != 0:
        fails.append("%s: ls --json exited %d: %s" % (name, rc, se.strip()[:300]))
    else:
        got_t = [(t["key"], t["dtype"], t["shape"], t["sha256"]) for t in listing["tensors"]]
        want_t = [(t["key"], t["dtype"], t["shape"], t["sha256"]) for t in entry["tensors"]]
        if entry["key_order"] == "none":
            got_t, want_t = sorted(got_t), sorted(want_t)
        if got_t != want_t:
            diff = [w for w in want_t if w not in got_t][:1] + [x for x in got_t if x not in want_t][:1]
            fails.append("%s: ls --json tensors differ from the manifest's (%d vs %d; first: %s)"
                         % (name, len(got_t), len(want_t), diff))
    if not quiet:
        for f in fails:
            print("FAIL: " + f)
    return fails


def change_one_element(obj):
    obj = copy.deepcopy(obj)
    for _, t in flat_tensors(obj).items():
        if t.numel() > 0:
            raw = t.view(-1)[:1].view(torch.uint8)
            raw[0] ^= 1  # one bit of the first element
            return obj
    raise AssertionError("no tensor to alter")


def rename_one_key(obj):
    obj = copy.deepcopy(obj)

    def first_dict(o):
        if isinstance(o, dict) and o:
            for v in o.values():
                d = first_dict(v)
                if d is not None:
                    return d
            return o
        if isinstance(o, (list, tuple)):
            for v in o:
                d = first_dict(v)
                if d is not None:
                    return d
        return None
    d = first_dict(obj)
    items = list(d.items())
    d.clear()
    for i, (k, v) in enumerate(items):
        d[(str(k) + "_renamed") if i == 0 else k] = v
    return obj


def main():
    args = [a for a in sys.argv[1:] if a != "--self-check"]
    self_check = "--self-check" in sys.argv[1:]
    if len(args) != 2:
        sys.exit("usage: dcp_torch.py PTHIO OUT_DIR [--self-check]")
    exe, scratch = args
    with open(os.path.join(FIXTURES, "dcp", "manifest.json"), encoding="utf-8") as f:
        entries = json.load(f)["folders"]
    if os.path.isdir(scratch):
        shutil.rmtree(scratch)
    os.makedirs(scratch)
    print("torch %s, safetensors %s, %s" % (torch.__version__, "yes" if st else "no",
                                           "SELF-CHECK (torch in pthio's place)" if self_check
                                           else exe))
    tool = TorchInPlace(entries, scratch) if self_check else Pthio(exe)
    passed = 0
    for e in entries:
        fails = check_folder(tool, e, scratch)
        FAILURES.extend(fails)
        passed += not fails
        print("%s %s" % ("ok  " if not fails else "FAIL", e["folder"]))
    if self_check:
        # Each alteration of torch's answer must be caught, in every folder.
        for what, alter in (("one element changed", change_one_element),
                            ("one key renamed", rename_one_key)):
            tool.alter = alter
            for e in entries:
                fails = check_folder(tool, e, scratch, quiet=True)
                # each of the three checks must notice on its own
                for part in (":pth", ":safetensors", "ls --json") if st else (":pth", "ls --json"):
                    check(any(part in f for f in fails), "self-check: %s in %s went unnoticed "
                          "by the %s check" % (what, e["folder"], part.strip(":")))
                if fails:
                    print("caught %s: %s (%d differences): %s"
                          % (what, e["folder"], len(fails), fails[0][:120]))
            tool.alter = None
    print("torch %s: %d of %d folders passed, %d failures" % (
        torch.__version__, passed, len(entries), len(FAILURES)))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
