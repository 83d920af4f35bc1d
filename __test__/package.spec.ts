// What the packages would ship, checked without building or publishing them:
// the root's file list as npm computes it, and each platform package's manifest
// against the napi target it is for. scripts/test-package.mjs checks the real tarballs.
import test from 'ava'
import { parseTriple } from '@napi-rs/cli'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const root = join(__dirname, '..')
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'))
const manifest = readJson(join(root, 'package.json'))

test('the root package ships exactly the facade, the loader, their types, README, LICENSE and CHANGELOG', (t) => {
  const [info] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' }))
  const files = (info.files as { path: string }[]).map((f) => f.path).sort()
  t.deepEqual(files, ['CHANGELOG.md', 'LICENSE', 'README.md', 'index.d.ts', 'index.js', 'lib/args.d.ts', 'lib/args.js', 'lib/conn.d.ts', 'lib/conn.js', 'lib/delegate.d.ts', 'lib/delegate.js', 'lib/errors.d.ts', 'lib/errors.js', 'lib/forgotten.d.ts', 'lib/forgotten.js', 'lib/loader.d.ts', 'lib/loader.js', 'lib/native.d.ts', 'lib/native.js', 'lib/options.d.ts', 'lib/options.js', 'lib/requests.d.ts', 'lib/requests.js', 'lib/types.d.ts', 'lib/types.js', 'lib/waiter.d.ts', 'lib/waiter.js', 'lib/watcher.d.ts', 'lib/watcher.js', 'package.json'])
  t.is(manifest.license, 'MIT')
  t.regex(readFileSync(join(root, 'LICENSE'), 'utf8'), /^MIT License/)
  t.true(readFileSync(join(root, 'CHANGELOG.md'), 'utf8').includes(`## ${manifest.version}`), 'a CHANGELOG entry for this version')
})

test('optionalDependencies are not committed: napi pre-publish writes them at pack time', (t) => {
  t.is(manifest.optionalDependencies, undefined)
})

test('one platform package per napi target, with its os, cpu, libc, binary and version', (t) => {
  const targets = (manifest.napi.targets as string[]).map(parseTriple)
  t.deepEqual(readdirSync(join(root, 'npm')).sort(), targets.map((target) => target.platformArchABI).sort())
  for (const target of targets) {
    const pkg = readJson(join(root, 'npm', target.platformArchABI, 'package.json'))
    const binary = `${manifest.napi.binaryName}.${target.platformArchABI}.node`
    t.is(pkg.name, `gaio-${target.platformArchABI}`)
    t.is(pkg.version, manifest.version)
    t.is(pkg.main, binary)
    t.deepEqual(pkg.files, [binary])
    t.deepEqual(pkg.os, [target.platform])
    t.deepEqual(pkg.cpu, [target.arch])
    t.deepEqual(pkg.libc, target.platform === 'linux' ? ['glibc'] : undefined, `${target.triple} libc`)
    t.deepEqual(pkg.engines, manifest.engines)
    t.is(pkg.license, manifest.license)
  }
})
