/**
 * One end-to-end scenario of the key-value service = one process = one JSON
 * line on stdout, with the keys of the hashicorp/raft anchor, as
 * `scenario.ts` does for the in-process tiers. `run.ts` runs it for the `kv/`
 * rows of `npm run bench` (and `npm run bench:kv`, which is `run.ts --only kv/`).
 *
 *   node --import tsx benchmarks/kv.ts --conc 64|1 [--ops N] [--warmup N] [--fast] [--failover false] [--deadline 600]
 *     [--get leader|follower]
 *     [--node-entry <bundle of src/kv/main.ts>]   (default: the sources through tsx)
 *     [--node-cpu-prof <dir>]   (each node runs under `node --cpu-prof`, its profile written to <dir> when it stops,
 *                                and the shares of each node's busy time in the measured phase printed to stderr;
 *                                with --failover false, so that no node is killed before it writes it)
 *     [--node-flags "<V8 flags>"]  (the nodes' V8 flags instead of `kv cluster`'s, `Launcher.nodeFlags`; "" for none)
 *     [--etcd]                  (a 3-member etcd from PATH instead of our nodes: `etcd.ts`; no --fast)
 *
 * 1. Three `kv node` processes on loopback (TCP transport, the WAL (or LMDB,
 *    `--store`) as log and stable store, file snapshots: durable, as the anchor's `bolt` mode), default
 *    timers or `--fast` (a tenth of them, the anchor's `fast-timers`).
 * 2. Warm-up, not measured: `--warmup` operations of the measured kind (default
 *    5,000), so that V8 has compiled the nodes' hot paths
 *    before the clock starts (a node's first ~4,000 PUTs at one client run
 *    slower while it does; etcd, compiled ahead of time, gets the same
 *    warm-up); GET rows first PUT the 1,000 keys they read.
 * 3. Measured: `ops` HTTP PUTs of 128-byte values from `conc` concurrent
 *    clients in this process; a latency is one PUT until the leader answered
 *    (committed and applied), including any redirect it followed.
 * 4. Every node must reach the leader's applied index (`fsm_check_ok`).
 * 5. Failover: the leader is killed with SIGKILL; `failover_elect_ms` is the
 *    time until another node says it leads, `failover_commit_ms` until a PUT
 *    to it succeeds.
 *
 * The clients behave as the `kv` CLI does: each PUT goes to the node believed
 * to lead; a 307 is followed (the body sent again to `Location`) and the new
 * address remembered; after a failure the clients look for the leader again.
 * Nothing is retried silently: every PUT that did not end in 200 counts in
 * `errors`, with its cause (status and `_tag`, or the client-side exception)
 * in `error_causes`, and followed redirects count in `redirects`.
 *
 * With `--get leader|follower`, the measured operations are linearizable GETs
 * (`raft.readIndex`, ReadIndex mode) of the keys the warm-up wrote, all sent
 * to the leader or all to one follower (which serves them itself); there is
 * no failover phase, and `leader_cpu_us_per_op` is the leader process's CPU
 * per read (a follower's reads cost the leader its ReadIndex requests and
 * heartbeat rounds).
 *
 * With `--etcd`, the same scenario runs against a 3-member etcd (the `etcd` on
 * PATH, default settings, fsync on; `etcd.ts`) through its JSON gateway: a PUT
 * is `POST /v3/kv/put` to the leader, a GET a linearizable `POST /v3/kv/range`
 * (etcd's default), the leader found and failover timed through
 * `/v3/maintenance/status`. The row has the same keys, `impl` "etcd" and a
 * scenario named `etcd/...`. `server_cpu_us_per_op` (the three servers, no
 * client) and `peak_rss_per_node_mib` are the figures the issues compare.
 *
 * What differs from the anchor: every operation is an HTTP request with a JSON
 * body to another process (the anchor calls `Apply` in-process), the nodes are
 * three processes (the anchor runs them in one), and `cpu_us_per_op` counts
 * the three nodes and this client process; `peak_rss_mib` sums the nodes'
 * peak RSS (the client is not counted).
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"
import { type ProcessCluster, type ProcessNode, startProcessCluster } from "../test/kv/processes.js"
import * as Launcher from "../src/kv/Launcher.js"
import { etcdErrorCause, etcdPut, etcdRange, etcdStatus, etcdVersion, startEtcdCluster } from "./etcd.js"
import { readVersion } from "./version.js"

const { values: argv } = parseArgs({
  options: {
    conc: { type: "string", default: "64" },
    ops: { type: "string" },
    warmup: { type: "string" },
    fast: { type: "boolean", default: false },
    failover: { type: "string", default: "true" },
    deadline: { type: "string", default: "600" },
    label: { type: "string" },
    get: { type: "string" },
    etcd: { type: "boolean", default: false },
    "node-entry": { type: "string" },
    "node-cpu-prof": { type: "string" },
    "node-flags": { type: "string" },
    store: { type: "string" }
  }
})

// The nodes' durable store (`kv node --store`), passed down as KV_STORE, which the node processes inherit:
// `KV_STORE=lmdb npm run bench:kv -- ...` or `tsx benchmarks/kv.ts --store lmdb`. Without it, the default of a
// new data directory: the WAL.
if (argv.store !== undefined) process.env.KV_STORE = argv.store
const store = process.env.KV_STORE ?? "wal"

const conc = Math.max(1, Number(argv.conc))
/** The anchor instead of our service: a 3-member etcd (`etcd.ts`), driven by the same clients. */
const etcd = argv.etcd
const fast = argv.fast
// 20,000 PUTs at 64 clients, as the anchor's bolt mode; 5,000 with one (the anchor's 2,000 take under 2 s), 500
// with one and fast timers.
const ops = Math.max(1, argv.ops !== undefined ? Number(argv.ops) : conc > 1 ? 20_000 : fast ? 500 : 5_000)

