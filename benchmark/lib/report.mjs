// Tables for the terminal and the SVG chart, both from the rows of latest.json.
export const BASELINE = 'node-net'

/** Three significant digits; thousands grouped; tiny numbers in exponent form. */
export function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-'
  const a = Math.abs(v)
  if (a !== 0 && a < 0.01) return v.toExponential(2)
  if (a >= 1000) return Math.round(v).toLocaleString('en-US')
  return Number(v.toPrecision(3)).toString()
}

function pad(s, n, left = false) {
  s = String(s)
  return left ? s.padEnd(n) : s.padStart(n)
}

const range = (ci, f = fmt) => (ci ? `${f(ci[0])}-${f(ci[1])}` : '-')
const times = (x) => `${x.toFixed(2)}x`

/**
 * One table per metric of a workload: the median and its bootstrap 95%
 * interval, the ratio to node-net's median in the same run and its interval,
 * the runs, and for gaio's targets whether the interval clears them.
 */
export function table(workload, rows, failures, mode) {
  const lines = [`\n${workload.id}: ${workload.title(mode)}`]
  for (const { metric, unit, better } of workload.metrics) {
    const mine = rows.filter((r) => r.workload === workload.id && r.metric === metric)
    if (!mine.length) continue
    lines.push(`  ${metric} (${unit}, ${better} is better)`)
    lines.push(`  ${pad('system', 15, true)}${pad('median', 11)}${pad('95% CI', 22)}${pad('vs node-net', 12)}${pad('95% CI', 14)}${pad('runs', 5)}  target`)
    for (const r of mine) {
      const ratio = r.ratio === undefined ? '-' : times(r.ratio)
      const ratioCi = range(r.ratioCi, (x) => x.toFixed(2))
      const target = r.target ? `${r.target.goal}: ${r.target.verdict}` : ''
      lines.push(`  ${pad(r.system, 15, true)}${pad(fmt(r.median), 11)}${pad(range(r.ci), 22)}${pad(ratio, 12)}${pad(ratioCi, 14)}${pad(r.runs.length, 5)}  ${target}`)
    }
  }
  for (const f of failures.filter((f) => f.workload === workload.id)) lines.push(`  ${f.system}: FAILED ${f.runs} run(s): ${f.error}`)
  return lines.join('\n')
}

// ---- SVG -------------------------------------------------------------------------

const COLORS = {
  // One color per system, in every panel.
  gaio: '#1f77b4',
  'gaio-inline': '#17becf',
  'node-net': '#d62728',
  'node-net-fast': '#ff7f0e',
  'rust-engine': '#2ca02c',
  'node-http': '#9467bd',
}
const color = (system) => COLORS[system] ?? '#7f7f7f'
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c])

/** A "nice" upper bound for an axis. */
function niceMax(v) {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  return [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * p).find((m) => m >= v)
}

function sweepPanel(rows, sweepPoints, x0, y0, w, h) {
  const systems = Object.keys(sweepPoints)
  const all = systems.flatMap((s) => sweepPoints[s])
  const xMax = niceMax(Math.max(8192, ...all.map((p) => p[0])))
  const yMax = niceMax(Math.max(0.1, ...all.map((p) => p[1])))
  const L = 60
  const B = 40
  const pw = w - L - 170
  const ph = h - B - 40
  const X = (x) => x0 + L + (x / xMax) * pw
  const Y = (y) => y0 + 30 + ph - (y / yMax) * ph
  const out = [`<text x="${x0 + L}" y="${y0 + 18}" font-size="15" font-weight="bold">sweep: seconds from first connect to last echo (warm pass), against connections (each point one run; lines: median fit)</text>`]
  for (let i = 0; i <= 4; i++) {
    const xv = (xMax * i) / 4
    const yv = (yMax * i) / 4
    out.push(`<line x1="${X(xv)}" y1="${Y(0)}" x2="${X(xv)}" y2="${Y(yMax)}" stroke="#eee"/><text x="${X(xv)}" y="${Y(0) + 16}" font-size="11" text-anchor="middle">${xv}</text>`)
    out.push(`<line x1="${X(0)}" y1="${Y(yv)}" x2="${X(xMax)}" y2="${Y(yv)}" stroke="#eee"/><text x="${X(0) - 6}" y="${Y(yv) + 4}" font-size="11" text-anchor="end">${fmt(yv)}</text>`)
  }
  out.push(`<line x1="${X(0)}" y1="${Y(0)}" x2="${X(xMax)}" y2="${Y(0)}" stroke="#333"/><line x1="${X(0)}" y1="${Y(0)}" x2="${X(0)}" y2="${Y(yMax)}" stroke="#333"/>`)
  out.push(`<text x="${X(xMax / 2)}" y="${Y(0) + 32}" font-size="12" text-anchor="middle">connections</text>`)
  out.push(`<text transform="translate(${x0 + 14},${Y(yMax / 2)}) rotate(-90)" font-size="12" text-anchor="middle">seconds</text>`)
  const line = (slope, intercept, stroke, dash = '') => {
    const xe = Math.min(xMax, intercept + slope * xMax > yMax ? (yMax - intercept) / slope : xMax)
    return `<line x1="${X(0)}" y1="${Y(Math.max(0, intercept))}" x2="${X(xe)}" y2="${Y(intercept + slope * xe)}" stroke="${stroke}" stroke-width="2" ${dash}/>`
  }
  // The seed's published regression (Go gaio, Linux AMD64), for reference.
  out.push(line(8.613e-5, 0.08278, '#999', 'stroke-dasharray="6 4"'))
  let ly = y0 + 40
  out.push(`<line x1="${x0 + w - 160}" y1="${ly - 4}" x2="${x0 + w - 140}" y2="${ly - 4}" stroke="#999" stroke-width="2" stroke-dasharray="6 4"/><text x="${x0 + w - 134}" y="${ly}" font-size="12">Go gaio (seed's fit)</text>`)
  for (const system of systems) {
    const slope = rows.find((r) => r.workload === 'sweep' && r.system === system && r.metric === 'warm slope')?.median
    const intercept = rows.find((r) => r.workload === 'sweep' && r.system === system && r.metric === 'warm intercept')?.median
    const c = color(system)
    if (slope !== undefined) out.push(line(slope, intercept, c))
    for (const [x, y] of sweepPoints[system]) out.push(`<circle cx="${X(x)}" cy="${Y(Math.min(y, yMax))}" r="3.5" fill="${c}" fill-opacity="0.7"><title>${esc(system)}: ${x} conns, ${fmt(y)} s</title></circle>`)
    ly += 18
    out.push(`<rect x="${x0 + w - 160}" y="${ly - 11}" width="20" height="10" fill="${c}"/><text x="${x0 + w - 134}" y="${ly}" font-size="12">${esc(system)}</text>`)
  }
  return out.join('\n')
}

