#!/usr/bin/env bash
# Measures the three candidate layouts of the bookable windows read model, to choose one
# (see migrations/*_bookable_windows.sql): a row per slot, a row per user-day with an array
# of starts, and a row per meeting type with arithmetic runs. For USERS default users
# (Mon–Fri 09:00–17:00, 30-minute slots, 62 days) it prints each layout's rows, size, the
# time to write all of them, and pgbench's latency and rate for "one user's 5-day range".
#
#   scripts/layout-bench.sh            # 2,000 users
#   USERS=10000 scripts/layout-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-2000}
SECONDS_PER_READ_TEST=${SECONDS_PER_READ_TEST:-5}
DB=kairos_layout_bench
scripts/db.sh ensure "$DB" >/dev/null
PGBIN=$(scripts/db.sh bindir)
PORT=${KAIROS_PG_PORT:-54329}
psql() { scripts/db.sh psql "$DB" "$@"; }

psql -c "SET client_min_messages = warning; DROP TABLE IF EXISTS slot_rows, day_rows, run_rows, users" >/dev/null
psql -c "CREATE TABLE users AS SELECT gen_random_uuid() AS id FROM generate_series(1, $USERS)" >/dev/null

timed() { # label, sql
  local start end
  start=$(date +%s.%N)
  psql -c "$2" >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

# Weekdays of the next 62 days, 16 half-hour starts each from 08:00Z.
DAYS="SELECT d::date AS day FROM generate_series(current_date, current_date + 61, interval '1 day') d WHERE extract(isodow FROM d) < 6"

psql -c "CREATE TABLE slot_rows (meeting_type_id uuid, start timestamptz, PRIMARY KEY (meeting_type_id, start))" >/dev/null
t_slot=$(timed slot "INSERT INTO slot_rows SELECT u.id, day + time '08:00' + k * interval '30 minutes' FROM users u, ($DAYS) days, generate_series(0, 15) k")

psql -c "CREATE TABLE day_rows (meeting_type_id uuid, day date, starts timestamptz[], PRIMARY KEY (meeting_type_id, day))" >/dev/null
t_day=$(timed day "INSERT INTO day_rows SELECT u.id, day, ARRAY(SELECT day + time '08:00' + k * interval '30 minutes' FROM generate_series(0, 15) k) FROM users u, ($DAYS) days")

psql -c "CREATE TABLE run_rows (meeting_type_id uuid PRIMARY KEY, run_starts timestamptz[], run_steps integer[], run_counts integer[])" >/dev/null
t_run=$(timed run "INSERT INTO run_rows SELECT u.id, ARRAY(SELECT day + time '08:00' FROM ($DAYS) days ORDER BY day), array_fill(1800, ARRAY[44]), array_fill(16, ARRAY[44]) FROM users u")

psql -c "VACUUM ANALYZE slot_rows, day_rows, run_rows, users" >/dev/null

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
psql -tA -c "SELECT id FROM users" >"$WORK/ids"
# pgbench picks a random user id by its row number.
cat >"$WORK/slot.sql" <<'SQL'
\set n random(1, :users)
SELECT start FROM slot_rows WHERE meeting_type_id = (SELECT id FROM users OFFSET :n - 1 LIMIT 1) AND start >= current_date + 7 AND start < current_date + 12 ORDER BY start;
SQL
cat >"$WORK/day.sql" <<'SQL'
\set n random(1, :users)
SELECT starts FROM day_rows WHERE meeting_type_id = (SELECT id FROM users OFFSET :n - 1 LIMIT 1) AND day >= current_date + 7 AND day < current_date + 12 ORDER BY day;
SQL
cat >"$WORK/run.sql" <<'SQL'
\set n random(1, :users)
SELECT run_starts, run_steps, run_counts FROM run_rows WHERE meeting_type_id = (SELECT id FROM users OFFSET :n - 1 LIMIT 1);
SQL
cat >"$WORK/base.sql" <<'SQL'
\set n random(1, :users)
SELECT id FROM users OFFSET :n - 1 LIMIT 1;
SQL

read_rate() { # script → "latency_ms tps"
  local out
  out=$("$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U kairos -n -M prepared -c 4 -j 2 -T "$SECONDS_PER_READ_TEST" -D users="$USERS" -f "$1" "$DB" 2>/dev/null)
  printf '%s %s' "$(grep -o 'latency average = [0-9.]*' <<<"$out" | grep -o '[0-9.]*$')" "$(grep -o 'tps = [0-9.]*' <<<"$out" | grep -o '[0-9.]*$')"
}
read -r base_latency base_tps <<<"$(read_rate "$WORK/base.sql")"

size() { psql -tA -c "SELECT pg_size_pretty(pg_total_relation_size('$1')), (SELECT count(*) FROM $1)"; }
printf '\n%d users, 62 days, default schedule; read = one user'"'"'s 5-day range, 4 clients, %ss each\n' "$USERS" "$SECONDS_PER_READ_TEST"
printf '(the user-id lookup every read shares alone: %s ms, %s tps)\n\n' "$base_latency" "$base_tps"
printf '%-28s %10s %12s %10s %12s %10s\n' layout rows size write_s read_ms read_tps
for layout in slot day run; do
  IFS='|' read -r sz rows <<<"$(size ${layout}_rows)"
  read -r latency tps <<<"$(read_rate "$WORK/$layout.sql")"
  case $layout in slot) name="row per slot"; t=$t_slot;; day) name="row per user-day, array"; t=$t_day;; run) name="row per meeting type, runs"; t=$t_run;; esac
  printf '%-28s %10s %12s %10.2f %12s %10s\n' "$name" "$rows" "$sz" "$t" "$latency" "$tps"
done
psql -c "DROP TABLE slot_rows, day_rows, run_rows, users" >/dev/null
