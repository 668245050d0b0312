#!/usr/bin/env bash
# The Python half of `make test`: builds the wheel into .venv (scripts/python-env.sh),
# checks the Python code (ruff format --check, ruff check, mypy --strict on the package,
# the tests and the FastAPI example) and runs pytest on SQLite and Postgres. Postgres
# comes from DATABASE_URL, and the outage test stops and starts it with KEYLEASH_PG_STOP /
# KEYLEASH_PG_START: run this under scripts/with-postgres.sh (make test-python does).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/python-env.sh)
BIN=$(dirname "$PY")
cd bindings-python
PATHS=(python tests ../examples/fastapi-app)
"$BIN/ruff" format --config pyproject.toml --check "${PATHS[@]}"
"$BIN/ruff" check --config pyproject.toml "${PATHS[@]}"
"$BIN/mypy" --strict python/keyleash tests ../examples/fastapi-app/app.py
exec "$PY" -m pytest -q --durations=5 "$@"
