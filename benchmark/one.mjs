// One in-process measurement in a fresh process, so that every run of every
// system starts from the same state (no JIT, heap or descriptor table left
// over from another system's run; the Rust ceiling is a fresh process too):
//   node benchmark/one.mjs SYSTEM echo|burst '{"size":128,"ms":500}'
// Prints the result as one JSON line. A burst runs twice: { cold, warm }, the
// second with the JIT warm and the descriptor table grown.
import { SYSTEMS } from './systems/index.mjs'

const [system, primitive, params] = process.argv.slice(2)
const run = () => SYSTEMS[system]()[primitive](JSON.parse(params))
const result = primitive === 'burst' ? { cold: (await run()).seconds, warm: (await run()).seconds } : await run()
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(0)
