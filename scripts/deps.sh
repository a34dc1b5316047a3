#!/usr/bin/env bash
# Installs the Debian 12 packages botgate needs to build and test, skipping any
# that are already present. Uses sudo when not run as root.
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config ca-certificates curl openssl
          libcaf-dev libboost1.81-dev libsimdjson-dev libfmt-dev catch2
          libtomlplusplus-dev libssl-dev libpugixml-dev libjemalloc-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
