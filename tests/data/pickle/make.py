#!/usr/bin/env python3
"""Golden pickles for tests/test_pickle.cpp, written by CPython's own pickle module.

Run from anywhere with python3 (standard library only):  python3 tests/data/pickle/make.py
It rewrites, next to itself:
  varied_p0.pkl .. varied_p5.pkl  one varied object (VARIED below) at protocols 0-5
  writer_<name>.pkl               pickle.dumps(obj, protocol=2) of objects the C++ test rebuilds
                                  as pthio values and writes with pthio::pickler, byte for byte
  manifest.json                   the files, their sha256, and the Python that wrote them
The C++ test states the expected values itself, from the Python source below, never from
pthio's output.
"""
import collections
import hashlib
import json
import math
import os
import pickle
import platform
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))


# A class in a module of its own, so its global reads `pthio_test Point` in every protocol.
pthio_test = types.ModuleType("pthio_test")
sys.modules["pthio_test"] = pthio_test


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


Point.__module__ = "pthio_test"
Point.__qualname__ = "Point"
pthio_test.Point = Point

# Stand-ins for torch's rebuild function and storage class, so that a torch.save-like stream
# (persistent ids, _rebuild_tensor_v2, OrderedDict hooks) can be written without torch.
fake_torch = types.ModuleType("torch")
fake_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = fake_torch
sys.modules["torch._utils"] = fake_utils


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
fake_torch.FloatStorage = FloatStorage


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FakeStorage:
    def __init__(self, key, numel):
        self.key = key
        self.numel = numel


class FakeTensor:
    """Pickles like torch.Tensor._reduce_ex_internal for a plain CPU tensor (fresh size and
    stride tuples, a fresh OrderedDict for backward hooks)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, tuple(list(self.size)), tuple(list(self.stride)),
                 False, collections.OrderedDict()))


class TorchLikePickler(pickle.Pickler):
    """torch.serialization._save's persistent_id: ('storage', class, key, location, numel)."""

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def varied():
    shared = [1, 2]
    return {
        "ints": [0, 1, -1, 127, 128, 255, 256, 65535, 65536, -32768, 2**31 - 1, -2**31, 2**31,
                 -2**31 - 1, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, 2**100, -2**100],
        "floats": [0.0, -0.0, 1.5, -2.25, 0.1, 1e300, 5e-324, math.inf, -math.inf, math.nan],
        "atoms": [True, False, None],
        "strs": ["", "ascii", "h\u00e9llo w\u00f6rld", "\u65e5\u672c\u8a9e", "\U0001f600",
                 "quote'\"\\\n\r\x00\x1a end"],
        "bytes": [b"", b"abc", bytes(range(256))],
        "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1, (2, (3,))),)),
        "lists": [[], [[]], [[[1]]]],
        "dict": {1: "one", (1, 2): "pair", None: "none", "k": {}, -5: [1.5]},
        "od": collections.OrderedDict([("b", 1), ("a", 2)]),
        "set": {1, 2, 3},
        "frozenset": frozenset({4, 5}),
        "bytearray": bytearray(b"xy\x00\xff"),
        "complex": complex(1.5, -2.0),
        "point": Point(1, "two"),
        "shared": [shared, shared],
        "long_list": list(range(1001)),
    }


def writer_objects():
    t = (1, 2)
    lst = ["x"]
    sd = collections.OrderedDict()
    sd["layer.weight"] = 1.0
    sd["layer.bias"] = -2
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 2})])
    s0 = FakeStorage("0", 6)
    w = FakeTensor(s0, 0, (2, 3), (3, 1))
    torch_sd = collections.OrderedDict()
    torch_sd["fc.weight"] = w
    torch_sd["fc.bias"] = FakeTensor(FakeStorage("1", 2), 0, (2,), (1,))
    torch_sd["fc.weight_view"] = FakeTensor(s0, 3, (3,), (1,))
    torch_sd["tied"] = w
    torch_sd._metadata = collections.OrderedDict([("", {"version": 1}), ("fc", {"version": 1})])
    return {
        "scalars": [None, True, False, 0, 1, 255, 256, 65535, 65536, -1, -256, -2**31, 2**31 - 1,
                    2**31, -2**31 - 1, 2**63 - 1, -2**63, 2**64, 2**100, -2**100, 1.5, -0.0,
                    math.inf, -math.inf, 1e-300, "str", "", "h\u00e9llo \U0001f600", "str",
                    b"", b"", b"a", b"a", b"abc\xff\x00", bytes([0x80, 0x81])],
        "containers": {"t": t, "again": t, "long": (1, 2, 3, 4, 5), "nested": ((), ((),)),
                       "list": lst, "list_again": lst, 7: None, None: [], (1, "a"): {"k": "v"},
                       "f": [0.5, [], {}]},
        "state_dict": sd,
        "optimizer": {"state": {0: {"step": 10, "exp_avg": [0.0, 0.1]}, 1: {"step": 10}},
                      "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08,
                                        "weight_decay": 0, "amsgrad": False, "params": [0, 1]}]},
        "batches": {"l1": [0], "l2": [0, 1], "l1000": list(range(1000)),
                    "l1001": list(range(1001)), "d1": {0: 0}, "d1000": {i: i for i in range(1000)},
                    "d2000": {i: -i for i in range(2000)},
                    "od1000": collections.OrderedDict((i, i) for i in range(1000)),
                    "od1001": collections.OrderedDict((i, i) for i in range(1001)),
                    "strs": ["s%d" % i for i in range(300)]},
        "objects": [{1, 2, 3}, frozenset(), set(), complex(1.0, 2.0),
                    collections.Counter({"a": 2, "b": 1})],
        "torch_like": torch_sd,
    }


def main():
    files = {}

    def write(name, data, protocol, what):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        files[name] = {"protocol": protocol, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest(), "what": what}

    for proto in range(6):
        write("varied_p%d.pkl" % proto, pickle.dumps(varied(), protocol=proto), proto,
              "varied() at protocol %d" % proto)
    for name, obj in writer_objects().items():
        if name == "torch_like":
            import io
            buf = io.BytesIO()
            TorchLikePickler(buf, protocol=2).dump(obj)
            data = buf.getvalue()
        else:
            data = pickle.dumps(obj, protocol=2)
        write("writer_%s.pkl" % name, data, 2, "pickle.dumps(writer_objects()[%r], protocol=2)" % name)

    manifest = {"generator": "tests/data/pickle/make.py",
                "python": platform.python_implementation() + " " + platform.python_version(),
                "pickle_module": type(pickle.Pickler).__module__,
                "files": files}
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
