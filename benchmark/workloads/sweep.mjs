// The seed's regression: c8k at several connection counts, fitted as
// seconds = slope x connections + intercept, for the cold and the warm pass
// of each point (in-process). One run is one pass over the counts (ascending)
// with its own fits; the chart shows every warm point.
import { ECHO_SYSTEMS, measure } from '../lib/common.mjs'
import { fit } from '../lib/stats.mjs'

export default {
  id: 'sweep',
  title: (mode) => `in-process c8k (1 KiB each) at ${mode.sweepConns.join(', ')} connections; least-squares fit per pass, cold and warm`,
  systems: ECHO_SYSTEMS,
  metrics: [
    { metric: 'warm slope', unit: 's/conn', better: 'lower' },
    { metric: 'warm intercept', unit: 's', better: 'lower' },
    { metric: 'cold slope', unit: 's/conn', better: 'lower' },
    { metric: 'cold intercept', unit: 's', better: 'lower' },
  ],
  targets: [{ metric: 'warm slope', ratio: 0.5 }],
  async run(system, mode) {
    const cold = []
    const warm = []
    for (const conns of mode.sweepConns) {
      const r = await measure(system, 'burst', { conns, size: 1024 })
      cold.push([conns, r.cold])
      warm.push([conns, r.warm])
    }
    const [c, w] = [fit(cold), fit(warm)]
    return { 'warm slope': w.slope, 'warm intercept': w.intercept, 'cold slope': c.slope, 'cold intercept': c.intercept, points: warm }
  },
}
