#!/usr/bin/env python3
"""`pthio cat` prints a tensor exactly as torch 2.x's repr does.

torch saves a state dict of tensors of every printable dtype and many shapes: 0-d, empty, small,
summarized along every dimension, rows that wrap at the line width, values that switch scientific
notation on and off, integer-valued floats, -0., nan and infinities. For each key,
`pthio cat FILE KEY` (and for some `--limit N` or `--full`) must print, after its header line,
exactly repr(t) under torch.set_printoptions(threshold=N).

Left out: Parameter (whose repr starts with a "Parameter containing:" line), the bits* dtypes, which torch cannot print, and quantized tensors (pthio shows their
stored integers, torch the dequantized values).

usage: cat_torch.py PTHIO_CLI SCRATCH_DIR
"""
import difflib
import math
import os
import subprocess
import sys

import torch

if len(sys.argv) != 3:
    sys.exit("usage: cat_torch.py PTHIO_CLI SCRATCH_DIR")
cli, scratch = sys.argv[1], sys.argv[2]

# torch 1.x prints some tensors differently (and lacks dtypes this test covers); pthio follows
# torch 2.x.
if torch.__version__.startswith("1."):
    print(f"PTHIO_TEST_SKIPPED: torch 1.x prints differently; checked against torch 2.x "
          f"(this is torch {torch.__version__})")
    sys.exit(0)

os.makedirs(scratch, exist_ok=True)
torch.manual_seed(7)
nan, inf = math.nan, math.inf

