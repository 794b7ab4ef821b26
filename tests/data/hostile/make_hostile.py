#!/usr/bin/env python3
"""Hostile corpus for `pthio scan`, the static pickle scanner.

Every file here is built byte by byte from pickle opcodes, zip records, tar headers and .npy
headers; nothing is ever unpickled, imported from a payload or run. Each case hides a dangerous or
disallowed import (or a finding that is not an import) behind one trick: an opcode spelling, the
memo, an error the scanner has to get past, a malformed or layered container. A few benign
controls must scan as safe. manifest.json states what the scan must report for each file;
README.md says what each folder exercises.

Regenerate (standard library only: no torch, no numpy; from any directory):
    /usr/bin/python3 tests/data/hostile/make_hostile.py
The output is deterministic: fixed zip and tar timestamps, fixed owners, no randomness. Running
it twice gives byte-identical files (deflated members depend on zlib, which is
deterministic for a given zlib build). Files a previous run wrote into a trick folder and this run
does not are removed.

Payloads are harmless if some careless tool ever ran them: `echo pthio-hostile`, `1+1`, `pass`,
paths that do not exist and connections to 127.0.0.1 port 9 (discard).

The benign torch checkpoint used as a base is fixtures/t1/small.pth (a real torch.save zip); its
members are read with zipfile (plain bytes, no unpickling) and written again with the small zip
writer below, which can also produce the malformed archives.
"""
import json
import os
import struct
import sys
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
SMALL_PTH = os.path.join(ROOT, "fixtures", "t1", "small.pth")

CMD = "echo pthio-hostile"

# ---------------------------------------------------------------------------------------------
# Pickle opcodes, assembled by hand.
# ---------------------------------------------------------------------------------------------

MARK = b"("
STOP = b"."
POP = b"0"
DUP = b"2"
NONE = b"N"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
EMPTY_TUPLE = b")"
EMPTY_LIST = b"]"
EMPTY_DICT = b"}"
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
APPEND = b"a"
APPENDS = b"e"
SETITEM = b"s"
SETITEMS = b"u"
BUILD = b"b"
REDUCE = b"R"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
OBJ = b"o"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
BINPERSID = b"Q"


def proto(n):
    return b"\x80" + bytes([n])


def frame(body):
    """PROTO 4 then one FRAME holding `body` (which ends with STOP), as pickle writes it."""
    return proto(4) + b"\x95" + struct.pack("<Q", len(body)) + body


def global_(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def inst(module, name):
    return b"i" + module.encode() + b"\n" + name.encode() + b"\n"


def sbu(s):  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def bu(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def bu8(s):  # BINUNICODE8
    b = s.encode()
    return b"\x8d" + struct.pack("<Q", len(b)) + b


def sbs(s):  # SHORT_BINSTRING
    b = s.encode("ascii")
    return b"U" + bytes([len(b)]) + b


def binstring(s):  # BINSTRING
    b = s.encode("ascii")
    return b"T" + struct.pack("<i", len(b)) + b


def sbb(b):  # SHORT_BINBYTES
    return b"C" + bytes([len(b)]) + b


def string0(quoted):  # STRING: the quoted text exactly as written in the file
    return b"S" + quoted.encode("ascii") + b"\n"


def unicode0(text):  # UNICODE: raw-unicode-escape text exactly as written
    return b"V" + text.encode("ascii") + b"\n"


def binint1(n):
    return b"K" + bytes([n])


def binint(n):
    return b"J" + struct.pack("<i", n)


def binput(i):
    return b"q" + bytes([i])


def long_binput(i):
    return b"r" + struct.pack("<I", i)


def binget(i):
    return b"h" + bytes([i])


def long_binget(i):
    return b"j" + struct.pack("<I", i)


def put0(i):
    return b"p%d\n" % i


def get0(i):
    return b"g%d\n" % i


def ext1(code):
    return b"\x82" + bytes([code])


def ext2(code):
    return b"\x83" + struct.pack("<H", code)


def ext4(code):
    return b"\x84" + struct.pack("<i", code)


def cmd_args():
    """(CMD,) as a protocol-2 tuple."""
    return bu(CMD) + TUPLE1


def os_system_p2():
    return proto(2) + global_("os", "system") + cmd_args() + REDUCE + STOP


def os_system_p0():
    return b"cos\nsystem\n(S'" + CMD.encode() + b"'\ntR."


def os_system_p4():
    return frame(sbu("os") + MEMOIZE + sbu("system") + MEMOIZE + STACK_GLOBAL + MEMOIZE +
                 sbu(CMD) + MEMOIZE + TUPLE1 + MEMOIZE + REDUCE + MEMOIZE + STOP)


def ordereddict_p2():
    """An empty collections.OrderedDict, as torch's pickler writes one."""
    return proto(2) + global_("collections", "OrderedDict") + binput(0) + EMPTY_TUPLE + REDUCE + \
        binput(1) + STOP


def ordereddict_p4():
    """OrderedDict({'a': 1}) at protocol 4 with a frame and MEMOIZE, as pickle.dumps writes it."""
    return frame(sbu("collections") + MEMOIZE + sbu("OrderedDict") + MEMOIZE + STACK_GLOBAL +
                 MEMOIZE + EMPTY_TUPLE + REDUCE + MEMOIZE + sbu("a") + MEMOIZE + binint1(1) +
                 SETITEM + STOP)


def dict_p0():
    return b"(dp0\nVa\np1\nI1\ns."


# ---------------------------------------------------------------------------------------------
# Zip writer: enough of APPNOTE to write torch-like archives and to break them on purpose.
# ---------------------------------------------------------------------------------------------

DOS_TIME = 0          # 00:00:00
DOS_DATE = 0x21       # 1980-01-01


class Member:
    """One zip record. Everything a hostile case may want to get wrong is a field."""

    def __init__(self, name, data, method=0, align=True, central=True, flags_local=0,
                 flags_central=None, crc_local=None, crc_central=None, payload=None):
        self.name = name
        self.data = data                  # the uncompressed bytes
        self.method = method              # 0 stored, 8 deflated
        self.align = align                # pad the local extra field so data sits at 64n
        self.central = central            # False: a local header the central directory omits
        self.flags_local = flags_local
        self.flags_central = flags_local if flags_central is None else flags_central
        crc = zlib.crc32(data) & 0xFFFFFFFF
        self.crc_local = crc if crc_local is None else crc_local
        self.crc_central = self.crc_local if crc_central is None else crc_central
        if payload is None:
            payload = deflate(data) if method == 8 else data
        self.payload = payload            # the bytes stored in the archive


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return c.compress(data) + c.flush()


def build_zip(members, prefix=b"", shift=True):
    """The archive's bytes. `prefix` goes first; with shift=True the offsets count from the start
    of the file (as if the zip were written after the prefix), else from the start of the zip (as
    when a zip is simply appended to other bytes)."""
    out = bytearray(prefix)
    base = 0 if shift else len(prefix)
    central = []
    for m in members:
        name = m.name.encode()
        offset = len(out)
        extra = b""
        if m.align:
            # torch pads with an extra field of id "FB" so each record's data is 64-byte aligned.
            pad = (-(offset + 30 + len(name) + 4)) % 64
            extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags_local, m.method, DOS_TIME,
                           DOS_DATE, m.crc_local, len(m.payload), len(m.data), len(name),
                           len(extra))
        out += name + extra + m.payload
        if m.central:
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags_central,
                                       m.method, DOS_TIME, DOS_DATE, m.crc_central,
                                       len(m.payload), len(m.data), len(name), 0, 0, 0, 0, 0,
                                       offset - base) + name)
    cd_offset = len(out)
    for c in central:
        out += c
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central),
                       len(out) - cd_offset, cd_offset - base, 0)
    return bytes(out)


def small_members():
    """fixtures/t1/small.pth's records in archive order, as (name, bytes)."""
    with zipfile.ZipFile(SMALL_PTH) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


SMALL = small_members()
SMALL_PKL = dict(SMALL)["small/data.pkl"]


def small_zip_members(replace=None, drop=(), **kw):
    """small.pth as Members; `replace` maps a name to new bytes (or to a Member)."""
    replace = replace or {}
    out = []
    for name, data in SMALL:
        if name in drop:
            continue
        r = replace.get(name, data)
        out.append(r if isinstance(r, Member) else Member(name, r, **kw))
    return out


def with_member(members, member, before="small/version"):
    """`members` with `member` inserted before the record named `before` (or last)."""
    out = list(members)
    idx = next((i for i, m in enumerate(out) if m.name == before), len(out))
    out.insert(idx, member)
    return out


def evil_data_pkl():
    """small.pth's data.pkl with os.system(CMD) run (and its result popped) before the
    state dict: what an attacker injects into a real checkpoint."""
    assert SMALL_PKL[:2] == proto(2)
    return proto(2) + global_("os", "system") + cmd_args() + REDUCE + POP + SMALL_PKL[2:]


def evil_archive(inner_name="archive", payload=None):
    """A minimal torch.save-like zip whose data.pkl calls os.system."""
    return build_zip([Member(inner_name + "/data.pkl", payload or os_system_p2()),
                      Member(inner_name + "/version", b"3\n")])


def archive_members(folder="archive"):
    """small.pth's records renamed from small/... to folder/... (as (name, bytes))."""
    return [(folder + n[len("small"):], d) for n, d in SMALL]


# Raw zip records, for archives build_zip cannot describe: central directory entries that share
# one local header, two central directories, a local header hidden in another record's data.

def raw_local(name, payload, method=0, usize=None, crc=None):
    """A local header (no extra field) followed by `payload`; `usize` and `crc` default to those
    of `payload` (right for stored records)."""
    name = name.encode()
    usize = len(payload) if usize is None else usize
    crc = (zlib.crc32(payload) & 0xFFFFFFFF) if crc is None else crc
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, DOS_TIME, DOS_DATE, crc,
                       len(payload), usize, len(name), 0) + name + payload


