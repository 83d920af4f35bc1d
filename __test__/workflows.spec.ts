// The GitHub Actions workflows cannot run on this machine: parse them with a real
// YAML parser and check their shape against the scripts and targets they name.
import test from 'ava'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'

const root = join(__dirname, '..')
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>
  napi: { targets: string[] }
}

interface Step {
  name?: string
  uses?: string
  run?: string
  if?: string
  with?: Record<string, unknown>
  env?: Record<string, string>
}
interface Job {
  'runs-on': string
  needs?: string | string[]
  strategy?: { matrix: { os?: string[]; include?: { os: string; target: string }[] } }
  steps: Step[]
}
interface Workflow {
  name: string
  on: Record<string, unknown>
  jobs: Record<string, Job>
}

function load(file: string): Workflow {
  return parse(readFileSync(join(root, '.github', 'workflows', file), 'utf8')) as Workflow
}

/** Every shell line the steps of a workflow run. */
function runLines(workflow: Workflow): string[] {
  return Object.values(workflow.jobs).flatMap((job) => job.steps.flatMap((step) => (step.run ?? '').split('\n').map((l) => l.trim()).filter(Boolean)))
}

function job(workflow: Workflow, name: string): Job {
  const found = workflow.jobs[name]
  if (!found) throw new Error(`no job ${name} in ${workflow.name}: ${Object.keys(workflow.jobs).join(', ')}`)
  return found
}

const ci = load('ci.yml')
const release = load('release.yml')

for (const [file, workflow] of [['ci.yml', ci], ['release.yml', release]] as const) {
  test(`${file}: every npm script and repository script it calls exists`, (t) => {
    const lines = runLines(workflow)
    t.true(lines.length > 0)
    for (const line of lines) {
      for (const [, script] of line.matchAll(/\bnpm run ([\w:-]+)/g)) {
        t.true(script! in manifest.scripts, `${file} runs npm run ${script}, which package.json lacks`)
      }
      for (const [, path] of line.matchAll(/\b(?:node|bash) (scripts\/[\w./-]+)/g)) {
        t.true(existsSync(join(root, path!)), `${file} runs ${path}, which does not exist`)
      }
    }
  })
}

test('ci.yml: one test job over Linux x64 and arm64, macOS arm64 and x64, running the README commands', (t) => {
  t.truthy(ci.on.push)
  t.true('pull_request' in ci.on)
  const testJob = job(ci, 'test')
  t.is(testJob['runs-on'], '${{ matrix.os }}')
  t.deepEqual([...(testJob.strategy?.matrix.os ?? [])].sort(), ['macos-13', 'macos-14', 'ubuntu-24.04', 'ubuntu-24.04-arm'])
  const lines = runLines(ci)
  // The same steps as .ci/run, in its order: tests, then the package from a real registry.
  const order = ['npm test', 'npm run pack', 'npm run test:package', 'npm run bench'].map((command) => lines.indexOf(command))
  t.false(order.includes(-1), `steps: ${lines.join(' | ')}`)
  t.deepEqual(order, [...order].sort((a, b) => a - b), 'test, pack, test:package, bench in that order')
})

test('ci.yml: the benchmark JSON and SVG are kept as artifacts', (t) => {
  const upload = job(ci, 'test').steps.find((step) => step.uses?.startsWith('actions/upload-artifact@'))
  t.truthy(upload, 'an upload-artifact step')
  const paths = String(upload!.with?.path).split('\n').map((p) => p.trim()).filter(Boolean)
  t.deepEqual(paths, ['benchmark/results/latest.json', 'benchmark/results/latest.svg'])
  // The files benchmark/run.mjs writes.
  const run = readFileSync(join(root, 'benchmark', 'run.mjs'), 'utf8')
  t.true(run.includes("'latest.json'") && run.includes("'latest.svg'"))
})

test('release.yml: builds every napi target, gathers them with napi artifacts, pre-publishes without a GitHub release, publishes', (t) => {
  t.truthy(release.on.push)
  const build = job(release, 'build')
  const include = build.strategy?.matrix.include ?? []
  t.deepEqual(include.map((row) => row.target).sort(), [...manifest.napi.targets].sort(), 'one build per napi target')
  for (const row of include) {
    t.is(row.os.startsWith('macos'), row.target.includes('apple-darwin'), `${row.target} builds on ${row.os}`)
  }
  const buildLines = build.steps.map((step) => step.run ?? '')
  t.true(buildLines.includes('node scripts/build.mjs --target ${{ matrix.target }}'))
  t.true(build.steps.some((step) => step.uses?.startsWith('actions/upload-artifact@')))

  const publish = job(release, 'publish')
  t.is(publish.needs, 'build')
  t.true(publish.steps.some((step) => step.uses?.startsWith('actions/download-artifact@')))
  const lines = publish.steps.map((step) => step.run ?? '')
  const artifacts = lines.findIndex((l) => l.startsWith('npx napi artifacts '))
  const prePublish = lines.findIndex((l) => l.startsWith('npx napi pre-publish '))
  const npmPublish = lines.findIndex((l) => l.startsWith('npm publish'))
  t.true(artifacts >= 0 && prePublish > artifacts && npmPublish > prePublish, `publish steps: ${lines.join(' | ')}`)
  t.true(lines[prePublish]!.includes('--no-gh-release'))
  for (const index of [prePublish, npmPublish]) t.is(publish.steps[index]!.env?.NODE_AUTH_TOKEN, '${{ secrets.NPM_TOKEN }}')
})