t = {}
# 0-d
t["s_f32"] = torch.tensor(3.5)
t["s_f32_int"] = torch.tensor(2.0)
t["s_f32_zero"] = torch.tensor(0.0)
t["s_f32_negzero"] = torch.tensor(-0.0)
t["s_f32_nan"] = torch.tensor(nan)
t["s_f32_neginf"] = torch.tensor(-inf)
t["s_f32_small"] = torch.tensor(1.25e-5)
t["s_f64_big"] = torch.tensor(1.5e10, dtype=torch.float64)
t["s_f16"] = torch.tensor(0.1, dtype=torch.float16)
t["s_bf16"] = torch.tensor(-7.0, dtype=torch.bfloat16)
t["s_i64"] = torch.tensor(-42)
t["s_i32"] = torch.tensor(7, dtype=torch.int32)
t["s_u8"] = torch.tensor(255, dtype=torch.uint8)
t["s_bool"] = torch.tensor(True)
t["s_c64"] = torch.tensor(1.5 - 2j)
t["s_c128"] = torch.tensor(-0.25 + 1e-7j, dtype=torch.complex128)
# empty
t["e_f32"] = torch.zeros(0)
t["e_i64"] = torch.zeros(0, dtype=torch.int64)
t["e_bool"] = torch.zeros(0, dtype=torch.bool)
t["e_c64"] = torch.zeros(0, dtype=torch.complex64)
t["e_f32_0x3"] = torch.zeros(0, 3)
t["e_i32_2x0"] = torch.zeros(2, 0, dtype=torch.int32)
t["e_f16_2x0x4"] = torch.zeros(2, 0, 4, dtype=torch.float16)
# float32 notation
t["f_plain"] = torch.tensor([0.1234567, 12.5, -3.25, 99.99995])
t["f_small"] = torch.tensor([1e-5, 2.5e-5, -3e-6])
t["f_large"] = torch.tensor([1e9, 2.0, -3.5])
t["f_ratio"] = torch.tensor([1.5, 2000.0])
t["f_ratio_edge"] = torch.tensor([1.0, 1000.0])
t["f_min_edge"] = torch.tensor([1e-4, 0.05])
t["f_int"] = torch.tensor([1.0, 2.0, -3.0, 100.0])
t["f_int_sci"] = torch.tensor([1e10, 1.0, -2.0])
t["f_negzero"] = torch.tensor([0.0, -0.0, 1.0])
t["f_negzero_only"] = torch.tensor([-0.0, 0.0])
t["f_zeros"] = torch.zeros(5)
t["f_nonfinite"] = torch.tensor([nan, inf, -inf, 1.5])
t["f_nonfinite_int"] = torch.tensor([nan, 1.0, -inf])
t["f_nonfinite_only"] = torch.tensor([nan, inf, -inf])
t["f_nonfinite_sci"] = torch.tensor([nan, 1e-7, inf])
t["f_neg_nan"] = -torch.tensor([nan, 2.5])
t["f_tiny_neg"] = torch.tensor([-1e-5, 0.5, 3.0]) * torch.tensor([1.0, 1e-3, 1.0])
t["f_rounding"] = torch.tensor([0.00005, 0.00015, 0.5, 2.5])
t["f_randn_5x5"] = torch.randn(5, 5)
t["f_randn_tiny"] = torch.randn(4, 3) * 1e-6
t["f_randn_huge"] = torch.randn(2, 3) * 1e12
t["f_max"] = torch.tensor([3.4028234663852886e38, -1.0])
t["f_denormal"] = torch.tensor([1e-45, 1.0])
t["f_transposed"] = torch.arange(35, dtype=torch.float32).reshape(5, 7).t()
# other floating dtypes
t["f64_randn"] = torch.randn(3, 4, dtype=torch.float64)
t["f64_precise"] = torch.tensor([1 / 3, 2 / 3, 1e-3], dtype=torch.float64)
t["f16_randn"] = torch.randn(3, 5).half()
t["f16_inf"] = torch.tensor([65504.0, 1.0, inf, -0.0], dtype=torch.float16)
t["f16_sub"] = torch.tensor([6e-8, 1.0], dtype=torch.float16)
t["bf16_randn"] = torch.randn(4, 4).bfloat16()
t["bf16_int"] = torch.tensor([256.0, -3.0, 1e20], dtype=torch.bfloat16)
# integers and bool
t["i8"] = torch.randint(-128, 128, (3, 7), dtype=torch.int8)
t["i16"] = torch.randint(-32768, 32768, (10,), dtype=torch.int16)
t["i32"] = torch.randint(-2**31, 2**31, (4, 4), dtype=torch.int32)
t["i64"] = torch.tensor([-2**63, 2**63 - 1, 0, 5])
t["i64_small"] = torch.arange(-5, 5).reshape(2, 5)
t["u8"] = torch.randint(0, 256, (2, 9), dtype=torch.uint8)
t["bool"] = torch.rand(3, 6) > 0.5
t["bool_big"] = torch.rand(40, 40) > 0.5
# complex
t["c64"] = torch.randn(3, 3, dtype=torch.complex64)
t["c128"] = torch.randn(5, dtype=torch.complex128)
t["c64_special"] = torch.complex(torch.tensor([1.0, -0.0, nan, 2.0, 0.0]),
                                 torch.tensor([-0.0, 0.0, 1.0, nan, -inf]))
