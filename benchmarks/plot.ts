/**
 * The latency plot of `npm run bench`: one panel per scenario whose rows carry
 * a latency distribution (`lat_cdf_us`, pairs of quantile and microseconds),
 * latency on a log scale against the percentile on a "nines" scale (50, 90,
 * 99, 99.9 % equally spaced, then the maximum), as HdrHistogram plots do.
 * Each of our runs is one curve; hashicorp/raft's rows only hold p50, p90,
 * p99, p99.9 and the maximum, so the anchor is those five points (the median
 * of its runs) joined by straight lines, and the legend says so.
 */

type Row = Record<string, unknown>

const WIDTH = 800
const HEIGHT = 330
const LEFT = 70
const RIGHT = 20
const TOP = 46
const BOTTOM = 92
const OURS = "#1f77b4"
const THEIRS = "#d62728"

/** Where a quantile sits on the nines axis; the maximum gets its own place after 99.9 %. */
const nines = (q: number): number => (q >= 1 ? 3.5 : Math.min(3, -Math.log10(1 - q)))
const NINES_MAX = 3.5

const median = (values: ReadonlyArray<number>): number | undefined => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return undefined
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const duration = (us: number) =>
  us >= 1e6 ? `${us / 1e6} s` : us >= 1000 ? `${us / 1000} ms` : `${us} µs`

const cdfOf = (row: Row): Array<readonly [number, number]> =>
  Array.isArray(row.lat_cdf_us)
    ? (row.lat_cdf_us as Array<unknown>).filter((p): p is [number, number] =>
      Array.isArray(p) && typeof p[0] === "number" && typeof p[1] === "number" && p[1] > 0
    )
    : []

const ANCHOR_POINTS: ReadonlyArray<readonly [key: string, q: number]> = [
  ["lat_p50_us", 0.5],
  ["lat_p90_us", 0.9],
  ["lat_p99_us", 0.99],
  ["lat_p999_us", 0.999],
  ["lat_max_us", 1]
]

/**
 * The SVG document: a panel per scenario of `ours` with a distribution, beside the rows of `theirs` whose
 * scenario is `anchorNames.get(ours scenario)`.
 */
