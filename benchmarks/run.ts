/**
 * `npm run bench`: the in-memory, TCP and durable (LMDB) tiers of the
 * benchmarks, and the end-to-end tier (the key-value service as three
 * processes driven over HTTP), side by side with the hashicorp/raft anchor
 * (`shared/anchor`); our `lmdb` and `kv` scenarios line up with the anchor's
 * `bolt` ones (raft-boltdb behind a LogCache, fsync on every commit). Each
 * scenario runs in its own process (`scenario.ts`, or `kv.ts` for the `kv/`
 * rows), so peak RSS is per scenario; each prints one JSON line with the
 * anchor's keys. Rows are appended to `bench-results/<stamp>.jsonl`; when rows
 * carry a latency distribution (the `kv/` ones), `bench-results/<stamp>.svg`
 * plots it beside the anchor's percentiles (`plot.ts`).
 *
 *   npm run bench -- [--runs 3] [--ops N] [--only c64] [--anchor <dir|jsonl>]
 *                    [--anchor-bin <path to raftbench>] [--no-quiet] [--tsx] [--svg <path>]
 *   npm run bench:kv -- ...   (the same with --only kv/)
 *
 * --ops N          scale down: c64 runs N ops, c1 N/10 (fast timers too; the key-value service's c1 N/4)
 *                  (defaults 100,000 / 10,000, as the anchor; durable: 20,000 / 2,000; key-value: 20,000 / 5,000);
 *                  the warm-up is 10,000 applies in memory and over TCP (fewer only when fewer are measured), and
 *                  5,000 operations through the key-value service, for both sides (benchmarks/README.md, "Warm-up")
 * --only S         only scenarios whose name contains S (repeated: contains each)
 * --threads        also run the tcp and lmdb scenarios with each node on a worker thread (scenario.ts --threads)
 * --runs R         run the matrix R times, interleaved (run 1 of every scenario, then run 2, ...)
 * --anchor P       print hashicorp/raft's rows (median per scenario) from a results dir or a jsonl file
 * --anchor-bin B   also run the anchor binary before each of our scenarios, under the same conditions; the
 *                  table is then followed by issue 18's targets against it (met or not)
 * (always)         after each pass's `tcp/n3/c1/s128` row, `bench:floor`'s bare fan-out round (`floor.ts --only
 *                  tcp-fanout`); the table is then followed by the one-client TCP rows' time per apply against it
 * --no-quiet       do not wait for the machine to be idle before each scenario
 * --tsx            run scenarios through the tsx loader instead of a prebuilt bundle
 *                  (the loader adds about 60 MiB of RSS and some start-up CPU; `kv/` rows always use it)
 * --packages-external  bundle scenario.ts with its packages left in node_modules (default: inside the bundle,
 *                  as `dist/kv/kv.mjs`; an idle in-memory process then holds about 21 MiB less)
 * --svg P          write the latency plot to P instead of bench-results/<stamp>.svg
 * --etcd           after each default-timer `kv/` scenario, the same with a 3-member etcd (`kv.ts --etcd`, the
 *                  `etcd` on PATH) driven by the same clients; the table sets it under ours with the ratio and
 *                  checks the targets against etcd. Without `etcd` on PATH these rows are skipped (one line).
 * --tracer T       run every scenario with a tracer installed (scenario.ts --tracer: `otel`), and
 *                  --trace-sample R with RaftConfig.traceSampleRate R; rows are named .../otel[-R]
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { nodeBundleOptions } from "../scripts/node-bundle.mjs"
import { etcdVersion } from "./etcd.js"
import { latencySvg } from "./plot.js"

const { values: argv } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    ops: { type: "string" },
    only: { type: "string", multiple: true },
    anchor: { type: "string" },
    "anchor-bin": { type: "string" },
    "no-quiet": { type: "boolean", default: false },
    tsx: { type: "boolean", default: false },
    "bg-max": { type: "string", default: "0.10" },
    svg: { type: "string" },
    retries: { type: "string", default: "2" },
    threads: { type: "boolean", default: false },
    tracer: { type: "string" },
    etcd: { type: "boolean", default: false },
    "trace-sample": { type: "string" },
    "packages-external": { type: "boolean", default: false }
  }
})

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..")
const resultsDir = path.join(root, "bench-results")
fs.mkdirSync(resultsDir, { recursive: true })
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")
const outFile = path.join(resultsDir, `${stamp}.jsonl`)
const stderrFile = path.join(resultsDir, `${stamp}.stderr.log`)

// ---------------------------------------------------------------- the matrix

interface Scenario {
  readonly name: string
  /** The anchor's scenario to compare with (its name differs for the durable tier: bolt). */
  readonly anchorName: string
  readonly args: ReadonlyArray<string> // for scenario.ts
  readonly anchorArgs: ReadonlyArray<string> // for raftbench
  /** `kv.ts` (the key-value service as processes) instead of `scenario.ts`. */
  readonly kv?: boolean
}

