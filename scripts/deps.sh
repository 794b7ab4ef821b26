#!/usr/bin/env bash
# Installs what pthio needs to build and test, from Debian's packages. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libeigen3-dev doctest-dev libdeflate-dev
      nlohmann-json3-dev python3-torch python3-numpy unzip)
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
