// The README's TypeScript examples compile, as a user would compile them:
// strict, noUncheckedIndexedAccess and exactOptionalPropertyTypes, against
// the built declaration files (npm run build:ts), copied into the temporary
// project's node_modules/gaio as the package ships them. (A `paths` mapping to
// the checkout would let tsc prefer lib/*.ts over lib/*.d.ts.)
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The strictest settings a user may have (shared with the package test). */
const { '//': _about, ...strictConsumer } = JSON.parse(readFileSync(join(__dirname, '..', 'scripts', 'strict-consumer.json'), 'utf8')) as Record<string, unknown>

const root = join(__dirname, '..')

/** The ```ts blocks of a Markdown text, in order. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
}

test("README's TypeScript examples type-check under strict tsc", (t) => {
  const blocks = tsBlocks(readFileSync(join(root, 'README.md'), 'utf8'))
  t.true(blocks.length >= 8, `found ${blocks.length} ts blocks`)
  t.true(existsSync(join(root, 'index.d.ts')), 'index.d.ts is built (npm run build:ts)')

  const dir = mkdtempSync(join(tmpdir(), 'gaio-readme-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const gaio = join(dir, 'node_modules', 'gaio')
  mkdirSync(join(gaio, 'lib'), { recursive: true })
  writeFileSync(join(gaio, 'package.json'), JSON.stringify({ name: 'gaio', types: 'index.d.ts' }))
  copyFileSync(join(root, 'index.d.ts'), join(gaio, 'index.d.ts'))
  for (const file of readdirSync(join(root, 'lib')).filter((f) => f.endsWith('.d.ts'))) copyFileSync(join(root, 'lib', file), join(gaio, 'lib', file))
  // Each block is a module of its own (.mts: top-level await is allowed), as a reader would paste it.
  const files = blocks.map((code, i) => {
    const file = `example-${i + 1}.mts`
    writeFileSync(join(dir, file), code)
    return file
  })
  const tsconfig = {
    compilerOptions: {
      ...strictConsumer,
      // Checks the shipped .d.ts too: a type they name but do not ship would fail here.
      skipLibCheck: false,
      typeRoots: [join(root, 'node_modules', '@types')],
    },
    files,
  }
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
  const tsc = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' })
  // Errors name example-N.mts: N counts the README's ```ts blocks from the top.
  t.is(tsc.status, 0, `${tsc.stdout}${tsc.stderr}`)
})
