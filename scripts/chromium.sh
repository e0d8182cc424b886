#!/usr/bin/env bash
# Prints the path of a Chromium that can run headless, installing Debian's
# `chromium-headless-shell` with apt when none is found (`make test` runs the /docs page in
# it). KAIROS_CHROMIUM, when set, is used as is.
set -euo pipefail

say() { echo "chromium.sh: $*" >&2; }
die() { say "$*"; exit 1; }

find_chromium() {
  local name
  for name in chromium-headless-shell chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

if [ -n "${KAIROS_CHROMIUM:-}" ]; then echo "$KAIROS_CHROMIUM"; exit 0; fi
if find_chromium; then exit 0; fi

command -v apt-get >/dev/null 2>&1 || die "no Chromium found and apt-get is unavailable.
  Install Chromium (or chromium-headless-shell) and put it on PATH, or set KAIROS_CHROMIUM."
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "Chromium is missing; run 'sudo apt-get install chromium-headless-shell' (needs root)."
  sudo="sudo"
fi
say "no Chromium found; installing Debian's chromium-headless-shell"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >&2 \
  || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 \
  || die "could not install Chromium with apt; install it by hand or set KAIROS_CHROMIUM."
find_chromium || die "Chromium was installed but is not on PATH."
