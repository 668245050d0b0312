#!/usr/bin/env bash
# `make test-dist`: installs each artifact of dist/ (scripts/dist.sh) into a fresh
# environment, the way a user outside this checkout would, and runs a README example
# against it:
#   wheel   a new venv, `pip install` the wheel, the package README's asyncio example
#   sdist   a new venv, `pip install` the sdist (compiled from source: only the Rust
#           toolchain and what pip fetches), the same example
#   npm     a new npm project, `npm install` both tarballs and express, the npm README's
#           Express example over real HTTP and its plain example; tsc on a TypeScript
#           file without @types/express; the errors when the addon is missing
#   crate   a scratch Cargo project depending on the unpacked .crate, running the crate
#           README's example
# Everything runs on embedded SQLite in a scratch folder, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIST="$ROOT/dist"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
WORK=$(mktemp -d /tmp/keyleash-dist.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '\ntest-dist: %s\n' "$*"; }
fail() { printf 'test-dist: FAILED: %s\n' "$*" >&2; exit 1; }
ls "$DIST"/keyleash-"$VERSION".crate "$DIST"/keyleash-"$VERSION".tar.gz \
    "$DIST"/keyleash-"$VERSION"-*.whl "$DIST"/keyleash-"$VERSION".tgz \
    "$DIST"/keyleash-linux-x64-gnu-"$VERSION".tgz >/dev/null

# The first block of `lang` in a README that contains `marker`.
block() { # README lang marker
    python3 - "$@" <<'PY'
import re, sys
readme, lang, marker = sys.argv[1:]
blocks = re.findall(rf"```{lang}\n(.*?)```", open(readme).read(), re.S)
found = [b for b in blocks if marker in b]
if not found:
    sys.exit(f"no ```{lang} block with {marker!r} in {readme}")
print(found[0], end="")
PY
}

# --- Python: the wheel, then the sdist, each in its own new venv -------------------
python_example() { # venv label
    local venv=$1 dir="$WORK/$2"
    mkdir -p "$dir"
    # The README the package carries (in its metadata), not the checkout's.
    "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.stdout.write(m.metadata("keyleash").get_payload())' \
        >"$dir/README.md"
    grep -q '^## FastAPI' "$dir/README.md" || fail "$2: the installed package has no README"
    block "$dir/README.md" python asyncio.run >"$dir/example.py"
    local out
    out=$(cd "$dir" && "$venv/bin/python" example.py 2>"$dir/stderr")
    [ "$out" = "acct_123 49.58" ] || fail "$2: the README example printed '$out'"
    [ ! -s "$dir/stderr" ] || fail "$2: the README example wrote to stderr: $(cat "$dir/stderr")"
    local version
    version=$("$venv/bin/python" -c 'import keyleash; print(keyleash.__version__)')
    [ "$version" = "$VERSION" ] || fail "$2: keyleash.__version__ is $version"
    echo "  $2: README example printed '$out'; keyleash.__version__ $version"
    # The command line, both ways the package ships it.
    local cli
    cli=$("$venv/bin/keyleash" --version)
    [ "$cli" = "keyleash $VERSION" ] || fail "$2: keyleash --version printed '$cli'"
    cli=$("$venv/bin/python" -m keyleash --url "sqlite://$dir/cli.db" migrate)
    [[ "$cli" == migrated:* ]] || fail "$2: python -m keyleash migrate printed '$cli'"
    echo "  $2: keyleash --version and python -m keyleash migrate work"
}
say "wheel into a new venv"
python3 -m venv "$WORK/wheel-venv"
"$WORK/wheel-venv/bin/pip" install --quiet "$DIST"/keyleash-"$VERSION"-*.whl
python_example "$WORK/wheel-venv" wheel
"$WORK/wheel-venv/bin/python" -c 'import importlib.metadata as m; d = m.distribution("keyleash"); assert any(str(f).endswith("licenses/LICENSE") for f in d.files), "no LICENSE"; urls = d.metadata.get_all("Project-URL"); assert len(urls) >= 4, urls'

say "sdist into a new venv (compiles the Rust core from the sdist's sources)"
python3 -m venv "$WORK/sdist-venv"
# Its own target dir: the sdist's crates must build from the sdist alone, and a
# rerun on this machine reuses the compiled dependencies.
CARGO_TARGET_DIR="$TARGET/sdist-check" "$WORK/sdist-venv/bin/pip" install --quiet \
    "$DIST/keyleash-$VERSION.tar.gz"
python_example "$WORK/sdist-venv" sdist