t["c64_sci"] = torch.complex(torch.tensor([1e-6, 2.0]), torch.tensor([3.0, 4e9]))
t["c64_int"] = torch.complex(torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 4.0]))
t["c64_wide"] = torch.randn(4, 10, dtype=torch.complex64) * 1000
t["c64_big"] = torch.randn(30, 40, dtype=torch.complex64)
# summarized (numel > 1000) and large
t["big_2d"] = torch.randn(1024, 40)
t["big_vec"] = torch.arange(2000, dtype=torch.float32) / 7
t["big_vec_i64"] = torch.arange(2000) * 1000003
t["big_3d"] = torch.randn(12, 10, 11)
t["big_4d"] = torch.randn(8, 9, 10, 7)
t["big_4d_i16"] = torch.randint(-1000, 1000, (7, 8, 9, 10), dtype=torch.int16)
t["big_edge"] = torch.randn(7, 7, 7, 7)  # 7 > 2 * edgeitems: every dimension cut
t["big_six"] = torch.randn(6, 6, 6, 6)  # 6 = 2 * edgeitems: none cut, all shown
t["big_sci_hidden"] = torch.cat([torch.tensor([1e-9]), torch.ones(1100), torch.tensor([1e-9])])
t["big_sci_shown"] = torch.cat([torch.ones(1100), torch.tensor([1e-9])])
t["big_bool"] = torch.rand(2000) > 0.5
t["big_c64"] = torch.randn(50, 50, dtype=torch.complex64)
# shapes
t["d3_small"] = torch.randn(2, 3, 4)
t["d4_small"] = torch.arange(24, dtype=torch.int32).reshape(2, 2, 2, 3)
t["d_ones"] = torch.randn((1,) * 10 + (2,))
t["d_mixed_ones"] = torch.randn(3, 1, 4, 1)
# rows that wrap at the line width
t["wrap_f32"] = torch.randn(3, 30) * 1000
t["wrap_i64"] = torch.randint(-10**12, 10**12, (3, 30))
t["wrap_vec"] = torch.randn(50)
t["wrap_3d"] = torch.randn(2, 2, 25) * 100
t["wrap_sci"] = torch.randn(2, 20) * 1e-6
t["suffix_wrap"] = torch.tensor([1.1234] * 7, dtype=torch.float64)
t["suffix_fits"] = torch.tensor([1.1234] * 4, dtype=torch.float64)
t["suffix_after_rows"] = torch.randn(2, 12, dtype=torch.float64)
# dtypes torch 2.x added; each only where this torch has it
for name in ("uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
             "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "complex32"):
    if not hasattr(torch, name):
        continue
    d = getattr(torch, name)
    size = torch.empty((), dtype=d).element_size() if name != "complex32" else 4
    raw = (torch.arange(12 * size, dtype=torch.int64) * 37 % 256).to(torch.uint8)
    t["x_" + name] = raw.view(d).reshape(3, -1)
# plain tensors that require grad (a Parameter's repr adds a "Parameter containing:" line)
t["grad"] = torch.randn(3, requires_grad=True)
t["grad_f64_t"] = torch.randn(3, 4, dtype=torch.float64).t().requires_grad_()
t["x_uint64_top"] = torch.tensor([2**64 - 1, 2**63, 5], dtype=torch.uint64)

path = os.path.join(scratch, "cat_torch.pth")
torch.save(t, path)

# (key, pthio options, torch threshold)
runs = [(k, [], 1000) for k in t]
runs += [
    ("f_randn_5x5", ["--limit", "10"], 10),
    ("d3_small", ["--limit", "10"], 10),
    ("i64_small", ["--limit", "9"], 9),
    ("i64_small", ["--limit", "10"], 10),
    ("wrap_f32", ["--limit", "10"], 10),
    ("c64_big", ["--limit", "100"], 100),
    ("bool_big", ["--limit", "0"], 0),
    ("big_2d", ["--limit", "100000"], 100000),
    ("big_vec", ["--full"], inf),
    ("big_3d", ["--full"], inf),
    ("big_sci_hidden", ["--full"], inf),
    ("big_vec_i64", ["--limit", "1999"], 1999),
    ("big_vec_i64", ["--limit", "2000"], 2000),
]

failures = 0
for key, options, threshold in runs:
    torch.set_printoptions(threshold=threshold)
    try:
        want = repr(t[key])
    finally:
        torch.set_printoptions(profile="default")
    r = subprocess.run([cli, "cat", path, key] + options, capture_output=True, text=True)
    what = " ".join(["pthio cat", key] + options)
    if r.returncode != 0:
        print(f"FAIL {what}: exit {r.returncode}: {r.stderr.strip()}")
        failures += 1
        continue
    header, _, got = r.stdout.partition("\n")
    if got != want + "\n":
        failures += 1
        print(f"FAIL {what} ({header}):")
        sys.stdout.writelines(difflib.unified_diff(
            (want + "\n").splitlines(keepends=True), got.splitlines(keepends=True),
            "torch repr", "pthio cat", n=2))
if failures:
    print(f"{failures} of {len(runs)} prints differ from torch {torch.__version__}; "
          f"the checkpoint is kept: {path}")
    sys.exit(1)
os.remove(path)
print(f"all {len(runs)} prints match torch {torch.__version__}")
