#!/usr/bin/env bash
# Before `make bench`: makes sure everything the bench drives exists, building only
# what is missing, so the measurement starts at once and measures what is built.
#
# * The Node addon (bindings-node/*.node) and the venv with the Python package:
#   `make bench` rebuilds both incrementally before this runs; here `make node` /
#   scripts/python-env.sh run only if they are still missing.
#   A napi or maturin build already running (another engineer's) is waited for
#   rather than started a second time.
# * The Express example's npm dependencies: `make node-deps` if missing.
# * wrk (the HTTP load generator): Debian's package, installed if missing.
# * The Rust driver (bench/rust): cargo build --release into target/bench, which is
#   incremental (a no-op when nothing changed; it follows core/ as it is now).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'bench: %s\n' "$*" >&2; }

while pgrep -f "napi build|maturin" >/dev/null; do
    say "a napi/maturin build is running; waiting for it to finish"
    sleep 5
done

if ! ls bindings-node/*.node >/dev/null 2>&1; then
    say "the Node addon is missing: make node"
    make --no-print-directory node
fi
if [ ! -d examples/express-app/node_modules/express ]; then
    say "the Express example's dependencies are missing: make node-deps"
    make --no-print-directory node-deps
fi
if ! .venv/bin/python -c 'import keyleash, keyleash.fastapi, uvicorn' >/dev/null 2>&1; then
    say "the venv with the Python package is missing: scripts/python-env.sh"
    bash scripts/python-env.sh >/dev/null
fi
if ! command -v wrk >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { say "wrk is missing; install Debian's package wrk (apt-get install wrk)"; exit 1; }
    say "installing wrk (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
[ -x /usr/lib/postgresql/15/bin/pgbench ] || { say "pgbench (PostgreSQL 15) is missing"; exit 1; }

say "building the Rust driver (bench/rust, into target/bench)"
CARGO_TARGET_DIR=target/bench cargo build --release --quiet --manifest-path bench/rust/Cargo.toml

# Optional: agentkey itself, for the HTTP rows' peer (BENCH_AGENTKEY=a checkout or a
# bare git directory of agentkey; it is not on any package registry). Its source at
# HEAD is copied to target/bench/agentkey, its own devDependencies installed, and
# compiled with its own tsc; rebuilt only when its HEAD changes.
if [ -n "${BENCH_AGENTKEY:-}" ]; then
    OUT=target/bench/agentkey
    if [ -d "$BENCH_AGENTKEY/.git" ]; then GIT=(git -C "$BENCH_AGENTKEY"); else GIT=(git --git-dir "$BENCH_AGENTKEY"); fi
    HEAD=$("${GIT[@]}" rev-parse HEAD) || { say "BENCH_AGENTKEY is not a git checkout of agentkey"; exit 1; }
    if [ "$(cat "$OUT/.head" 2>/dev/null)" != "$HEAD" ] || [ ! -f "$OUT/dist/index.js" ]; then
        say "building agentkey $HEAD (BENCH_AGENTKEY) into $OUT"
        rm -rf "$OUT" && mkdir -p "$OUT"
        "${GIT[@]}" archive HEAD | tar -x -C "$OUT"
        (cd "$OUT" && npm install --no-audit --no-fund --loglevel=error >/dev/null && npx tsc)
        echo "$HEAD" > "$OUT/.head"
    fi
fi
