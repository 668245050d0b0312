#!/usr/bin/env bash
# Usage: scripts/with-postgres.sh <command> [args...]
#
# Runs <command> with DATABASE_URL pointing at a PostgreSQL database and exits
# with the command's exit code.
#
# * If DATABASE_URL is already set (non-empty), the command is simply exec'd.
# * Otherwise a private, throw-away cluster is created in a temp dir, started on
#   a free port on 127.0.0.1, a database `keyleash_test` is created, and the
#   command is run. The cluster is stopped and the temp dir removed on exit
#   (also on INT/TERM).
#
# Exported for the command (throw-away cluster only):
#   DATABASE_URL          postgres://postgres@127.0.0.1:PORT/keyleash_test
#   KEYLEASH_PG_CTL       absolute path of pg_ctl
#   KEYLEASH_PG_DATA      data directory
#   KEYLEASH_PG_LOG       server log file
#   KEYLEASH_PG_PORT      TCP port
#   KEYLEASH_PG_USER_CMD  prefix to run pg_ctl as the cluster owner
#                         ("runuser -u postgres --" when invoked as root, else "";
#                         as root without runuser: path of a su-based wrapper script)
#   KEYLEASH_PG_STOP      full stop command  (meant to be run with: sh -c "$KEYLEASH_PG_STOP")
#   KEYLEASH_PG_START     full start command (meant to be run with: sh -c "$KEYLEASH_PG_START")
#
# Environment read (throw-away cluster only):
#   KEYLEASH_PG_FSYNC     off (default): fsync, synchronous_commit and full_page_writes
#                         off, fast and fine for tests, whose data a crash may lose;
#                         on: all three on, a durable server as users run it (what
#                         `make bench` measures by default). Any other value is refused.
#
# All server settings (port, listen address, socket dir, fsync, ...) are
# written into $KEYLEASH_PG_DATA/postgresql.conf, so a plain
#   $KEYLEASH_PG_USER_CMD $KEYLEASH_PG_CTL -D $KEYLEASH_PG_DATA -w -m fast stop
#   $KEYLEASH_PG_USER_CMD $KEYLEASH_PG_CTL -D $KEYLEASH_PG_DATA -w -l $KEYLEASH_PG_LOG start
# restarts the server on the same port. (Always pass -l when starting: without
# it the server inherits the caller's stdout/stderr, which can make a caller
# that captures output wait forever.)

set -euo pipefail

PROG="with-postgres"
DB_NAME="keyleash_test"

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ "$#" -eq 0 ]; then
    say "usage: $0 <command> [args...]"
    exit 2
fi

# Checked before anything else, so a typo never runs the command on settings it
# did not ask for.
PG_FSYNC="${KEYLEASH_PG_FSYNC:-off}"
case "$PG_FSYNC" in
    on | off) ;;
    *) die "KEYLEASH_PG_FSYNC must be 'on' (fsync, synchronous_commit and full_page_writes on: durable) or 'off' (all three off: the tests' default), not '$PG_FSYNC'" ;;
esac

# --------------------------------------------------------------------------
# 1. Externally provided database.
# --------------------------------------------------------------------------
if [ -n "${DATABASE_URL:-}" ]; then
    say "using the DATABASE_URL given in the environment (not starting a server)"
    [ -z "${KEYLEASH_PG_FSYNC:-}" ] \
        || say "note: KEYLEASH_PG_FSYNC=$KEYLEASH_PG_FSYNC has no effect on a server this script did not start"
    exec "$@"
fi

# --------------------------------------------------------------------------
# 2. Locate (or install) the PostgreSQL server binaries.
# --------------------------------------------------------------------------
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