const scale = argv.ops === undefined ? undefined : Math.max(1, Number(argv.ops))
const opsFor = (divisor: number): Array<string> =>
  scale === undefined ? [] : ["--ops", String(Math.max(1, Math.floor(scale / divisor)))]
const FAST = { heartbeat: "100", election: "100", lease: "50", commit: "5" }

const scenarioList = (): Array<Scenario> => {
  const list: Array<Scenario> = []
  const add = (conc: number, divisor: number, label: string, fast: boolean, mode = "inmem") => {
    // Both sides warm up alike: 10,000 applies (scenario.ts's default; the anchor's own is min(1000, ops/10)), so
    // that V8 has compiled our hot paths before the clock starts (benchmarks/README.md, "Warm-up").
    const measured = scale === undefined ? (conc === 1 ? 10_000 : 100_000) : Math.max(1, Math.floor(scale / divisor))
    const ops = [...opsFor(divisor), "--warmup", String(Math.min(10_000, measured))]
    const args = ["--mode", mode, "--conc", String(conc), ...ops]
    const anchorArgs = ["-mode", mode, "-conc", String(conc), ...ops.map((a) => a.replace("--", "-"))]
    if (fast) {
      args.push("--heartbeat", FAST.heartbeat, "--election", FAST.election, "--lease", FAST.lease, "--commit-timeout", FAST.commit)
      anchorArgs.push("-heartbeat", `${FAST.heartbeat}ms`, "-election", `${FAST.election}ms`, "-lease", `${FAST.lease}ms`, "-commit-timeout", `${FAST.commit}ms`)
    }
    if (label !== "") {
      args.push("--label", label)
      anchorArgs.push("-label", label)
    }
    const name = `${mode}/n3/c${conc}/s128${label === "" ? "" : `/${label}`}`
    list.push({ name, anchorName: name, args, anchorArgs })
  }
  add(64, 1, "", false)
  add(1, 10, "", false)
  // Fast timers at 10,000 applies, as the default-timer row: at the anchor's 2,000 (warm-up 200) our CPU per apply
  // doubled with default timers too, from JIT warm-up, not timers (benchmarks/README.md, "Fast timers").
  add(1, 10, "fast-timers", true)
  // The TCP tier: the same cluster over loopback TCP, in one process (as the anchor's tcp mode).
  add(64, 1, "", false, "tcp")
  add(1, 10, "", false, "tcp")
  add(1, 10, "fast-timers", true, "tcp")
  // The durable tier: LMDB against raft-boltdb, both fsyncing every commit on every node.
  const durable = (conc: number, divisor: number) => {
    const ops = ["--ops", String(scale === undefined ? 20_000 / divisor : Math.max(1, Math.floor(scale / divisor)))]
    list.push({
      name: `lmdb/n3/c${conc}/s128`,
      anchorName: `bolt/n3/c${conc}/s128`,
      args: ["--mode", "lmdb", "--conc", String(conc), ...ops],
      anchorArgs: ["-mode", "bolt", "-conc", String(conc), ...ops.map((a) => a.replace("--", "-"))]
    })
  }
  durable(64, 1)
  durable(1, 10)
  // --threads: the same tcp and durable scenarios with each node on a thread of its own (scenario.ts --threads),
  // against the same anchor rows. Not in the default matrix: on this 2-core machine it was slower (see README).
  for (const scenario of argv.threads ? [...list] : []) {
    if (!/^(tcp|lmdb)\/n3\/c\d+\/s128$/.test(scenario.name)) continue
    list.push({
      name: `${scenario.name}/threads`,
      anchorName: scenario.anchorName,
      args: [...scenario.args, "--threads", "--label", "threads"],
      anchorArgs: scenario.anchorArgs
    })
  }
  // End to end: the key-value service as three `kv node` processes (TCP, the WAL), HTTP clients, against bolt.
  const kv = (conc: number, divisor: number, fast: boolean) => {
    const ops = ["--ops", String(scale === undefined ? 20_000 / divisor : Math.max(1, Math.floor(scale / divisor)))]
    const suffix = fast ? "/fast-timers" : ""
    const anchorArgs = ["-mode", "bolt", "-conc", String(conc), ...ops.map((a) => a.replace("--", "-"))]
    if (fast) {
      anchorArgs.push("-heartbeat", `${FAST.heartbeat}ms`, "-election", `${FAST.election}ms`, "-lease", `${FAST.lease}ms`, "-commit-timeout", `${FAST.commit}ms`, "-label", "fast-timers")
    }
    list.push({
      name: `kv/n3/c${conc}/s128${suffix}`,
      anchorName: `bolt/n3/c${conc}/s128${suffix}`,
      args: ["--conc", String(conc), ...ops, ...(fast ? ["--fast"] : [])],
      anchorArgs,
      kv: true
    })
  }
  // One client: 5,000 PUTs (kv.ts's default; the anchor's bolt mode 2,000), after kv.ts's warm-up of 5,000.
  kv(64, 1, false)
  kv(1, 4, false)
  kv(1, 40, true)
  // Linearizable GETs (no anchor: hashicorp/raft has no reads), at the leader and at a follower.
  for (const [conc, divisor] of [[64, 1], [1, 4]] as const) {
    for (const target of ["leader", "follower"]) {
      const ops = ["--ops", String(scale === undefined ? 20_000 / divisor : Math.max(1, Math.floor(scale / divisor)))]
      const name = `kv/n3/c${conc}/s128/get-${target}`
      list.push({ name, anchorName: name, args: ["--conc", String(conc), ...ops, "--get", target], anchorArgs: [], kv: true })
    }
  }
  const tracing = argv.tracer === undefined
    ? []
    : ["--tracer", argv.tracer, ...(argv["trace-sample"] === undefined ? [] : ["--trace-sample", argv["trace-sample"]])]
  const chosen = list.filter((s) => (argv.only ?? []).every((part) => s.name.includes(part))).map((s) =>
    tracing.length === 0 || s.kv === true ? s : { ...s, args: [...s.args, ...tracing] }
  )
  return argv.etcd ? withEtcd(chosen) : chosen
}

