#!/usr/bin/env bash
# The engine's cargo tests under a memory checker.
#
# With a nightly toolchain (rustup): AddressSanitizer, which includes
# LeakSanitizer, over crates/engine (use after free, overflows, double frees,
# leaks at exit). Without one: valgrind memcheck over the same test binaries,
# built by the stable toolchain (installed from apt when missing, as
# scripts/setup.sh does). Works offline: on Debian the crates come from
# /usr/share/cargo/registry. SANITIZER=asan|valgrind picks one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo_args=(--offline)
if [ -d /usr/share/cargo/registry ]; then
  cargo_args+=(--config 'source.crates-io.replace-with="debian"' --config 'source.debian.directory="/usr/share/cargo/registry"')
fi
target=x86_64-unknown-linux-gnu

choice="${SANITIZER:-}"
if [ -z "$choice" ]; then
  if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && cargo +nightly --version >/dev/null 2>&1; then choice=asan; else choice=valgrind; fi
fi

case "$choice" in
  asan)
    echo "sanitize: cargo +nightly test -p gaio-engine with -Zsanitizer=address (LeakSanitizer included)"
    # A target dir of its own: instrumented artefacts never mix with the normal build.
    RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
      ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1" \
      CARGO_TARGET_DIR=target/asan \
      cargo +nightly test -p gaio-engine --target "$target" "${cargo_args[@]}" --lib --tests
    ;;
  valgrind)
    if ! command -v valgrind >/dev/null; then
      sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      echo "sanitize: installing valgrind"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends valgrind >/dev/null
    fi
    echo "sanitize: valgrind memcheck over the engine's test binaries"
    binaries=$(CARGO_TARGET_DIR=target/valgrind cargo test -p gaio-engine "${cargo_args[@]}" --lib --tests --no-run --message-format=json 2>/dev/null |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.profile&&m.profile.test&&m.executable)console.log(m.executable)}})')
    [ -n "$binaries" ] || { echo "sanitize: no test binaries were built" >&2; exit 1; }
    for bin in $binaries; do
      echo "sanitize: $bin"
      # Definite leaks and every memory error fail the run; the test harness's
      # own thread-locals show up only as "possibly lost".
      valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no "$bin" --test-threads=1
    done
    ;;
  *)
    echo "sanitize: SANITIZER must be asan or valgrind, not $choice" >&2
    exit 2
    ;;
esac
echo "sanitize: clean"