find_pg_bin() {
    local d best=""
    # Debian/Ubuntu layout: /usr/lib/postgresql/<version>/bin, pick highest version.
    best=$(
        for d in /usr/lib/postgresql/*/bin; do
            [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"
        done 2>/dev/null | sort -V | tail -n 1
    ) || true
    if [ -z "$best" ]; then
        # Fallback: binaries on PATH (non-Debian systems).
        local i p
        i=$(command -v initdb 2>/dev/null || true)
        p=$(command -v pg_ctl 2>/dev/null || true)
        if [ -n "$i" ] && [ -n "$p" ]; then
            # Resolve symlinks (e.g. /usr/local/bin/pg_ctl -> /usr/lib/postgresql/N/bin/pg_ctl).
            i=$(readlink -f "$i" 2>/dev/null || printf '%s' "$i")
            p=$(readlink -f "$p" 2>/dev/null || printf '%s' "$p")
            if [ "$(dirname "$i")" = "$(dirname "$p")" ]; then
                best=$(dirname "$p")
            fi
        fi
    fi
    printf '%s' "$best"
}

PG_BIN=$(find_pg_bin)
if [ -z "$PG_BIN" ]; then
    if [ "$IS_ROOT" -ne 1 ]; then
        die "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH) and not running as root, so cannot install them. Install the 'postgresql' package, or set DATABASE_URL to an existing database."
    fi
    command -v apt-get >/dev/null 2>&1 \
        || die "no PostgreSQL server binaries found and apt-get is not available; install PostgreSQL or set DATABASE_URL."
    say "PostgreSQL not found; installing the Debian 'postgresql' package (this can take a minute)..."
    apt-get update -qq >&2 \
        || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 \
        || die "apt-get install postgresql failed"
    PG_BIN=$(find_pg_bin)
    [ -n "$PG_BIN" ] || die "installed 'postgresql' but still cannot find initdb/pg_ctl under /usr/lib/postgresql/*/bin"
fi

INITDB="$PG_BIN/initdb"
PG_CTL="$PG_BIN/pg_ctl"
CREATEDB="$PG_BIN/createdb"
[ -x "$CREATEDB" ] || CREATEDB=$(command -v createdb 2>/dev/null || true)
[ -n "$CREATEDB" ] || die "createdb not found next to $PG_CTL nor on PATH"

# --------------------------------------------------------------------------
# 3. Decide which OS user owns the cluster (initdb refuses to run as root).
# --------------------------------------------------------------------------
USER_CMD=""
if [ "$IS_ROOT" -eq 1 ]; then
    if ! id -u postgres >/dev/null 2>&1; then
        command -v useradd >/dev/null 2>&1 \
            || die "running as root, no 'postgres' user exists and useradd is unavailable"
        say "creating system user 'postgres' (initdb refuses to run as root)"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin postgres \
            || die "could not create the 'postgres' user"
    fi
    if command -v runuser >/dev/null 2>&1; then
        USER_CMD="runuser -u postgres --"
    else
        # Replaced below by a small wrapper script (inside the temp dir) so
        # that it can be used as a plain command prefix.
        USER_CMD="su"
    fi
fi

# as_pg CMD ARGS... : run a command as the cluster owner.
as_pg() {
    if [ "$IS_ROOT" -ne 1 ]; then
        "$@"
    elif [ "$USER_CMD" = "runuser -u postgres --" ]; then
        runuser -u postgres -- "$@"
    else
        # su passes the arguments after the user name to the shell as $0 $1 ...;
        # "--" stops su from parsing them as its own options (e.g. -w).
        su -s /bin/sh -c 'exec "$0" "$@"' -- postgres "$@"
    fi
}

# --------------------------------------------------------------------------
# 4. Temp dir + cleanup trap.
# --------------------------------------------------------------------------
TMP_BASE="${TMPDIR:-/tmp}"
PG_TMP=$(mktemp -d "${TMP_BASE%/}/keyleash-pg.XXXXXXXX") \
    || die "mktemp -d under $TMP_BASE failed"
STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$STARTED" -eq 1 ] && [ -n "${PG_TMP:-}" ] && [ -f "$PG_TMP/data/postmaster.pid" ]; then
        (cd / && as_pg "$PG_CTL" -D "$PG_TMP/data" -m immediate -w -t 30 stop >/dev/null 2>&1) \
            || say "warning: pg_ctl stop failed (server may already be down)"
    fi
    if [ -n "${PG_TMP:-}" ] && [ -d "$PG_TMP" ]; then
        rm -rf -- "$PG_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$IS_ROOT" -eq 1 ]; then
    chown postgres: "$PG_TMP" || die "cannot chown $PG_TMP to postgres"
    chmod 700 "$PG_TMP"
    # The postgres user must be able to reach the dir (e.g. TMPDIR under /root won't work).
    if ! (cd / && as_pg test -w "$PG_TMP"); then
        rm -rf -- "$PG_TMP"
        PG_TMP=$(mktemp -d /tmp/keyleash-pg.XXXXXXXX) || die "mktemp -d under /tmp failed"
        chown postgres: "$PG_TMP" && chmod 700 "$PG_TMP"
        (cd / && as_pg test -w "$PG_TMP") \
            || die "user 'postgres' cannot write to $PG_TMP"
        say "note: $TMP_BASE is not accessible to user 'postgres'; using $PG_TMP instead"
    fi
fi

if [ "$USER_CMD" = "su" ]; then
    cat >"$PG_TMP/as-postgres" <<'EOF'
#!/bin/sh
# Runs "$@" as user postgres (command prefix generated by scripts/with-postgres.sh)
exec su -s /bin/sh -c 'exec "$0" "$@"' -- postgres "$@"
EOF
    chmod 755 "$PG_TMP/as-postgres"
    USER_CMD="$PG_TMP/as-postgres"
fi

PG_DATA="$PG_TMP/data"
PG_LOG="$PG_TMP/postgres.log"
INITDB_LOG="$PG_TMP/initdb.log"

# --------------------------------------------------------------------------
# 5. initdb.
# --------------------------------------------------------------------------
say "initializing throw-away cluster in $PG_DATA ($("$PG_CTL" --version 2>/dev/null || echo pg_ctl))"
if ! (cd "$PG_TMP" && as_pg "$INITDB" -D "$PG_DATA" -A trust -U postgres --no-sync -E UTF8 --locale=C \
        >"$INITDB_LOG" 2>&1); then
    say "initdb failed; output:"
    tail -n 40 "$INITDB_LOG" >&2 || true
    exit 1
fi
cp "$PG_DATA/postgresql.conf" "$PG_TMP/postgresql.conf.orig"

write_conf() { # $1 = port
    {
        cat "$PG_TMP/postgresql.conf.orig"
        cat <<EOF

# ---- added by scripts/with-postgres.sh (throw-away test cluster) ----
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$PG_TMP'
fsync = $PG_FSYNC
synchronous_commit = $PG_FSYNC
full_page_writes = $PG_FSYNC
max_connections = 200
shared_buffers = 128MB
EOF
    } >"$PG_DATA/postgresql.conf"   # truncating keeps the file's owner (postgres)
}

pick_port() {
    local p
    p=$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null) || p=""
    if [ -z "$p" ]; then
        # Fallback if python3 is unusable: a random high port.
        p=$(( (RANDOM << 15 | RANDOM) % 20000 + 40000 ))
    fi
    printf '%s' "$p"
}