/** Each default-timer `kv/` scenario followed by etcd's of the same shape (interleaved: the same sitting). */
const withEtcd = (scenarios: ReadonlyArray<Scenario>): Array<Scenario> => {
  const version = etcdVersion()
  if (version === undefined) {
    process.stderr.write("--etcd: no etcd on PATH (apt-get install etcd-server), etcd rows skipped\n")
    return [...scenarios]
  }
  process.stderr.write(`--etcd: ${version}\n`)
  return scenarios.flatMap((s) =>
    s.kv === true && !s.args.includes("--fast")
      ? [s, { name: `etcd/${s.name.slice("kv/".length)}`, anchorName: "", args: [...s.args, "--etcd"], anchorArgs: [], kv: true }]
      : [s]
  )
}

// ---------------------------------------------------------------- machine

const busyPercent = (seconds: number): number => {
  const read = () => {
    const values = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    const total = values.reduce((a, b) => a + b, 0)
    return { idle: values[3]! + values[4]!, total }
  }
  const a = read()
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000)
  const b = read()
  return b.total === a.total ? 0 : 100 * (1 - (b.idle - a.idle) / (b.total - a.total))
}

/** Waits until the machine is at least 90 % idle (as the anchor's lib.sh), at most 10 minutes. */
const quiet = () => {
  if (argv["no-quiet"]) return
  for (let waited = 0; waited < 600; waited += 2) {
    const busy = busyPercent(2)
    if (busy < 10) return
    if (waited % 20 === 0) process.stderr.write(`  waiting for the machine to be idle (${busy.toFixed(0)} % busy)\n`)
  }
  process.stderr.write("  WARNING: machine still busy; running anyway (see bg_cpu_cores)\n")
}

