#!/usr/bin/env bash
# Install the Debian packages napari needs for OpenGL on a virtual display (Xvfb + Mesa + Qt's xcb libs),
# listed in scripts/system-packages.txt. Skips what is already installed; needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(grep -v '^\s*#' scripts/system-packages.txt | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
        echo "system packages missing (GUI tests need them): ${missing[*]}" >&2
        echo "install them as root: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
echo "setup: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
