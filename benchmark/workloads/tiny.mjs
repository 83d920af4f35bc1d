// gaio's Test4kTiny: 4096 connections each echo 16 bytes once.
import { measure } from '../lib/common.mjs'
import { BURST_SYSTEMS } from './c8k.mjs'

export default {
  id: 'tiny',
  title: () => '4096 connections x 16 B echoed once, first connect to last byte back',
  systems: BURST_SYSTEMS,
  metrics: [{ metric: 'seconds', unit: 's', better: 'lower' }],
  async run(system) {
    const { seconds } = await measure(system, 'burst', { conns: 4096, size: 16 })
    return { seconds }
  },
}