def raw_central(name, payload, offset, method=0, usize=None, crc=None):
    name = name.encode()
    usize = len(payload) if usize is None else usize
    crc = (zlib.crc32(payload) & 0xFFFFFFFF) if crc is None else crc
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, DOS_TIME, DOS_DATE,
                       crc, len(payload), usize, len(name), 0, 0, 0, 0, 0, offset) + name


def raw_eocd(entries, cd_size, cd_offset):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, cd_size, cd_offset, 0)


def fanout_zip(content, k, name="m.pkl", method=0, usize=None, crc=None):
    """One local record holding `content` at offset 0 and `k` central directory entries, all
    named `name`, all pointing at it."""
    body = raw_local(name, content, method, usize, crc)
    cd = b"".join(raw_central(name, content, 0, method, usize, crc) for _ in range(k))
    return body + cd + raw_eocd(k, len(cd), len(body))


# ---------------------------------------------------------------------------------------------
# torch's legacy tar format (torch.serialization legacy_load) and numpy's .npy.
# ---------------------------------------------------------------------------------------------

def tar_member(name, data, typeflag=b"0", checksum=b"%06o\0 "):
    """One ustar record (header plus data padded to 512), fixed owner, mode and mtime. `name`
    is str or bytes; `checksum` formats the header sum into the 8-byte checksum field."""
    hdr = bytearray(512)

    def put(off, width, value):
        hdr[off:off + len(value)] = value
        assert len(value) <= width

    put(0, 100, name if isinstance(name, bytes) else name.encode())
    put(100, 8, b"0000644\0")
    put(108, 8, b"0000000\0")
    put(116, 8, b"0000000\0")
    put(124, 12, b"%011o\0" % len(data))
    put(136, 12, b"%011o\0" % 0)
    put(148, 8, b" " * 8)
    put(156, 1, typeflag)
    put(257, 6, b"ustar\0")
    put(263, 2, b"00")
    put(329, 8, b"0000000\0")
    put(337, 8, b"0000000\0")
    put(148, 8, checksum % sum(hdr))
    pad = (-len(data)) % 512
    return bytes(hdr) + data + b"\0" * pad


def build_tar(members):
    """`members`: (name, data) or (name, data, typeflag)."""
    return b"".join(tar_member(*m) for m in members) + b"\0" * 1024


def legacy_sys_info():
    return (proto(2) + EMPTY_DICT + binput(0) + MARK + bu("protocol_version") + binint(1001) +
            bu("little_endian") + NEWTRUE + bu("type_sizes") + EMPTY_DICT + binput(1) + MARK +
            bu("short") + binint1(2) + bu("int") + binint1(4) + bu("long") + binint1(4) +
            SETITEMS + SETITEMS + STOP)


def legacy_object_pickle():
    """OrderedDict w -> persistent id '1' (the tensor key in `tensors`)."""
    return (proto(2) + global_("collections", "OrderedDict") + binput(0) + EMPTY_TUPLE + REDUCE +
            binput(1) + bu("w") + binput(2) + bu("1") + BINPERSID + binput(3) + SETITEM + STOP)


def legacy_storage_record(key_ops, floats):
    """pickle((key, 'cpu', torch.FloatStorage)), int64 element count, the float32 data."""
    rec = (proto(2) + key_ops + bu("cpu") + global_("torch", "FloatStorage") + binput(0) +
           TUPLE3 + STOP)
    return rec + struct.pack("<q", len(floats)) + struct.pack("<%df" % len(floats), *floats)


def legacy_storages(records):
    return (proto(2) + binint1(len(records)) + STOP + b"".join(records) +
            proto(2) + EMPTY_LIST + STOP)   # no storage views


def legacy_tensor_record(key_ops, storage_key, sizes, strides, offset=0):
    rec = (proto(2) + key_ops + binint1(storage_key) + global_("torch", "Tensor") + binput(0) +
           TUPLE3 + STOP)
    nd = len(sizes)
    return (rec + struct.pack("<i", nd) + b"\0" * 4 + struct.pack("<%dq" % nd, *sizes) +
            struct.pack("<%dq" % nd, *strides) + struct.pack("<q", offset))


def legacy_tensors(records):
    return proto(2) + binint1(len(records)) + STOP + b"".join(records)


def legacy_tar(sys_info=None, pickle_=None, tensors=None, storages=None, typeflags=None):
    """`typeflags` maps a member name to the tar type flag its header gets (default b"0")."""
    sys_info = sys_info or legacy_sys_info()
    pickle_ = pickle_ or legacy_object_pickle()
    tensors = tensors or legacy_tensors([legacy_tensor_record(binint1(1), 0, [2], [1])])
    storages = storages or legacy_storages([legacy_storage_record(binint1(0), [1.0, 2.0])])
    typeflags = typeflags or {}
    # The order torch's old tar writer used.
    return build_tar([(n, d, typeflags.get(n, b"0")) for n, d in [
        ("sys_info", sys_info), ("pickle", pickle_), ("tensors", tensors),
        ("storages", storages)]])


def npy(descr, shape, body, version=1):
    """A .npy: magic, version, header dict padded to a 64-byte boundary, then `body`."""
    header = "{'descr': %s, 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    return npy_raw(header, body, version)


def npy_raw(header, body, version=1):
    """A .npy whose header dict text is `header` exactly (then padding and the newline)."""
    lenfmt = "<H" if version == 1 else "<I"
    pre = 6 + 2 + struct.calcsize(lenfmt)
    total = pre + len(header) + 1
    header += " " * ((-total) % 64) + "\n"
    return (b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(header)) +
            header.encode("latin1") + body)


def npy_object_evil(version=1, descr="'|O'"):
    # np.save writes object arrays with pickle protocol 3; here the "array" is os.system(CMD).
    body = proto(3) + global_("os", "system") + cmd_args() + REDUCE + STOP
    return npy(descr, "(1,)", body, version)


def os_system_long_name():
    """Protocol 4 STACK_GLOBAL of ("os", "path.os.path.os....system"): CPython's unpickler walks
    the dotted name attribute by attribute (os.path.os is os), so this is os.system(CMD)."""
    return proto(4) + sbu("os") + bu(LONG_NAME) + STACK_GLOBAL + sbu(CMD) + TUPLE1 + REDUCE + STOP


LONG_NAME = "path.os." * 80 + "system"      # 646 characters
LONG_QUALNAME = "os." + LONG_NAME


def npy_float32():
    return npy("'<f4'", "(3,)", struct.pack("<3f", 1.0, 2.0, 3.0))


# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------

CASES = []
_OMIT = object()


def case(path, data, verdict, dangerous=(), unsafe=(), errors=_OMIT, note=""):
    trick = path.split("/")[0]
    req_unsafe = []
    for n in list(dangerous) + list(unsafe):
        if n not in req_unsafe:
            req_unsafe.append(n)
    entry = {"file": path, "trick": trick, "verdict": verdict,
             "dangerous": list(dangerous), "unsafe": req_unsafe}
    if errors is not _OMIT:
        entry["errors"] = errors
    entry["note"] = note
    assert verdict in ("safe", "unsafe", "unknown")
    assert verdict != "safe" or not req_unsafe
    assert verdict != "unknown" or not req_unsafe
    assert all(c["file"] != path for c, _ in CASES), path
    CASES.append((entry, data))


def unsafe_case(path, data, dangerous=(), unsafe=(), errors=False, note=""):
    case(path, data, "unsafe", dangerous, unsafe, errors, note)


def cases_global():
    unsafe_case("global/proto0_os_system.pkl", os_system_p0(), ["os.system"],
                note="protocol 0 GLOBAL of os.system, called by REDUCE")
    unsafe_case("global/proto0_builtin_eval.pkl",
                b"c__builtin__\neval\n(S'1+1'\ntR.", ["builtins.eval"],
                note="protocol 0 GLOBAL c__builtin__ eval (fix_imports: builtins.eval)")
    unsafe_case("global/proto2_posix_system.pkl",
                proto(2) + global_("posix", "system") + cmd_args() + REDUCE + STOP,
                ["posix.system"], note="protocol 2 GLOBAL posix.system, REDUCE")
    unsafe_case("global/proto2_nt_system.pkl",
                proto(2) + global_("nt", "system") + cmd_args() + REDUCE + STOP,
                ["nt.system"], note="protocol 2 GLOBAL nt.system, REDUCE")
    unsafe_case("global/proto2_builtin_exec.pkl",
                proto(2) + global_("__builtin__", "exec") + bu("pass") + TUPLE1 + REDUCE + STOP,
                ["builtins.exec"], note="protocol 2 GLOBAL __builtin__ exec (builtins.exec)")
    unsafe_case("global/proto2_subprocess_check_output.pkl",
                proto(2) + global_("subprocess", "check_output") + EMPTY_LIST + MARK +
                bu("echo") + bu("pthio-hostile") + APPENDS + TUPLE1 + REDUCE + STOP,
                ["subprocess.check_output"], note="subprocess.check_output(['echo', ...])")
    unsafe_case("global/proto2_not_called.pkl",
                proto(2) + global_("os", "system") + STOP, ["os.system"],
                note="os.system imported and returned, never called: the import alone counts")
    unsafe_case("global/proto2_runpy_run_code.pkl",
                proto(2) + global_("runpy", "_run_code") + bu("pass") + EMPTY_DICT + TUPLE2 +
                REDUCE + STOP, ["runpy._run_code"], note="runpy._run_code('pass', {})")
    unsafe_case("global/proto2_copy_reg.pkl",
                proto(2) + global_("copy_reg", "_reconstructor") + global_("collections",
                "OrderedDict") + global_("__builtin__", "object") + NONE + TUPLE3 + REDUCE +
                STOP, [], ["copyreg._reconstructor", "builtins.object"],
                note="copy_reg maps to copyreg, __builtin__ to builtins; neither is allowlisted")


