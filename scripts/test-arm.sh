#!/usr/bin/env bash
# Runs the tests on Linux ARM under user-mode QEMU, with the official Node builds
# and the binaries `node scripts/build.mjs --target <triple>` leaves in the root:
#   arm64: the whole ava suite; armv7: gaio's test port (gaio.spec, gaio-inline.spec).
# Needs root once per boot: ava starts its workers from process.execPath, an ARM
# executable, so the kernel must hand ARM executables to QEMU (binfmt_misc).
# Usage: bash scripts/test-arm.sh [arm64|armv7]... (default both)
# GAIO_TEST_TIME_SCALE (default 8) stretches the tests' time limits for emulation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export GAIO_TEST_TIME_SCALE=${GAIO_TEST_TIME_SCALE:-8}
cache=target/cross
declare -A NODE=([arm64]=node-arm64 [armv7]=node-armv7l)
declare -A BINARY=([arm64]=gaio.linux-arm64-gnu.node [armv7]=gaio.linux-arm-gnueabihf.node)
declare -A TRIPLE=([arm64]=aarch64-unknown-linux-gnu [armv7]=armv7-unknown-linux-gnueabihf)
declare -A ESBUILD=([arm64]=linux-arm64 [armv7]=linux-arm)
# The C runtime the emulated programs load: Debian 11's (glibc 2.31), older than this
# machine's, so the binaries are seen to load below it (armv7's floor is 2.30).
declare -A LIBS=([arm64]=$PWD/$cache/bullseye/usr/aarch64-linux-gnu [armv7]=$PWD/$cache/bullseye/usr/arm-linux-gnueabihf)
declare -A QEMU=([arm64]=aarch64 [armv7]=arm)
# ELF headers of each architecture's executables, as qemu's qemu-binfmt-conf.sh has them.
declare -A MAGIC=(
  [arm64]='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
  [armv7]='\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00')
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
# No files: ava's own list in package.json, the whole suite.
declare -A FILES=([arm64]='' [armv7]='__test__/gaio.spec.ts __test__/gaio-inline.spec.ts')

arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armv7)
for arch in "${arches[@]}"; do
  [ -n "${NODE[$arch]:-}" ] || { echo "test-arm: unknown architecture $arch (arm64 or armv7)" >&2; exit 2; }
  for need in "$cache/${NODE[$arch]}/bin/node" "${LIBS[$arch]}/lib" "node_modules/@esbuild/${ESBUILD[$arch]}/package.json" "/usr/bin/qemu-${QEMU[$arch]}"; do
    [ -e "$need" ] || { echo "test-arm: $need is missing: run bash scripts/setup-cross.sh" >&2; exit 3; }
  done
  [ -e "${BINARY[$arch]}" ] || { echo "test-arm: ${BINARY[$arch]} is missing: run node scripts/build.mjs --target ${TRIPLE[$arch]}" >&2; exit 3; }
done

binfmt=/proc/sys/fs/binfmt_misc
[ -e $binfmt/register ] || mount -t binfmt_misc binfmt_misc $binfmt
for arch in "${arches[@]}"; do
  name=qemu-${QEMU[$arch]}
  # An entry someone else made (qemu-user-binfmt) does as well: QEMU_LD_PREFIX below reaches it too.
  if ! grep -qx enabled "$binfmt/$name" 2>/dev/null; then
    [ -e "$binfmt/$name" ] && echo -1 >"$binfmt/$name"
    # F: the kernel opens qemu now, so it is found from any mount namespace.
    printf ':%s:M::%s:%s:/usr/bin/%s:F' "$name" "${MAGIC[$arch]}" "$mask" "$name" >$binfmt/register
  fi
done

summary=()
status=0
for arch in "${arches[@]}"; do
  export QEMU_LD_PREFIX=${LIBS[$arch]}
  node=$cache/${NODE[$arch]}/bin/node
  printf '\n==== %s: ava (%s) under qemu-%s, Node %s, glibc %s, GAIO_TEST_TIME_SCALE=%s ====\n' "$arch" "${FILES[$arch]:-the whole suite}" \
    "${QEMU[$arch]}" "$("$node" --version)" "$("$node" -p 'process.report.getReport().header.glibcVersionRuntime')" "$GAIO_TEST_TIME_SCALE"
  started=$SECONDS
  log=$cache/test-$arch.log
  : >"$log"
  result=passed
  # Under emulation some tests run apart from the rest, each group in processes
  # of its own: those that wait for the collector to finalize forgotten objects
  # (in the same process as the 16 MiB transfers before them, the inline ones were
  # not finalized in time: an open question; natively they pass in place), and
  # the examples, child processes whose own timeouts the rest of the suite starves.
  # shellcheck disable=SC2206 # FILES holds several file names, or none
  files=(${FILES[$arch]:-$(ls __test__/*.spec.ts | grep -v '/examples\.spec\.ts$')})
  passes=("!forgotten*" "forgotten*")
  [ -n "${FILES[$arch]}" ] || passes+=(examples)
  for pass in "${passes[@]}"; do
    if [ "$pass" = examples ]; then args=(__test__/examples.spec.ts); else args=(--match "$pass" "${files[@]}"); fi
    "$node" node_modules/ava/entrypoints/cli.mjs --timeout "$((2 * GAIO_TEST_TIME_SCALE))m" "${args[@]}" 2>&1 | tee -a "$log" \
      || { result=FAILED; status=1; }
  done
  tally=$(grep -E '^\s*[0-9]+ (tests? (passed|failed)|known failure|tests? skipped|tests? todo|uncaught|unhandled)' "$log" | xargs echo)
  summary+=("$arch: $result in $((SECONDS - started)) s: ${tally:-no ava summary}")
  # CI keeps only the end of its output: name what failed here, where it is seen.
  while IFS= read -r failure; do summary+=("  $failure"); done < <(grep -E '^\s*✘' "$log" | head -20)
done
printf '\n==== test-arm summary ====\n'
printf '%s\n' "${summary[@]}"
exit $status
