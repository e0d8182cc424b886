#!/usr/bin/env bash
# Prints the development master key, creating .data/master.key (32 random bytes, base64,
# readable by the owner only) on first use. Production sets KAIROS_MASTER_KEY instead.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILE="$ROOT/.data/master.key"
if [ ! -s "$FILE" ]; then
  mkdir -p "$ROOT/.data"
  (umask 077; head -c 32 /dev/urandom | base64 > "$FILE")
  echo "master-key: generated $FILE (keep it: without it, stored personal data cannot be read)" >&2
fi
cat "$FILE"
