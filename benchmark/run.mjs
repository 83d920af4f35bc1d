// The main job (`npm run bench`): every workload of benchmarks.md, every
// system side by side in one run, in a seeded shuffled order every round. See
// benchmark/README.md.
//
//   node benchmark/run.mjs [--full] [--only=id,id] [--systems=name,name] [--seed=N] [--scale=1,2,4]
//
// Quick by default (a few minutes on 2 cores); --full runs more rounds and
// longer windows. Prints one table per workload (medians, bootstrap 95%
// intervals, ratios to node-net with their intervals, targets), writes
// benchmark/results/latest.json and latest.svg.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import os from 'node:os'
import { ROOT, buildCeiling, listenDrops, now, settle, timeWait } from './lib/common.mjs'
import { median, medianInterval, random, ratioInterval, shuffle } from './lib/stats.mjs'
import { BASELINE, table, svg } from './lib/report.mjs'
import { handoffsPerSecond } from './lib/handoff.mjs'

const args = process.argv.slice(2)
for (const a of args) {
  if (!/^--(full|help|only=.+|systems=.+|seed=\d+|scale=1(,\d+)*)$/.test(a)) {
    console.error(`bench: unknown argument ${a}`)
    process.exitCode = 2
  }
}
if (process.exitCode || args.includes('--help')) {
  console.log('usage: node benchmark/run.mjs [--full] [--only=workload,...] [--systems=system,...] [--seed=N] [--scale=1,N,...]  (see benchmark/README.md)')
  process.exit()
}
const option = (name) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1].split(',')
const full = args.includes('--full')
const seed = Number(option('seed')?.[0] ?? Math.floor(Math.random() * 2 ** 31))
/** The scale workload's server counts (the first is 1, what the others compare with); more need the cores. */
const scaleCounts = option('scale')?.map(Number) ?? [1, 2]
// Client i talks to 127.0.0.(i + 1).
if (scaleCounts.some((n) => n < 1 || n > 254)) {
  console.error('bench: --scale counts are 1 to 254')
  process.exit(2)
}

/** What quick and full use (benchmark/README.md explains each); runs are per system. */
const MODE = full
  ? {
      name: 'full',
      // Five runs, the least a verdict counts from, so that a whole run fits in about an hour on 2 cores.
      runs: { default: 5 },
      echoMs: 1000,
      sweepConns: [1024, 2048, 4096, 8192],
      chatMs: 3000,
      chatWarmMs: 500,
      httpSeconds: 3,
      latencyRates: [10_000, 40_000],
      latencyMs: 3000,
      latencyWarmMs: 500,
      churnMs: 2000,
      settleMs: 10_000,
      scale: scaleCounts,
    }
  : {
      name: 'quick',
      // Two runs is the least a bootstrap interval can come from; the cheap workloads get three.
      runs: { default: 2, 'echo-64k': 3, 'echo-128b': 3, 'echo-128b-server': 3, 'slow-reader': 3 },
      echoMs: 300,
      sweepConns: [1024, 8192],
      chatMs: 1000,
      chatWarmMs: 300,
      httpSeconds: 1,
      latencyRates: [10_000, 40_000],
      latencyMs: 1000,
      latencyWarmMs: 300,
      churnMs: 1000,
      settleMs: 0,
      scale: scaleCounts,
    }

/** A percentile bootstrap from fewer runs than this covers far less than 95%: no verdict counts. */
const VERDICT_RUNS = 5

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
  ['echo', 'c8k', 'sweep', 'chat', 'latency', 'idle-mem', 'churn', 'fanout', 'framing', 'http', 'scale'].map((m) => import(`./workloads/${m}.mjs`)),
)
const WORKLOADS = workloadModules.flatMap((m) => Object.values(m).filter((w) => w?.id && w.run))
// Some workloads' metrics depend on the mode (the latency rates).
for (const w of WORKLOADS) if (typeof w.metrics === 'function') w.metrics = w.metrics(MODE)

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