# --- npm: both tarballs into a new project -----------------------------------------
say "npm tarballs into a new project"
NPM="$WORK/npm-project"
mkdir -p "$NPM"
for tgz in keyleash-"$VERSION".tgz keyleash-linux-x64-gnu-"$VERSION".tgz; do
    contents=$(tar -tzf "$DIST/$tgz")
    for file in package/README.md package/LICENSE package/package.json; do
        grep -qx "$file" <<<"$contents" || fail "$tgz has no $file"
    done
done
(
    cd "$NPM"
    npm init -y >/dev/null
    # express as the bindings' own tests pin it; the platform tarball stands in for the
    # registry's copy of the optional dependency.
    npm install --no-audit --no-fund --loglevel=error \
        "$DIST/keyleash-linux-x64-gnu-$VERSION.tgz" "$DIST/keyleash-$VERSION.tgz" express@5.1.0
)
addon="$NPM/node_modules/keyleash-linux-x64-gnu/keyleash.linux-x64-gnu.node"
file -L "$addon" | grep -q ', stripped' || fail "the packed addon is not stripped"
[ ! -e "$NPM/node_modules/keyleash/keyleash.linux-x64-gnu.node" ] \
    || fail "the main npm package carries an addon"
README="$NPM/node_modules/keyleash/README.md"
block "$README" js 'require("express")' >"$NPM/quickstart.js"
block "$README" js 'import { KeyLeash }' >"$NPM/plain.mjs"
node "$ROOT/scripts/dist-express-check.mjs" "$NPM"
cli=$(cd "$NPM" && npx --no-install keyleash --version)
[ "$cli" = "keyleash $VERSION" ] || fail "npx keyleash --version printed '$cli'"
echo "  npx keyleash --version: $cli"

# TypeScript without @types/express: the package's own types must stand alone.
cat >"$NPM/check.ts" <<'TS'
import { KeyLeash, type ValidateResult } from "keyleash";

export async function remaining(kl: KeyLeash, key: string): Promise<number | null> {
  const v: ValidateResult = await kl.validate(key);
  return v.valid ? v.budgetRemainingCents : null;
}
TS
cat >"$NPM/tsconfig.json" <<'JSON'
{ "compilerOptions": { "strict": true, "noEmit": true, "module": "nodenext",
  "moduleResolution": "nodenext", "target": "es2022", "types": [] }, "files": ["check.ts"] }
JSON
[ ! -e "$NPM/node_modules/@types/express" ] || fail "@types/express came with the install"
"$ROOT/bindings-node/node_modules/.bin/tsc" -p "$NPM/tsconfig.json" \
    || fail "index.d.ts does not type-check without @types/express"
echo "  tsc: index.d.ts type-checks without @types/express"

# Without an addon for the platform, the error names it and says what to do.
missing() { (cd "$NPM" && node -e "$1 try { require('keyleash') } catch (e) { console.log(e.message) }"); }
msg=$(missing "Object.defineProperty(process, 'arch', { value: 'riscv64' });")
case "$msg" in
*"no native addon for linux-riscv64-gnu"*"make node"*) echo "  another platform: $msg" ;;
*) fail "on another platform the error was: $msg" ;;
esac
mv "$NPM/node_modules/keyleash-linux-x64-gnu" "$WORK/aside"
msg=$(missing "")
case "$msg" in
*"keyleash-linux-x64-gnu is not installed"*"--omit=optional"*) echo "  platform package missing: $msg" ;;
*) fail "without the platform package the error was: $msg" ;;
esac

# --- The crate, as a dependency of a scratch project --------------------------------
say "the .crate as a dependency of a scratch Cargo project"
CRATE="$WORK/crate"
mkdir -p "$CRATE/src"
tar -xzf "$DIST/keyleash-$VERSION.crate" -C "$CRATE"
cat >"$CRATE/Cargo.toml" <<TOML
[package]
name = "scratch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
keyleash = { path = "keyleash-$VERSION" }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

[workspace]
TOML
# The workspace's lock, so that the scratch build resolves the versions CI tested.
cp Cargo.lock "$CRATE/"
# The README's doctest, with its hidden lines shown, as main().
{
    echo 'fn main() -> Result<(), Box<dyn std::error::Error>> {'
    block "$CRATE/keyleash-$VERSION/README.md" rust 'KeyLeash::connect' | sed 's/^# //'
    echo '    println!("crate example ran");'
    echo '    Ok(())'
    echo '}'
} >"$CRATE/src/main.rs"
out=$(cd "$CRATE" && CARGO_TARGET_DIR="$TARGET/crate-check" cargo run --quiet 2>&1) \
    || fail "the crate example: $out"
[ "$(printf '%s' "$out" | tail -1)" = "crate example ran" ] || fail "the crate example printed: $out"
echo "  crate: README example ran"
say "every artifact installed and ran its README example"
