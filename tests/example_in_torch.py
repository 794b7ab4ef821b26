#!/usr/bin/env python3
"""The README's example: a checkpoint saved from C++ (examples/save_checkpoint.cpp) loads in
PyTorch with the values the C++ code put in it."""
import subprocess
import sys

import torch

tool, out = sys.argv[1], sys.argv[2]
subprocess.run([tool, out], check=True)
kwargs = {"weights_only": True} if int(torch.__version__.split(".")[0]) >= 2 else {}
ckpt = torch.load(out, map_location="cpu", **kwargs)
sd = ckpt["model_state_dict"]
assert ckpt["epoch"] == 3 and ckpt["loss"] == 0.125, ckpt
assert isinstance(sd["fc.weight"], torch.nn.Parameter) and sd["fc.weight"].requires_grad
assert torch.equal(sd["fc.weight"], torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float32))
assert torch.equal(sd["fc.bias"], torch.tensor([0.0, 1.0]))
assert list(sd.keys()) == ["fc.weight", "fc.bias"]
print("1 passed, 0 failed")
