// Statistics: medians, the sweep's fit, a seeded shuffle, and bootstrap 95%
// confidence intervals for medians and for ratios of medians.

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Least squares y = slope * x + intercept. */
export function fit(points) {
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my)
    sxx += (x - mx) ** 2
  }
  const slope = sxy / sxx
  return { slope, intercept: my - slope * mx }
}

/** A seeded generator of floats in [0, 1) (mulberry32): the same seed, the same order and intervals. */
export function random(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

/** A shuffled copy (Fisher-Yates). */
export function shuffle(xs, rand) {
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

const RESAMPLES = 4000
const resample = (xs, rand) => xs.map(() => xs[Math.floor(rand() * xs.length)])

function interval(stats) {
  const s = stats.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length < RESAMPLES / 2) return null
  return [s[Math.floor(0.025 * (s.length - 1))], s[Math.ceil(0.975 * (s.length - 1))]]
}

/** Percentile bootstrap 95% interval of the median; null with fewer than 2 runs. */
export function medianInterval(xs, rand) {
  if (xs.length < 2) return null
  return interval(Array.from({ length: RESAMPLES }, () => median(resample(xs, rand))))
}

/**
 * Percentile bootstrap 95% interval of median(xs) / median(bases), from pairs
 * [x, base] of runs made in the same round. Rounds are resampled whole, the two
 * runs of a round together: a workload's round runs every system within a minute
 * or two, so where the machine's state drifts between rounds (other tenants come
 * and go) both runs of a pair move together and the drift largely leaves the
 * ratio, where resampling each system on its own adds it to both medians. Where
 * the runs of a round do not move together, the interval is no narrower. Null
 * with fewer than 2 pairs or a value that is not positive.
 */
export function ratioInterval(pairs, rand) {
  if (pairs.length < 2 || !pairs.flat().every((x) => x > 0)) return null
  return interval(
    Array.from({ length: RESAMPLES }, () => {
      const drawn = resample(pairs, rand)
      return median(drawn.map(([x]) => x)) / median(drawn.map(([, base]) => base))
    }),
  )
}