// ---------------------------------------------------------------- running one scenario

type Row = Record<string, unknown>

/**
 * Bundles `entries` with esbuild into `.build/<name>.mjs`, so no TS loader sits in the measured processes; false (and
 * a note) when esbuild cannot, and the caller falls back to tsx. Built with `dist/kv/kv.mjs`'s options
 * (scripts/node-bundle.mjs): the packages inside the bundle but `lmdb` and `msgpackr`, whitespace and syntax minified,
 * a real `require` for the CommonJS packages inside. V8 keeps the source text of every module it loads; loading the
 * packages' files one by one, an idle in-memory process held 21 MiB more (benchmarks/README.md, "The benchmark's
 * process bundled").
 * `--packages-external` leaves the packages in node_modules, as an application run without a bundler loads them. A
 * module imported dynamically becomes a chunk of its own, its packages with it: the in-memory scenario does not load
 * LMDB or the TCP transport.
 */
const bundle = async (entries: ReadonlyArray<string>, fallback: string): Promise<boolean> => {
  try {
    const esbuild = await import("esbuild")
    await esbuild.build({
      entryPoints: [...entries],
      outdir: path.join(resultsDir, ".build"),
      outExtension: { ".js": ".mjs" },
      splitting: true,
      ...(argv["packages-external"]
        ? { bundle: true, platform: "node", format: "esm", target: "node20", packages: "external" }
        : nodeBundleOptions),
      logLevel: "error"
    })
    return true
  } catch (error) {
    process.stderr.write(`esbuild unavailable (${String(error)}); ${fallback}\n`)
    return false
  }
}

/** scenario.ts, and next to it node-thread.ts (the worker of --threads scenarios). */
const buildScenario = async (): Promise<Array<string>> => {
  const source = path.join(root, "benchmarks", "scenario.ts")
  if (!argv.tsx && await bundle([source, path.join(root, "benchmarks", "node-thread.ts")], "running through tsx")) {
    return [path.join(resultsDir, ".build", "scenario.mjs")]
  }
  return ["--import", "tsx", source]
}

/**
 * The `kv` executable of the `kv/` rows' node processes: built as `npm run build` builds `dist/kv/kv.mjs`, the file
 * `npm start` runs (its packages bundled; `scripts/bundle-kv.mjs`), from the current sources. (To see time by
 * package in `kv.ts --node-cpu-prof`, give it a build whose packages stay outside: `node scripts/bundle-kv.mjs
 * --packages-external --outdir <dir>`, then `--node-entry <dir>/kv.mjs`.)
 */
const buildKvNode = async (): Promise<Array<string>> => {
  if (argv.tsx) return []
  // Two directories below the root, as dist/kv/ is: `kv --version` reads ../../package.json.
  const outdir = path.join(resultsDir, "kv-build")
  const built = spawnSync(process.execPath, [path.join(root, "scripts", "bundle-kv.mjs"), "--outdir", outdir], {
    cwd: root,
    encoding: "utf8"
  })
  if (built.status !== 0) {
    process.stderr.write(`bundling kv failed (${built.stderr.trim()}); kv nodes run through tsx\n`)
    return []
  }
  return ["--node-entry", path.join(outdir, "kv.mjs")]
}

const runProcess = (command: string, args: ReadonlyArray<string>, timeoutMs = 100_000): Row => {
  const child = spawnSync(command, args, { cwd: root, encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 << 20 })
  fs.appendFileSync(stderrFile, child.stderr ?? "")
  const line = (child.stdout ?? "").split("\n").reverse().find((l) => l.startsWith("{"))
  if (line === undefined) {
    return { scenario: "?", error: `no JSON output (status ${child.status}, signal ${child.signal})` }
  }
  return JSON.parse(line) as Row
}