function barPanel(title, bars, x0, y0, w, h) {
  const L = 10
  const top = 34
  const bottom = 24
  const ph = h - top - bottom
  const max = niceMax(Math.max(...bars.map((b) => b.value)))
  const bw = (w - 2 * L) / Math.max(bars.length, 1)
  const out = [`<text x="${x0 + w / 2}" y="${y0 + 16}" font-size="12.5" font-weight="bold" text-anchor="middle">${esc(title)}</text>`]
  out.push(`<line x1="${x0 + L}" y1="${y0 + top + ph}" x2="${x0 + w - L}" y2="${y0 + top + ph}" stroke="#333"/>`)
  bars.forEach((b, i) => {
    const bh = Math.max(0, (b.value / max) * ph) // a negative slope (noise) draws no bar; its label says it
    const x = x0 + L + i * bw + bw * 0.12
    const y = y0 + top + ph - bh
    out.push(`<rect x="${x}" y="${y}" width="${bw * 0.76}" height="${bh}" fill="${color(b.system)}"><title>${esc(b.system)}: ${fmt(b.value)} (runs: ${b.runs.map(fmt).join(', ')})</title></rect>`)
    out.push(`<text x="${x + bw * 0.38}" y="${y - 4}" font-size="10.5" text-anchor="middle">${fmt(b.value)}</text>`)
    if (b.ratio) out.push(`<text x="${x + bw * 0.38}" y="${y0 + top + ph + 15}" font-size="11" fill="#444" text-anchor="middle">${b.ratio}</text>`)
  })
  return out.join('\n')
}

/** The chart: the sweep's seconds against connections, then one bar panel per metric. */
export function svg(workloads, rows, sweepPoints, note) {
  const W = 1000
  const panels = []
  for (const wl of workloads) {
    if (wl.id === 'sweep') continue
    for (const { metric, unit, better } of wl.metrics) {
      const mine = rows.filter((r) => r.workload === wl.id && r.metric === metric)
      if (!mine.length) continue
      const bars = mine.map((r) => ({ system: r.system, value: r.median, runs: r.runs, ratio: r.ratio === undefined ? '' : times(r.ratio) }))
      panels.push({ title: `${wl.id}: ${metric} (${better} is better)`, bars, unit })
    }
  }
  const hasSweep = Object.keys(sweepPoints).length > 0
  const sweepH = hasSweep ? 400 : 0
  const cols = 3
  const pw = W / cols
  const ph = 230
  const legendH = panels.length ? 30 : 0
  const H = 40 + sweepH + legendH + Math.ceil(panels.length / cols) * ph + 20
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`, `<rect width="100%" height="100%" fill="white"/>`]
  out.push(`<text x="10" y="22" font-size="13" fill="#444">${esc(note)}</text>`)
  if (hasSweep) out.push(sweepPanel(rows, sweepPoints, 0, 36, W, sweepH))
  if (panels.length) {
    // One legend for every bar panel; under each bar, its median as a multiple of node-net's.
    const systems = [...new Set(panels.flatMap((p) => p.bars.map((b) => b.system)))]
    const ly = 40 + sweepH + 18
    out.push(`<text x="10" y="${ly}" font-size="12" fill="#444">bars: medians; under each, the ratio to node-net</text>`)
    let x = 310
    for (const system of systems) {
      out.push(`<rect x="${x}" y="${ly - 10}" width="14" height="10" fill="${color(system)}"/><text x="${x + 18}" y="${ly}" font-size="12">${esc(system)}</text>`)
      x += 36 + 7 * system.length
    }
  }
  panels.forEach((p, i) => out.push(barPanel(p.title, p.bars, (i % cols) * pw, 40 + sweepH + legendH + Math.floor(i / cols) * ph, pw, ph - 10)))
  out.push('</svg>')
  return out.join('\n')
}