const SIZE = 128
const VALUE = "x".repeat(SIZE)
const get = argv.get === "leader" || argv.get === "follower" ? argv.get : undefined
// Operations of the measured kind before the measured ones: the JIT's warm-up (benchmarks/README.md, "Warm-up").
const warmup = argv.warmup !== undefined ? Number(argv.warmup) : 5_000
// GETs read the keys written before the warm-up: all 1000 of them.
const KEYS = 1000
const label = argv.label ?? [fast ? "fast-timers" : "", get === undefined ? "" : `get-${get}`].filter((part) => part !== "").join("/")
const CLK_TCK = 100

/** Latency quantiles written to the row for the plot: evenly spaced on a "nines" scale, 0 to 99.9 %. */
const cdfQuantiles: ReadonlyArray<number> = Array.from({ length: 61 }, (_, k) => 1 - Math.pow(10, -k / 20))

// ---------------------------------------------------------------- result

const result: Record<string, unknown> = {
  impl: etcd ? "etcd" : "effect-raft/kv",
  impl_version: etcd
    ? `${etcdVersion() ?? "etcd (not on PATH)"}, 3 members, default settings`
    : `effect-raft ${readVersion()} key-value service on ${store} (node ${process.version})`,
  store: etcd ? null : store,
  scenario: `${etcd ? "etcd" : "kv"}/n3/c${conc}/s${SIZE}${label === "" ? "" : `/${label}`}`,
  mode: etcd ? "etcd" : "kv",
  op: get === undefined ? "put" : "get",
  read_target: get ?? null,
  nodes: 3,
  ops,
  warmup,
  size: SIZE,
  conc,
  label,
  elect_ms: null,
  start_to_leader_ms: null,
  duration_s: null,
  ops_per_sec: null,
  lat_mean_us: null,
  lat_p50_us: null,
  lat_p90_us: null,
  lat_p99_us: null,
  lat_p999_us: null,
  lat_max_us: null,
  lat_cdf_us: null,
  errors: 0,
  error_causes: {},
  warmup_errors: 0,
  warmup_error_causes: {},
  redirects: 0,
  cpu_us_per_op: null,
  server_cpu_us_per_op: null,
  leader_cpu_us_per_op: null,
  client_cpu_us_per_op: null,
  bg_cpu_cores: null,
  machine_busy_cores: null,
  followers_caught_up_ms: null,
  fsm_check_ok: false,
  leader_changes_during_run: null,
  failover_elect_ms: null,
  failover_commit_ms: null,
  peak_rss_mib: null,
  peak_rss_per_node_mib: null,
  // The nodes' V8 flags (Node's command line before the entry), as `kv cluster` starts them unless --node-flags.
  node_flags: null as string | null,
  // etcd's defaults: a heartbeat every 100 ms, an election after 1 s without one.
  heartbeat_timeout_ms: etcd ? 100 : fast ? 100 : 1000,
  election_timeout_ms: fast ? 100 : 1000,
  leader_lease_ms: etcd ? null : fast ? 50 : 500,
  commit_timeout_ms: etcd ? null : fast ? 5 : 50,
  durable: true,
  node_version: process.version,
  num_cpu: os.cpus().length,
  error: "",
  started_at_unix: Math.floor(Date.now() / 1000)
}

