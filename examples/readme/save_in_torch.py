"""Loads what examples/readme/save.cpp wrote with real PyTorch, as the README says it loads.

usage: save_in_torch.py OUT_DIR   (the folder readme_save wrote model.pth and ckpt.pth into)
"""
import os
import sys

import torch

out = sys.argv[1]
sd = torch.load(os.path.join(out, "model.pth"), weights_only=True)
assert list(sd) == ["fc.weight", "fc.bias"], list(sd)
assert sd["fc.weight"].shape == (3, 4) and bool((sd["fc.weight"] == 0.5).all())
assert sd["fc.bias"].tolist() == [-1.0, 0.0, 1.0], sd["fc.bias"]

# torch 1.13's weights-only loader has no opcode for Python floats (the "loss"): load it plainly
# there, weights only on torch 2.
major = int(torch.__version__.split(".")[0])
ckpt = torch.load(os.path.join(out, "ckpt.pth"), weights_only=major >= 2)
assert ckpt["epoch"] == 7 and ckpt["loss"] == 0.25
assert isinstance(ckpt["scale"], torch.nn.Parameter) and ckpt["scale"].requires_grad
assert ckpt["scale"].tolist() == [1.0, 2.0, 4.0]
assert list(ckpt["model_state_dict"]) == ["fc.weight", "fc.bias"]
print("torch", torch.__version__, "loads both files as the README says")
