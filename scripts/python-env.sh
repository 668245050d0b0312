#!/usr/bin/env bash
# Makes the Python package usable from a fresh clone: creates .venv (python3 -m venv),
# installs the pinned toolchain (bindings-python/requirements-dev.txt), builds the
# wheel with maturin and installs it. The wheel is the one a release ships: linked
# through zig for manylinux2014 (glibc 2.17 and later), stripped (Cargo.toml's release
# profile); `make dist` copies it. Rebuilding is incremental: cargo recompiles only
# what changed. Prints the venv's python path last, and the wheel's path in $WHEELS.
#
#   KEYLEASH_PY_PROFILE=release|dev   the wheel's cargo profile (default release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/.venv"
REQ="$ROOT/bindings-python/requirements-dev.txt"
PROFILE="${KEYLEASH_PY_PROFILE:-release}"
WHEELS="${CARGO_TARGET_DIR:-$ROOT/target}/keyleash-python-wheels"
# Its own cargo target dir: the zig link changes the environment of the build
# scripts, which cargo builds for the host in the same place as the napi-rs build
# does; sharing one dir made each build redo the other's (ring, SQLite, the core).
PY_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/python"

say() { printf 'python-env: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    command -v python3 >/dev/null || { say "python3 (3.11 or newer) is needed"; exit 1; }
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { say "python3 is $(python3 --version); 3.11 or newer is needed"; exit 1; }
    say "creating $VENV"
    python3 -m venv "$VENV"
fi
# Reinstall the toolchain only when the pinned list changed.
STAMP="$VENV/.requirements-dev.txt"
if ! cmp -s "$REQ" "$STAMP"; then
    say "installing the pinned toolchain"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQ"
    cp "$REQ" "$STAMP"
fi

say "building the wheel ($PROFILE)"
rm -rf "$WHEELS"
flag=--release
[ "$PROFILE" = dev ] && flag=""
# maturin finds zig on PATH (ziglang installs it into the venv's bin).
(cd bindings-python && PATH="$VENV/bin:$PATH" CARGO_TARGET_DIR="$PY_TARGET" "$VENV/bin/maturin" build $flag --quiet \
    --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu \
    --out "$WHEELS" >&2)
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/keyleash-*.whl
echo "$VENV/bin/python"