let emitted = false
const emit = () => {
  if (emitted) return
  emitted = true
  process.stdout.write(JSON.stringify(result) + "\n")
}


// ---------------------------------------------------------------- machine probes

/** utime+stime ticks of every user-space process, by pid. */
const processTicks = (): Map<number, number> => {
  const out = new Map<number, number>()
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    try {
      const text = fs.readFileSync(`/proc/${name}/stat`, "utf8")
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
      if ((Number(fields[6]) & 0x00200000) !== 0) continue // kernel thread
      out.set(pid, Number(fields[11]) + Number(fields[12]))
    } catch {
      // the process ended meanwhile
    }
  }
  return out
}

/** Busy and total jiffies of the whole machine. */
const machineTicks = (): { busy: number; total: number } => {
  const values = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = values.reduce((a, b) => a + b, 0)
  return { busy: total - values[3]! - values[4]!, total }
}

/** Peak resident set of a process, in MiB (VmHWM). */
const peakRssMib = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) / 1024
  } catch {
    return 0
  }
}

// ---------------------------------------------------------------- the client

interface Status {
  readonly id: string
  readonly state: string
  readonly term: number
  readonly commitIndex: number
  readonly appliedIndex: number
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const status = (node: ProcessNode): Promise<Status | undefined> =>
  etcd ? etcdStatus(node.http) : fetch(`http://${node.http}/status`, { signal: AbortSignal.timeout(2000) })
    .then((response) => response.ok ? response.json() as Promise<Status> : undefined)
    .catch(() => undefined)

/** Keep-alive connections, as many as there are clients (node:http costs the client less CPU than fetch). */
const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })

/** One HTTP request with a JSON body: status, `Location` and body, or the socket's error. */
const httpSend = (address: string, method: string, requestPath: string, body: string) =>
  new Promise<{ readonly status: number; readonly location: string | undefined; readonly body: string }>(
    (resolve, reject) => {
      const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))]
      const request = http.request({
        host,
        port,
        method,
        path: requestPath,
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        timeout: 30_000
      }, (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (chunk: Buffer) => chunks.push(chunk))
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            location: response.headers.location,
            body: Buffer.concat(chunks).toString("utf8")
          }))
        response.on("error", reject)
      })
      request.on("timeout", () => request.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })))
      request.on("error", reject)
      request.end(body)
    }
  )

/** One HTTP GET of `/kv/<key>` (linearizable): its status and body. */
const httpGet = (address: string, key: string) =>
  new Promise<{ readonly status: number; readonly body: string }>((resolve, reject) => {
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))]
    const request = http.request({ host, port, method: "GET", path: `/kv/${key}`, agent, timeout: 30_000 }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }))
      response.on("error", reject)
    })
    request.on("timeout", () => request.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })))
    request.on("error", reject)
    request.end()
  })

const BODY = JSON.stringify({ value: VALUE })

/** What one PUT came to: success, or the cause of its failure ("503 NoLeader", "socket: ECONNREFUSED", ...). */
type Outcome = { readonly ok: true } | { readonly ok: false; readonly cause: string }

/**
 * The clients' view of the cluster: the HTTP address believed to lead, moved by redirects, and looked up again
 * (one search shared by all clients) after a failure.
 */
class Client {
  leader: string
  redirects = 0
  private search: Promise<void> | undefined

  constructor(readonly cluster: ProcessCluster, leader: string) {
    this.leader = leader
  }

