#!/usr/bin/env bash
# Installs the Debian 12 packages Depot needs to build and test, and only those missing.
# Idempotent and quiet when everything is there; runs apt-get update only when installing.
set -euo pipefail

packages=(cmake g++ clang ninja-build make git clang-format
          libasio-dev capnproto libcapnp-dev libcli11-dev libspdlog-dev doctest-dev)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "depot: missing Debian packages: ${missing[*]}" >&2
    echo "depot: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "depot: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
