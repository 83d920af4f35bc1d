// One in-process measurement in a fresh process, so that every run of every
// system starts from the same state (no JIT, heap or descriptor table left
// over from another system's run; the Rust ceiling is a fresh process too):
//   node benchmark/one.mjs SYSTEM echo|burst '{"size":128,"ms":500}'
// Prints the result as one JSON line.
import { SYSTEMS } from './systems/index.mjs'

const [system, primitive, params] = process.argv.slice(2)
const result = await SYSTEMS[system]()[primitive](JSON.parse(params))
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(0)