  /** One PUT of `key`, following up to 3 redirects. */
  async put(key: string): Promise<Outcome> {
    let target = this.leader
    for (let hop = 0; hop < 4; hop++) {
      let response: Awaited<ReturnType<typeof httpSend>>
      try {
        const request = etcd ? etcdPut(key, VALUE) : { path: `/kv/${key}`, body: BODY }
        response = await httpSend(target, etcd ? "POST" : "PUT", request.path, request.body)
      } catch (error) {
        return { ok: false, cause: `socket: ${(error as { code?: string }).code ?? (error as Error).message}` }
      }
      const { body, location } = response
      if (response.status === 200) return { ok: true }
      if (etcd) return { ok: false, cause: `${response.status} ${etcdErrorCause(body)}` }
      if (response.status === 307 && location !== undefined) {
        target = new URL(location).host
        this.leader = target
        this.redirects++
        continue
      }
      let tag = "?"
      try {
        // The tag, and for OutcomeUnknown / Unavailable the reason (leadership lost, timed out, ...).
        const error = JSON.parse(body) as { _tag?: string; reason?: string }
        tag = String(error._tag ?? "?") + (error.reason === undefined ? "" : `: ${error.reason}`)
      } catch {
        tag = body.slice(0, 60)
      }
      return { ok: false, cause: `${response.status} ${tag}` }
    }
    return { ok: false, cause: "too many redirects" }
  }

  /** One linearizable GET of `key` at `address` (no redirect: every node serves reads). */
  async get(address: string, key: string): Promise<Outcome> {
    let response: Awaited<ReturnType<typeof httpGet>>
    try {
      response = etcd ? await httpSend(address, "POST", etcdRange(key).path, etcdRange(key).body) : await httpGet(address, key)
    } catch (error) {
      return { ok: false, cause: `socket: ${(error as { code?: string }).code ?? (error as Error).message}` }
    }
    if (response.status === 200) return { ok: true }
    if (etcd) return { ok: false, cause: `${response.status} ${etcdErrorCause(response.body)}` }
    let tag = "?"
    try {
      const error = JSON.parse(response.body) as { _tag?: string; reason?: string }
      tag = String(error._tag ?? "?") + (error.reason === undefined ? "" : `: ${error.reason}`)
    } catch {
      tag = response.body.slice(0, 60)
    }
    return { ok: false, cause: `${response.status} ${tag}` }
  }

  /** Looks for the node that says it leads (all callers share one search), for at most 30 s. */
  findLeader(): Promise<void> {
    this.search ??= (async () => {
      const deadline = performance.now() + 30_000
      while (performance.now() < deadline) {
        for (const node of this.cluster.nodes) {
          if (!this.cluster.alive(node)) continue
          if ((await status(node))?.state === "Leader") {
            this.leader = node.http
            return
          }
        }
        await sleep(20)
      }
    })().finally(() => {
      this.search = undefined
    })
    return this.search
  }
}

/**
 * `count` operations from `conc` concurrent clients (PUTs of `<prefix><i mod 1000>`, or what `operation` does with
 * that key); latencies (µs) of the successful ones, failures by cause.
 */
const load = async (
  client: Client,
  count: number,
  prefix: string,
  operation: (key: string) => Promise<Outcome> = (key) => client.put(key)
) => {
  const latencies: Array<number> = []
  const causes: Record<string, number> = {}
  let errors = 0
  let next = 0
  await Promise.all(Array.from({ length: Math.min(conc, count) }, async () => {
    for (;;) {
      const i = next++
      if (i >= count) return
      const t0 = performance.now()
      const outcome = await operation(`${prefix}${i % KEYS}`)
      if (outcome.ok) {
        latencies.push((performance.now() - t0) * 1000)
      } else {
        errors++
        causes[outcome.cause] = (causes[outcome.cause] ?? 0) + 1
        await client.findLeader()
      }
    }
  }))
  return { latencies, errors, causes }
}

const percentile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

/** Nodes whose process ended, with the last error line of their log (a port taken by another process shows here). */
const deadNodes = (cluster: ProcessCluster, dir: string, except?: ProcessNode): string | undefined => {
  const dead = cluster.nodes.filter((node) => node !== except && !cluster.alive(node)).map((node) => {
    let tail = ""
    try {
      const lines = fs.readFileSync(path.join(dir, `${node.id}.log`), "utf8").trim().split("\n")
      tail = (lines.filter((line) => /error|EADDRINUSE/i.test(line)).pop() ?? lines[lines.length - 1] ?? "").trim()
    } catch {
      // no log
    }
    return `${node.id} exited (its log: ${tail.slice(0, 300)})`
  })
  return dead.length === 0 ? undefined : dead.join("; ")
}

const maxTerm = async (cluster: ProcessCluster) => {
  let term = 0
  for (const node of cluster.nodes) term = Math.max(term, (await status(node))?.term ?? 0)
  return term
}

