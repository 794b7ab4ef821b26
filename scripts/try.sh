#!/usr/bin/env bash
# Quick start: installs dependencies, builds pthio, and lists and prints a checkpoint that
# PyTorch wrote (an Adam training checkpoint shipped in fixtures/). Needs no torch 2.x: no venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --no-venv
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target pthio_cli
./build/pthio ls fixtures/t2/ckpt_adam.pth
./build/pthio cat fixtures/t2/ckpt_adam.pth model_state_dict.0.bias