const runWithRetries = (what: string, command: string, args: ReadonlyArray<string>, timeoutMs?: number): Row => {
  const bgMax = Number(argv["bg-max"])
  const retries = Number(argv.retries)
  for (let attempt = 0;; attempt++) {
    quiet()
    const row = runProcess(command, args, timeoutMs)
    const bg = typeof row.bg_cpu_cores === "number" ? row.bg_cpu_cores : 0
    if (bg > bgMax && attempt < retries) {
      process.stderr.write(`  ${what}: contended (bg_cpu_cores=${bg.toFixed(2)}), retrying\n`)
      fs.appendFileSync(path.join(resultsDir, `${stamp}.contended.jsonl`), JSON.stringify(row) + "\n")
      continue
    }
    return row
  }
}

// ---------------------------------------------------------------- tables

const median = (values: ReadonlyArray<unknown>): number | undefined => {
  const nums = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b)
  if (nums.length === 0) return undefined
  const mid = Math.floor(nums.length / 2)
  return nums.length % 2 === 1 ? nums[mid] : (nums[mid - 1]! + nums[mid]!) / 2
}

const columns: ReadonlyArray<readonly [key: string, title: string, digits: number, higherIsBetter: boolean]> = [
  ["elect_ms", "elect ms", 0, false],
  ["ops_per_sec", "ops/s", 0, true],
  ["lat_p50_us", "p50 µs", 0, false],
  ["lat_p99_us", "p99 µs", 0, false],
  ["lat_max_us", "max µs", 0, false],
  ["peak_rss_mib", "RSS MiB", 1, false],
  ["peak_rss_per_node_mib", "RSS/node MiB", 1, false],
  ["cpu_us_per_op", "CPU µs/op", 1, false],
  ["server_cpu_us_per_op", "server CPU µs/op", 1, false],
  ["leader_cpu_us_per_op", "leader CPU µs/op", 1, false],
  ["failover_elect_ms", "fo elect ms", 0, false],
  ["failover_commit_ms", "fo commit ms", 0, false],
  ["entries_per_fsync", "entries/fsync", 1, true],
  ["lmdb_commit_p50_us", "commit p50 µs", 0, false],
  ["errors", "errors", 0, false],
  ["bg_cpu_cores", "bg cores", 2, false]
]

const fmt = (v: number | undefined, digits: number) =>
  v === undefined ? "-" : v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })

const summarize = (rows: ReadonlyArray<Row>) => {
  const ok = rows.filter((r) => !r.error)
  const out: Record<string, number | undefined> = { runs: ok.length, failed: rows.length - ok.length, ops: median(ok.map((r) => r.ops)) }
  for (const [key] of columns) out[key] = median(ok.map((r) => r[key]))
  return out
}