// ---------------------------------------------------------------- the scenario

const run = async (cluster: ProcessCluster, dir: string, t0: number) => {
  let leader: ProcessNode | undefined
  while (leader === undefined && performance.now() - t0 < 120_000) {
    for (const node of cluster.nodes) if ((await status(node))?.state === "Leader") leader = node
    if (leader === undefined) await sleep(20)
  }
  if (leader === undefined) throw new Error(`no leader within 120 s; ${deadNodes(cluster, dir) ?? "all nodes running"}`)
  // From spawning three Node processes (tsx compiles the sources) to a leader: not the anchor's `elect_ms`.
  result.start_to_leader_ms = performance.now() - t0
  const client = new Client(cluster, leader.http)
  // The leader registers its HTTP address through the log before it can redirect; wait until a PUT succeeds.
  while (!(await client.put("ready")).ok && performance.now() - t0 < 120_000) await sleep(20)
  const deadAtStart = deadNodes(cluster, dir)
  if (deadAtStart !== undefined) throw new Error(`a node did not start: ${deadAtStart}`)
  // Reads go to the leader, or all to one follower, and read the keys written first.
  const currentLeader = () => cluster.nodes.find((node) => node.http === client.leader) ?? leader
  const reads = () => {
    if (get === undefined) return undefined
    const leaderNow = currentLeader()
    const readAt = get === "follower" ? cluster.nodes.find((node) => node !== leaderNow)! : leaderNow
    return (key: string) => client.get(readAt.http, key)
  }
  // Failures here (a leader change on a starved machine, say) are reported, and the measured phase still runs.
  const keys = get === undefined ? undefined : await load(client, KEYS, "w")
  const warm = await load(client, warmup, "w", reads())
  result.warmup_errors = warm.errors + (keys?.errors ?? 0)
  const causes: Record<string, number> = { ...warm.causes }
  for (const [cause, n] of Object.entries(keys?.causes ?? {})) causes[cause] = (causes[cause] ?? 0) + n
  result.warmup_error_causes = causes

  const termBefore = await maxTerm(cluster)
  const pids = cluster.nodes.map((node) => node.child?.pid).filter((pid): pid is number => pid !== undefined)
  const leaderNow = currentLeader()
  const operation = reads()
  const ticks0 = processTicks()
  const machine0 = machineTicks()
  const cpu0 = process.cpuUsage()
  const started = performance.now()
  const monotonic0 = process.hrtime.bigint() / 1000n
  const measured = await load(client, ops, get === undefined ? "k" : "w", operation)
  const elapsedS = (performance.now() - started) / 1000
  // The measured phase on the monotonic clock of the profiles' timestamps (µs), to cut start-up and warm-up out.
  measuredWindow = [Number(monotonic0), Number(process.hrtime.bigint() / 1000n)]
  measuredLeaderPid = leaderNow.child?.pid
  const cpu1 = process.cpuUsage(cpu0)
  const machine1 = machineTicks()
  const ticks1 = processTicks()
  result.leader_changes_during_run = (await maxTerm(cluster)) - termBefore
  const dead = deadNodes(cluster, dir)
  if (dead !== undefined) throw new Error(`a node ended during the run: ${dead}`)

  const ours = new Set([process.pid, ...pids])
  let nodeTicks = 0
  let otherTicks = 0
  let leaderTicks = 0
  for (const [pid, t1] of ticks1) {
    const delta = t1 - (ticks0.get(pid) ?? 0)
    if (pid === process.pid) continue
    if (pid === leaderNow.child?.pid) leaderTicks += delta
    if (ours.has(pid)) nodeTicks += delta
    else otherTicks += delta
  }
  const clientUs = cpu1.user + cpu1.system
  result.duration_s = elapsedS
  result.ops_per_sec = ops / elapsedS
  result.errors = measured.errors
  result.error_causes = measured.causes
  result.redirects = client.redirects
  result.cpu_us_per_op = (nodeTicks * (1e6 / CLK_TCK) + clientUs) / ops
  result.client_cpu_us_per_op = clientUs / ops
  result.server_cpu_us_per_op = nodeTicks * (1e6 / CLK_TCK) / ops
  result.leader_cpu_us_per_op = leaderTicks * (1e6 / CLK_TCK) / ops
  result.bg_cpu_cores = otherTicks / CLK_TCK / elapsedS
  if (machine1.total > machine0.total) {
    result.machine_busy_cores = (machine1.busy - machine0.busy) / (machine1.total - machine0.total) * os.cpus().length
  }
  const sorted = measured.latencies.sort((a, b) => a - b)
  result.lat_mean_us = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)
  result.lat_p50_us = percentile(sorted, 0.5)
  result.lat_p90_us = percentile(sorted, 0.9)
  result.lat_p99_us = percentile(sorted, 0.99)
  result.lat_p999_us = percentile(sorted, 0.999)
  result.lat_max_us = sorted[sorted.length - 1] ?? null
  // The quantiles the sample can tell apart (up to 1 - 1/n), then the maximum.
  result.lat_cdf_us = sorted.length === 0 ? null : [
    ...cdfQuantiles.filter((q) => q <= 1 - 1 / sorted.length).map((q) => [q, percentile(sorted, q)]),
    [1, sorted[sorted.length - 1]!]
  ]

  // Every node applies what the leader applied.
  const target = (await status(leader))?.appliedIndex ?? Number.POSITIVE_INFINITY
  const tc = performance.now()
  let caughtUp = false
  while (!caughtUp && performance.now() - tc < 15_000) {
    const all = await Promise.all(cluster.nodes.map(status))
    caughtUp = all.every((s) => s !== undefined && s.appliedIndex >= target)
    if (!caughtUp) await sleep(5)
  }
  result.followers_caught_up_ms = performance.now() - tc
  result.fsm_check_ok = caughtUp
  const peakRss = cluster.nodes.reduce((sum, node) => sum + peakRssMib(node.child?.pid), 0)
  result.peak_rss_mib = peakRss
  result.peak_rss_per_node_mib = peakRss / cluster.nodes.length

  if (argv.failover === "false" || get !== undefined) return
  const current = cluster.nodes.find((node) => node.http === client.leader) ?? leader
  const tf = performance.now()
  await cluster.kill(current, "SIGKILL")
  const others = cluster.nodes.filter((node) => node !== current)
  const deadBefore = deadNodes(cluster, dir, current)
  if (deadBefore !== undefined) throw new Error(`failover: another node is down: ${deadBefore}`)
  while (result.failover_commit_ms === null && performance.now() - tf < 60_000) {
    for (const node of others) {
      if ((await status(node))?.state !== "Leader") continue
      result.failover_elect_ms ??= performance.now() - tf
      if ((await new Client(cluster, node.http).put("after-failover")).ok) {
        result.failover_commit_ms = performance.now() - tf
        break
      }
    }
    if (result.failover_commit_ms === null) await sleep(fast ? 2 : 10)
  }
  if (result.failover_commit_ms === null) throw new Error("failover: no PUT succeeded within 60 s of the kill")
}

