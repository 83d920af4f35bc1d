// The systems by name. gaio-inline exists only where the build has { mode: 'inline' };
// rust-engine is the Rust ceiling (a binary, see lib/common.mjs), not a module here.
import { gaio, inlineSupport } from './gaio.mjs'
import { nodeNet } from './node-net.mjs'
import { nodeHttp } from './node-http.mjs'

export const SYSTEMS = {
  gaio: () => gaio(),
  'gaio-inline': () => gaio({ mode: 'inline' }),
  'node-net': () => nodeNet(),
  'node-net-fast': () => nodeNet({ fast: true }),
  'node-http': () => nodeHttp(),
}
export const SYSTEM_NAMES = [...Object.keys(SYSTEMS), 'rust-engine']

export { inlineSupport }
