# keyleash: `make` lists the targets. Works from a fresh clone: the scripts install
# and start what they need (a private Postgres cluster for the tests).

CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the documented targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Run the main job on embedded SQLite: a 50-cent key under 20 concurrent 5-cent charges
	$(CARGO) run --quiet -p keyleash-demo

.PHONY: test
test: check ## Build and run every test (Rust, then Python) on SQLite and Postgres (a private cluster unless DATABASE_URL is set)
	# keyleash-python has no Rust tests (pytest tests it through the wheel): skip
	# compiling it a second time for cargo test.
	bash scripts/with-postgres.sh bash -c '$(CARGO) test --workspace --exclude keyleash-python && bash scripts/test-python.sh'

.PHONY: test-python
test-python: ## Build the Python wheel into .venv, run ruff, mypy --strict and pytest (SQLite and a private Postgres)
	bash scripts/with-postgres.sh bash scripts/test-python.sh

.PHONY: example-fastapi
example-fastapi: ## Serve examples/fastapi-app (an LLM proxy on embedded SQLite) at http://127.0.0.1:8000
	cd examples/fastapi-app && "$$(bash ../../scripts/python-env.sh)" app.py

.PHONY: check
check: ## cargo fmt --check, clippy and rustdoc with warnings denied
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all