let running: ProcessCluster | undefined

const main = async () => {
  if (etcd && (fast || etcdVersion() === undefined)) {
    result.error = fast ? "--etcd runs with etcd's default timers only (no --fast)" : "no etcd on PATH"
    return emit()
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), etcd ? "etcd-bench-" : "kv-bench-"))
  const t0 = performance.now()
  const entry = argv["node-entry"]
  const profileDir = argv["node-cpu-prof"]
  const profile = profileDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", path.resolve(profileDir)]
  const command = entry === undefined
    ? [...profile, "--import", "tsx", path.join(import.meta.dirname, "..", "src", "kv", "main.ts")]
    : [...profile, entry]
  // Plaintext Raft transport, as etcd's peers speak by default: the figures compare like with like.
  const nodeFlags = argv["node-flags"]?.split(" ").filter((flag) => flag !== "")
  if (!etcd) result.node_flags = (nodeFlags ?? Launcher.nodeFlags).join(" ")
  const cluster = etcd
    ? await startEtcdCluster({ dir })
    : await startProcessCluster({ dir, nodes: 3, fast, tls: false, command, ...(nodeFlags === undefined ? {} : { nodeFlags }) })
  running = cluster
  let failed = false
  try {
    await run(cluster, dir, t0)
  } catch (error) {
    failed = true
    result.error = `${error instanceof Error ? error.message : String(error)} (node logs kept in ${dir})`
  } finally {
    await cluster.stop()
  }
  if (!failed) fs.rmSync(dir, { recursive: true, force: true })
  if (profileDir !== undefined) summarizeProfiles(path.resolve(profileDir))
  emit()
}