# --------------------------------------------------------------------------
# 6. Start the server (retrying on port collisions).
# --------------------------------------------------------------------------
PORT=""
attempt=1
max_attempts=5
while :; do
    PORT=$(pick_port)
    write_conf "$PORT"
    : >"$PG_LOG"
    [ "$IS_ROOT" -eq 1 ] && chown postgres: "$PG_LOG"
    STARTED=1
    if (cd "$PG_TMP" && as_pg "$PG_CTL" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 2>&1); then
        break
    fi
    # Make sure nothing half-started lingers before retrying/giving up.
    if [ -f "$PG_DATA/postmaster.pid" ]; then
        (cd / && as_pg "$PG_CTL" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1) || true
    fi
    STARTED=0
    if [ "$attempt" -lt "$max_attempts" ] \
        && grep -qiE 'could not bind|address already in use|could not create any TCP/IP sockets' "$PG_LOG"; then
        say "port $PORT is in use; retrying with another port ($attempt/$max_attempts)"
        attempt=$((attempt + 1))
        continue
    fi
    say "PostgreSQL failed to start; last lines of $PG_LOG:"
    tail -n 40 "$PG_LOG" >&2 || true
    exit 1
done

# --------------------------------------------------------------------------
# 7. Create the database and export the environment.
# --------------------------------------------------------------------------
if ! (cd "$PG_TMP" && as_pg "$CREATEDB" -h 127.0.0.1 -p "$PORT" -U postgres "$DB_NAME" >"$PG_TMP/createdb.log" 2>&1); then
    say "createdb $DB_NAME failed:"
    cat "$PG_TMP/createdb.log" >&2 || true
    say "server log tail:"
    tail -n 20 "$PG_LOG" >&2 || true
    exit 1
fi

export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/$DB_NAME"
export KEYLEASH_PG_CTL="$PG_CTL"
export KEYLEASH_PG_DATA="$PG_DATA"
export KEYLEASH_PG_LOG="$PG_LOG"
export KEYLEASH_PG_PORT="$PORT"
export KEYLEASH_PG_USER_CMD="$USER_CMD"
export KEYLEASH_PG_STOP="${USER_CMD:+$USER_CMD }$PG_CTL -D $PG_DATA -w -t 60 -m fast stop"
export KEYLEASH_PG_START="${USER_CMD:+$USER_CMD }$PG_CTL -D $PG_DATA -l $PG_LOG -w -t 60 start"

say "PostgreSQL ready at $DATABASE_URL (data dir $PG_DATA; fsync, synchronous_commit, full_page_writes $PG_FSYNC)"

# --------------------------------------------------------------------------
# 8. Run the command (not exec: we must tear down afterwards).
# --------------------------------------------------------------------------
rc=0
"$@" || rc=$?
exit "$rc"
