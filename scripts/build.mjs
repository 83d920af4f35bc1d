#!/usr/bin/env node
// Builds the native addon with the locally installed napi CLI.
// crates.io is unreachable on the offline build machines; there the crates come
// from Debian's librust-*-dev packages under /usr/share/cargo/registry, so cargo
// (and napi's own `cargo metadata` step) must be told to use that directory.
// Elsewhere the same sources come from crates.io with a plain build.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const napi = join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'napi.cmd' : 'napi')
const debianRegistry = '/usr/share/cargo/registry'

const args = ['build', '--platform', '--release', ...process.argv.slice(2)]
if (existsSync(debianRegistry)) {
  args.push(
    '--',
    '--offline',
    '--config',
    'source.crates-io.replace-with="debian"',
    '--config',
    `source.debian.directory="${debianRegistry}"`,
  )
}

const child = spawnSync(napi, args, { cwd: root, stdio: 'inherit' })
if (child.error) {
  console.error(`build.mjs: could not run ${napi}: ${child.error.message}`)
  process.exit(1)
}
process.exit(child.status ?? 1)
