"""examples/train_resume.cpp's training loop in PyTorch, step for step.

    python3 train_resume.py --epochs N --out CKPT [--resume CKPT]

Same model (8 -> 16 -> ReLU -> 16 -> ReLU -> 3, float32, nn.Linear layers named fc1..fc3), same
data and initial weights (closed-form formulas, below), same minibatches in order, cross-entropy
and torch.optim.Adam(lr=0.01, foreach=False). After every epoch it saves
{"model_state_dict", "optimizer_state_dict", "epoch", "loss", "best_val"} with torch.save, and
--resume continues from such a checkpoint, whichever of the two programs wrote it.
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

N_TRAIN, N_VAL, BATCH = 256, 64, 32
N_FEATURES, N_HIDDEN, N_CLASSES = 8, 16, 3
LEARNING_RATE = 0.01


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(N_FEATURES, N_HIDDEN)
        self.fc2 = nn.Linear(N_HIDDEN, N_HIDDEN)
        self.fc3 = nn.Linear(N_HIDDEN, N_CLASSES)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def make_data(first, count):
    """Feature j of sample i = sin((i * (2j + 3) + 8j) / 8) (double, then float32); the label is
    the index of the largest of features 0, 1, 2."""
    rows, labels = [], []
    for i in range(first, first + count):
        row = [math.sin((i * (2 * j + 3) + 8 * j) / 8.0) for j in range(N_FEATURES)]
        rows.append(row)
    x = torch.tensor(rows, dtype=torch.float64).to(torch.float32)
    for r in range(count):
        best = 0
        for c in (1, 2):
            if x[r, c].item() > x[r, best].item():
                best = c
        labels.append(best)
    return x, torch.tensor(labels, dtype=torch.int64)


def init_weights(model):
    """Layer k's weight[o][i] = sin(7 * (o * fan_in + i) + 3k + 1) / sqrt(fan_in),
    bias[o] = sin(5o + 11k + 2) / sqrt(fan_in), in double, then float32."""
    with torch.no_grad():
        for k, layer in enumerate((model.fc1, model.fc2, model.fc3)):
            out_f, fan_in = layer.weight.shape
            bound = 1.0 / math.sqrt(fan_in)
            w = [[bound * math.sin(7 * (o * fan_in + i) + 3 * k + 1) for i in range(fan_in)] for o in range(out_f)]
            b = [bound * math.sin(5 * o + 11 * k + 2) for o in range(out_f)]
            layer.weight.copy_(torch.tensor(w, dtype=torch.float64))
            layer.bias.copy_(torch.tensor(b, dtype=torch.float64))


def load(path):
    """torch.load, weights only where this torch can: torch 1.13's weights-only unpickler knows no
    float opcode (BINFLOAT), so it refuses every checkpoint holding a Python float, its own too."""
    if int(torch.__version__.split(".")[0]) >= 2:
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, required=True, help="epochs to run (after the saved ones)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    model = MLP()
    init_weights(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, foreach=False)
    epoch, best_val = 0, math.inf
    if args.resume:
        ckpt = load(args.resume)
        model.load_state_dict(ckpt["model_state_dict"])
        optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        epoch, best_val = ckpt["epoch"], ckpt["best_val"]
        print(f"resumed {args.resume} at epoch {epoch} (best_val {best_val:.6f})")

    x_train, y_train = make_data(0, N_TRAIN)
    x_val, y_val = make_data(N_TRAIN, N_VAL)
    for _ in range(args.epochs):
        model.train()
        total = 0.0
        n_batches = N_TRAIN // BATCH
        for b in range(n_batches):
            xb, yb = x_train[b * BATCH:(b + 1) * BATCH], y_train[b * BATCH:(b + 1) * BATCH]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item()
        train_loss = total / n_batches
        model.eval()
        with torch.no_grad():
            val_loss = F.cross_entropy(model(x_val), y_val).item()
        best_val = min(best_val, val_loss)
        epoch += 1
        torch.save({"model_state_dict": model.state_dict(),
                    "optimizer_state_dict": optimizer.state_dict(),
                    "epoch": epoch,
                    "loss": train_loss,
                    "best_val": best_val}, args.out)
        print(f"epoch {epoch}  loss {train_loss:.6f}  val {val_loss:.6f}  best {best_val:.6f}")


if __name__ == "__main__":
    main()