export const latencySvg = (
  ours: ReadonlyArray<Row>,
  theirs: ReadonlyArray<Row>,
  anchorNames: ReadonlyMap<string, string>
): string => {
  const scenarios = [...new Set(ours.filter((r) => cdfOf(r).length > 0).map((r) => String(r.scenario)))]
  const panels = scenarios.map((name, index) => {
    const runs = ours.filter((r) => r.scenario === name).map(cdfOf).filter((c) => c.length > 0)
    const theirName = anchorNames.get(name) ?? name
    const anchorRows = theirs.filter((r) => r.scenario === theirName && !r.error)
    const anchor = ANCHOR_POINTS.flatMap(([key, q]) => {
      const value = median(anchorRows.map((r) => Number(r[key])))
      return value === undefined || value <= 0 ? [] : [[q, value] as const]
    })
    const all = [...runs.flat().map((p) => p[1]), ...anchor.map((p) => p[1])]
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all))))
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))))
    const top = index * HEIGHT
    const plotH = HEIGHT - TOP - BOTTOM
    const plotW = WIDTH - LEFT - RIGHT
    const x = (q: number) => LEFT + nines(q) / NINES_MAX * plotW
    const y = (us: number) =>
      top + TOP + plotH - (Math.log10(us) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * plotH
    const parts: Array<string> = []
    const ourOps = median(ours.filter((r) => r.scenario === name).map((r) => Number(r.ops)))
    const theirOps = median(anchorRows.map((r) => Number(r.ops)))
    parts.push(
      `<text x="${LEFT}" y="${top + 18}" font-size="14" font-weight="bold">${escape(name)}` +
        (anchorRows.length > 0 ? ` beside hashicorp/raft ${escape(theirName)}` : "") + `</text>`,
      `<text x="${LEFT}" y="${top + 34}" font-size="11" fill="#555">latency until committed and applied (log scale)` +
        ` by percentile; ours: ${runs.length} run${runs.length === 1 ? "" : "s"} of ${ourOps?.toLocaleString("en-US") ?? "?"} PUTs` +
        (anchorRows.length > 0
          ? `, anchor: ${anchorRows.length} run${anchorRows.length === 1 ? "" : "s"} of ${theirOps?.toLocaleString("en-US") ?? "?"} applies`
          : "") + `</text>`
    )
    // Grid: decades and their 2× and 5× on the latency axis, the nines on the percentile axis.
    for (let decade = lo; decade < hi * 1.001; decade *= 10) {
      for (const m of [1, 2, 5]) {
        const us = decade * m
        if (us > hi * 1.001) break
        parts.push(
          `<line x1="${LEFT}" y1="${y(us).toFixed(1)}" x2="${WIDTH - RIGHT}" y2="${y(us).toFixed(1)}" stroke="${
            m === 1 ? "#ccc" : "#eee"
          }"/>`,
          `<text x="${LEFT - 6}" y="${(y(us) + 4).toFixed(1)}" font-size="10" text-anchor="end">${duration(us)}</text>`
        )
      }
    }
    for (const [q, text] of [[0, "0%"], [0.5, "50%"], [0.9, "90%"], [0.99, "99%"], [0.999, "99.9%"], [1, "max"]] as const) {
      parts.push(
        `<line x1="${x(q).toFixed(1)}" y1="${top + TOP}" x2="${x(q).toFixed(1)}" y2="${top + TOP + plotH}" stroke="#ccc"/>`,
        `<text x="${x(q).toFixed(1)}" y="${top + TOP + plotH + 14}" font-size="10" text-anchor="middle">${text}</text>`
      )
    }
    parts.push(
      `<text x="${LEFT + plotW / 2}" y="${top + TOP + plotH + 28}" font-size="11" text-anchor="middle">percentile</text>`
    )
    for (const run of runs) {
      const points = run.map(([q, us]) => `${x(q).toFixed(1)},${y(us).toFixed(1)}`).join(" ")
      parts.push(`<polyline fill="none" stroke="${OURS}" stroke-width="2" points="${points}"/>`)
    }
    if (anchor.length > 0) {
      const points = anchor.map(([q, us]) => `${x(q).toFixed(1)},${y(us).toFixed(1)}`).join(" ")
      parts.push(`<polyline fill="none" stroke="${THEIRS}" stroke-width="1.5" stroke-dasharray="5,3" points="${points}"/>`)
      for (const [q, us] of anchor) {
        parts.push(`<circle cx="${x(q).toFixed(1)}" cy="${y(us).toFixed(1)}" r="3.5" fill="${THEIRS}"/>`)
      }
    }
    // Legend, under the axis.
    const ly = top + TOP + plotH + 46
    parts.push(
      `<line x1="${LEFT}" y1="${ly - 4}" x2="${LEFT + 24}" y2="${ly - 4}" stroke="${OURS}" stroke-width="2"/>`,
      `<text x="${LEFT + 30}" y="${ly}" font-size="11">effect-raft key-value service: HTTP PUT to 3 \`kv node\` processes (TCP, LMDB); every percentile measured</text>`
    )
    if (anchor.length > 0) {
      parts.push(
        `<line x1="${LEFT}" y1="${ly + 14}" x2="${LEFT + 24}" y2="${ly + 14}" stroke="${THEIRS}" stroke-width="1.5" stroke-dasharray="5,3"/>`,
        `<circle cx="${LEFT + 12}" cy="${ly + 14}" r="3.5" fill="${THEIRS}"/>`,
        `<text x="${LEFT + 30}" y="${ly + 18}" font-size="11">hashicorp/raft ${
          escape(theirName)
        }: in-process Apply; its results hold only p50, p90, p99, p99.9 and max,</text>`,
        `<text x="${LEFT + 30}" y="${ly + 32}" font-size="11">so only those points are plotted (medians of its runs), joined by straight lines: not a measured curve</text>`
      )
    } else {
      parts.push(`<text x="${LEFT + 30}" y="${ly + 18}" font-size="11" fill="#555">no anchor rows for this scenario</text>`)
    }
    return parts.join("\n")
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${Math.max(1, panels.length) * HEIGHT}"` +
    ` viewBox="0 0 ${WIDTH} ${Math.max(1, panels.length) * HEIGHT}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${panels.join("\n")}\n</svg>\n`
}
