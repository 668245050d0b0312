#!/usr/bin/env bash
# Prints the path of a headless-capable Chromium for the admin page's browser test,
# installing Debian's `chromium` package when there is none (as root, or with sudo).
set -euo pipefail

for bin in chromium chromium-browser; do
  if path="$(command -v "$bin")"; then
    echo "$path"
    exit 0
  fi
done

echo "chromium.sh: installing Debian's chromium package" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq chromium >&2
command -v chromium
