#!/usr/bin/env bash
# `make bench`: Kairos against the machine's own ceilings, every figure beside a baseline
# measured in the same run (the machines are shared and noisy, so ratios are the targets).
#
#   BENCH_USERS=10000 (default)  users created through the public API
#   BENCH_SECONDS=15             length of each windows load (after a 2 s warm-up)
#   BENCH_WINDOWS_CACHE_MB=64    windows cache budget of the last figure's server (small, so
#                                that the heaviest schedules overflow it at every scale)
#
# Writes target/bench/run/*.json (each measurement) and target/bench/summary.json, and
# prints the table. Everything it starts is stopped on exit; every load stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${BENCH_USERS:-10000}
SECONDS_PER_LOAD=${BENCH_SECONDS:-15}
PORT=${BENCH_PORT:-18181}
STATIC_PORT=$((PORT + 1))
SQL_PORT=$((PORT + 2))
OUT=target/bench
RUN=$OUT/run
FIRST=1000
CACHE_MB=${BENCH_WINDOWS_CACHE_MB:-64}
[ "$USERS" -ge "$FIRST" ] || { echo "BENCH_USERS must be at least $FIRST" >&2; exit 2; }

say() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say "building (release)"
cargo build --release -q -p kairos -p bench
KAIROS=target/release/kairos
BENCH=target/release/kairos-bench
rm -rf "$RUN" && mkdir -p "$RUN"

say "fresh databases"
scripts/db.sh ensure kairos >/dev/null # the cluster
for db in kairos_bench kairos_bench_raw; do
  scripts/db.sh psql postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
URL=$(scripts/db.sh ensure kairos_bench)
RAW_URL=$(scripts/db.sh ensure kairos_bench_raw)
export KAIROS_MASTER_KEY
KAIROS_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
DATABASE_URL=$URL $KAIROS migrate >/dev/null
DATABASE_URL=$RAW_URL $KAIROS migrate >/dev/null
psql_bench() { scripts/db.sh psql kairos_bench -tA "$@"; }

COMPANY=$(DATABASE_URL=$URL RUST_LOG=warn $KAIROS company create --name Bench --owner-email owner@bench.example.com \
  --owner-given-name Bench --owner-family-name Owner --timezone Europe/Berlin --key-days 30 --json)
KEY=$(sed -E 's/.*"apiKey":"([^"]+)".*/\1/' <<<"$COMPANY")
AUTH="Authorization: Bearer $KEY"

say "starting Kairos on 127.0.0.1:$PORT"
DATABASE_URL=$URL KAIROS_BIND=127.0.0.1:$PORT KAIROS_RATE_LIMIT_PER_MINUTE=0 KAIROS_DB_POOL_SIZE=32 \
  RUST_LOG=warn $KAIROS serve --no-migrate >"$RUN/server.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null || { cat "$RUN/server.log"; exit 1; }

create_users() { # count, first index, output file, body template
  $BENCH load --url "http://127.0.0.1:$PORT/v4/user" --method POST --header "$AUTH" \
    --body "$4" --counter-start "$2" --connections 32 --warmup 0 --duration 3600 \
    --max-requests "$1" --expect-status 201 --json >"$3"
}
DEFAULT_USER='{"email":"user{n}@bench.example.com","givenName":"Bench","familyName":"User {n}","timezone":"Europe/Berlin"}'
CUSTOM_USER='{"email":"custom{n}@bench.example.com","givenName":"Custom","familyName":"User {n}","timezone":"America/New_York","availability":{"timezone":"America/New_York","schedule":[{"dayOfWeek":"monday","intervals":[{"from":"08:00","to":"12:00"},{"from":"13:00","to":"18:00"}]},{"dayOfWeek":"wednesday","intervals":[{"from":"10:00","to":"16:00"}]},{"dayOfWeek":"friday","intervals":[{"from":"09:00","to":"13:00"}]},{"dayOfWeek":"saturday","intervals":[{"from":"22:00","to":"24:00"}]},{"dayOfWeek":"sunday","intervals":[{"from":"00:00","to":"02:00"}]}]},"meetingType":{"name":"Discovery Call","duration":45,"slotInterval":15,"bufferAfter":10,"horizonDays":90}}'

