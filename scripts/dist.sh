#!/usr/bin/env bash
# `make dist`: builds every release artifact into dist/ (emptied first):
#   keyleash-V.crate                  the core crate (cargo package)
#   keyleash-V.tar.gz                 the Python sdist (maturin sdist)
#   keyleash-V-cp311-abi3-manylinux…  the Python wheel (scripts/python-env.sh builds it)
#   keyleash-V.tgz                    the npm package (JavaScript, types, loader)
#   keyleash-linux-x64-gnu-V.tgz      its platform package (the addon `make node` built)
# and prints each one's size, and the glibc floor of the wheel's module and the addon.
# Expects `make node` to have run (the Makefile's dist target depends on it).
# scripts/test-dist.sh installs each into a fresh environment.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIST="$ROOT/dist"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
node scripts/version.mjs >&2
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
ADDON=bindings-node/keyleash.linux-x64-gnu.node
[ -f "$ADDON" ] || { echo "dist: $ADDON is missing: run make node" >&2; exit 1; }
rm -rf "$DIST" && mkdir -p "$DIST"

# The crate. Its verification build happens in test-dist.sh, which compiles it as a
# dependency of a scratch project: `cargo package` would compile it a second time.
cargo package -p keyleash --no-verify --allow-dirty --quiet 2>/dev/null
cp "$TARGET/package/keyleash-$VERSION.crate" "$DIST/"

# The wheel is the one the Python tests ran on: python-env.sh builds it for
# manylinux2014 through zig, stripped.
PY=$(bash scripts/python-env.sh)
cp "$TARGET"/keyleash-python-wheels/keyleash-"$VERSION"-*.whl "$DIST/"
(cd bindings-python && "$(dirname "$PY")/maturin" sdist --out "$DIST" >&2)

# npm pack skips symbolic links, so LICENSE is copied into each package (git ignores
# the copies).
cp LICENSE bindings-node/LICENSE
for dir in bindings-node/npm/*/; do
    cp LICENSE "$dir/LICENSE"
    platform=$(basename "$dir")
    cp "bindings-node/keyleash.$platform.node" "$dir/"
    (cd "$dir" && npm pack --silent --pack-destination "$DIST" >/dev/null)
done
(cd bindings-node && npm pack --silent --pack-destination "$DIST" >/dev/null)

glibc_floor() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1
}
wheel_module=$(mktemp -d)
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$DIST"/keyleash-"$VERSION"-*.whl "$wheel_module"
echo "dist: $DIST"
(cd "$DIST" && ls -l --block-size=K | tail -n +2 | awk '{printf "  %-72s %s\n", $9, $5}')
echo "  wheel module: $(glibc_floor "$wheel_module"/keyleash/_native*.so), addon: $(glibc_floor "$ADDON")"
rm -rf "$wheel_module"
