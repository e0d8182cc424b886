#!/usr/bin/env bash
# The two-command promise, checked: in a fresh clone of HEAD, `make run` starts its own
# PostgreSQL, migrates as the owner, prints a demo API key, and serves as a login that is only
# the service role; with that key `GET /v4/user/me` answers the company's owner. The clone gets its own cluster port and HTTP port so it runs
# beside a developer's `make run`, and shares the target directory so dependencies are not
# rebuilt. Everything it starts is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/kairos-smoke.XXXXXX)
PG_PORT=${SMOKE_PG_PORT:-54339}
HTTP_PORT=${SMOKE_HTTP_PORT:-18089}
LOG="$WORK/make-run.log"
RUN_PID=""

cleanup() {
  if [ -n "$RUN_PID" ]; then
    kill -TERM -- "-$RUN_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  (cd "$WORK/clone" 2>/dev/null && KAIROS_PG_PORT=$PG_PORT scripts/db.sh stop >/dev/null 2>&1) || true
  rm -rf "$WORK" "/var/tmp/kairos-pg-$(echo "$WORK/clone" | sha256sum | cut -c1-12)"* 2>/dev/null || true
}
trap cleanup EXIT

git clone --quiet "$ROOT" "$WORK/clone"
cd "$WORK/clone"
echo "smoke: make run in a fresh clone ($WORK/clone), PostgreSQL on $PG_PORT, HTTP on $HTTP_PORT"
# setsid: make run and everything it starts form one process group we can stop together.
env -u DATABASE_URL -u KAIROS_MASTER_KEY \
  KAIROS_PG_PORT=$PG_PORT KAIROS_BIND=127.0.0.1:$HTTP_PORT \
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" PROFILE=${SMOKE_PROFILE:-dev} \
  setsid make run >"$LOG" 2>&1 &
RUN_PID=$!

deadline=$((SECONDS + ${SMOKE_TIMEOUT:-900}))
until curl -sf "http://127.0.0.1:$HTTP_PORT/health/ready" >/dev/null 2>&1; do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then
    echo "smoke: make run exited early:"; tail -n 40 "$LOG"; exit 1
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "smoke: the server did not become ready in time:"; tail -n 40 "$LOG"; exit 1
  fi
  sleep 1
done

KEY=$(grep -o 'ak_live:[A-Za-z0-9_:-]*' "$LOG" | head -n 1)
[ -n "$KEY" ] || { echo "smoke: make run printed no API key"; cat "$LOG"; exit 1; }
grep -q "curl -s -H 'Authorization: Bearer $KEY'" "$LOG" || { echo "smoke: no ready curl line"; exit 1; }

ME=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$HTTP_PORT/v4/user/me")
STATUS=$(tail -n 1 <<<"$ME")
BODY=$(head -n 1 <<<"$ME")
echo "smoke: GET /v4/user/me -> $STATUS $BODY"
[ "$STATUS" = 200 ] || { echo "smoke: expected 200"; exit 1; }
grep -q '"userType":"standard"' <<<"$BODY" || { echo "smoke: expected the owner (userType standard)"; exit 1; }
grep -q '"isAdmin":true' <<<"$BODY" || { echo "smoke: expected the owner (isAdmin true)"; exit 1; }
# Least privilege: migrated as the cluster's owner, served as the service login only.
grep -q "migrations applied as kairos" "$LOG" || { echo "smoke: no migration as the owner"; cat "$LOG"; exit 1; }
grep -q "DATABASE_URL logs in as kairos_app" "$LOG" || { echo "smoke: no service login"; cat "$LOG"; exit 1; }
LOGINS=$(KAIROS_PG_PORT=$PG_PORT scripts/db.sh psql kairos -tA \
  -c "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'kairos'")
echo "smoke: the server's connections log in as: $LOGINS"
[ "$LOGINS" = kairos_app ] || { echo "smoke: expected only kairos_app"; exit 1; }
echo "smoke: ok"
