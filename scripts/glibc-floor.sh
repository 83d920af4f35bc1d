#!/usr/bin/env bash
# Prints the newest glibc symbol version each built Linux binary needs (from its
# dynamic symbols, objdump -T): the oldest glibc it loads on. Fails when one needs
# more than the floor stated for its target below (the README's Platforms table
# quotes these). Release builds (node scripts/build.mjs --target T) meet them; a
# plain `npm run build` links against this machine's glibc and does not.
# Usage: bash scripts/glibc-floor.sh [binary...] (default: every gaio.linux-*.node)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declare -A FLOOR=([linux-x64-gnu]=2.17 [linux-arm64-gnu]=2.17 [linux-arm-gnueabihf]=2.30)

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(gaio.linux-*.node)
status=0
for file in "${files[@]}"; do
  if [ ! -e "$file" ]; then
    echo "glibc-floor: no $file: build it with node scripts/build.mjs --target <triple>" >&2
    status=1
    continue
  fi
  target=$(basename "$file" .node)
  target=${target#gaio.}
  symbols=$(objdump -T "$file" | sed -n 's/.*(GLIBC_\([0-9.]*\)) *\([^ ]*\)$/\1 \2/p')
  newest=$(cut -d' ' -f1 <<<"$symbols" | sort -uV | tail -1)
  # The symbols that set it, when few (on arm64, 2.17 is the first version there is).
  names=$(awk -v v="$newest" '$1==v{print $2}' <<<"$symbols" | sort -u)
  [ "$(wc -l <<<"$names")" -le 4 ] || names="$(wc -l <<<"$names") symbols"
  floor=${FLOOR[$target]:-}
  if [ -z "$floor" ]; then
    verdict="FAIL: no floor stated for $target"
    status=1
  elif [ "$(printf '%s\n' "$newest" "$floor" | sort -V | tail -1)" = "$floor" ]; then
    verdict="ok, floor $floor"
  else
    verdict="FAIL: above the floor $floor"
    status=1
  fi
  printf '%-30s needs GLIBC_%-5s (%s)  %s\n' "$(basename "$file")" "$newest" "$(xargs echo <<<"$names")" "$verdict"
done
exit $status
