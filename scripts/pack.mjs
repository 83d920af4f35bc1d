#!/usr/bin/env node
// npm run pack: builds every target of package.json's napi.targets that this machine
// can build and leaves in dist/ one tarball per platform package plus the root
// package's (gaio-<version>.tgz), made with napi's own release commands:
// `napi artifacts` copies the binaries into npm/<target>/, `napi pre-publish` writes
// the root's optionalDependencies with exact versions. Both rewrite files, so they run
// in a staging copy: the checkout is unchanged afterwards, and package.json never
// carries optionalDependencies (npm ci would fail on names not yet published).
//
// Targets for another OS are built by the release workflow on their own runners.
// `scripts/build.mjs --target T` exits with 3 when T's cross toolchain is not
// installed here: such a target is skipped and named; any other failure fails.
import { parseTriple } from '@napi-rs/cli'
import { spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const napi = join(root, 'node_modules', '.bin', 'napi')
const dist = join(root, 'dist')
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const NOT_BUILDABLE_HERE = 3

function run(command, args, cwd) {
  const child = spawnSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] })
  if (child.error) throw child.error
  return child.status ?? 128
}

function mustRun(command, args, cwd) {
  const status = run(command, args, cwd)
  if (status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${status}`)
}

function packInto(dir) {
  const child = spawnSync('npm', ['pack', '--json', '--pack-destination', dist, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  if (child.status !== 0) throw new Error(`npm pack ${dir} exited with ${child.status}`)
  const [info] = JSON.parse(child.stdout)
  return info
}

const built = []
const skipped = []
for (const triple of manifest.napi.targets) {
  const target = parseTriple(triple)
  if (target.platform !== process.platform) {
    skipped.push(`${triple}: builds on ${target.platform} only (.github/workflows/release.yml)`)
    continue
  }
  console.log(`\npack: building ${triple}`)
  const status = run(process.execPath, [join(root, 'scripts', 'build.mjs'), '--target', triple], root)
  if (status === NOT_BUILDABLE_HERE) skipped.push(`${triple}: its cross toolchain is not installed here`)
  else if (status !== 0) throw new Error(`building ${triple} failed (exit ${status})`)
  else built.push(target)
}
if (built.length === 0) throw new Error('no target could be built on this machine')

rmSync(dist, { recursive: true, force: true })
mkdirSync(dist)
const stage = mkdtempSync(join(tmpdir(), 'gaio-pack-'))
try {
  const artifacts = join(stage, 'artifacts')
  mkdirSync(artifacts)
  // A pattern's folder is copied whole: npm pack applies the pattern itself.
  for (const entry of new Set(manifest.files.map((file) => (file.includes('*') ? dirname(file) : file)))) {
    cpSync(join(root, entry), join(stage, entry), { recursive: true })
  }
  for (const { platformArchABI } of built) {
    const binary = `${manifest.napi.binaryName}.${platformArchABI}.node`
    copyFileSync(join(root, binary), join(artifacts, binary))
    cpSync(join(root, 'npm', platformArchABI), join(stage, 'npm', platformArchABI), { recursive: true })
    copyFileSync(join(root, 'LICENSE'), join(stage, 'npm', platformArchABI, 'LICENSE'))
  }
  // The root names exactly the platform packages packed beside it: an install of
  // dist/ never reaches for a package that does not exist.
  const staged = { ...manifest, napi: { ...manifest.napi, targets: built.map((t) => t.triple) } }
  writeFileSync(join(stage, 'package.json'), JSON.stringify(staged, null, 2) + '\n')

  mustRun(napi, ['artifacts', '--output-dir', 'artifacts', '--npm-dir', 'npm'], stage)
  mustRun(napi, ['pre-publish', '--npm-dir', 'npm', '--no-gh-release', '--skip-optional-publish'], stage)

  // pre-publish added optionalDependencies; the published napi config lists every target again.
  const published = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'))
  published.napi = manifest.napi
  writeFileSync(join(stage, 'package.json'), JSON.stringify(published, null, 2) + '\n')
  if (Object.keys(published.optionalDependencies ?? {}).length !== built.length) {
    throw new Error(`napi pre-publish wrote optionalDependencies ${JSON.stringify(published.optionalDependencies)}`)
  }

  const packed = [...built.map((t) => packInto(join(stage, 'npm', t.platformArchABI))), packInto(stage)]
  console.log('\npack: dist/')
  for (const info of packed) {
    if (!existsSync(join(dist, info.filename))) throw new Error(`npm pack did not write dist/${info.filename}`)
    console.log(`  ${info.filename}: ${info.files.map((f) => f.path).sort().join(', ')}`)
  }
  console.log(`  optionalDependencies: ${JSON.stringify(published.optionalDependencies)}`)
  for (const line of skipped) console.log(`  not built here: ${line}`)
} finally {
  rmSync(stage, { recursive: true, force: true })
}
