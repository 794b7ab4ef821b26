#!/usr/bin/env python3
"""Records torch's own float8 -> float32 conversion of every byte, for tensor::to(float32).

For each float8 dtype torch has, builds the 256 bytes 0x00..0xff, reinterprets them as that dtype
(view) and converts with .to(torch.float32); writes the float32 results as 8-digit hex bit
patterns, indexed by the byte. Needs torch 2.1 or later (float8_e8m0fnu from 2.7); run with the
torch 2.x virtual environment scripts/deps.sh makes: writes float8_to_float32.json here.
"""
import json
import os

import torch

DTYPES = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


def main():
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    out = {"torch": torch.__version__, "dtypes": {}}
    for name in DTYPES:
        if not hasattr(torch, name):
            raise SystemExit(f"torch {torch.__version__} has no torch.{name}")
        as_f32 = codes.view(getattr(torch, name)).to(torch.float32)
        bits = as_f32.view(torch.int32).tolist()
        out["dtypes"][name] = [f"{b & 0xFFFFFFFF:08x}" for b in bits]
    here = os.path.dirname(os.path.abspath(__file__))
    # One line per 8 bytes, so that a change shows which codes moved.
    lines = ["{", f' "torch": {json.dumps(out["torch"])},', ' "dtypes": {']
    for n, (name, bits) in enumerate(out["dtypes"].items()):
        rows = [", ".join(json.dumps(b) for b in bits[i:i + 8]) for i in range(0, 256, 8)]
        lines.append(f'  "{name}": [')
        lines += ["   " + r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)]
        lines.append("  ]" + ("," if n < len(out["dtypes"]) - 1 else ""))
    lines += [" }", "}"]
    with open(os.path.join(here, "float8_to_float32.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