def cases_inst():
    unsafe_case("inst/proto0_inst_os_system.pkl",
                b"(S'" + CMD.encode() + b"'\nios\nsystem\n.", ["os.system"],
                note="protocol 0 INST os system: MARK, argument, INST calls it")
    unsafe_case("inst/proto0_inst_builtin_eval.pkl",
                b"(S'1+1'\ni__builtin__\neval\n.", ["builtins.eval"],
                note="INST __builtin__ eval (builtins.eval)")
    unsafe_case("inst/proto2_inst_subprocess_popen.pkl",
                proto(2) + MARK + EMPTY_LIST + MARK + bu("echo") + bu("pthio-hostile") +
                APPENDS + inst("subprocess", "Popen") + STOP, ["subprocess.Popen"],
                note="INST inside a protocol 2 stream, argument a list built with APPENDS")
    unsafe_case("inst/proto1_inst_memo.pkl",
                b"(S'" + CMD.encode() + b"'\nq\x00ios\nsystem\nq\x01h\x01.", ["os.system"],
                note="INST whose argument is memoized and whose result is fetched back")


def cases_stack_global():
    unsafe_case("stack_global/short_binunicode_os_system.pkl", os_system_p4(), ["os.system"],
                note="protocol 4 frame, SHORT_BINUNICODE 'os' 'system', STACK_GLOBAL, REDUCE")
    unsafe_case("stack_global/binunicode_subprocess_popen.pkl",
                proto(4) + bu("subprocess") + bu("Popen") + STACK_GLOBAL + EMPTY_LIST + MARK +
                bu("echo") + bu("pthio-hostile") + APPENDS + TUPLE1 + REDUCE + STOP,
                ["subprocess.Popen"], note="BINUNICODE operands, no frame")
    unsafe_case("stack_global/binunicode8_builtins_exec.pkl",
                frame(bu8("builtins") + bu8("exec") + STACK_GLOBAL + bu8("pass") + TUPLE1 +
                      REDUCE + STOP), ["builtins.exec"], note="BINUNICODE8 operands")
    unsafe_case("stack_global/short_binstring_os_system.pkl",
                proto(4) + sbs("os") + sbs("system") + STACK_GLOBAL + sbs(CMD) + TUPLE1 +
                REDUCE + STOP, ["os.system"],
                note="SHORT_BINSTRING operands (decoded to str by Python 3's Unpickler)")
    unsafe_case("stack_global/binstring_mixed_posix_system.pkl",
                proto(4) + binstring("posix") + sbu("system") + STACK_GLOBAL + cmd_args() +
                REDUCE + STOP, ["posix.system"],
                note="module from BINSTRING, name from SHORT_BINUNICODE")
    unsafe_case("stack_global/short_binbytes_os_system.pkl",
                proto(4) + sbb(b"os") + sbb(b"system") + STACK_GLOBAL + cmd_args() + REDUCE +
                STOP, ["os.system"],
                note="SHORT_BINBYTES operands: literal bytes resolve too (CPython refuses bytes "
                "here; the scan stays conservative)")
    unsafe_case("stack_global/proto5_builtins_import.pkl",
                proto(5) + b"\x95" + struct.pack("<Q", 0) + sbu("builtins") + sbu("__import__") +
                STACK_GLOBAL + sbu("os") + TUPLE1 + REDUCE + STOP, ["builtins.__import__"],
                note="protocol 5, an empty FRAME, then builtins.__import__('os')")


def cases_stack_global_memo():
    unsafe_case("stack_global_memo/binput_binget.pkl",
                proto(4) + sbu("os") + binput(0) + POP + sbu("system") + binput(1) + POP +
                binget(0) + binget(1) + STACK_GLOBAL + cmd_args() + REDUCE + STOP,
                ["os.system"], note="operands BINPUT, popped, fetched by BINGET")
    unsafe_case("stack_global_memo/long_binput_long_binget.pkl",
                proto(4) + sbu("subprocess") + long_binput(70000) + POP + sbu("Popen") +
                long_binput(70001) + POP + long_binget(70000) + long_binget(70001) +
                STACK_GLOBAL + EMPTY_LIST + MARK + bu("echo") + bu("pthio-hostile") + APPENDS +
                TUPLE1 + REDUCE + STOP, ["subprocess.Popen"],
                note="LONG_BINPUT 70000/70001, fetched by LONG_BINGET")
    unsafe_case("stack_global_memo/memoize_binget.pkl",
                frame(sbu("builtins") + MEMOIZE + POP + sbu("__import__") + MEMOIZE + POP +
                      binget(0) + binget(1) + STACK_GLOBAL + sbu("os") + TUPLE1 + REDUCE +
                      STOP), ["builtins.__import__"],
                note="MEMOIZE (indexes 0 and 1), fetched by BINGET")
    unsafe_case("stack_global_memo/mixed_long_binget_literal.pkl",
                proto(4) + sbu("runpy") + long_binput(5) + POP + long_binget(5) +
                bu8("_run_code") + STACK_GLOBAL + sbu("pass") + EMPTY_DICT + TUPLE2 + REDUCE +
                STOP, ["runpy._run_code"], note="module from the memo, name a literal")
    unsafe_case("stack_global_memo/memoize_after_other_objects.pkl",
                frame(EMPTY_DICT + MEMOIZE + EMPTY_LIST + MEMOIZE + POP + sbu("socket") +
                      MEMOIZE + POP + sbu("create_connection") + MEMOIZE + POP + binget(2) +
                      binget(3) + STACK_GLOBAL + sbu("127.0.0.1") + binint1(9) + TUPLE2 +
                      TUPLE1 + REDUCE + STOP), ["socket.create_connection"],
                note="MEMOIZE after a dict and a list: the strings are slots 2 and 3")


def cases_stack_global_unresolved():
    codecs_encode = sbu("_codecs") + sbu("encode") + STACK_GLOBAL
    unsafe_case("stack_global_unresolved/module_from_call.pkl",
                proto(4) + codecs_encode + sbu("os") + sbu("latin1") + TUPLE2 + REDUCE +
                sbu("system") + STACK_GLOBAL + cmd_args() + REDUCE + STOP, [],
                ["<unresolved STACK_GLOBAL>"], errors=_OMIT,
                note="module is the result of _codecs.encode('os', 'latin1') (allowlisted call)")
    unsafe_case("stack_global_unresolved/name_from_call.pkl",
                proto(4) + sbu("os") + codecs_encode + sbu("system") + sbu("latin1") + TUPLE2 +
                REDUCE + STACK_GLOBAL + cmd_args() + REDUCE + STOP, [],
                ["<unresolved STACK_GLOBAL>"], errors=_OMIT,
                note="name is a call result, module a literal")
    unsafe_case("stack_global_unresolved/undefined_memo.pkl",
                proto(4) + binget(5) + binget(6) + STACK_GLOBAL + cmd_args() + REDUCE + STOP,
                [], ["<unresolved STACK_GLOBAL>"], errors=True,
                note="both operands fetched from memo slots never defined")
    unsafe_case("stack_global_unresolved/from_ints.pkl",
                proto(4) + binint1(1) + binint1(2) + STACK_GLOBAL + cmd_args() + REDUCE + STOP,
                [], ["<unresolved STACK_GLOBAL>"], errors=True,
                note="STACK_GLOBAL on two ints (type confusion)")


def cases_ext():
    unsafe_case("ext/ext1.pkl", proto(2) + ext1(1) + cmd_args() + REDUCE + STOP, [],
                ["<copyreg extension 1>"], note="EXT1 code 1, called by REDUCE")
    unsafe_case("ext/ext2.pkl", proto(2) + ext2(48879) + cmd_args() + REDUCE + STOP, [],
                ["<copyreg extension 48879>"], note="EXT2 code 0xBEEF")
    unsafe_case("ext/ext4.pkl", proto(2) + ext4(0x7FFFFFFF) + cmd_args() + REDUCE + STOP, [],
                ["<copyreg extension 2147483647>"], note="EXT4 code 0x7fffffff")
    unsafe_case("ext/ext1_memo.pkl",
                proto(2) + ext1(200) + binput(0) + POP + binget(0) + cmd_args() + REDUCE + STOP,
                [], ["<copyreg extension 200>"], note="EXT1 code 200 memoized, then called")


