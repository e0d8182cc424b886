# Kairos. `make run` serves on 127.0.0.1:8080 with a local PostgreSQL; `make test` passes the
# tests against a real PostgreSQL. Both start the project-local cluster under .data/ (see
# scripts/db.sh), installing PostgreSQL with apt when no 15+ binaries are found, unless
# DATABASE_URL points at a database already.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
DB := scripts/db.sh
# `make run PROFILE=dev` builds faster; release is what a deployment runs.
PROFILE ?= release
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))/kairos
RUN_DB ?= kairos
RUN_LOGIN ?= kairos_app

.PHONY: run test unit-test smoke fuzz lint fmt bench db db-stop clean-test-dbs help

help:
	@echo "make run    - local PostgreSQL, migrations as its owner, demo company + API key, server on 127.0.0.1:8080 as the service login kairos_app"
	@echo "make test   - every test of the workspace against a local PostgreSQL, then the make-run smoke test"
	@echo "make fuzz   - schemathesis (every check, fixed seed) against the server's /openapi.json"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"
	@echo "make bench  - load tests with ratios to same-run baselines (target/bench/summary.json)"
	@echo "make db     - start the local PostgreSQL cluster; make db-stop stops it"

# Least privilege: the owner (the cluster's superuser, or KAIROS_MIGRATE_DATABASE_URL) migrates
# and admits the service's login; the server then runs as that login ($(RUN_LOGIN) on the
# local cluster), a member of kairos_service only, without the owner's URL. With only
# DATABASE_URL set, that URL does both, as before.
run:
	$(CARGO) build --profile $(PROFILE) --bin kairos
	owner_url="$${KAIROS_MIGRATE_DATABASE_URL:-$${DATABASE_URL:-}}"; service_url="$${DATABASE_URL:-$$owner_url}"; \
	if [ -z "$$owner_url" ]; then \
	  owner_url=$$($(DB) ensure $(RUN_DB)); service_url=$$($(DB) url $(RUN_DB) $(RUN_LOGIN)); \
	fi; \
	master="$${KAIROS_MASTER_KEY:-}"; [ -n "$$master" ] || master=$$(scripts/master-key.sh); \
	export KAIROS_MIGRATE_DATABASE_URL="$$owner_url" DATABASE_URL="$$service_url" KAIROS_MASTER_KEY="$$master"; \
	$(BIN) migrate; \
	$(BIN) demo --key-file .data/demo-key.json; \
	exec env -u KAIROS_MIGRATE_DATABASE_URL $(BIN) serve --no-migrate

# Tests make their own databases (one per test, copied from a migrated template) in the
# cluster that KAIROS_TEST_DATABASE_URL names; the /docs page runs in the Chromium that
# KAIROS_CHROMIUM names (scripts/chromium.sh installs one when missing).
test: unit-test smoke

unit-test: clean-test-dbs
	db_url="$${DATABASE_URL:-}"; [ -n "$$db_url" ] || db_url=$$($(DB) ensure kairos_test); \
	export KAIROS_TEST_DATABASE_URL="$$db_url" KAIROS_CHROMIUM=$$(scripts/chromium.sh); \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

# `make run` from a fresh clone of HEAD must print a key that `GET /v4/user/me` accepts.
smoke:
	scripts/smoke-make-run.sh

# Schemathesis against /openapi.json with every check, a fixed seed and a bounded number of
# examples: the document must state every constraint and answer of the server. It starts its
# own server on a free port, on DATABASE_URL or the local cluster's `kairos_fuzz`.
fuzz:
	scripts/fuzz.sh

clean-test-dbs:
	@if [ -z "$${DATABASE_URL:-}" ]; then \
	  $(DB) ensure kairos_test >/dev/null; \
	  for db in $$($(DB) psql kairos_test -tA -c "SELECT datname FROM pg_database WHERE datname LIKE 'kt\_%' OR datname LIKE 'kairos\_tpl\_%'"); do \
	    $(DB) psql kairos_test -c "DROP DATABASE IF EXISTS \"$$db\" WITH (FORCE)" >/dev/null; \
	  done; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	scripts/bench.sh

db:
	@$(DB) ensure $(RUN_DB)

db-stop:
	@$(DB) stop
