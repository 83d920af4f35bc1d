#!/usr/bin/env node
// Builds the native addon with the locally installed napi CLI.
// crates.io is unreachable on the offline build machines; there the crates come
// from Debian's librust-*-dev packages under /usr/share/cargo/registry, so cargo
// (and napi's own `cargo metadata` step) must be told to use that directory.
// Elsewhere the same sources come from crates.io with a plain build.
//
// Without --target: a build for this machine with its own toolchain (npm run build).
// With --target T, on a Linux x64 host, T is built as it is released, with the
// toolchains scripts/setup-cross.sh puts under target/cross/ (see RELEASE_TARGETS);
// when they are missing it exits with status 3 and says what to run.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const napi = join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'napi.cmd' : 'napi')
const debianRegistry = '/usr/share/cargo/registry'
const cross = join(root, 'target', 'cross')

// linker: links against a glibc 2.17 sysroot (@napi-rs/cross-toolchain) where one
// exists, so the binary loads on older distributions. armv7 has none on npm: Debian's
// cross gcc links it against Debian 11's glibc 2.31 (libc), the oldest the Debian archive serves.
// std: Debian's std for the target, which only Debian's rustc (rustc-web, the same
// version) can use; rustup's toolchain has no std for these targets offline.
const RELEASE_TARGETS = {
  'x86_64-unknown-linux-gnu': {
    linker: join(cross, 'gcc-x86_64-unknown-linux-gnu', 'bin', 'x86_64-unknown-linux-gnu-gcc'),
  },
  'aarch64-unknown-linux-gnu': {
    linker: join(cross, 'gcc-aarch64-unknown-linux-gnu', 'bin', 'aarch64-unknown-linux-gnu-gcc'),
    std: join(cross, 'std-arm64', 'usr'),
  },
  'armv7-unknown-linux-gnueabihf': {
    linker: '/usr/bin/arm-linux-gnueabihf-gcc',
    std: join(cross, 'std-armhf', 'usr'),
    libc: { sysroot: join(cross, 'bullseye'), lib: join(cross, 'bullseye', 'usr', 'arm-linux-gnueabihf', 'lib') },
  },
}

const passed = process.argv.slice(2)
const targetAt = passed.findIndex((a) => a === '--target' || a === '-t')
const target = targetAt >= 0 ? passed[targetAt + 1] : passed.find((a) => a.startsWith('--target='))?.slice(9)
const release = process.platform === 'linux' && process.arch === 'x64' ? RELEASE_TARGETS[target] : undefined

const env = { ...process.env }
const cargoArgs = []
if (existsSync(debianRegistry)) {
  cargoArgs.push('--offline', '--config', 'source.crates-io.replace-with="debian"', '--config', `source.debian.directory="${debianRegistry}"`)
}
if (release) {
  const needed = [release.linker, ...(release.std ? [release.std, '/usr/bin/rustc', '/usr/bin/cargo'] : []), ...(release.libc ? [release.libc.lib] : [])]
  const missing = needed.filter((path) => !existsSync(path))
  if (missing.length) {
    console.error(`build.mjs: no toolchain for ${target} (missing ${missing.join(', ')}): run bash scripts/setup-cross.sh`)
    process.exit(3)
  }
  const key = target.replace(/-/g, '_').toUpperCase()
  env[`CARGO_TARGET_${key}_LINKER`] = release.linker
  // Apart from the host build's, so neither rebuilds the other's artifacts.
  env.CARGO_TARGET_DIR = join(cross, 'cargo')
  if (release.std) {
    // napi spawns $CARGO; cargo calls $RUSTC. The sysroot goes in the target's
    // rustflags so that build.rs is still compiled for the host with rustc's own std.
    env.CARGO = '/usr/bin/cargo'
    env.RUSTC = '/usr/bin/rustc'
    const rustflags = ['--sysroot', release.std]
    // The libc.so linker scripts there name absolute paths, which ld looks up under --sysroot;
    // -L puts those libraries ahead of the cross gcc's own.
    if (release.libc) rustflags.push('-C', `link-arg=--sysroot=${release.libc.sysroot}`, '-C', `link-arg=-L${release.libc.lib}`)
    cargoArgs.push('--config', `target.${target}.rustflags=${JSON.stringify(rustflags)}`)
  }
}

const args = ['build', '--platform', '--release', ...passed]
if (cargoArgs.length) args.push('--', ...cargoArgs)
const child = spawnSync(napi, args, { cwd: root, env, stdio: 'inherit' })
if (child.error) {
  console.error(`build.mjs: could not run ${napi}: ${child.error.message}`)
  process.exit(1)
}
process.exit(child.status ?? 1)
