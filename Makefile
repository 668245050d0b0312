# keyleash: `make` lists the targets. Works from a fresh clone: the scripts install
# and start what they need (a private Postgres cluster for the tests).

CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the documented targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: demo
demo: node ## The main job on embedded SQLite: the Express and FastAPI examples share one key's 50-cent cap under 80 parallel calls
	KEYLEASH_PYTHON="$$(bash scripts/python-env.sh)" node examples/demo/demo.mjs

.PHONY: test
test: check node ## Build and run every test (Rust, Node, Python) on SQLite and Postgres (a private cluster unless DATABASE_URL is set), then the packages (test-dist)
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory test-rust test-node test-python-here conformance-here test-browser-here
	$(MAKE) --no-print-directory test-dist

.PHONY: dist
dist: node ## Build every release artifact into dist/: the crate, the Python sdist and manylinux2014 wheel, the npm package and its linux-x64-gnu package
	bash scripts/dist.sh

.PHONY: test-dist
test-dist: dist ## Install each artifact of dist/ into a fresh venv, npm project or Cargo project and run a README example against it
	bash scripts/test-dist.sh

.PHONY: test-rust
test-rust: ## The Rust tests, the core's and the keyleash CLI's (needs DATABASE_URL: use `make test`)
	# The binding crates have no Rust tests (node:test and pytest test them through
	# the built packages): skip compiling them a second time for cargo test. The
	# workspace includes keyleash-cli, whose tests run the built binary on SQLite and
	# on DATABASE_URL.
	$(CARGO) test --workspace --exclude keyleash-node --exclude keyleash-python

.PHONY: test-node
test-node: ## The Node tests through the built addon (needs `make node` and DATABASE_URL: use `make test`)
	cd bindings-node && npm test

.PHONY: test-browser
test-browser: node ## The admin page in headless Chromium (installed when missing), mounted in both examples, on SQLite and Postgres
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory test-browser-here

.PHONY: test-browser-here
test-browser-here:
	KEYLEASH_CHROMIUM="$$(bash scripts/chromium.sh)" KEYLEASH_PYTHON="$$(bash scripts/python-env.sh)" \
		node --test --test-concurrency=1 bindings-node/test-browser/admin.test.js

.PHONY: screenshots
screenshots: node ## Refresh the admin page's screenshots in docs/images (the browser test, saving them)
	KEYLEASH_SCREENSHOTS=$(CURDIR)/docs/images bash scripts/with-postgres.sh $(MAKE) --no-print-directory test-browser-here

.PHONY: conformance
conformance: node ## Run every vector of CONFORMANCE_DIR (default tests/conformance) through the Rust, Node and Python runners, on SQLite and Postgres
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory conformance-here

.PHONY: conformance-here
# All three runners run even when one fails, so one run shows every difference.
conformance-here:
	@status=0; \
	$(CARGO) test -q -p keyleash --test conformance || status=1; \
	(cd bindings-node && node test/conformance.mjs) || status=1; \
	"$$(bash scripts/python-env.sh)" bindings-python/tests/conformance.py || status=1; \
	exit $$status

.PHONY: test-python
test-python: ## Build the Python wheel into .venv, run ruff, mypy --strict and pytest (SQLite and a private Postgres)
	bash scripts/with-postgres.sh bash scripts/test-python.sh

.PHONY: test-python-here
test-python-here:
	bash scripts/test-python.sh

.PHONY: example-fastapi
example-fastapi: ## Serve examples/fastapi-app (an LLM proxy on embedded SQLite) at http://127.0.0.1:8000
	cd examples/fastapi-app && "$$(bash ../../scripts/python-env.sh)" app.py

.PHONY: check
check: node-deps ## One version in every manifest; cargo fmt --check, clippy and rustdoc with warnings denied; biome (Node package, Express example, demo) and tsc
	node scripts/version.mjs
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	bindings-node/node_modules/.bin/biome check .
	cd bindings-node && npx tsc -p tsconfig.json

.PHONY: node-deps
# `npm install`, not `npm ci`: the lock pins every version, but the registry this
# project builds from has no metadata for other platforms' optional packages, and
# `npm ci` refuses a lock without them.
node-deps: ## Install the Node package's and the Express example's npm dependencies (as locked)
	cd bindings-node && npm install --no-audit --no-fund --loglevel=error
	cd examples/express-app && npm install --no-audit --no-fund --loglevel=error

.PHONY: node
node: node-deps ## Build the napi-rs addon (release) and fail if the committed native.js/native.d.ts are stale
	cd bindings-node && npx napi build --platform --release --js native.js --dts native.d.ts
	git diff --exit-code -- bindings-node/native.js bindings-node/native.d.ts

.PHONY: express-app
express-app: node ## Run the Express example (an LLM proxy) on embedded SQLite at http://127.0.0.1:3000
	cd examples/express-app && node server.js

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

BENCH_SECONDS ?= 5
BENCH_CALLERS ?= 32
BENCH_KEYS ?= 1000
BENCH_NAME ?= latest
# on: the private cluster is durable (fsync, synchronous_commit, full_page_writes on),
# as users run Postgres; off: all three off, for CPU profiles of keyleash itself.
BENCH_FSYNC ?= on

.PHONY: bench
# `node` and python-env.sh rebuild incrementally, so the table measures the tree as it
# is (a stale addon or wheel would measure an older core from Node and Python).
# bench-fsync comes first: a wrong BENCH_FSYNC is refused before minutes of building.
bench: bench-fsync node ## Measure keyleash (Rust, Node, Python, HTTP; Postgres and SQLite) against pgbench, agentkey's SQL, SQLite and bare Express/FastAPI on a private durable Postgres (BENCH_FSYNC=off: fsync off): one table, also in bench/results/latest.{txt,json}
	bash scripts/python-env.sh >/dev/null
	bash bench/prepare.sh
	BENCH_SECONDS=$(BENCH_SECONDS) BENCH_CALLERS=$(BENCH_CALLERS) BENCH_KEYS=$(BENCH_KEYS) BENCH_NAME=$(BENCH_NAME) \
		KEYLEASH_PG_FSYNC=$(BENCH_FSYNC) bash scripts/with-postgres.sh .venv/bin/python bench/run.py

.PHONY: bench-fsync
bench-fsync:
	@case "$(BENCH_FSYNC)" in on|off) ;; *) \
		echo "BENCH_FSYNC must be 'on' (a durable Postgres: fsync, synchronous_commit, full_page_writes on) or 'off' (all three off), not '$(BENCH_FSYNC)'" >&2; \
		exit 2;; esac

.PHONY: bench-short
bench-short: ## `make bench` at 1 s per case and 100 keys (2-4 minutes; BENCH_FSYNC as for bench): proves the harness still runs; bench/results/short.*
	BENCH_SOAK_CALLS=200000 $(MAKE) --no-print-directory bench BENCH_SECONDS=1 BENCH_KEYS=100 BENCH_NAME=short