# The heaviest schedule the API takes: twelve intervals every day, 5-minute slots, a year's
# horizon (about 70 KiB of windows per meeting type, seventy times a default user).
HEAVY_INTERVALS=$(for h in 00 02 04 06 08 10 12 14 16 18 20 22; do printf '{"from":"%s:00","to":"%s:50"},' "$h" "$h"; done)
HEAVY_DAYS=$(for d in monday tuesday wednesday thursday friday saturday sunday; do printf '{"dayOfWeek":"%s","intervals":[%s]},' "$d" "${HEAVY_INTERVALS%,}"; done)
HEAVY_USER='{"email":"heavy{n}@bench.example.com","givenName":"Heavy","familyName":"User {n}","timezone":"Europe/Berlin","availability":{"name":"Always","schedule":['"${HEAVY_DAYS%,}"']},"meetingType":{"name":"Quick","duration":10,"slotInterval":5,"horizonDays":365}}'

# Steady state before measuring: the projectors have caught up and autovacuum's work on the
# freshly loaded tables is done, so it does not share the two cores with the measurement.
settle() {
  wait_for_projectors
  psql_bench -c "VACUUM ANALYZE" >/dev/null
}

wait_for_projectors() {
  for _ in $(seq 1 1200); do
    local lag
    lag=$(DATABASE_URL=$URL RUST_LOG=warn $KAIROS projections status --json | grep -o '"lag": *[0-9]*' | grep -o '[0-9]*$' | awk '{ s += $1 } END { print s + 0 }')
    [ "$lag" = 0 ] && return 0
    sleep 0.5
  done
  echo "projectors did not catch up" >&2; return 1
}

urls_for() { # kind (kairos|sql), file
  local base
  if [ "$1" = kairos ]; then
    base="'http://127.0.0.1:$PORT/v4/user/' || user_id || '/bookable-windows?startDate=' || d || '&endDate=' || (d + 4)"
  else
    base="'http://127.0.0.1:$SQL_PORT/q/' || user_id || '/' || d"
  fi
  psql_bench -c "SELECT $base FROM (SELECT user_id, current_date + 1 + (random() * 50)::int AS d FROM bookable_windows WHERE is_default) u" >"$2"
}

windows_load() { # urls file, output, [header]
  $BENCH load --urls-file "$1" --connections 64 --warmup 2 --duration "$SECONDS_PER_LOAD" ${3:+--header "$3"} --json >"$2"
}

say "creating the first $FIRST users through POST /v4/user (32 clients)"
create_users $((FIRST * 9 / 10)) 1 "$RUN/create_first.json" "$DEFAULT_USER"
create_users $((FIRST / 10)) 1 "$RUN/create_first_custom.json" "$CUSTOM_USER"
settle
urls_for kairos "$RUN/urls_1k.txt"
say "windows at $FIRST users (64 connections, ${SECONDS_PER_LOAD} s)"
windows_load "$RUN/urls_1k.txt" "$RUN/windows_kairos_1k.json" "$AUTH"

REST=$((USERS - FIRST))
if [ "$REST" -gt 0 ]; then
  say "creating $REST more users through POST /v4/user (32 clients): the user-creation figure"
  create_users $((REST * 9 / 10)) $((FIRST + 1)) "$RUN/create_kairos.json" "$DEFAULT_USER"
  create_users $((REST - REST * 9 / 10)) $((FIRST + 1)) "$RUN/create_custom.json" "$CUSTOM_USER"
else
  cp "$RUN/create_first.json" "$RUN/create_kairos.json"
fi
settle