def cases_calls():
    popen_args = EMPTY_LIST + MARK + bu("echo") + bu("pthio-hostile") + APPENDS + TUPLE1
    unsafe_case("calls/reduce_subprocess_popen.pkl",
                proto(3) + global_("subprocess", "Popen") + popen_args + REDUCE + STOP,
                ["subprocess.Popen"], note="REDUCE on subprocess.Popen")
    unsafe_case("calls/newobj_subprocess_popen.pkl",
                proto(2) + global_("subprocess", "Popen") + popen_args + NEWOBJ + STOP,
                ["subprocess.Popen"], note="NEWOBJ on subprocess.Popen")
    unsafe_case("calls/obj_os_system.pkl",
                proto(1) + MARK + global_("os", "system") + bu(CMD) + OBJ + STOP,
                ["os.system"], note="OBJ: MARK, callable, argument")
    unsafe_case("calls/newobj_ex_socket.pkl",
                frame(sbu("socket") + sbu("create_connection") + STACK_GLOBAL + sbu("127.0.0.1") +
                      binint1(9) + TUPLE2 + TUPLE1 + EMPTY_DICT + NEWOBJ_EX + STOP),
                ["socket.create_connection"], note="NEWOBJ_EX with empty kwargs")
    unsafe_case("calls/reduce_builtins_open.pkl",
                proto(3) + global_("builtins", "open") + bu("/nonexistent/pthio-hostile") +
                TUPLE1 + REDUCE + STOP, ["builtins.open"], note="builtins.open(path)")
    unsafe_case("calls/reduce_shutil_rmtree.pkl",
                proto(2) + global_("shutil", "rmtree") + bu("/nonexistent/pthio-hostile") +
                TUPLE1 + REDUCE + STOP, ["shutil.rmtree"], note="shutil.rmtree(missing path)")
    unsafe_case("calls/reduce_importlib_import_module.pkl",
                proto(2) + global_("importlib", "import_module") + bu("pthio_hostile_missing") +
                TUPLE1 + REDUCE + STOP, ["importlib.import_module"],
                note="importlib.import_module")
    unsafe_case("calls/reduce_pickle_loads.pkl",
                proto(3) + global_("pickle", "loads") + b"B" + struct.pack("<I", len(
                    os_system_p0())) + os_system_p0() + TUPLE1 + REDUCE + STOP,
                ["pickle.loads"], note="pickle.loads of a BINBYTES payload (itself os.system)")
    unsafe_case("calls/reduce_torch_load.pkl",
                proto(2) + global_("torch", "load") + bu("/nonexistent/pthio-hostile.pt") +
                TUPLE1 + REDUCE + STOP, ["torch.load"], note="torch.load is not allowlisted")
    unsafe_case("calls/reduce_torch_jit_load.pkl",
                proto(2) + global_("torch.jit", "load") + bu("/nonexistent/pthio-hostile.pt") +
                TUPLE1 + REDUCE + STOP, ["torch.jit.load"], note="torch.jit.load")
    unsafe_case("calls/reduce_torch_serialization_load.pkl",
                proto(2) + global_("torch.serialization", "load") +
                bu("/nonexistent/pthio-hostile.pt") + TUPLE1 + REDUCE + STOP,
                ["torch.serialization.load"], note="torch.serialization.load")
    unsafe_case("calls/reduce_urlopen.pkl",
                proto(2) + global_("urllib.request", "urlopen") +
                bu("http://127.0.0.1:9/pthio-hostile") + TUPLE1 + REDUCE + STOP,
                ["urllib.request.urlopen"], note="urllib.request.urlopen")
    unsafe_case("calls/reduce_webbrowser_open.pkl",
                proto(2) + global_("webbrowser", "open") + bu("http://127.0.0.1:9/") + TUPLE1 +
                REDUCE + STOP, ["webbrowser.open"], note="webbrowser.open")
    unsafe_case("calls/getattr_import_chain.pkl",
                proto(2) + global_("__builtin__", "getattr") + binput(0) +
                global_("__builtin__", "__import__") + bu("os") + TUPLE1 + REDUCE + bu("system") +
                TUPLE2 + REDUCE + cmd_args() + REDUCE + STOP,
                ["builtins.getattr", "builtins.__import__"],
                note="getattr(__import__('os'), 'system')(CMD)")


def cases_after_error_memo():
    unsafe_case("after_error_memo/binget_undefined.pkl",
                proto(2) + binget(7) + POP + global_("os", "system") + cmd_args() + REDUCE + STOP,
                ["os.system"], errors=True, note="BINGET 7 never defined, then GLOBAL os.system")
    unsafe_case("after_error_memo/long_binget_undefined.pkl",
                proto(4) + long_binget(0x00FFFFFF) + POP + sbu("subprocess") + sbu("Popen") +
                STACK_GLOBAL + sbu(CMD) + TUPLE1 + REDUCE + STOP, ["subprocess.Popen"],
                errors=True, note="LONG_BINGET 0xffffff undefined, then STACK_GLOBAL")
    unsafe_case("after_error_memo/get_undefined_proto0.pkl",
                b"g99\n0" + os_system_p0(), ["os.system"], errors=True,
                note="protocol 0 GET 99 undefined, then GLOBAL os.system")
    unsafe_case("after_error_memo/undefined_callable.pkl",
                proto(2) + binget(3) + cmd_args() + REDUCE + STOP, [], ["<unresolved call>"],
                errors=True, note="REDUCE on a callable fetched from an undefined memo slot")
    case("after_error_memo/undefined_then_benign.pkl",
         proto(2) + binget(9) + POP + ordereddict_p2()[2:], "unknown", errors=True,
         note="undefined memo slot, then only an allowlisted import: unknown, not safe")
    # PUT's index line is "1\0junk": CPython's C unpickler parses it with PyLong_FromString,
    # which stops at the NUL, and stores index 1; the pure-Python one raises ValueError.
    nul_put = NONE + b"p1\x00junk\n" + POP + os_system_p0()
    unsafe_case("after_error_memo/put_nul_index.pkl", nul_put, ["os.system"], errors=_OMIT,
                note="protocol 0: NONE, PUT '1\\0junk' (index 1 to the C unpickler), POP, then "
                "GLOBAL os.system")
    unsafe_case("after_error_memo/put_nul_index_member.pt",
                build_zip([Member("archive/version", b"3\n", align=False),
                           Member("archive/DATA.PKL", nul_put, align=False)]),
                ["os.system"], errors=_OMIT,
                note="put_nul_index.pkl as the record archive/DATA.PKL next to archive/version "
                "(torch's miniz looks names up case-insensitively)")
    unsafe_case("after_error_memo/put_nul_index_then_get.pkl",
                proto(4) + unicode0("os") + b"p1\x00junk\n" + POP + get0(1) +
                unicode0("system") + STACK_GLOBAL + cmd_args() + REDUCE + STOP, ["os.system"],
                errors=_OMIT, note="'os' stored by PUT '1\\0junk', fetched by GET 1 for "
                "STACK_GLOBAL: the C unpickler imports os.system")


def cases_after_error_type():
    tail = global_("os", "system") + cmd_args() + REDUCE + STOP
    unsafe_case("after_error_type/append_on_int.pkl",
                proto(2) + binint1(1) + binint1(2) + APPEND + tail, ["os.system"], errors=True,
                note="APPEND onto an int, then os.system")
    unsafe_case("after_error_type/setitem_on_string.pkl",
                proto(2) + bu("a") + bu("k") + bu("v") + SETITEM + POP +
                global_("subprocess", "check_output") + EMPTY_LIST + MARK + bu("echo") +
                bu("pthio-hostile") + APPENDS + TUPLE1 + REDUCE + STOP,
                ["subprocess.check_output"], errors=True, note="SETITEM onto a str")
    unsafe_case("after_error_type/stack_global_ints_then_global.pkl",
                proto(4) + binint1(1) + binint1(2) + STACK_GLOBAL + POP +
                global_("posix", "system") + cmd_args() + REDUCE + STOP, ["posix.system"],
                ["<unresolved STACK_GLOBAL>"], errors=True,
                note="STACK_GLOBAL on ints, then GLOBAL posix.system")
    unsafe_case("after_error_type/reduce_underflow.pkl",
                proto(2) + REDUCE + tail, ["os.system"], errors=True,
                note="REDUCE on an empty stack (underflow), then os.system")
    unsafe_case("after_error_type/appends_on_tuple.pkl",
                proto(2) + EMPTY_TUPLE + MARK + binint1(1) + APPENDS + POP + tail, ["os.system"],
                errors=True, note="APPENDS onto a tuple")


def cases_after_error_badop():
    unsafe_case("after_error_badop/ff_then_global.pkl",
                proto(2) + EMPTY_DICT + b"\xff" + global_("os", "system") + cmd_args() + REDUCE +
                STOP, ["os.system"], errors=True, note="invalid opcode 0xff, then GLOBAL")
    unsafe_case("after_error_badop/zero_then_second_pickle.pkl",
                proto(2) + EMPTY_DICT + b"\x00" + STOP + proto(2) +
                global_("subprocess", "check_output") + EMPTY_LIST + MARK + bu("echo") +
                bu("pthio-hostile") + APPENDS + TUPLE1 + REDUCE + STOP,
                ["subprocess.check_output"], errors=True,
                note="invalid opcode 0x00 in a first pickle; a second pickle (PROTO) calls")
    unsafe_case("after_error_badop/ff_then_stack_global.pkl",
                proto(4) + b"\xff\xfe" + sbu("builtins") + sbu("exec") + STACK_GLOBAL +
                sbu("pass") + TUPLE1 + REDUCE + STOP, ["builtins.exec"], errors=True,
                note="invalid bytes, then string+string+STACK_GLOBAL")
    unsafe_case("after_error_badop/badop_then_inst.pkl",
                b"(dp0\n\xa0(S'" + CMD.encode() + b"'\nios\nsystem\n.", ["os.system"],
                errors=True, note="protocol 0, invalid opcode 0xa0, then an INST line")


