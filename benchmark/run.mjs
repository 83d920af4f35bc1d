// The main job (`npm run bench`): every workload of benchmarks.md, every
// system side by side in one run, alternating. See benchmark/README.md.
//
//   node benchmark/run.mjs [--full] [--only=id,id] [--systems=name,name]
//
// Quick by default (about two minutes on 2 cores); --full runs more rounds,
// longer windows and more sweep points. Prints one table per workload, writes
// benchmark/results/latest.json and latest.svg.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import os from 'node:os'
import { ROOT, buildCeiling, listenDrops, median, now, sleep } from './lib/common.mjs'
import { table, svg } from './lib/report.mjs'

const args = process.argv.slice(2)
for (const a of args) {
  if (!/^--(full|help|only=.+|systems=.+)$/.test(a)) {
    console.error(`bench: unknown argument ${a}`)
    process.exitCode = 2
  }
}
if (process.exitCode || args.includes('--help')) {
  console.log('usage: node benchmark/run.mjs [--full] [--only=workload,...] [--systems=system,...]  (see benchmark/README.md)')
  process.exit()
}
const option = (name) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1].split(',')
const full = args.includes('--full')

/** What quick and full use (benchmark/README.md explains each); runs are per system. */
const MODE = full
  ? {
      name: 'full',
      runs: { default: 7, sweep: 5, chat: 3, 'idle-mem': 3, http: 3, 'http-c1000': 3 },
      echoMs: 2000,
      sweepConns: [1024, 2048, 3072, 4096, 6144, 8192],
      chatMs: 10_000,
      chatWarmMs: 1000,
      httpSeconds: 5,
    }
  : {
      name: 'quick',
      runs: { default: 3, sweep: 2, chat: 1, 'idle-mem': 2, http: 2, 'http-c1000': 2 },
      echoMs: 500,
      sweepConns: [1024, 2048, 4096, 8192],
      chatMs: 3000,
      chatWarmMs: 500,
      httpSeconds: 1,
    }

const started = now()

// ---- build if needed ------------------------------------------------------------

if (!existsSync(join(ROOT, 'index.js')) || !readdirSync(ROOT).some((f) => /^gaio\..+\.node$/.test(f))) {
  console.log('bench: the addon is not built; running npm run build')
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
const ceilingProblem = buildCeiling()

// Imported after the build: they load the addon.
const { SYSTEM_NAMES, inlineSupport } = await import('./systems/index.mjs')
const workloadModules = await Promise.all(
  ['echo-64k', 'echo-128b', 'c8k', 'sweep', 'tiny', 'chat', 'idle-mem', 'http'].map((m) => import(`./workloads/${m}.mjs`)),
)
const WORKLOADS = workloadModules.flatMap((m) => Object.values(m).filter((w) => w?.id && w.run))

// ---- what can run here ------------------------------------------------------------

const unavailable = {}
const inline = inlineSupport()
if (!inline.ok) unavailable['gaio-inline'] = inline.why
if (ceilingProblem) unavailable['rust-engine'] = ceilingProblem
if (spawnSync('wrk', ['--version']).error) unavailable.wrk = 'wrk is not installed (npm run setup installs it)'

const onlyWorkloads = option('only')
const onlySystems = option('systems')
const unknown = [
  ...(onlyWorkloads ?? []).filter((id) => !WORKLOADS.some((w) => w.id === id)).map((id) => `no workload ${id}; there are ${WORKLOADS.map((w) => w.id).join(', ')}`),
  ...(onlySystems ?? []).filter((s) => !SYSTEM_NAMES.includes(s)).map((s) => `no system ${s}; there are ${SYSTEM_NAMES.join(', ')}`),
]
if (unknown.length) {
  for (const line of unknown) console.error(`bench: ${line}`)
  process.exit(2)
}

console.log(`bench (${MODE.name}): ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}; client and server share these CPUs.`)
for (const [what, why] of Object.entries(unavailable)) console.log(`bench: skipping ${what}: ${why}`)

// ---- run ----------------------------------------------------------------------------

const rows = []
const failures = []
const sweepPoints = {}

for (const workload of WORKLOADS) {
  if (onlyWorkloads && !onlyWorkloads.includes(workload.id)) continue
  const missing = (workload.needs ?? []).filter((n) => unavailable[n])
  if (missing.length) {
    console.log(`\n${workload.id}: skipped (needs ${missing.join(', ')})`)
    continue
  }
  const systems = workload.systems.filter((s) => !unavailable[s] && (!onlySystems || onlySystems.includes(s)))
  const rounds = MODE.runs[workload.id] ?? MODE.runs.default
  const values = Object.fromEntries(systems.map((s) => [s, []]))
  const errors = {}
  const drops = {}
  const t0 = now()
  for (let round = 0; round < rounds; round++) {
    // Alternate, and rotate who goes first, so drift in the machine's state spreads over every system.
    const order = systems.map((_, i) => systems[(i + round) % systems.length])
    for (const system of order) {
      const dropped = listenDrops()
      try {
        values[system].push(await workload.run(system, MODE))
      } catch (e) {
        errors[system] ??= { runs: 0, error: e.message.split('\n')[0] }
        errors[system].runs++
      }
      // A SYN dropped by a full listen queue costs a one-second retransmit: say so.
      const lost = listenDrops() - dropped
      if (lost > 0) drops[system] = (drops[system] ?? 0) + lost
      await sleep(30) // let closed sockets go before the next system connects
    }
  }
  for (const system of systems) {
    const runs = values[system]
    if (runs.length) {
      for (const { metric, unit } of workload.metrics) {
        const xs = runs.map((r) => r[metric])
        rows.push({ workload: workload.id, system, metric, unit, median: median(xs), runs: xs })
      }
      if (runs[0].points) sweepPoints[system] = runs.flatMap((r) => r.points)
    }
    if (errors[system]) failures.push({ workload: workload.id, system, ...errors[system] })
  }
  console.log(table(workload, rows, failures, MODE))
  for (const [system, n] of Object.entries(drops)) {
    console.log(`  note: during ${system}'s runs the kernel dropped ${n} SYNs on full listen queues (each a 1 s retransmit; another process on the machine may be the cause)`)
  }
  console.log(`  (${(now() - t0).toFixed(1)} s)`)
}

// ---- write ----------------------------------------------------------------------------

const dir = join(ROOT, 'benchmark', 'results')
mkdirSync(dir, { recursive: true })
// The sweep's rows keep their points too, for whoever redraws the chart.
for (const r of rows) if (r.workload === 'sweep' && sweepPoints[r.system]) r.points = sweepPoints[r.system]
writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(rows, null, 2)}\n`)
const note = `gaio benchmark (${MODE.name}), ${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} CPUs shared by client and server, Node ${process.version}`
writeFileSync(join(dir, 'latest.svg'), svg(WORKLOADS, rows, sweepPoints, note))
console.log(`\nwrote benchmark/results/latest.json and latest.svg (${(now() - started).toFixed(0)} s in all)`)
if (failures.length) {
  console.log(`${failures.length} system/workload pair(s) failed; see the tables above`)
  process.exitCode = 1
}