// ---------------------------------------------------------------- --node-cpu-prof

let measuredWindow: readonly [number, number] | undefined
let measuredLeaderPid: number | undefined

/** Where a sample's own time is counted, by the script (or native function) it ran in. */
const profileCategory = (url: string, name: string): string => {
  if (name === "(garbage collector)") return "GC"
  if (name === "(program)") return "native code outside JS (program)"
  if (name === "writev" || name === "writeUtf8String" || name === "writeBuffer") return "socket writes (writev, write)"
  if (url.includes("/lmdb/")) return "LMDB (lmdb-js)"
  if (url.includes("/msgpackr/")) return "msgpackr (Raft wire codec)"
  if (url.includes("@opentelemetry") || /\/effect\/dist\/esm\/(internal\/)?(metric|Metric|tracer|Tracer)/.test(url)) {
    return "metrics and tracing"
  }
  if (/\/effect\/dist\/esm\/(internal\/)?(logger|Logger)/.test(url)) return "logging"
  if (/\/effect\/dist\/esm\/(internal\/schema|Schema|ParseResult)/.test(url)) return "effect/Schema (decode, encode)"
  if (url.includes("@effect/platform")) return "@effect/platform (HttpApi, router, server glue)"
  if (url.includes("/node_modules/effect/")) return "Effect runtime (fibers, context, FiberRefs)"
  if (url.includes("/internal/") && !url.includes("node_modules")) return "Raft engine (src/internal)"
  if (url.includes("/kv/") && !url.includes("node_modules")) return "kv service (src/kv)"
  if (/_http_|node:http/.test(url) || name === "HTTPParser") return "Node HTTP (llhttp, server)"
  if (/node:(net|stream|internal\/streams)/.test(url)) return "Node net and streams"
  if (url.startsWith("node:")) return "Node, other"
  if (url === "") return "V8 builtins (JSON, strings, ...)"
  return url.includes("node_modules") ? "other packages" : "effect-raft, other (Raft.ts, TCP, stores)"
}

/**
 * Prints to stderr, for each node's profile, the share of its busy time (idle left out) in the measured phase by
 * category (self time: the runtime's share is not attributed to whoever scheduled the work). Run the nodes from
 * `dist/` (`--node-entry dist/kv/main.js` after `npm run build`): a bundle puts every module in one script.
 */
const summarizeProfiles = (dir: string) => {
  const [from, to] = measuredWindow ?? [0, Number.POSITIVE_INFINITY]
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith(".cpuprofile"))) {
    const pid = Number(file.split(".")[3])
    interface ProfileNode {
      readonly id: number
      readonly callFrame: { readonly url: string; readonly functionName: string }
    }
    const profile = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as {
      nodes: Array<ProfileNode>
      startTime: number
      samples: Array<number>
      timeDeltas: Array<number>
    }
    const byId = new Map(profile.nodes.map((node) => [node.id, node]))
    const shares = new Map<string, number>()
    let busy = 0
    let t = profile.startTime
    profile.samples.forEach((id, i) => {
      t += profile.timeDeltas[i] ?? 0
      const frame = byId.get(id)?.callFrame
      if (t < from || t > to || frame === undefined || frame.functionName === "(idle)") return
      const category = profileCategory(frame.url, frame.functionName)
      shares.set(category, (shares.get(category) ?? 0) + (profile.timeDeltas[i] ?? 0))
      busy += profile.timeDeltas[i] ?? 0
    })
    const lines = [...shares].sort((a, b) => b[1] - a[1]).map(([category, us]) =>
      `  ${(100 * us / Math.max(1, busy)).toFixed(1).padStart(5)} %  ${category}`
    )
    process.stderr.write(
      `${file}${pid === measuredLeaderPid ? " (the leader)" : ""}: ${(busy / 1e6).toFixed(2)} s busy in the measured ` +
        `phase, ${(busy / ops).toFixed(0)} µs per operation\n${lines.join("\n")}\n`
    )
  }
}

// Watchdog: a stuck scenario still produces a JSON line, and its node processes end with it.
setTimeout(() => {
  result.error = `deadline ${argv.deadline}s exceeded`
  for (const node of running?.nodes ?? []) node.child?.kill("SIGKILL")
  emit()
  process.exit(3)
}, Number(argv.deadline) * 1000).unref()

await main()