const baselineTimeWait = timeWait()
console.log(`bench (${MODE.name}): ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}; client and server share these CPUs.`)
console.log(`bench: seed ${seed} (--seed=${seed} repeats the order and the intervals); ${baselineTimeWait ?? '?'} sockets in TIME_WAIT at the start`)
const handoffs = [await handoffsPerSecond()]
console.log(`bench: ${Math.round(handoffs[0]).toLocaleString('en-US')} thread hand-off round trips per second (two threads taking turns through a futex: what waking a sleeping thread costs here; thread mode wakes one per message)`)
const order = random(seed)
const bootstrap = random(seed ^ 0x5bd1e995)
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
  // Per system, each run that succeeded and its round (ratios pair runs of a round).
  const values = Object.fromEntries(systems.map((s) => [s, []]))
  const waits = Object.fromEntries(systems.map((s) => [s, []]))
  const errors = {}
  const drops = {}
  const t0 = now()
  for (let round = 0; round < rounds; round++) {
    // A new order every round, so drift in the machine's state spreads over every system.
    for (const system of shuffle(systems, order)) {
      // Wait out the TIME_WAIT sockets earlier runs left (they slow connects); log how many remain.
      waits[system].push(await settle(baselineTimeWait ?? 0, MODE.settleMs))
      const dropped = listenDrops()
      try {
        values[system].push({ round, result: await workload.run(system, MODE) })
      } catch (e) {
        errors[system] ??= { runs: 0, error: e.message.split('\n')[0] }
        errors[system].runs++
      }
      // A SYN dropped by a full listen queue costs a one-second retransmit: say so.
      const lost = listenDrops() - dropped
      if (lost > 0) drops[system] = (drops[system] ?? 0) + lost
    }
  }
  const base = values[BASELINE] ?? []
  for (const system of systems) {
    const runs = values[system]
    if (runs.length) {
      for (const { metric, unit, better } of workload.metrics) {
        const xs = runs.map(({ result }) => result[metric])
        const row = { workload: workload.id, system, metric, unit, better, median: median(xs), ci: medianInterval(xs, bootstrap), runs: xs, rounds: runs.map(({ round }) => round), timeWait: waits[system] }
        // The ratio, its interval and its verdict all come from the rounds both systems ran in.
        const pairs = runs.flatMap(({ round, result }) => base.filter((b) => b.round === round).map((b) => [result[metric], b.result[metric]]))
        const [mine, theirs] = [0, 1].map((side) => median(pairs.map((pair) => pair[side])))
        if (system !== BASELINE && mine > 0 && theirs > 0) Object.assign(row, { ratio: mine / theirs, ratioCi: ratioInterval(pairs, bootstrap), pairs: pairs.length })
        const target = (workload.targets ?? []).find((t) => t.metric === metric)
        if (target && (target.systems ?? ['gaio', 'gaio-inline']).includes(system)) row.target = judge(target, better, row)
        rows.push(row)
      }
      if (runs[0].result.points) sweepPoints[system] = runs.flatMap(({ result }) => result.points)
    }
    if (errors[system]) failures.push({ workload: workload.id, system, ...errors[system] })
  }
  console.log(table(workload, rows, failures, MODE))
  const tw = Object.values(waits).flat().filter((n) => n !== null)
  if (tw.length) console.log(`  TIME_WAIT sockets before each run: ${Math.min(...tw)}-${Math.max(...tw)} (${baselineTimeWait} at the start; waited up to ${MODE.settleMs / 1000} s per run for them to go)`)
  for (const [system, n] of Object.entries(drops)) {
    console.log(`  note: during ${system}'s runs the kernel dropped ${n} SYNs on full listen queues (each a 1 s retransmit; another process on the machine may be the cause)`)
  }
  console.log(`  (${(now() - t0).toFixed(1)} s)`)
}

/**
 * A target is met only when the whole 95% interval clears it: { goal, verdict }
 * (a ratio to node-net, or a bound on the value itself: at_most, at_least)
 * with verdict 'met', 'missed' (the whole interval on the wrong side) or
 * 'unclear' (the interval straddles it, or there is none); marked as not
 * counted with fewer than VERDICT_RUNS runs (quick mode; for a ratio, rounds
 * that both systems ran in).
 */
function judge(target, better, row) {
  const bound = target.ratio ?? target.at_most ?? target.at_least
  const [goal, interval] = target.ratio !== undefined ? [`${target.ratio}x`, row.ratioCi] : [`${bound} ${row.unit}`, row.ci]
  let verdict = 'unclear'
  if (interval) {
    const [lo, hi] = interval
    if (better === 'lower') verdict = hi <= bound ? 'met' : lo > bound ? 'missed' : 'unclear'
    else verdict = lo >= bound ? 'met' : hi < bound ? 'missed' : 'unclear'
  }
  const runs = target.ratio !== undefined ? (row.pairs ?? 0) : row.runs.length
  if (runs < VERDICT_RUNS) verdict += ` (${runs} runs: not counted)`
  return { goal: `${better === 'lower' ? '<=' : '>='} ${goal}`, verdict }
}

// ---- write ----------------------------------------------------------------------------

handoffs.push(await handoffsPerSecond())
console.log(`\nbench: ${Math.round(handoffs[1]).toLocaleString('en-US')} thread hand-off round trips per second at the end (${Math.round(handoffs[0]).toLocaleString('en-US')} at the start)`)

const dir = join(ROOT, 'benchmark', 'results')
mkdirSync(dir, { recursive: true })
// The sweep's rows keep their points too, for whoever redraws the chart.
for (const r of rows) if (r.workload === 'sweep' && sweepPoints[r.system]) r.points = sweepPoints[r.system]
writeFileSync(join(dir, 'latest.json'), `${JSON.stringify({ mode: MODE.name, seed, node: process.version, cpus: os.cpus().length, handoffs, rows }, null, 2)}\n`)
const note = `gaio benchmark (${MODE.name}, seed ${seed}), ${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} CPUs shared by client and server, Node ${process.version}`
writeFileSync(join(dir, 'latest.svg'), svg(WORKLOADS, rows, sweepPoints, note))
console.log(`\nwrote benchmark/results/latest.json and latest.svg (${(now() - started).toFixed(0)} s in all)`)
if (failures.length) {
  console.log(`${failures.length} system/workload pair(s) failed; see the tables above`)
  process.exitCode = 1
}
