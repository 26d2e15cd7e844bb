/**
 * `npm run bench:kv`: the key-value service end to end, as three `kv node`
 * processes on loopback (TCP transport, LMDB log, file snapshots: durable, as
 * the anchor's `bolt` mode), driven over HTTP by clients in this process.
 *
 *   npm run bench:kv -- [--ops 2000] [--only c64] [--anchor <dir|jsonl>] [--svg out.svg]
 *
 * Scenarios: 1 client and 64 clients doing PUT of 128-byte values through the
 * leader (default timers), and failover (the leader killed with SIGKILL; time
 * until another node leads, and until a PUT to it succeeds) with default and
 * with fast timers. Each prints one JSON line with the anchor's keys; a table
 * follows, with hashicorp/raft's `bolt` rows beside ours when `--anchor` names
 * its results. `--svg` writes the latency distribution of each scenario (ours,
 * and the anchor's percentiles when given) as an SVG plot.
 *
 * What differs from the anchor: every operation here is an HTTP request with a
 * JSON body to another process, answered after commit and apply (the anchor
 * calls `Apply` in-process); the three nodes are three processes, as in a
 * deployment (the anchor runs them in one process).
 */
import * as fs from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { type ProcessCluster, type ProcessNode, startProcessCluster } from "../test/kv/processes.js"

const { values: argv } = parseArgs({
  options: {
    ops: { type: "string", default: "2000" },
    only: { type: "string" },
    anchor: { type: "string" },
    svg: { type: "string" }
  }
})
const OPS = Math.max(10, Number(argv.ops))
const VALUE = "x".repeat(128)

