#!/usr/bin/env bash
# A project-local PostgreSQL for `make run`, `make test` and `make bench`.
#
#   scripts/db.sh ensure DBNAME   find (or apt-install) PostgreSQL 15+, init the cluster under
#                                 .data/pg on first use, start it, create DBNAME; prints its URL
#   scripts/db.sh url DBNAME ROLE the URL of DBNAME logging in as ROLE (trust: no password);
#                                 `kairos migrate` creates a missing service login
#   scripts/db.sh stop            stop the cluster
#   scripts/db.sh psql DBNAME ... psql against the cluster as the owner
#   scripts/db.sh bindir          the directory of the PostgreSQL binaries in use (pgbench…)
#
# The cluster listens on 127.0.0.1:${KAIROS_PG_PORT:-54329} only, with trust authentication:
# it is a throwaway development and test database, never a production one. initdb and postgres
# refuse to run as root, so under root they run as the unprivileged `postgres` user (created
# by Debian's postgresql package; created here if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA_DIR="$ROOT/.data"
CLUSTER="$DATA_DIR/pg"
LOG="$DATA_DIR/pg.log"
PORT="${KAIROS_PG_PORT:-54329}"
OWNER=kairos
MIN_VERSION=15

say() { echo "db: $*" >&2; }
die() { echo "db: error: $*" >&2; exit 1; }

# Prints the directory of PostgreSQL server binaries of version >= 15, or nothing.
find_bindir() {
  local candidates=()
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    candidates+=("$(dirname "$(readlink -f "$(command -v pg_ctl)")")")
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    candidates+=("$d")
  done
  for d in "${candidates[@]}"; do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/postgres" ] || continue
    local major
    major=$("$d/pg_ctl" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
    if [ "$major" -ge "$MIN_VERSION" ]; then echo "$d"; return 0; fi
  done
  return 0
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL ${MIN_VERSION}+ found and apt-get is unavailable.
  Install PostgreSQL ${MIN_VERSION} or newer (server binaries: initdb, pg_ctl, postgres) and put them
  on PATH, or point DATABASE_URL at an existing database and run again."
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "PostgreSQL is missing; run 'sudo apt-get install postgresql' (needs root)."
    sudo="sudo"
  fi
  say "PostgreSQL ${MIN_VERSION}+ not found; installing Debian's postgresql package"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  # Debian's package starts a system cluster on 5432; ours is separate and does not need it.
}

# Runs a server binary as the unprivileged cluster user when we are root.
as_cluster_user() {
  if [ "$(id -u)" -eq 0 ]; then
    # From /, so the unprivileged user never needs access to the caller's directory.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

prepare_root_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id postgres >/dev/null 2>&1; then
    say "creating the unprivileged system user 'postgres' to run the cluster"
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  # The cluster user must reach .data through every parent directory. Where a parent is
  # closed (a checkout under /root, say), keep the cluster in /var/tmp and link it here.
  if ! runuser -u postgres -- test -x "$DATA_DIR"; then
    local elsewhere
    elsewhere="/var/tmp/kairos-pg-$(echo "$ROOT" | sha256sum | cut -c1-12)"
    say "$DATA_DIR is not reachable by user postgres; keeping the cluster in $elsewhere"
    mkdir -p "$elsewhere"
    chown postgres "$elsewhere"
    [ -L "$CLUSTER" ] || ln -sfn "$elsewhere" "$CLUSTER"
    LOG="$elsewhere.log"
    touch "$LOG"; chown postgres "$LOG"
  fi
  # Server binaries get the real path: they may not be able to follow .data/pg.
  if [ -L "$CLUSTER" ]; then
    CLUSTER=$(readlink -f "$CLUSTER")
    LOG="$CLUSTER.log"
  fi
}

ensure_cluster() {
  BINDIR=$(find_bindir)
  if [ -z "$BINDIR" ]; then
    install_postgres
    BINDIR=$(find_bindir)
    [ -n "$BINDIR" ] || die "PostgreSQL was installed but no server binaries of version ${MIN_VERSION}+ were found"
  fi
  mkdir -p "$DATA_DIR"
  chmod 755 "$DATA_DIR"
  prepare_root_user
  if [ ! -f "$CLUSTER/PG_VERSION" ]; then
    say "initialising a cluster in $CLUSTER with $BINDIR"
    mkdir -p "$CLUSTER"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$CLUSTER"; fi
    chmod 700 "$CLUSTER"
    as_cluster_user "$BINDIR/initdb" -D "$CLUSTER" -U "$OWNER" --auth=trust \
      --encoding=UTF8 --locale=C >/dev/null
    cat >>"$CLUSTER/postgresql.conf" <<EOF
# Kairos development cluster (scripts/db.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
EOF
  fi
  if ! as_cluster_user "$BINDIR/pg_ctl" -D "$CLUSTER" status >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then touch "$LOG"; chown postgres "$LOG"; fi
    as_cluster_user "$BINDIR/pg_ctl" -D "$CLUSTER" -l "$LOG" -w -t 60 -o "-p $PORT" start >/dev/null \
      || { tail -n 20 "$LOG" >&2; die "the cluster did not start (log: $LOG)"; }
  fi
}

psql_owner() {
  local db=$1; shift
  PGCONNECT_TIMEOUT=10 "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$OWNER" -d "$db" "$@"
}

ensure_database() {
  local db=$1
  local exists
  exists=$(psql_owner postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  [ "$exists" = "1" ] || psql_owner postgres -c "CREATE DATABASE \"$db\""
}

cmd=${1:-}
case "$cmd" in
  ensure)
    db=${2:?usage: db.sh ensure DBNAME}
    ensure_cluster
    ensure_database "$db"
    echo "postgres://$OWNER@127.0.0.1:$PORT/$db"
    ;;
  url)
    db=${2:?usage: db.sh url DBNAME ROLE}
    role=${3:?usage: db.sh url DBNAME ROLE}
    echo "postgres://$role@127.0.0.1:$PORT/$db"
    ;;
  stop)
    BINDIR=$(find_bindir)
    [ -n "$BINDIR" ] && [ -f "$CLUSTER/PG_VERSION" ] || exit 0
    CLUSTER=$(readlink -f "$CLUSTER")
    as_cluster_user "$BINDIR/pg_ctl" -D "$CLUSTER" -m fast stop >/dev/null || true
    ;;
  bindir)
    ensure_cluster
    echo "$BINDIR"
    ;;
  psql)
    db=${2:?usage: db.sh psql DBNAME}; shift 2
    ensure_cluster
    psql_owner "$db" "$@"
    ;;
  *)
    echo "usage: scripts/db.sh ensure DBNAME | url DBNAME ROLE | stop | bindir | psql DBNAME [ARGS]" >&2
    exit 2
    ;;
esac
