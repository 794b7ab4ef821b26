"""Cross-checks examples/train_resume (C++) against examples/torch/train_resume.py (PyTorch):
a run one of them starts, the other resumes, must end where an uninterrupted run ends.

    python3 cross_check.py CPP_BINARY WORKDIR torch-then-cpp   # PyTorch 2 epochs, C++ resumes 2;
                                                               #   compared with PyTorch 4 straight
    python3 cross_check.py CPP_BINARY WORKDIR cpp-then-torch   # C++ 2 epochs, PyTorch resumes 2;
                                                               #   compared with C++ 4 straight

Prints the max abs difference of every parameter (and, for information, of the optimizer state)
and exits 1 when a parameter differs by more than 1e-5, or the checkpoints disagree in keys,
shapes, dtypes or epoch.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_resume import load  # noqa: E402  (torch.load as this torch allows)

TOLERANCE = 1e-5
EPOCHS, FIRST = 4, 2


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("torch-then-cpp", "cpp-then-torch"):
        sys.exit(__doc__)
    cpp, workdir, direction = sys.argv[1:]
    os.makedirs(workdir, exist_ok=True)
    py = [sys.executable, os.path.join(HERE, "train_resume.py")]
    cxx = [cpp]
    first, second = (py, cxx) if direction == "torch-then-cpp" else (cxx, py)
    half = os.path.join(workdir, f"{direction}_{FIRST}.pth")
    resumed = os.path.join(workdir, f"{direction}_resumed_{EPOCHS}.pth")
    straight = os.path.join(workdir, f"{direction}_straight_{EPOCHS}.pth")
    run(first + ["--epochs", str(FIRST), "--out", half])
    run(second + ["--epochs", str(EPOCHS - FIRST), "--resume", half, "--out", resumed])
    run(first + ["--epochs", str(EPOCHS), "--out", straight])

    a = load(resumed)
    b = load(straight)
    failures = []
    if a["epoch"] != EPOCHS or b["epoch"] != EPOCHS:
        failures.append(f"epoch: {a['epoch']} and {b['epoch']}, expected {EPOCHS}")

    def compare(what, ta, tb, limit):
        if ta.dtype != tb.dtype or ta.shape != tb.shape:
            failures.append(f"{what}: {ta.dtype} {list(ta.shape)} vs {tb.dtype} {list(tb.shape)}")
            return 0.0
        d = (ta.double() - tb.double()).abs().max().item() if ta.numel() else 0.0
        flag = ""
        if limit is not None and not d <= limit:
            failures.append(f"{what}: max abs diff {d:.3e} > {limit:g}")
            flag = "  <-- over"
        print(f"  {what:40s} max abs diff {d:.3e}{flag}")
        return d

    ma, mb = a["model_state_dict"], b["model_state_dict"]
    if list(ma.keys()) != list(mb.keys()):
        failures.append(f"model keys: {list(ma.keys())} vs {list(mb.keys())}")
    print(f"{direction}: resumed run vs {EPOCHS} epochs straight")
    worst = max([compare(k, ma[k], mb[k], TOLERANCE) for k in ma if k in mb] or [0.0])
    sa, sb = a["optimizer_state_dict"]["state"], b["optimizer_state_dict"]["state"]
    if sorted(sa) != sorted(sb):
        failures.append(f"optimizer state indices: {sorted(sa)} vs {sorted(sb)}")
    for i in sorted(set(sa) & set(sb)):
        for name in ("step", "exp_avg", "exp_avg_sq"):
            compare(f"optimizer state {i}.{name}", sa[i][name], sb[i][name], 0.0 if name == "step" else None)
    print(f"  loss {a['loss']:.9f} vs {b['loss']:.9f}, best_val {a['best_val']:.9f} vs {b['best_val']:.9f}")
    print(f"max abs parameter difference: {worst:.3e} (tolerance {TOLERANCE:g})")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
