#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: a warnings-as-errors build, then the same
# suite under AddressSanitizer + UndefinedBehaviorSanitizer. The PyTorch cross-checks run under
# Debian's torch 1.13 and under the torch 2.x of the environment scripts/deps.sh makes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PTHIO_VENV=${PTHIO_VENV:-$HOME/.cache/pthio/venv-torch2}
bash scripts/deps.sh
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTHIO_WERROR=ON -DPTHIO_PEDANTIC=ON -DPTHIO_VENV="$PTHIO_VENV"
cmake --build build -j "$jobs"
# The 4 GiB / 65,536-record round trip (label heavy, minutes, one at a time) runs under torch 2.x
# only: its pthio side is the same under both torches, and CI's time is bounded (the whole suite,
# `ctest --test-dir build`, runs it under torch 1.13 too).
ctest --test-dir build --output-on-failure -j "$jobs" \
  -E "over 65,535 records and a 4 GiB tensor, both ways [(]torch 1[.]13"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPTHIO_SANITIZE=ON -DPTHIO_VENV="$PTHIO_VENV"
cmake --build build-asan -j "$jobs"
# The package tests (install, find_package, add_subdirectory) build pthio again from scratch and
# test packaging, not memory safety: the normal build runs them.
# The PyTorch cross-checks run the sanitized command under torch 2.x only: under torch 1.13 they
# repeat the same pthio paths on the same files (the normal build runs both). The rewrite of
# every fixture loaded by torch is left to the normal build too: its pthio side is the doctest
# `save: every fixture round-trips through pthio`, which runs sanitized. cat's text against
# torch's print and the progress line in a terminal test formatting and drawing, not memory: the
# normal build runs them. CI's time is bounded.
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE package \
  -E "torch 1[.]13|every fixture rewritten by pthio|cat prints a tensor as torch|progress on stderr in a terminal"