def cases_truncated():
    unsafe_case("truncated/os_system_cut_in_arg.pkl",
                (proto(2) + global_("os", "system") + bu(CMD))[:-6], ["os.system"], errors=True,
                note="GLOBAL os.system, then cut inside its BINUNICODE argument")
    unsafe_case("truncated/frame_cut_before_stop.pkl",
                os_system_p4()[:-4], ["os.system"], errors=True,
                note="protocol 4 frame declares more bytes than remain; STACK_GLOBAL seen")
    case("truncated/small_data_pkl_cut.pkl", SMALL_PKL[:200], "unknown", errors=True,
         note="small.pth's data.pkl cut at 200 bytes: only allowlisted imports before the cut")
    case("truncated/allowlisted_cut_in_arg.pkl",
         (proto(2) + global_("collections", "OrderedDict") + bu("abcdefghijklmnop"))[:-5],
         "unknown", errors=True, note="allowlisted GLOBAL, then cut inside a BINUNICODE")
    case("truncated/zip_data_pkl_cut.pth",
         build_zip(small_zip_members(replace={"small/data.pkl": SMALL_PKL[:300]})), "unknown",
         errors=True, note="stored data.pkl cut at 300 bytes (sizes and CRC match the cut)")
    full = deflate(SMALL_PKL)
    cut = Member("small/data.pkl", SMALL_PKL, method=8, payload=full[:len(full) // 2])
    case("truncated/zip_deflate_cut.pth",
         build_zip(small_zip_members(replace={"small/data.pkl": cut})), "unknown", errors=True,
         note="deflated data.pkl whose compressed stream stops halfway (cannot be inflated)")


def cases_concat():
    sock = (proto(2) + global_("socket", "create_connection") + bu("127.0.0.1") + binint1(9) +
            TUPLE2 + TUPLE1 + REDUCE + STOP)
    unsafe_case("concat/benign_then_socket.pkl", ordereddict_p2() + sock,
                ["socket.create_connection"], note="benign OrderedDict pickle, then a second "
                "pickle calling socket.create_connection")
    unsafe_case("concat/three_pickles_os_system.pkl",
                dict_p0() + proto(2) + EMPTY_LIST + binput(0) + STOP + os_system_p4(),
                ["os.system"], note="protocol 0 dict, protocol 2 list, protocol 4 os.system")
    unsafe_case("concat/benign_then_proto0.pkl", ordereddict_p4() + os_system_p0(),
                ["os.system"], note="protocol 4 OrderedDict, then a protocol 0 pickle")
    unsafe_case("concat/zip_data_pkl_second_pickle.pth",
                build_zip(small_zip_members(replace={"small/data.pkl": SMALL_PKL + sock})),
                ["socket.create_connection"],
                note="small.pth whose data.pkl has a second pickle after the first STOP")


def cases_junk_after():
    case("junk_after/binary_junk.pkl", ordereddict_p2() + b"\xde\xad\xbe\xef\xfe\xed\xfa\xce",
         "unknown", errors=True, note="benign pickle, then 8 bytes that are no pickle")
    case("junk_after/zero_padding.pkl", ordereddict_p2() + b"\0" * 64, "unknown", errors=True,
         note="benign pickle, then 64 zero bytes")
    case("junk_after/lone_proto.pkl", ordereddict_p4() + proto(2), "unknown", errors=True,
         note="benign pickle, then PROTO 2 and nothing (a second pickle cut at once)")
    case("junk_after/text_junk.pkl", dict_p0() + b"NOT A PICKLE", "unknown", errors=True,
         note="benign protocol 0 pickle, then text with no newline")
    case("junk_after/zip_data_pkl_junk.pth",
         build_zip(small_zip_members(replace={"small/data.pkl": SMALL_PKL + b"\xde\xad\xbe\xef"})),
         "unknown", errors=True, note="small.pth whose data.pkl ends in 4 junk bytes")


def cases_member_names():
    base = small_zip_members()
    for fname, member, payload, note in [
            ("model_config_pkl.pth", "model/config.pkl", os_system_p2(),
             "extra member model/config.pkl (outside the archive folder)"),
            ("weights_bin.pth", "weights.bin", os_system_p0(),
             "extra member weights.bin holding a protocol 0 pickle"),
            ("inner_pt.pth", "inner.pt", os_system_p4(),
             "extra member inner.pt holding a bare protocol 4 pickle"),
            ("no_extension.pth", "small/payload", os_system_p2(),
             "extra member small/payload, no extension")]:
        unsafe_case("member_names/" + fname,
                    build_zip(with_member(base, Member(member, payload))), ["os.system"],
                    note=note + "; the rest is small.pth")
    unsafe_case("member_names/data0.pth",
                build_zip(small_zip_members(replace={"small/data/0": os_system_p2()})),
                ["os.system"], note="storage record small/data/0 replaced by a pickle")
    # archive/data.pkl and archive/DATA.PKL: the same record to a case-insensitive lookup (torch's
    # miniz), two records to a case-sensitive one.
    arch = [Member(n, d) for n, d in archive_members()]
    upper = Member("archive/DATA.PKL", os_system_p2())
    lower_first = with_member(arch, upper, before="archive/data/0")
    unsafe_case("member_names/data_pkl_then_DATA_PKL.pt", build_zip(lower_first), ["os.system"],
                errors=_OMIT, note="small.pth under archive/, benign archive/data.pkl, then a "
                "malicious archive/DATA.PKL")
    unsafe_case("member_names/DATA_PKL_then_data_pkl.pt",
                build_zip(with_member(arch, upper, before="archive/data.pkl")), ["os.system"],
                errors=_OMIT, note="as data_pkl_then_DATA_PKL.pt, archive/DATA.PKL first")
    # The same with a DATA.PKL whose stack passes 2**22 entries before the call (MARK, 2**22 + 1
    # NONEs, POP_MARK): a scan that takes only a lower-case data.pkl as the pickle and tries the
    # other records must still treat a trial that reaches its limits as a pickle. Deflated, the
    # 4 MiB record takes 4 KiB.
    deep = proto(2) + MARK + NONE * ((1 << 22) + 1) + b"1" + os_system_p0()
    deep_upper = Member("archive/DATA.PKL", deep, method=8)
    unsafe_case("member_names/data_pkl_then_deep_DATA_PKL.pt",
                build_zip(with_member(arch, deep_upper, before="archive/data/0")), ["os.system"],
                errors=_OMIT, note="benign archive/data.pkl, then a deflated archive/DATA.PKL "
                "whose stack grows past 2**22 entries before os.system")
    unsafe_case("member_names/deep_DATA_PKL_then_data_pkl.pt",
                build_zip(with_member(arch, deep_upper, before="archive/data.pkl")),
                ["os.system"], errors=_OMIT,
                note="as data_pkl_then_deep_DATA_PKL.pt, archive/DATA.PKL first")


def cases_local_only():
    base = small_zip_members()
    hidden = Member("small/extra.pkl", os_system_p2(), central=False)
    unsafe_case("local_only/last.pth", build_zip(with_member(base, hidden, before=None)),
                ["os.system"], errors=True,
                note="small/extra.pkl after the last record, absent from the central directory")
    unsafe_case("local_only/first.pth", build_zip([hidden] + base), ["os.system"], errors=True,
                note="hidden record first in the file")
    unsafe_case("local_only/middle.pth",
                build_zip(with_member(base, hidden, before="small/data/4")), ["os.system"],
                errors=True, note="hidden record between storage records")
    shadow = Member("small/data.pkl", evil_data_pkl(), central=False)
    unsafe_case("local_only/shadow_data_pkl.pth", build_zip(with_member(base, shadow)),
                ["os.system"], errors=True,
                note="a second small/data.pkl (malicious) only in local headers; the central "
                "directory names the benign one")


def cases_encrypted():
    base = small_zip_members()
    unsafe_case("encrypted/data_pkl_stored.pth",
                build_zip(small_zip_members(replace={"small/data.pkl": Member(
                    "small/data.pkl", evil_data_pkl(), flags_local=1)})),
                ["os.system"], errors=True,
                note="malicious data.pkl, stored plaintext, flag bit 0 set in both headers")
    unsafe_case("encrypted/data_pkl_deflated.pth",
                build_zip(small_zip_members(replace={"small/data.pkl": Member(
                    "small/data.pkl", evil_data_pkl(), method=8, flags_local=1)})),
                ["os.system"], errors=True,
                note="as data_pkl_stored, deflated (plain deflate, no encryption header)")
    unsafe_case("encrypted/extra_member.pth",
                build_zip(with_member(base, Member("small/extra.pkl", os_system_p2(),
                                                   flags_local=1))),
                ["os.system"], errors=True, note="an extra flagged .pkl next to benign records")
    unsafe_case("encrypted/central_flag_only.pth",
                build_zip(with_member(base, Member("small/extra.pkl", os_system_p2(),
                                                   flags_local=0, flags_central=1))),
                ["os.system"], errors=_OMIT,
                note="flag set in the central directory only (headers disagree)")


def cases_bad_crc():
    for fname, m, errors, note in [
            ("stored.pth", Member("small/data.pkl", evil_data_pkl(), crc_local=0xDEADBEEF),
             True, "malicious data.pkl, stored, wrong CRC in both headers"),
            ("deflated.pth", Member("small/data.pkl", evil_data_pkl(), method=8,
                                    crc_local=0x12345678),
             True, "malicious data.pkl, deflated, wrong CRC in both headers"),
            ("central_only.pth", Member("small/data.pkl", evil_data_pkl(),
                                        crc_central=0x0BADC0DE),
             True, "CRC right in the local header, wrong in the central directory"),
            ("local_only.pth", Member("small/data.pkl", evil_data_pkl(), crc_local=0x0BADC0DE,
                                      crc_central=zlib.crc32(evil_data_pkl()) & 0xFFFFFFFF),
             _OMIT, "CRC wrong in the local header only (the central directory is right)")]:
        unsafe_case("bad_crc/" + fname,
                    build_zip(small_zip_members(replace={"small/data.pkl": m})), ["os.system"],
                    errors=errors, note=note)


def cases_duplicate():
    base = small_zip_members()
    benign = Member("small/data.pkl", SMALL_PKL)
    evil = Member("small/data.pkl", evil_data_pkl())
    rest = [m for m in base if m.name != "small/data.pkl"]
    unsafe_case("duplicate/benign_then_malicious.pth", build_zip([benign, evil] + rest),
                ["os.system"], errors=_OMIT, note="two small/data.pkl, the second malicious")
    unsafe_case("duplicate/malicious_then_benign.pth", build_zip([evil, benign] + rest),
                ["os.system"], errors=_OMIT, note="two small/data.pkl, the first malicious")
    unsafe_case("duplicate/three_copies.pth", build_zip([benign, evil, benign] + rest),
                ["os.system"], errors=_OMIT, note="three small/data.pkl, the middle one malicious")
    unsafe_case("duplicate/storage_record.pth",
                build_zip(with_member(base, Member("small/data/0", os_system_p2()))),
                ["os.system"], errors=_OMIT,
                note="a second small/data/0 (after the real one) holding a pickle")

    # Two central directories of the same length. miniz (torch) reads the one at the end record's
    # stated offset; a reader that takes the one just before the end record (as Python's zipfile
    # does) reads the other. The malicious data.pkl's local header lies inside the data of
    # archive/data/0 (after a 0xff byte, so that record is no pickle).
    evil_data = os_system_p2()

    def two_cds(evil_at_offset):
        out = raw_local("archive/version", b"3\n")
        o_pkl = len(out)
        out += raw_local("archive/data.pkl", ordereddict_p2())
        hidden = raw_local("archive/data.pkl", evil_data)
        blob = b"\xff" + hidden
        o_blob = len(out)
        out += raw_local("archive/data/0", blob)
        o_hidden = o_blob + 30 + len("archive/data/0") + 1

        def cd(pkl, pkl_offset):
            return (raw_central("archive/version", b"3\n", 0) +
                    raw_central("archive/data.pkl", pkl, pkl_offset) +
                    raw_central("archive/data/0", blob, o_blob))
        cd_evil, cd_benign = cd(evil_data, o_hidden), cd(ordereddict_p2(), o_pkl)
        assert len(cd_evil) == len(cd_benign)
        first, last = (cd_evil, cd_benign) if evil_at_offset else (cd_benign, cd_evil)
        o_first = len(out)
        return out + first + last + raw_eocd(3, len(last), o_first)
    unsafe_case("duplicate/two_central_dirs.pt", two_cds(True), ["os.system"], errors=True,
                note="the central directory at the end record's offset names a data.pkl whose "
                "local header hides in archive/data/0; the one just before the end record names "
                "a benign data.pkl")
    unsafe_case("duplicate/two_central_dirs_last_evil.pt", two_cds(False), ["os.system"],
                errors=True, note="as two_central_dirs.pt, the directories swapped")


def cases_prepended():
    benign = small_zip_members()
    evil_zip = small_zip_members(replace={"small/data.pkl": evil_data_pkl()})
    junk = b"\xffPTHIO-HOSTILE-PREFIX\xfe" * 4
    unsafe_case("prepended/pickle_prefix_shifted.pth",
                build_zip(benign, prefix=os_system_p2(), shift=True), ["os.system"],
                errors=_OMIT, note="malicious pickle before a benign zip; offsets count from the "
                "file start")
    unsafe_case("prepended/pickle_prefix_unshifted.pth",
                build_zip(benign, prefix=os_system_p2(), shift=False), ["os.system"],
                errors=_OMIT, note="malicious pickle before a benign zip; offsets count from the "
                "zip start (plain concatenation)")
    unsafe_case("prepended/junk_prefix_shifted.pth",
                build_zip(evil_zip, prefix=junk, shift=True), ["os.system"], errors=_OMIT,
                note="junk before a zip with a malicious data.pkl, offsets shifted")
    unsafe_case("prepended/junk_prefix_unshifted.pth",
                build_zip(evil_zip, prefix=junk, shift=False), ["os.system"], errors=_OMIT,
                note="junk before a zip with a malicious data.pkl, offsets not shifted")
    unsafe_case("prepended/proto0_prefix_unshifted.pth",
                build_zip(benign, prefix=os_system_p0(), shift=False), ["os.system"],
                errors=_OMIT, note="protocol 0 malicious pickle before a benign zip")


def cases_nested():
    base = small_zip_members()
    inner = evil_archive()
    unsafe_case("nested/stored.pth",
                build_zip(with_member(base, Member("small/extra/inner.pt", inner))),
                ["os.system"], note="member small/extra/inner.pt is a stored zip whose "
                "archive/data.pkl calls os.system")
    unsafe_case("nested/deflated.pth",
                build_zip(with_member(base, Member("small/extra/inner.pt", inner, method=8))),
                ["os.system"], note="as stored.pth, the inner zip deflated")
    mid = build_zip([Member("mid/inner.pt", inner, method=8), Member("mid/version", b"3\n")])
    unsafe_case("nested/two_levels.pth",
                build_zip(with_member(base, Member("small/extra/outer.zip", mid))),
                ["os.system"], note="zip in a zip in the checkpoint; the innermost data.pkl "
                "calls os.system")
    unsafe_case("nested/as_storage_record.pth",
                build_zip(small_zip_members(replace={"small/data/0": evil_archive("x")})),
                ["os.system"], note="storage record small/data/0 is a zip holding x/data.pkl")


def cases_fanout():
    # Many central directory entries naming one local header. The leaf pickle is benign and keeps
    # its stack flat (NONE, POP), so only the fan-out itself can make the scan not `safe`.
    leaf = proto(2) + (NONE + POP) * 1000 + NONE + STOP
    data = leaf
    for level in (1, 2, 3):
        data = fanout_zip(data, 8)
        case("fanout/stored_8x%d.zip" % level, data, "unknown", errors=True,
             note="8 central directory entries m.pkl, all at offset 0, one stored record; "
                  "%d level(s) deep (%d paths to a benign leaf pickle)" % (level, 8 ** level))
    # A shared deflate stream: 8 MiB of (NONE, POP) deflate to ~8 KiB; 40 entries name it.
    big = proto(2) + (NONE + POP) * (4 << 20) + NONE + STOP
    comp = deflate(big)
    case("fanout/shared_deflate_40.zip", fanout_zip(comp, 40, "x.pkl", method=8,
                                                    usize=len(big),
                                                    crc=zlib.crc32(big) & 0xFFFFFFFF),
         "unknown", errors=True,
         note="40 central directory entries x.pkl share one deflated local record (a benign "
              "8 MiB pickle, %d bytes compressed): 320 MiB to inflate if each is read" % len(comp))


def cases_legacy_tar():
    evil_obj = (proto(2) + global_("os", "system") + cmd_args() + REDUCE + POP +
                legacy_object_pickle()[2:])
    unsafe_case("legacy_tar/pickle_member.pt", legacy_tar(pickle_=evil_obj), ["os.system"],
                note="the `pickle` member calls os.system before building the state dict")
    storages = legacy_storages([
        legacy_storage_record(binint1(0), [1.0, 2.0]),
        legacy_storage_record(global_("os", "system") + cmd_args() + REDUCE, [3.0])])
    unsafe_case("legacy_tar/storages_member.pt", legacy_tar(storages=storages), ["os.system"],
                note="`storages`: the second storage's key is os.system(CMD), after the first "
                "storage's raw bytes")
    unsafe_case("legacy_tar/sys_info_member.pt", legacy_tar(sys_info=os_system_p2()),
                ["os.system"], note="`sys_info` is os.system(CMD)")
    tensors = legacy_tensors([
        legacy_tensor_record(binint1(1), 0, [2], [1]),
        legacy_tensor_record(global_("posix", "system") + cmd_args() + REDUCE, 0, [1], [1], 1)])
    unsafe_case("legacy_tar/tensors_member.pt", legacy_tar(tensors=tensors), ["posix.system"],
                note="`tensors`: the second tensor's key is posix.system(CMD)")
    # Type flag 'Z' is no tar type; Python's tarfile reads unknown types as regular files, so
    # torch's extractfile("pickle") / extract("storages") get the bytes.
    unsafe_case("legacy_tar/pickle_typeflag_Z.pt",
                legacy_tar(pickle_=evil_obj, typeflags={"pickle": b"Z"}), ["os.system"],
                note="the malicious `pickle` member's header has type flag 'Z'")
    unsafe_case("legacy_tar/storages_typeflag_Z.pt",
                legacy_tar(storages=storages, typeflags={"storages": b"Z"}), ["os.system"],
                note="storages_member.pt with type flag 'Z' on `storages`")
    # A pickle from byte 0 whose first 512 bytes also form a tar header: PROTO 3, BINBYTES
    # covering the rest of the block, then POP and os.system. torch.load tries tarfile first.
    def polyglot(valid_checksum):
        rest = POP + os_system_p0()
        hdr = bytearray(512)
        hdr[0:7] = proto(3) + b"B" + struct.pack("<I", 512 - 7)
        hdr[124:136] = b"%011o\0" % len(rest)
        hdr[156:157] = b"5"                       # directory
        if valid_checksum:
            hdr[100:108] = b"0000755\0"
            hdr[257:265] = b"ustar\x0000"
        hdr[148:156] = b" " * 8
        total = sum(hdr)
        # The reviewer's variant: a NUL before the digits, which tarfile reads as checksum 0.
        hdr[148:156] = (b"%06o\0 " % total) if valid_checksum else (b"\0%06o\0" % total)
        return bytes(hdr) + rest
    unsafe_case("legacy_tar/tar_pickle_polyglot.pt", polyglot(False), ["os.system"],
                errors=_OMIT, note="pickle from byte 0 (BINBYTES over the rest of a 512-byte "
                "block that looks like a tar directory header, checksum field NUL-led), then "
                "os.system")
    unsafe_case("legacy_tar/tar_pickle_polyglot_valid_checksum.pt", polyglot(True),
                ["os.system"], errors=_OMIT, note="as tar_pickle_polyglot.pt with ustar magic "
                "and a valid header checksum: tarfile opens it as a tar holding one directory")
    # A whole-file pickle (PROTO 2, BINBYTES over everything up to the last byte, STOP) that is
    # also a tar tarfile opens: the first header is an empty member whose name begins with the
    # PROTO and BINBYTES opcodes and whose checksum field reads "0o" and six octal digits
    # (tarfile's int(s, 8) accepts the prefix). The tar's `pickle` member is os.system(CMD).
    members = (tar_member("storages", proto(2) + binint1(0) + STOP + proto(2) + EMPTY_LIST + STOP)
               + tar_member("tensors", proto(2) + binint1(0) + STOP)
               + tar_member("pickle", os_system_p4()))
    tail = b"\x01" * 511 + STOP          # a last block tarfile rejects as a header: end of tar
    total = 512 + len(members) + len(tail)
    name0 = proto(2) + b"B" + struct.pack("<I", total - 7 - 1)
    unsafe_case("legacy_tar/checksum_0o_prefix.pt",
                tar_member(name0, b"", checksum=b"0o%06o") + members + tail, ["os.system"],
                errors=_OMIT, note="first tar header's checksum written '0o' plus six octal "
                "digits (tarfile accepts it); the tar's `pickle` member is os.system; the whole "
                "file is also one pickle of a BINBYTES that swallows the tar")
    # torch's legacy_load reads each storage as pickle((key, location, storage_type)), an int64
    # element count, then count * element_size bytes, the size taken from item [2] of the
    # tuple. Here item [2] is ByteStorage, fetched from the memo, while the pickle's last import
    # is DoubleStorage (used as the key): a scan sizing by the last import skips 8N bytes, torch
    # skips N and unpickles what follows.
    n = 64
    args1 = (proto(2) + global_("torch", "ByteStorage") + binput(0) + POP +
             global_("torch", "DoubleStorage") + bu("cpu") + binget(0) + TUPLE3 + STOP)
    torch_view = b"\0" * n + os_system_p2()
    region = torch_view + b"\0" * (8 * n - len(torch_view))
    args2 = (proto(2) + bu("1") + bu("cpu") + global_("torch", "FloatStorage") + TUPLE3 + STOP)
    body = (proto(2) + binint1(2) + STOP + args1 + struct.pack("<q", n) + region + args2 +
            struct.pack("<q", 0) + proto(2) + EMPTY_LIST + STOP)
    unsafe_case("legacy_tar/storages_type_from_memo.pt", legacy_tar(storages=body),
                ["os.system"], errors=_OMIT,
                note="`storages`: the first record's storage type (item [2]) is ByteStorage from "
                "the memo, DoubleStorage is named last; torch reads 64 bytes of data and then "
                "unpickles os.system(CMD) hidden in what 8-byte elements would skip")


def cases_long_names():
    evil = os_system_long_name()
    unsafe_case("long_names/bare.pkl", evil, [LONG_QUALNAME], errors=_OMIT,
                note="protocol 4 STACK_GLOBAL of os and a 646-character dotted name "
                "('path.os.' * 80 + 'system') that CPython resolves to os.system")
    unsafe_case("long_names/DATA.PKL.pt",
                build_zip([Member("archive/DATA.PKL", evil), Member("archive/version", b"3\n")]),
                [LONG_QUALNAME], errors=_OMIT,
                note="the long-name pickle as zip record archive/DATA.PKL beside archive/version")
    unsafe_case("long_names/object.npy", npy("'|O'", "()", evil), [LONG_QUALNAME], errors=_OMIT,
                note=".npy v1.0, descr '|O', shape (); the pickle after the header is the "
                "long-name os.system")
    unsafe_case("long_names/object.npz",
                build_zip([Member("x.npy", npy("'|O'", "()", evil), align=False)]),
                [LONG_QUALNAME], errors=_OMIT, note=".npz holding long_names/object.npy as x.npy")
    unsafe_case("long_names/object_deflated.npz",
                build_zip([Member("x.npy", npy("'|O'", "()", evil), method=8, align=False)]),
                [LONG_QUALNAME], errors=_OMIT, note="as object.npz, the member deflated")


def cases_npy_object():
    unsafe_case("npy_object/object.npy", npy_object_evil(), ["os.system"],
                note=".npy v1.0 with descr '|O'; the pickle after the header is os.system")
    unsafe_case("npy_object/object_v2.npy", npy_object_evil(version=2), ["os.system"],
                note=".npy v2.0 (4-byte header length), object dtype")
    unsafe_case("npy_object/structured_object.npy",
                npy_object_evil(descr="[('a', '|O')]"), ["os.system"],
                note="structured dtype with an object field")
    unsafe_case("npy_object/arrays.npz",
                build_zip([Member("arr_0.npy", npy_float32(), align=False),
                           Member("arr_1.npy", npy_object_evil(), align=False)]),
                ["os.system"], note=".npz (stored, as np.savez writes): arr_1.npy is an object "
                "array whose pickle calls os.system")
    unsafe_case("npy_object/arrays_deflated.npz",
                build_zip([Member("arr_0.npy", npy_object_evil(), method=8, align=False)]),
                ["os.system"], note=".npz as np.savez_compressed writes it, object member")
    unsafe_case("npy_object/in_torch_zip.pth",
                build_zip(with_member(small_zip_members(),
                                      Member("small/extra/array.npy", npy_object_evil()))),
                ["os.system"], note="small.pth plus a record small/extra/array.npy (object)")
    for fname, descr, note in [
            ("descr_object.npy", "'object'", "descr 'object'"),
            ("descr_O8.npy", "'O8'", "descr 'O8' (object, 8 bytes)"),
            ("descr_hex_escape.npy", "'\\x4f'", "descr '\\x4f' written as an escape ('O' "
             "to numpy's literal_eval)"),
            ("descr_fortran_order_field.npy", "[('fortran_order', '<i4'), ('b', 'O')]",
             "structured descr whose first field is named 'fortran_order', object field b")]:
        unsafe_case("npy_object/" + fname, npy_object_evil(descr=descr), ["os.system"],
                    note=".npy v1.0, " + note + "; the pickle after the header is os.system")
    # numpy reads the header with ast.literal_eval: a repeated key keeps its last value, and
    # '#' starts a comment that runs to the end of the line.
    evil = proto(4) + sbu("os") + sbu("system") + STACK_GLOBAL + sbu(CMD) + TUPLE1 + REDUCE + STOP
    for fname, header, note in [
            ("descr_repeated.npy",
             "{'descr': '<f4', 'descr': '|O', 'fortran_order': False, 'shape': (), }",
             "'descr' given twice, '<f4' then '|O' (literal_eval keeps the last)"),
            ("descr_comment.npy",
             "{#'descr': '<f4',\n'descr': '|O', 'fortran_order': False, 'shape': (), }",
             "a '#' comment holding a decoy 'descr': '<f4', then the real 'descr': '|O'")]:
        unsafe_case("npy_object/" + fname, npy_raw(header, evil), ["os.system"],
                    note=".npy v1.0 header with " + note + "; the pickle after it is os.system")


def cases_any_extension():
    for fname, data, note in [
            ("payload.txt", os_system_p0(), "protocol 0, named .txt"),
            ("config.json", os_system_p2(), "protocol 2, named .json"),
            ("model.safetensors", os_system_p4(), "protocol 4, named .safetensors"),
            ("pytorch_model.bin", proto(5) + os_system_p4()[2:], "protocol 5, named .bin"),
            ("noext", os_system_p2(), "protocol 2, no extension")]:
        unsafe_case("any_extension/" + fname, data, ["os.system"],
                    note="bare os.system pickle, " + note)


def cases_build_setstate():
    od = global_("collections", "OrderedDict") + binput(0) + EMPTY_TUPLE + REDUCE + binput(1)
    unsafe_case("build_setstate/setstate_key.pkl",
                proto(2) + od + EMPTY_DICT + bu("__setstate__") + binget(0) + SETITEM + BUILD +
                STOP, [], ["<BUILD sets __setstate__>"],
                note="BUILD on an OrderedDict() instance, state {'__setstate__': OrderedDict}")
    unsafe_case("build_setstate/slotstate_reduce.pkl",
                proto(2) + od + NONE + EMPTY_DICT + bu("__reduce__") + binget(0) + SETITEM +
                TUPLE2 + BUILD + STOP, [], ["<BUILD sets __reduce__>"],
                note="state (None, {'__reduce__': OrderedDict})")
    unsafe_case("build_setstate/memo_filled_later.pkl",
                proto(2) + od + EMPTY_DICT + binput(2) + POP + binget(2) + MARK +
                bu("__setstate__") + binget(0) + SETITEMS + POP + binget(2) + BUILD + STOP, [],
                ["<BUILD sets __setstate__>"],
                note="empty dict memoized and popped, filled through BINGET, then fetched for "
                "BUILD")
    unsafe_case("build_setstate/filled_after_memoize.pkl",
                frame(sbu("collections") + MEMOIZE + sbu("OrderedDict") + MEMOIZE +
                      STACK_GLOBAL + MEMOIZE + EMPTY_TUPLE + REDUCE + MEMOIZE + EMPTY_DICT +
                      MEMOIZE + sbu("__class__") + MEMOIZE + binget(2) + SETITEM + BUILD + STOP),
                [], ["<BUILD sets __class__>"],
                note="protocol 4: the state dict is memoized before SETITEM fills it")
    unsafe_case("build_setstate/slotstate_memo_dict_key.pkl",
                proto(2) + od + EMPTY_DICT + binput(2) + POP + NONE + binget(2) + TUPLE2 +
                binget(2) + bu("__dict__") + EMPTY_DICT + SETITEM + POP + BUILD + STOP, [],
                ["<BUILD sets __dict__>"],
                note="slotstate dict already in the (None, d) tuple, filled later via memo")


def cases_build_class():
    state = EMPTY_DICT + bu("x") + binint1(1) + SETITEM
    unsafe_case("build_class/direct.pkl",
                proto(2) + global_("collections", "OrderedDict") + state + BUILD + STOP, [],
                ["<BUILD on collections.OrderedDict>"],
                note="GLOBAL collections.OrderedDict, state {'x': 1}, BUILD on the class")
    unsafe_case("build_class/via_memo.pkl",
                proto(2) + global_("collections", "OrderedDict") + binput(0) + POP +
                binget(0) + state + BUILD + STOP, [],
                ["<BUILD on collections.OrderedDict>"], note="class memoized, fetched, built")
    unsafe_case("build_class/stack_global_memoize.pkl",
                frame(sbu("collections") + sbu("OrderedDict") + STACK_GLOBAL + MEMOIZE + POP +
                      binget(0) + EMPTY_DICT + sbu("x") + binint1(1) + SETITEM + BUILD + STOP),
                [], ["<BUILD on collections.OrderedDict>"],
                note="class from STACK_GLOBAL, MEMOIZE, BINGET, then BUILD")
    unsafe_case("build_class/slotstate.pkl",
                proto(2) + global_("collections", "OrderedDict") + NONE + state + TUPLE2 +
                BUILD + STOP, [], ["<BUILD on collections.OrderedDict>"],
                note="BUILD on the class with (None, {'x': 1})")
    unsafe_case("build_class/rebuild_tensor_v2.pkl",
                proto(2) + global_("torch._utils", "_rebuild_tensor_v2") + state + BUILD + STOP,
                [], ["<BUILD on torch._utils._rebuild_tensor_v2>"],
                note="BUILD on an allowlisted function itself")


def cases_newobj_ex_kwargs():
    unsafe_case("newobj_ex_kwargs/popen_kwargs.pkl",
                frame(sbu("subprocess") + sbu("Popen") + STACK_GLOBAL + EMPTY_LIST + MARK +
                      sbu("echo") + sbu("pthio-hostile") + APPENDS + TUPLE1 + EMPTY_DICT +
                      sbu("shell") + NEWFALSE + SETITEM + NEWOBJ_EX + STOP),
                ["subprocess.Popen"], note="NEWOBJ_EX on subprocess.Popen, kwargs {'shell': "
                "False}")
    unsafe_case("newobj_ex_kwargs/ordereddict_kwargs.pkl",
                frame(sbu("collections") + sbu("OrderedDict") + STACK_GLOBAL + EMPTY_TUPLE +
                      EMPTY_DICT + sbu("a") + binint1(1) + SETITEM + NEWOBJ_EX + STOP),
                [], ["<NEWOBJ_EX keywords to collections.OrderedDict>"],
                note="NEWOBJ_EX on an allowlisted class with kwargs {'a': 1}")
    unsafe_case("newobj_ex_kwargs/memo_class.pkl",
                proto(4) + global_("collections", "OrderedDict") + binput(3) + POP + binget(3) +
                EMPTY_TUPLE + EMPTY_DICT + sbu("a") + binint1(1) + SETITEM + NEWOBJ_EX + STOP,
                [], ["<NEWOBJ_EX keywords to collections.OrderedDict>"],
                note="class from GLOBAL, BINPUT 3, fetched by BINGET 3")
    unsafe_case("newobj_ex_kwargs/kwargs_filled_later.pkl",
                frame(EMPTY_DICT + MEMOIZE + POP + binget(0) + sbu("a") + binint1(1) + SETITEM +
                      POP + sbu("collections") + sbu("OrderedDict") + STACK_GLOBAL +
                      EMPTY_TUPLE + binget(0) + NEWOBJ_EX + STOP),
                [], ["<NEWOBJ_EX keywords to collections.OrderedDict>"],
                note="kwargs dict memoized empty, filled through the memo, fetched for "
                "NEWOBJ_EX")


def cases_escapes():
    tail = string0("'" + CMD + "'") + TUPLE1 + REDUCE + STOP
    unsafe_case("escapes/string_hex.pkl",
                proto(4) + string0(r"'o\x73'") + string0(r"'sy\x73tem'") + STACK_GLOBAL + tail,
                ["os.system"], note=r"STRING 'o\x73' and 'sy\x73tem' for STACK_GLOBAL")
    unsafe_case("escapes/string_octal.pkl",
                proto(4) + string0(r"'\157s'") + string0(r"'\163ystem'") + STACK_GLOBAL + tail,
                ["os.system"], note=r"STRING '\157s' and '\163ystem' (octal escapes)")
    unsafe_case("escapes/unicode_escape.pkl",
                proto(4) + unicode0(r"\u006fs") + unicode0(r"sy\u0073tem") + STACK_GLOBAL + tail,
                ["os.system"], note=r"UNICODE V\u006fs and Vsy\u0073tem")
    unsafe_case("escapes/double_quoted_mixed.pkl",
                proto(4) + string0(r'"\x6f\x73"') + unicode0(r"\u0073ystem") + STACK_GLOBAL +
                tail, ["os.system"], note="double-quoted STRING module, UNICODE name")
    unsafe_case("escapes/builtins_eval.pkl",
                proto(4) + unicode0(r"\u0062uiltins") + string0(r"'ev\x61l'") + STACK_GLOBAL +
                string0("'1+1'") + TUPLE1 + REDUCE + STOP, ["builtins.eval"],
                note="escaped builtins.eval")


def cases_memo_strings():
    unsafe_case("memo_strings/put_get_proto0.pkl",
                proto(4) + unicode0("os") + put0(0) + POP + unicode0("system") + put0(1) + POP +
                get0(0) + get0(1) + STACK_GLOBAL + MARK + string0("'" + CMD + "'") + TUPLE +
                REDUCE + STOP, ["os.system"], note="text PUT 0/1 and GET 0/1")
    unsafe_case("memo_strings/dup_two_imports.pkl",
                frame(sbu("subprocess") + DUP + sbu("Popen") + STACK_GLOBAL + POP +
                      sbu("check_output") + STACK_GLOBAL + EMPTY_LIST + MARK + sbu("echo") +
                      sbu("pthio-hostile") + APPENDS + TUPLE1 + REDUCE + STOP),
                ["subprocess.Popen", "subprocess.check_output"],
                note="one 'subprocess' literal, DUP, used by two STACK_GLOBALs")
    unsafe_case("memo_strings/memoize_counting.pkl",
                frame(sbu("collections") + MEMOIZE + POP + sbu("os") + MEMOIZE + POP +
                      sbu("OrderedDict") + MEMOIZE + POP + sbu("system") + MEMOIZE + POP +
                      binget(0) + binget(2) + STACK_GLOBAL + EMPTY_TUPLE + REDUCE + MEMOIZE +
                      POP + binget(1) + binget(3) + STACK_GLOBAL + sbu(CMD) + TUPLE1 + REDUCE +
                      STOP), ["os.system"],
                note="MEMOIZE slots 0-3 = collections, os, OrderedDict, system: a miscount by "
                "one gives collections.OrderedDict instead of os.system")
    unsafe_case("memo_strings/reuse_builtins.pkl",
                proto(4) + sbu("builtins") + binput(0) + sbu("getattr") + STACK_GLOBAL + POP +
                binget(0) + sbu("eval") + STACK_GLOBAL + POP + binget(0) + sbu("exec") +
                STACK_GLOBAL + sbu("pass") + TUPLE1 + REDUCE + STOP,
                ["builtins.getattr", "builtins.eval", "builtins.exec"],
                note="one memoized 'builtins' reused for three imports")
    unsafe_case("memo_strings/overwrite_slot.pkl",
                proto(4) + sbu("collections") + binput(0) + POP + sbu("os") + binput(0) + POP +
                binget(0) + sbu("system") + STACK_GLOBAL + cmd_args() + REDUCE + STOP,
                ["os.system"], note="slot 0 holds 'collections', then is overwritten by 'os'")
    unsafe_case("memo_strings/large_put_index.pkl",
                proto(4) + unicode0("posix") + put0(1000000) + POP + get0(1000000) +
                unicode0("system") + put0(7) + STACK_GLOBAL + cmd_args() + REDUCE + STOP,
                ["posix.system"], note="text PUT/GET with index 1000000")


def cases_controls():
    def safe(path, data, note):
        case(path, data, "safe", errors=False, note=note)

    safe("controls/proto4_ordereddict_frames.pkl", ordereddict_p4(),
         "OrderedDict({'a': 1}) at protocol 4: frame, STACK_GLOBAL, MEMOIZE")
    safe("controls/build_metadata.pkl",
         proto(2) + global_("collections", "OrderedDict") + binput(0) + EMPTY_TUPLE + REDUCE +
         binput(1) + bu("w") + binint1(1) + SETITEM + EMPTY_DICT + binput(2) + bu("_metadata") +
         EMPTY_DICT + binput(3) + SETITEM + BUILD + STOP,
         "OrderedDict instance, then BUILD with {'_metadata': {}} as torch writes a state dict")
    safe("controls/proto0_dict.pkl", dict_p0(), "protocol 0 dict, no import")
    safe("controls/newobj_ex_empty_kwargs.pkl",
         frame(sbu("collections") + sbu("OrderedDict") + STACK_GLOBAL + EMPTY_TUPLE +
               EMPTY_DICT + NEWOBJ_EX + STOP), "NEWOBJ_EX on OrderedDict with empty kwargs")
    safe("controls/small.pth", build_zip(small_zip_members()),
         "fixtures/t1/small.pth re-emitted by this script's zip writer (stored, 64-aligned)")
    safe("controls/small_deflated.pth", build_zip(small_zip_members(method=8)),
         "small.pth with every record deflated")
    safe("controls/legacy_tar.pt", legacy_tar(),
         "legacy tar: sys_info, pickle, tensors, storages; torch.FloatStorage, torch.Tensor")
    safe("controls/float32.npy", npy_float32(), ".npy, float32, no pickle")
    safe("controls/float32.npz", build_zip([Member("arr_0.npy", npy_float32(), align=False)]),
         ".npz holding a float32 .npy")
    safe("controls/datetime64_ns.npy",
         npy("'<M8[ns]'", "(2,)", struct.pack("<2q", 0, 1700000000000000000)),
         ".npy, datetime64[ns] ('<M8[ns]'), no pickle")
    safe("controls/bool.npy", npy("'|b1'", "(3,)", b"\x01\x00\x01"),
         ".npy, bool ('|b1'), no pickle")


GENERATORS = [cases_global, cases_inst, cases_stack_global, cases_stack_global_memo,
              cases_stack_global_unresolved, cases_ext, cases_calls, cases_after_error_memo,
              cases_after_error_type, cases_after_error_badop, cases_truncated, cases_concat,
              cases_junk_after, cases_member_names, cases_local_only, cases_encrypted,
              cases_bad_crc, cases_duplicate, cases_prepended, cases_nested, cases_fanout,
              cases_legacy_tar, cases_long_names, cases_npy_object, cases_any_extension, cases_build_setstate,
              cases_build_class, cases_newobj_ex_kwargs, cases_escapes, cases_memo_strings,
              cases_controls]


def main():
    for g in GENERATORS:
        g()
    written = set()
    for entry, data in CASES:
        path = os.path.join(HERE, entry["file"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        written.add(os.path.normpath(path))
    # Drop what an earlier version of this script wrote into the trick folders.
    for trick in sorted({e["trick"] for e, _ in CASES}):
        folder = os.path.join(HERE, trick)
        for name in sorted(os.listdir(folder)):
            p = os.path.normpath(os.path.join(folder, name))
            if os.path.isfile(p) and p not in written:
                os.remove(p)
    manifest = {"cases": [e for e, _ in CASES]}
    with open(os.path.join(HERE, "manifest.json"), "w", encoding="ascii", newline="\n") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(len(d) for _, d in CASES)
    print("wrote %d cases, %d bytes, largest %d" % (len(CASES), total,
                                                   max(len(d) for _, d in CASES)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
