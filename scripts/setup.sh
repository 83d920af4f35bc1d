#!/usr/bin/env bash
# Installs what building needs, once: on Debian without crates.io, the Rust
# crates come from apt (librust-*-dev), and the benchmark's HTTP client is wrk;
# then the npm dependencies. Safe to run again: it skips what is present.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(librust-mio-dev librust-libc-dev librust-proptest+std-dev wrk iproute2)
missing=()
if command -v dpkg >/dev/null && command -v apt-get >/dev/null; then
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
