#!/usr/bin/env python3
"""examples/minilm against Python with transformers, on all-MiniLM-L6-v2 (issue #21).

  PTHIO_VENV/bin/python bench/minilm_bench.py EXAMPLE_MINILM [--rounds N] [--repeat R]

The model folder is scripts/fetch_minilm.sh's (fetched once, cached). Files are in the page cache
for both sides (each is run once before timing).

Cold start, median of N rounds, alternating:
  example_minilm MODEL_DIR SENTENCE   process start to the first embedding line read from its
                                      stdout: exec, config and vocabulary, weights loaded with
                                      pthio (mmap, weights-only) into the encoder, tokenize,
                                      forward, print
  python -c "<transformers>"          the same for a fresh Python: import torch and transformers,
                                      AutoTokenizer and AutoModel from the folder, tokenize,
                                      forward, mean pooling, normalize, print

Throughput on 2 threads, a batch of 32 sentences of about 16 tokens, R timed passes after a warm-up:
  example_minilm --threads 2 --repeat R   its own timing of each forward pass (stderr: mean, best)
  torch, torch.set_num_threads(2)         model(**batch) with the padding mask, pooling and
                                          normalize, under torch.inference_mode(), timed in-process
Both report the mean and the best pass; the ratio is of the means.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))

SENTENCE = "A sentence embedding model maps this text to a vector."

# 32 sentences of about 16 tokens each ([CLS] and [SEP] included).
SUBJECTS = ["The old library", "A small robot", "My neighbour's cat", "The night train",
            "Our research team", "A quiet village", "The red kite", "Every new student"]
ACTIONS = ["slowly opened its doors to visitors", "was repaired after the long winter",
           "waited patiently beside the river bank", "changed the plan at the last minute"]
BATCH = [f"{s} {a} late yesterday afternoon." for s in SUBJECTS for a in ACTIONS]

PY_COLD = r"""
import json, sys
import torch, transformers
from transformers import AutoModel, AutoTokenizer
d, s = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(d)
model = AutoModel.from_pretrained(d).eval()
with torch.inference_mode():
    b = tok([s], padding=True, truncation=True, max_length=512, return_tensors="pt")
    h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).to(h.dtype)
    e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)
print(json.dumps(e[0].tolist()), flush=True)
"""


def first_line_time(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = p.stdout.readline()
    elapsed = time.perf_counter() - t
    p.stdout.read()
    if p.wait() != 0 or not line.startswith(b"["):
        sys.exit(f"{cmd[0]} failed")
    return elapsed


def torch_throughput(model_dir, repeat):
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    batch = tok(BATCH, padding=True, truncation=True, max_length=512, return_tensors="pt")
    lengths = batch["attention_mask"].sum(1).tolist()

    def forward():
        with torch.inference_mode():
            h = model(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
            return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)

    forward()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        forward()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.mean(times), min(times), lengths, torch.__version__, transformers.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("example")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    model_dir = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch_minilm.sh")],
                               check=True, capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    ours = [a.example, model_dir, SENTENCE]
    theirs = [sys.executable, "-c", PY_COLD, model_dir, SENTENCE]
    first_line_time(ours)
    first_line_time(theirs, env)
    t_ours, t_theirs = [], []
    for _ in range(a.rounds):
        t_ours.append(first_line_time(ours))
        t_theirs.append(first_line_time(theirs, env))
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"cold start to the first embedding, median of {a.rounds}:")
    print(f"  example_minilm           {mo * 1e3:9.1f} ms")
    print(f"  python + transformers    {mt * 1e3:9.1f} ms   ({mt / mo:.1f}x example_minilm)")

    r = subprocess.run([a.example, "--threads", "2", "--batch", "32", "--repeat", str(a.repeat),
                        model_dir, "--", *BATCH], capture_output=True, text=True, check=True)
    m = re.search(r"([0-9.]+) ms per forward pass \(mean of \d+, best ([0-9.]+)\)", r.stderr)
    if not m:
        sys.exit("example_minilm printed no timing: " + r.stderr)
    ours_mean, ours_best = float(m.group(1)), float(m.group(2))
    t_mean, t_best, lengths, tv, trv = torch_throughput(model_dir, a.repeat)
    print(f"batch of {len(BATCH)} sentences, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.1f}), 2 threads, {a.repeat} passes after a warm-up:")
    print(f"  example_minilm           mean {ours_mean:8.2f} ms  best {ours_best:8.2f} ms  "
          f"({len(BATCH) / ours_mean * 1e3:7.1f} sentences/s)")
    print(f"  torch {tv:<12}       mean {t_mean:8.2f} ms  best {t_best:8.2f} ms  "
          f"({len(BATCH) / t_mean * 1e3:7.1f} sentences/s; transformers {trv})")
    print(f"  example_minilm / torch: {ours_mean / t_mean:.2f}x the time")


if __name__ == "__main__":
    main()