const printTable = (ours: ReadonlyArray<Row>, theirs: ReadonlyArray<Row>, anchorNames: ReadonlyMap<string, string>) => {
  const header = ["scenario", "impl", "runs", "ops", ...columns.map((c) => c[1])]
  const lines: Array<Array<string>> = []
  const names = [...new Set([...ours.map((r) => String(r.scenario))])].filter((name) => !name.startsWith("etcd/"))
  const ratioLine = (title: string, a: Record<string, number | undefined>, b: Record<string, number | undefined>) =>
    ["", title, "", "", ...columns.map(([k]) => {
      const x = a[k]
      const y = b[k]
      return x === undefined || y === undefined || y === 0 || k === "bg_cpu_cores" ? "-" : `${(x / y).toFixed(2)}x`
    })]
  for (const name of names) {
    const a = summarize(ours.filter((r) => r.scenario === name))
    const theirName = anchorNames.get(name) ?? name
    const theirRows = theirs.filter((r) => r.scenario === theirName)
    lines.push([name, "effect-raft", `${a.runs}${a.failed ? ` (+${a.failed} failed)` : ""}`, fmt(a.ops, 0), ...columns.map(([k, , d]) => fmt(a[k], d))])
    if (theirRows.length > 0) {
      const b = summarize(theirRows)
      lines.push(["", "hashicorp/raft", String(b.runs), fmt(b.ops, 0), ...columns.map(([k, , d]) => fmt(b[k], d))])
      lines.push(ratioLine("ratio ours/hc", a, b))
    }
    const etcdRows = ours.filter((r) => r.scenario === `etcd/${name.slice("kv/".length)}`)
    if (name.startsWith("kv/") && etcdRows.length > 0) {
      const e = summarize(etcdRows)
      lines.push(["", "etcd", `${e.runs}${e.failed ? ` (+${e.failed} failed)` : ""}`, fmt(e.ops, 0), ...columns.map(([k, , d]) => fmt(e[k], d))])
      lines.push(ratioLine("ratio ours/etcd", a, e))
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const row = (cells: ReadonlyArray<string>) => "| " + cells.map((c, i) => i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ") + " |"
  console.log(row(header))
  console.log("|" + widths.map((w, i) => (i < 2 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|")
  for (const l of lines) console.log(row(l))
  if (theirs.length > 0) {
    console.log("ratio = effect-raft / hashicorp/raft medians: above 1 is better for ops/s, below 1 better for the rest.")
  }
  printAnchorTargets(ours, theirs, anchorNames)
  printEtcdTargets(ours)
  // Failed scenarios and failed operations, with their causes: never only a count.
  for (const r of ours) {
    if (r.error) console.log(`${String(r.scenario)}: FAILED: ${String(r.error)}`)
    const causes = r.error_causes as Record<string, number> | undefined
    if (causes !== undefined && Object.keys(causes).length > 0) {
      const list = Object.entries(causes).sort((a, b) => b[1] - a[1]).map(([cause, n]) => `${n}× ${cause}`).join(", ")
      console.log(`${String(r.scenario)}: ${String(r.errors)} of ${String(r.ops)} operations failed: ${list}`)
    }
    const warmupCauses = r.warmup_error_causes as Record<string, number> | undefined
    if (warmupCauses !== undefined && Object.keys(warmupCauses).length > 0) {
      const list = Object.entries(warmupCauses).map(([cause, n]) => `${n}× ${cause}`).join(", ")
      console.log(`${String(r.scenario)}: ${String(r.warmup_errors)} of ${String(r.warmup)} warm-up operations failed: ${list}`)
    }
    if (typeof r.leader_changes_during_run === "number" && r.leader_changes_during_run > 0) {
      console.log(`${String(r.scenario)}: ${r.leader_changes_during_run} new term(s) began during the measured phase`)
    }
  }
}

/** One target's line: `ratio` against `bound`, met or not. */
const targetLine = (what: string, ratio: number, bound: number, higherIsBetter: boolean, unit = "x") => {
  const met = higherIsBetter ? ratio >= bound : ratio <= bound
  return `  ${what}: ${ratio.toFixed(2)}${unit} (target ${higherIsBetter ? "≥" : "≤"} ${bound.toFixed(1)}${unit}) ${met ? "met" : "NOT met"}`
}

/** `key`'s median over `a`'s rows that did not fail divided by the same over `b`'s, when both have it. */
const medianRatio = (a: ReadonlyArray<Row>, b: ReadonlyArray<Row>, key: string): number | undefined => {
  const x = median(a.filter((r) => !r.error).map((r) => r[key]))
  const y = median(b.filter((r) => !r.error).map((r) => r[key]))
  return x === undefined || y === undefined || y === 0 ? undefined : x / y
}

/**
 * Issue 18's targets against hashicorp/raft (items 1, 2 and 5), from the medians of this sitting: in memory, ops/s
 * at 64 clients and at one and peak RSS at 64; over TCP, ops/s at one client; and two of ours alone: hand-offs per
 * apply in memory at one client, and the fast-timer rows' CPU per op against the default rows'.
 */
const printAnchorTargets = (ours: ReadonlyArray<Row>, theirs: ReadonlyArray<Row>, anchorNames: ReadonlyMap<string, string>) => {
  const rowsOf = (name: string) => ours.filter((r) => r.scenario === name && !r.error)
  const anchorRowsOf = (name: string) => theirs.filter((r) => r.scenario === (anchorNames.get(name) ?? name))
  const lines: Array<string> = []
  const against = (what: string, name: string, key: string, bound: number, higherIsBetter: boolean) => {
    const ratio = medianRatio(rowsOf(name), anchorRowsOf(name), key)
    if (ratio !== undefined) lines.push(targetLine(what, ratio, bound, higherIsBetter))
  }
  against("in memory c64 ops/s", "inmem/n3/c64/s128", "ops_per_sec", 1.0, true)
  against("in memory c1 ops/s", "inmem/n3/c1/s128", "ops_per_sec", 0.5, true)
  against("in memory c64 peak RSS", "inmem/n3/c64/s128", "peak_rss_mib", 1.2, false)
  against("TCP c1 ops/s", "tcp/n3/c1/s128", "ops_per_sec", 0.6, true)
  const tasks = median(rowsOf("inmem/n3/c1/s128").map((r) => r.tasks_per_apply))
  if (tasks !== undefined) lines.push(targetLine("in memory c1 tasks per apply", tasks, 8, false, ""))
  for (const mode of ["inmem", "tcp"]) {
    const ratio = medianRatio(rowsOf(`${mode}/n3/c1/s128/fast-timers`), rowsOf(`${mode}/n3/c1/s128`), "cpu_us_per_op")
    if (ratio !== undefined) lines.push(targetLine(`${mode} c1 fast timers' CPU per op / default timers'`, ratio, 1.3, false))
  }
  if (lines.length > 0) console.log(`targets of issue 18 (items 1, 2 and 5), ours/hashicorp medians unless said:\n${lines.join("\n")}`)
}

/**
 * Issue 18 item 2's bound against `npm run bench:floor`: one client's time per apply over TCP (default and fast
 * timers) at most twice the bare fan-out round measured beside it in this sitting (medians).
 */
const printFloorTargets = (ours: ReadonlyArray<Row>, floors: ReadonlyArray<Row>) => {
  const round = median(floors.filter((r) => !r.error).map((r) => r.wall_us_per_round))
  if (round === undefined) return
  const lines = [`  bench:floor's bare fan-out round: ${fmt(round, 1)} µs (median of ${floors.length})`]
  for (const name of ["tcp/n3/c1/s128", "tcp/n3/c1/s128/fast-timers"]) {
    const opsPerSec = median(ours.filter((r) => r.scenario === name && !r.error).map((r) => r.ops_per_sec))
    if (opsPerSec !== undefined && opsPerSec > 0) {
      lines.push(targetLine(`${name} µs per apply / the round`, 1e6 / opsPerSec / round, 2, false))
    }
  }
  console.log(`target of issue 18 (item 2) against the floor:\n${lines.join("\n")}`)
}

/**
 * The targets against etcd of issues 18 (item 3) and 19 (item 6), from the medians of this sitting: ops/s at least
 * the given multiple of etcd's, and server CPU per op, RSS per node and failover at most etcd's.
 */
const printEtcdTargets = (rows: ReadonlyArray<Row>) => {
  const lines: Array<string> = []
  const check = (what: string, suffix: string, key: string, bound: number, higherIsBetter: boolean) => {
    const ratio = medianRatio(
      rows.filter((r) => r.scenario === `kv/${suffix}`),
      rows.filter((r) => r.scenario === `etcd/${suffix}`),
      key
    )
    if (ratio !== undefined) lines.push(targetLine(what, ratio, bound, higherIsBetter))
  }
  check("PUT c64 ops/s", "n3/c64/s128", "ops_per_sec", 1.0, true)
  check("PUT c1 ops/s", "n3/c1/s128", "ops_per_sec", 1.0, true)
  check("GET c64 ops/s at the leader", "n3/c64/s128/get-leader", "ops_per_sec", 1.5, true)
  check("GET c64 ops/s at a follower", "n3/c64/s128/get-follower", "ops_per_sec", 1.5, true)
  check("PUT c64 server CPU per op", "n3/c64/s128", "server_cpu_us_per_op", 1.0, false)
  check("PUT c1 server CPU per op", "n3/c1/s128", "server_cpu_us_per_op", 1.0, false)
  check("PUT c64 peak RSS per node", "n3/c64/s128", "peak_rss_per_node_mib", 1.0, false)
  check("failover (leader killed → first acknowledged write), c64", "n3/c64/s128", "failover_commit_ms", 1.0, false)
  if (lines.length > 0) console.log(`targets against etcd (issue 18 item 3, issue 19 item 6), ours/etcd medians:\n${lines.join("\n")}`)
}

const loadAnchorRows = (p: string): Array<Row> => {
  const file = fs.statSync(p).isDirectory() ? path.join(p, "raft.jsonl") : p
  return fs.readFileSync(file, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Row)
    .filter((r) => r.impl === "hashicorp/raft")
}

// ---------------------------------------------------------------- main

const main = async () => {
  const scenarios = scenarioList()
  if (scenarios.length === 0) {
    console.error(`no scenario matches --only ${(argv.only ?? []).join(" --only ")}`)
    process.exit(2)
  }
  const runs = Math.max(1, Number(argv.runs))
  const command = await buildScenario()
  const kvCommand = scenarios.some((s) => s.kv === true)
    ? ["--import", "tsx", path.join(root, "benchmarks", "kv.ts"), ...(await buildKvNode())]
    : []
  const anchorBin = argv["anchor-bin"]
  const ours: Array<Row> = []
  const theirs: Array<Row> = argv.anchor === undefined ? [] : loadAnchorRows(argv.anchor)
  const ranAnchor: Array<Row> = []
  // The bare fan-out round of bench:floor, after each pass's one-client TCP row: the floor that row is set against.
  const floors: Array<Row> = []
  const floorCommand = ["--import", "tsx", path.join(root, "benchmarks", "floor.ts"), "--only", "tcp-fanout"]
  for (let run = 1; run <= runs; run++) {
    process.stderr.write(`== run ${run}/${runs}\n`)
    for (const scenario of scenarios) {
      // Rows without anchor arguments (the GETs) have nothing to compare with.
      if (anchorBin !== undefined && scenario.anchorArgs.length > 0) {
        const row = runWithRetries(`hashicorp ${scenario.name}`, anchorBin, ["-deadline", "90s", ...scenario.anchorArgs])
        ranAnchor.push(row)
        fs.appendFileSync(outFile, JSON.stringify(row) + "\n")
        process.stderr.write(`  hashicorp/raft ${brief(row)}\n`)
      }
      const row = scenario.kv === true
        ? runWithRetries(scenario.name, process.execPath, [...kvCommand, ...scenario.args], 660_000)
        : runWithRetries(scenario.name, process.execPath, [...command, ...scenario.args])
      ours.push(row)
      fs.appendFileSync(outFile, JSON.stringify(row) + "\n")
      process.stderr.write(`  ${String(row.impl ?? "effect-raft")}    ${brief(row)}\n`)
      if (scenario.name === "tcp/n3/c1/s128") {
        const floor = runWithRetries("floor tcp-fanout", process.execPath, floorCommand)
        floors.push(floor)
        fs.appendFileSync(outFile, JSON.stringify(floor) + "\n")
        process.stderr.write(`  floor          tcp-fanout: ${fmt(floor.wall_us_per_round as number | undefined, 1)} µs per round\n`)
      }
    }
  }
  // Rows measured in this sitting replace those read from --anchor.
  const reference = ranAnchor.length > 0 ? ranAnchor : theirs
  const anchorNames = new Map(scenarios.map((s) => [s.name, s.anchorName]))
  console.log("")
  printTable(ours, reference, anchorNames)
  printFloorTargets(ours, floors)
  console.log("")
  // The latency distributions stay in the results file and the plot.
  for (const { lat_cdf_us: _, ...row } of ours) console.log(JSON.stringify(row))
  console.log(`\nappended to ${path.relative(root, outFile)}`)
  if (ours.some((row) => Array.isArray(row.lat_cdf_us))) {
    const svgFile = argv.svg ?? path.join(resultsDir, `${stamp}.svg`)
    fs.writeFileSync(svgFile, latencySvg(ours, reference, anchorNames))
    console.log(`latency plot: ${path.relative(root, svgFile)}`)
  }
}

const brief = (r: Row): string => {
  const n = (k: string, d = 0) => fmt(typeof r[k] === "number" ? (r[k] as number) : undefined, d)
  return r.error
    ? `${String(r.scenario)}: ERROR ${String(r.error)}`
    : `${String(r.scenario)}: elect ${n("elect_ms")} ms, ${n("ops_per_sec")} ops/s, p50 ${n("lat_p50_us")} µs, p99 ${n("lat_p99_us")} µs, ` +
      `cpu ${n("cpu_us_per_op", 1)} µs/op, rss ${n("peak_rss_mib", 1)} MiB, failover ${n("failover_commit_ms")} ms`
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
