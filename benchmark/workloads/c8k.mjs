// gaio's Test8k: 8192 connections each send 1 KiB once; the server echoes;
// timed from the first connect until every byte is back (and checked).
import { measure } from '../lib/common.mjs'

export const BURST_SYSTEMS = ['gaio', 'gaio-inline', 'node-net', 'node-net-tuned', 'rust-engine']

export default {
  id: 'c8k',
  title: () => '8192 connections x 1 KiB echoed once, first connect to last byte back',
  systems: BURST_SYSTEMS,
  metrics: [{ metric: 'seconds', unit: 's', better: 'lower' }],
  async run(system) {
    const { seconds } = await measure(system, 'burst', { conns: 8192, size: 1024 })
    return { seconds }
  },
}
