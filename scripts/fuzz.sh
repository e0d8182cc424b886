#!/usr/bin/env bash
# `make fuzz`: schemathesis against the server's own /openapi.json, every check, so that the
# document keeps telling the truth (every constraint the server enforces is in the schema,
# every status it can answer is listed) and no generated request gets a 5xx.
#
# Every check is on (scripts/fuzz.toml, with the few exceptions the spec makes necessary, each
# explained there). It starts what it needs and stops what it started: a database (DATABASE_URL when set, else
# the project-local cluster's `kairos_fuzz`, created by scripts/db.sh if missing, never
# dropped), migrations, a fresh company and key (`kairos company create --json`), the server
# on a free loopback port with the rate limit out of the way, then schemathesis from PyPI in a
# venv under target/ (git-ignored), pinned so the fixed seed means the same run everywhere.
#
#   FUZZ_SEED (default 1), FUZZ_MAX_EXAMPLES per operation (default 25), FUZZ_PHASES
#   (default all: examples,coverage,fuzzing,stateful), FUZZ_WORKERS (default 1).
# The report (JUnit and the failing requests as curl lines) goes to target/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/fuzz-venv"
OUT="$ROOT/target/fuzz"
SEED=${FUZZ_SEED:-1}
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-25}
# Every phase by default; `--phases` on the command line would replace the phase settings of
# scripts/fuzz.toml, so it is passed only when FUZZ_PHASES asks for fewer.
PHASES=${FUZZ_PHASES:-}
# One worker: hypothesis' caches are not thread-safe (two workers crashed a run with a
# KeyError inside hypothesis), and one is fast enough.
WORKERS=${FUZZ_WORKERS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/debug/kairos"

say() { echo "fuzz: $*" >&2; }

# Python 3 with venv and ensurepip (Debian ships them in python3-venv), installed with apt
# when missing, as scripts/db.sh does for PostgreSQL; schemathesis itself comes from PyPI.
ensure_python_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null && return 0
  command -v apt-get >/dev/null 2>&1 || { say "python3 with venv is missing; install python3-venv"; exit 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian's python3-venv"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
}

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
  ensure_python_venv
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

"${CARGO:-cargo}" build --quiet --bin kairos

db_url="${DATABASE_URL:-}"
[ -n "$db_url" ] || db_url=$(scripts/db.sh ensure kairos_fuzz)
export DATABASE_URL="$db_url"
export KAIROS_MASTER_KEY="${KAIROS_MASTER_KEY:-$(head -c 32 /dev/urandom | base64)}"
"$BIN" migrate >&2

company=$("$BIN" company create --json --name "Fuzz $(date +%s)" --owner-email "owner-$$-$(date +%s)@fuzz.example.com" \
  --owner-given-name Fuzz --owner-family-name Owner --timezone Europe/Berlin --key-days 1)
key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])' <<<"$company")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$OUT"
KAIROS_BIND="127.0.0.1:$port" KAIROS_RATE_LIMIT_PER_MINUTE=1000000 KAIROS_AUTH_FAILURES_PER_MINUTE=0 RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" serve --no-migrate >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && { ready=1; break; }
  kill -0 "$server" 2>/dev/null || { cat "$OUT/server.log" >&2; say "the server did not start"; exit 1; }
  sleep 0.1
done
[ -n "$ready" ] || { cat "$OUT/server.log" >&2; say "the server did not become ready within 60 s"; exit 1; }

say "schemathesis $SCHEMATHESIS_VERSION on 127.0.0.1:$port: seed $SEED, at most $MAX_EXAMPLES examples per operation, phases ${PHASES:-all}"
"$VENV/bin/st" --config-file scripts/fuzz.toml run "http://127.0.0.1:$port/openapi.json" \
  --seed "$SEED" \
  --max-examples "$MAX_EXAMPLES" \
  ${PHASES:+--phases "$PHASES"} \
  --workers "$WORKERS" \
  --header "Authorization: Bearer $key" \
  --request-timeout 10 \
  --report junit --report-dir "$OUT" \
  --output-sanitize true
