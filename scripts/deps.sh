#!/usr/bin/env bash
# Installs what pthio needs to build and test: Debian's packages (with python3-torch, torch 1.13),
# then a virtual environment with PyPI's torch 2.x, safetensors, numpy, zstandard and transformers,
# so that the PyTorch cross-checks run against both torches (transformers: the reference of
# examples/minilm). Idempotent: an environment that already has them
# is reused as it is.
#
#   bash scripts/deps.sh [--no-venv]
#   PTHIO_VENV=DIR   where the environment lives (default ~/.cache/pthio/venv-torch2); the test
#                    scripts pass the same folder to CMake (cmake/pthio_python.cmake)
set -euo pipefail
venv=1
for arg in "$@"; do
  case "$arg" in
    --no-venv) venv=0 ;;
    *) echo "usage: bash scripts/deps.sh [--no-venv]" >&2; exit 2 ;;
  esac
done

pkgs=(build-essential cmake ninja-build pkg-config libeigen3-dev doctest-dev libdeflate-dev
      libzstd-dev nlohmann-json3-dev python3-torch python3-numpy python3-venv unzip tmux groff-base libcli11-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "$venv" = 1 ] || exit 0
dir=${PTHIO_VENV:-$HOME/.cache/pthio/venv-torch2}
# transformers 5 needs torch >= 2.6 and safetensors >= 0.8, both in a fresh environment; in an
# older reused one the minilm test skips (transformers without torch) rather than fail.
declare -A spec=([zstandard]=zstandard [transformers]="transformers>=4.40,<6")
# Reused when pip has recorded all three (the metadata, not an import: importing torch takes
# seconds; cmake/pthio_python.cmake imports them when it probes the interpreter).
if [ -x "$dir/bin/python" ] && have=$("$dir/bin/python" -c "from importlib.metadata import version as v
v('safetensors'), v('numpy'); print(v('torch'))" 2>/dev/null); then
  echo "deps.sh: reusing $dir (torch $have)"
  # zstandard (the DCP fixtures' zstd extension) and transformers (examples/minilm's reference)
  # joined the list later: added where missing.
  # Not fatal: without them (offline) the tests that need them skip, saying why.
  for late in zstandard transformers; do
    "$dir/bin/python" -c "from importlib.metadata import version as v; v('$late')" 2>/dev/null ||
      "$dir/bin/python" -m pip install -q --disable-pip-version-check "${spec[$late]}" ||
      echo "deps.sh: could not install ${spec[$late]} into $dir" >&2
  done
  exit 0
fi
echo "deps.sh: installing PyPI's torch, safetensors, numpy, zstandard and transformers into $dir"
# Debian's interpreter, not Debian's modules: the environment sees only what pip puts in it.
/usr/bin/python3 -m venv "$dir"
"$dir/bin/python" -m pip install -q --disable-pip-version-check torch safetensors numpy zstandard "${spec[transformers]}"