interface Row {
  readonly impl: string
  readonly scenario: string
  readonly mode: string
  readonly nodes: number
  readonly ops: number
  readonly size: number
  readonly conc: number
  readonly ops_per_sec?: number
  readonly lat_p50_us?: number
  readonly lat_p90_us?: number
  readonly lat_p99_us?: number
  readonly lat_p999_us?: number
  readonly lat_max_us?: number
  readonly lat_mean_us?: number
  readonly errors?: number
  readonly failover_elect_ms?: number
  readonly failover_commit_ms?: number
  readonly heartbeat_timeout_ms: number
  readonly durable: boolean
  readonly latencies_us?: ReadonlyArray<number>
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const put = async (http: string, key: string): Promise<boolean> => {
  try {
    const response = await fetch(`http://${http}/kv/${key}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ value: VALUE }),
      signal: AbortSignal.timeout(10_000),
      redirect: "manual"
    })
    await response.arrayBuffer()
    return response.status === 200
  } catch {
    return false
  }
}

const ready = async (node: ProcessNode) => {
  for (let i = 0; i < 600; i++) {
    const ok = await fetch(`http://${node.http}/status`).then((r) => r.ok).catch(() => false)
    if (ok) return
    await sleep(100)
  }
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const withCluster = async <A>(fast: boolean, f: (cluster: ProcessCluster, leader: ProcessNode) => Promise<A>) => {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "kv-bench-"))
  const cluster = await startProcessCluster({ dir, nodes: 3, fast })
  try {
    for (const node of cluster.nodes) await ready(node)
    const leader = await cluster.leader(60_000)
    if (leader === undefined) throw new Error(`no leader; logs in ${dir}`)
    // Wait until the leader's barrier committed (its HTTP address is registered), then warm up.
    while (!(await put(leader.http, "warmup"))) await sleep(50)
    return await f(cluster, leader)
  } finally {
    await cluster.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const throughput = (conc: number, ops: number): Promise<Row> =>
  withCluster(false, async (_cluster, leader) => {
    for (let i = 0; i < Math.min(200, ops / 10); i++) await put(leader.http, `w${i}`)
    const latencies: Array<number> = []
    let next = 0
    let errors = 0
    const started = performance.now()
    await Promise.all(Array.from({ length: conc }, async () => {
      for (;;) {
        const i = next++
        if (i >= ops) return
        const t0 = performance.now()
        if (await put(leader.http, `k${i % 1000}`)) latencies.push((performance.now() - t0) * 1000)
        else errors++
      }
    }))
    const seconds = (performance.now() - started) / 1000
    const sorted = [...latencies].sort((a, b) => a - b)
    return {
      impl: "effect-raft/kv",
      scenario: `kv/n3/c${conc}/s128`,
      mode: "kv",
      nodes: 3,
      ops,
      size: 128,
      conc,
      ops_per_sec: ops / seconds,
      lat_mean_us: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
      lat_p50_us: percentile(sorted, 0.5),
      lat_p90_us: percentile(sorted, 0.9),
      lat_p99_us: percentile(sorted, 0.99),
      lat_p999_us: percentile(sorted, 0.999),
      lat_max_us: sorted[sorted.length - 1] ?? 0,
      errors,
      heartbeat_timeout_ms: 1000,
      durable: true,
      latencies_us: sorted
    }
  })

const failover = (fast: boolean): Promise<Row> =>
  withCluster(fast, async (cluster, leader) => {
    const t0 = performance.now()
    await cluster.kill(leader, "SIGKILL")
    const others = cluster.nodes.filter((node) => node !== leader)
    let electMs: number | undefined
    let commitMs: number | undefined
    while (commitMs === undefined && performance.now() - t0 < 60_000) {
      for (const node of others) {
        const status = await fetch(`http://${node.http}/status`, { signal: AbortSignal.timeout(1000) })
          .then((r) => r.json() as Promise<{ state: string }>).catch(() => undefined)
        if (status?.state !== "Leader") continue
        electMs ??= performance.now() - t0
        if (await put(node.http, "after-failover")) commitMs = performance.now() - t0
      }
      if (commitMs === undefined) await sleep(fast ? 5 : 20)
    }
    return {
      impl: "effect-raft/kv",
      scenario: `kv/n3/failover${fast ? "/fast-timers" : ""}`,
      mode: "kv",
      nodes: 3,
      ops: 0,
      size: 128,
      conc: 1,
      ...(electMs === undefined ? {} : { failover_elect_ms: electMs }),
      ...(commitMs === undefined ? {} : { failover_commit_ms: commitMs }),
      heartbeat_timeout_ms: fast ? 100 : 1000,
      durable: true
    }
  })

// ---------------------------------------------------------------- the anchor

const readAnchor = (where: string | undefined): Array<Record<string, unknown>> => {
  if (where === undefined) return []
  const file = fs.statSync(where).isDirectory() ? path.join(where, "raft.jsonl") : where
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim().length > 0).map((l) => JSON.parse(l))
}

/** The anchor's `bolt` row that matches ours (median ops/s of its runs). */
const anchorFor = (anchor: ReadonlyArray<Record<string, unknown>>, row: Row) => {
  const scenario = row.scenario.startsWith("kv/n3/failover")
    ? `bolt/n3/c1/s128${row.scenario.endsWith("fast-timers") ? "/fast-timers" : ""}`
    : row.scenario.replace(/^kv\//, "bolt/")
  const rows = anchor.filter((a) => a.scenario === scenario)
    .sort((a, b) => Number(a.ops_per_sec) - Number(b.ops_per_sec))
  return rows[Math.floor(rows.length / 2)]
}

// ---------------------------------------------------------------- the plot

const svg = (rows: ReadonlyArray<Row>, anchor: ReadonlyArray<Record<string, unknown>>): string => {
  const plots = rows.filter((row) => row.latencies_us !== undefined)
  const width = 640
  const height = 260
  const pad = 50
  const blocks: Array<string> = []
  plots.forEach((row, i) => {
    const ours = row.latencies_us!
    const theirs = anchorFor(anchor, row)
    const points = [0.5, 0.9, 0.99, 0.999, 1]
    const theirValues = theirs === undefined
      ? []
      : [theirs.lat_p50_us, theirs.lat_p90_us, theirs.lat_p99_us, theirs.lat_p999_us, theirs.lat_max_us].map(Number)
    const maxUs = Math.max(ours[ours.length - 1] ?? 1, ...theirValues, 1)
    const x = (us: number) => pad + (Math.log10(Math.max(us, 10)) / Math.log10(maxUs * 1.2)) * (width - 2 * pad)
    const y = (q: number) => height - pad + (-(height - 2 * pad)) * q
    const top = i * (height + 20)
    const ourPath = ours.map((us, k) => `${x(us).toFixed(1)},${(y((k + 1) / ours.length) + top).toFixed(1)}`).join(" ")
    const theirPath = theirValues.map((us, k) => `${x(us).toFixed(1)},${(y(points[k]!) + top).toFixed(1)}`).join(" ")
    const ticks = [100, 1000, 10_000, 100_000, 1_000_000].filter((us) => us <= maxUs * 1.2)
      .map((us) =>
        `<line x1="${x(us)}" y1="${top + pad}" x2="${x(us)}" y2="${top + height - pad}" stroke="#ddd"/>` +
        `<text x="${x(us)}" y="${top + height - pad + 14}" font-size="10" text-anchor="middle">${us >= 1000 ? `${us / 1000} ms` : `${us} µs`}</text>`
      ).join("")
    blocks.push(
      `<text x="${pad}" y="${top + 20}" font-size="13">${row.scenario}: share of PUTs completed within a latency (log scale)</text>` +
        ticks +
        `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${ourPath}"/>` +
        (theirPath === "" ? "" : `<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="${theirPath}"/>`) +
        `<text x="${width - pad}" y="${top + pad}" font-size="11" text-anchor="end" fill="#1f77b4">effect-raft/kv (HTTP, 3 processes)</text>` +
        (theirPath === ""
          ? ""
          : `<text x="${width - pad}" y="${top + pad + 14}" font-size="11" text-anchor="end" fill="#d62728">hashicorp/raft bolt (p50, p90, p99, p99.9, max)</text>`)
    )
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${plots.length * (height + 20)}" font-family="sans-serif">${
    blocks.join("")
  }</svg>\n`
}

// ---------------------------------------------------------------- main

const scenarios: Array<[string, () => Promise<Row>]> = [
  ["kv/n3/c1/s128", () => throughput(1, Math.max(10, Math.floor(OPS / 10)))],
  ["kv/n3/c64/s128", () => throughput(64, OPS)],
  ["kv/n3/failover", () => failover(false)],
  ["kv/n3/failover/fast-timers", () => failover(true)]
]
const anchor = readAnchor(argv.anchor)
const rows: Array<Row> = []
for (const [name, run] of scenarios) {
  if (argv.only !== undefined && !name.includes(argv.only)) continue
  const row = await run()
  rows.push(row)
  const { latencies_us: _, ...json } = row
  console.log(JSON.stringify(json))
}

const fmt = (value: unknown, digits = 0) =>
  typeof value === "number" && Number.isFinite(value)
    ? value.toLocaleString("en-US", { maximumFractionDigits: digits })
    : ""
console.log("\n| scenario | impl | ops/s | p50 µs | p99 µs | max µs | failover: new leader ms | new commit ms |")
console.log("|---|---|--:|--:|--:|--:|--:|--:|")
for (const row of rows) {
  console.log(
    `| ${row.scenario} | effect-raft/kv | ${fmt(row.ops_per_sec)} | ${fmt(row.lat_p50_us)} | ${fmt(row.lat_p99_us)} | ${
      fmt(row.lat_max_us)
    } | ${fmt(row.failover_elect_ms)} | ${fmt(row.failover_commit_ms)} |`
  )
  const theirs = anchorFor(anchor, row)
  if (theirs !== undefined) {
    console.log(
      `| | hashicorp/raft ${String(theirs.scenario)} | ${fmt(theirs.ops_per_sec)} | ${fmt(theirs.lat_p50_us)} | ${
        fmt(theirs.lat_p99_us)
      } | ${fmt(theirs.lat_max_us)} | ${fmt(theirs.failover_elect_ms)} | ${fmt(theirs.failover_commit_ms)} |`
    )
  }
}
if (argv.svg !== undefined) {
  fs.writeFileSync(argv.svg, svg(rows, anchor))
  console.log(`\nlatency plot: ${argv.svg}`)
}