say "windows at $USERS users: Kairos, framework ceiling, database floor"
urls_for kairos "$RUN/urls.txt"
urls_for sql "$RUN/urls_sql.txt"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^kairos_windows_cached_users' >"$RUN/cache_before_windows.txt" || true
windows_load "$RUN/urls.txt" "$RUN/windows_kairos.json" "$AUTH"
# The ceiling answers a body of the same size as a typical Kairos answer.
curl -sf -H "$AUTH" "$(sed -n 1p "$RUN/urls.txt")" >"$RUN/static_body.json"
$BENCH serve-static --bind 127.0.0.1:$STATIC_PORT --body-file "$RUN/static_body.json" >"$RUN/static.log" 2>&1 &
PIDS+=("$!")
sed "s#http://127.0.0.1:$PORT/#http://127.0.0.1:$STATIC_PORT/#" "$RUN/urls.txt" >"$RUN/urls_static.txt"
sleep 0.5
windows_load "$RUN/urls_static.txt" "$RUN/windows_static.json"
# The floor runs the read model's query for the same user and range: the default meeting
# type's runs that reach into the 5 days, expanded to starts, as text.
FLOOR_QUERY="SELECT to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM bookable_windows w \
CROSS JOIN LATERAL unnest(w.run_starts, w.run_steps, w.run_counts) AS r(st, step, n) \
CROSS JOIN LATERAL generate_series(0, r.n - 1) AS k CROSS JOIN LATERAL (SELECT r.st + k * r.step * interval '1 second') AS x(s) \
WHERE w.user_id = \$1::uuid AND w.is_default AND r.st < \$2::date + 5 AND r.st + (r.n - 1) * r.step * interval '1 second' >= \$2::date \
AND x.s >= \$2::date AND x.s < \$2::date + 5 ORDER BY 1"
$BENCH serve-sql --bind 127.0.0.1:$SQL_PORT --database-url "$URL" --pool-size 32 --query "$FLOOR_QUERY" >"$RUN/sql.log" 2>&1 &
PIDS+=("$!")
sleep 0.5
windows_load "$RUN/urls_sql.txt" "$RUN/windows_sql.json"

say "raw-transaction baseline for user creation (32 clients, 20 s)"
$BENCH raw-users --database-url "$RAW_URL" --clients 32 --users 10000000 --duration 20 --json >"$RUN/create_raw.json"

say "rebuild of every read model at $USERS users, beside a sequential read of the log"
DATABASE_URL=$URL RUST_LOG=warn $KAIROS projections rebuild --all --json >"$RUN/rebuild.json"
$BENCH copy-events --database-url "$URL" --json >"$RUN/copy.json"

say "memory"
PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
echo "{\"peakRssBytes\": $((PEAK_KB * 1024))}" >"$RUN/memory.json"
printf '{"users": %s, "machine": "%s", "cpus": %s, "date": "%s"}\n' "$USERS" "$(uname -srm)" "$(nproc)" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$RUN/meta.json"

say "memory with one user in ten on the heaviest schedule (windows cache budget $CACHE_MB MiB)"
# Added last, so no other figure sees them: as many heavy users as make them a tenth of all.
HEAVY=$((USERS / 9))
create_users "$HEAVY" 1 "$RUN/create_heavy.json" "$HEAVY_USER"
wait_for_projectors
kill -TERM "$SERVER"
wait "$SERVER" 2>/dev/null || true
# A fresh server: its peak covers the preload and a windows load over every user.
DATABASE_URL=$URL KAIROS_BIND=127.0.0.1:$PORT KAIROS_RATE_LIMIT_PER_MINUTE=0 KAIROS_DB_POOL_SIZE=32 \
  KAIROS_WINDOWS_CACHE_MB=$CACHE_MB RUST_LOG=warn,kairos::server=info $KAIROS serve --no-migrate >"$RUN/server_heavy.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 1 600); do
  grep -q "bookable windows" "$RUN/server_heavy.log" 2>/dev/null && break # preloaded (or gave up)
  sleep 0.2
done
urls_for kairos "$RUN/urls_heavy.txt"
windows_load "$RUN/urls_heavy.txt" "$RUN/windows_heavy.json" "$AUTH"
CACHED=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^kairos_windows_cached_bytes / {print $2}')
PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
printf '{"peakRssBytes": %s, "budgetBytes": %s, "users": %s, "heavyUsers": %s, "cachedBytes": %s}\n' \
  "$((PEAK_KB * 1024))" "$((CACHE_MB * 1024 * 1024))" "$((USERS + HEAVY))" "$HEAVY" "${CACHED:-0}" >"$RUN/memory_heavy.json"

say "summary"
$BENCH summarize --dir "$RUN" --users "$USERS" --out "$OUT/summary.json"
