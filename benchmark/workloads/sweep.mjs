// The seed's regression: c8k at several connection counts, fitted as
// seconds = slope x connections + intercept. One run is one pass over the
// counts (ascending) with its own fit; the chart shows every point.
import { fit, measure } from '../lib/common.mjs'
import { BURST_SYSTEMS } from './c8k.mjs'

export default {
  id: 'sweep',
  title: (mode) => `c8k (1 KiB each) at ${mode.sweepConns.join(', ')} connections; least-squares fit per pass`,
  systems: BURST_SYSTEMS,
  metrics: [
    { metric: 'slope', unit: 's/conn', better: 'lower' },
    { metric: 'intercept', unit: 's', better: 'lower' },
  ],
  async run(system, mode) {
    const points = []
    for (const conns of mode.sweepConns) {
      const { seconds } = await measure(system, 'burst', { conns, size: 1024 })
      points.push([conns, seconds])
    }
    return { ...fit(points), points }
  },
}
