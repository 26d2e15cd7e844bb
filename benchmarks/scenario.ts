/**
 * One benchmark scenario = one process = one JSON line on stdout, with the keys
 * and the semantics of the hashicorp/raft anchor (`shared/anchor/raftbench`):
 *
 *  1. N voters on the memory network and memory stores (mode `inmem`), or
 *     durable LMDB stores in a temporary directory behind a 512-entry LogCache
 *     over loopback TCP (mode `lmdb`, the counterpart of the anchor's `bolt`),
 *     bootstrapped with the same configuration; `elect_ms` is the time from starting the first node
 *     until some node becomes leader, `ready_ms` adds a barrier on it;
 *  2. warm-up: min(10,000, ops) applies in memory and over TCP, min(1000, ops/10) durable, not measured;
 *  3. measured: `ops` applies of `size` bytes from `conc` concurrent fibers;
 *     each latency is one `raft.apply` until committed and applied on the leader;
 *  4. every node's FSM must reach warm-up + ops entries (`fsm_check_ok`);
 *  5. failover: the leader is cut off the network (both directions) and shut
 *     down in the background; `failover_elect_ms` is the time until another
 *     node is leader, `failover_commit_ms` until an apply on it succeeds.
 *
 *  With `--mode tcp` the nodes talk over loopback TCP (`TcpTransport`), still in one process, as the anchor's
 *  `tcp` mode does; `--pipeline-depth`/`--pipeline-bytes` set the transport's pipeline window. `--mode lmdb`
 *  is `tcp` with durable stores, as the anchor's `bolt` mode.
 *
 *   node --import tsx benchmarks/scenario.ts --mode inmem|tcp|lmdb --conc 64 [--ops N] [--label L]
 *     [--heartbeat 1000 --election 1000 --lease 500 --commit-timeout 50] (ms)
 *     [--tracer otel [--trace-sample 1]]
 *
 *  `--tracer otel` installs OpenTelemetry's tracer (`@effect/opentelemetry`, a batch span processor over an
 *  exporter that drops what it is given), so every span the nodes make is built, ended and batched as in
 *  production, without I/O; `--trace-sample` sets `RaftConfig.traceSampleRate`. The scenario's name gets
 *  `/otel` (and `/otel-<rate>`), so rows with and without a tracer sit side by side.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { parseArgs } from "node:util"
import { Worker } from "node:worker_threads"
import type { SpanExporter } from "@opentelemetry/sdk-trace-base"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import type * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import * as RaftConfig from "../src/RaftConfig.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import type * as LmdbStore from "../src/storage/LmdbStore.js"
import type { StorageError } from "../src/RaftError.js"
import * as Transport from "../src/Transport.js"
import { fairScheduler } from "../src/internal/scheduler.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"
import { load, type LoadResult } from "./load.js"
import type { NodeThreadData, NodeThreadRequest } from "./node-thread.js"
import { readVersion } from "./version.js"

// ---------------------------------------------------------------- options

const { values: argv } = parseArgs({
  options: {
    mode: { type: "string", default: "inmem" },
    nodes: { type: "string", default: "3" },
    ops: { type: "string" },
    warmup: { type: "string" },
    size: { type: "string", default: "128" },
    conc: { type: "string", default: "64" },
    label: { type: "string", default: "" },
    heartbeat: { type: "string", default: String(RaftConfig.defaults.heartbeatTimeoutMillis) },
    election: { type: "string", default: String(RaftConfig.defaults.electionTimeoutMillis) },
    lease: { type: "string", default: String(RaftConfig.defaults.leaderLeaseTimeoutMillis) },
    "commit-timeout": { type: "string", default: String(RaftConfig.defaults.commitTimeoutMillis) },
    "max-append": { type: "string", default: String(RaftConfig.defaults.maxAppendEntries) },
    failover: { type: "string", default: "true" },
    deadline: { type: "string", default: "90" },
    "log-level": { type: "string", default: "Error" },
    scheduler: { type: "string", default: "default" },
    "pipeline-depth": { type: "string" },
    "pipeline-bytes": { type: "string" },
    threads: { type: "boolean", default: false },
    tracer: { type: "string", default: "none" },
    "trace-sample": { type: "string", default: "1" }
  }
})

const mode = argv.mode
const nodeCount = Number(argv.nodes)
const conc = Math.max(1, Number(argv.conc))
// As the anchor: 100,000 applies at 64 clients (20,000 when durable), a tenth of that with one client.
const defaultOps = mode === "lmdb" ? 20_000 : 100_000
const ops = argv.ops !== undefined ? Number(argv.ops) : conc === 1 ? defaultOps / 10 : defaultOps
// Durable: the anchor's default. In memory and over TCP, 10,000 applies (or `ops` when fewer), so that V8 has
// compiled the hot paths before the clock starts (benchmarks/README.md, "Warm-up"); run.ts gives the anchor the same.
const warmup = argv.warmup !== undefined
  ? Number(argv.warmup)
  : mode === "lmdb"
  ? Math.min(1000, Math.floor(ops / 10))
  : Math.min(10_000, ops)
const size = Number(argv.size)
const label = argv.label
const timers = {
  heartbeatTimeoutMillis: Number(argv.heartbeat),
  electionTimeoutMillis: Number(argv.election),
  leaderLeaseTimeoutMillis: Number(argv.lease),
  commitTimeoutMillis: Number(argv["commit-timeout"])
}
const maxAppend = Number(argv["max-append"])
/** `--tracer otel`: OpenTelemetry's tracer installed (spans batched and dropped); `none`: Effect's default. */
const tracer = argv.tracer
const traceSampleRate = Number(argv["trace-sample"])
const tracerSuffix = tracer === "none" ? "" : `/${tracer}${traceSampleRate === 1 ? "" : `-${traceSampleRate}`}`
const deadlineSeconds = Number(argv.deadline)
/** `default` = Effect's scheduler; `yield:<ms>` = an experiment that yields to the event loop every <ms>. */
const schedulerOption = argv.scheduler
/** `--threads` (tcp, lmdb): each node on a worker thread of its own, still one process (see programThreaded). */
const threaded = argv.threads === true

// ---------------------------------------------------------------- result

const result: Record<string, unknown> = {
  impl: "effect-raft",
  impl_version: `effect-raft ${readVersion()} (effect ${readVersion("effect")}, node ${process.version})`,
  scenario: `${mode}/n${nodeCount}/c${conc}/s${size}${label === "" ? "" : `/${label}`}${tracerSuffix}`,
  mode,
  nodes: nodeCount,
  ops,
  warmup,
  size,
  conc,
  elect_ms: null,
  ready_ms: null,
  duration_s: null,
  ops_per_sec: null,
  mb_per_sec: null,
  lat_mean_us: null,
  lat_p50_us: null,
  lat_p90_us: null,
  lat_p99_us: null,
  lat_p999_us: null,
  lat_max_us: null,
  errors: 0,
  cpu_user_s: null,
  cpu_sys_s: null,
  cpu_us_per_op: null,
  bg_cpu_cores: null,
  machine_busy_cores: null,
  followers_caught_up_ms: null,
  fsm_check_ok: false,
  leader_changes_during_run: null,
  failover_elect_ms: null,
  failover_commit_ms: null,
  peak_rss_mib: null,
  total_wall_s: null,
  heartbeat_timeout_ms: timers.heartbeatTimeoutMillis,
  election_timeout_ms: timers.electionTimeoutMillis,
  leader_lease_ms: timers.leaderLeaseTimeoutMillis,
  commit_timeout_ms: timers.commitTimeoutMillis,
  max_append_entries: maxAppend,
  durable: mode === "lmdb",
  // Durable mode: LMDB write transactions (each one synced) and log entries stored, all nodes, measured phase.
  lmdb_commits: null,
  lmdb_entries: null,
  lmdb_store_logs_calls: null,
  entries_per_fsync: null,
  // Durable mode (not --threads): the median and mean time of a storeLogs (one synced commit), over all three
  // nodes' calls in the measured phase (their commits overlapping), from when it starts running to its success
  // as seen by the node, i.e. including the wait for the main thread: the store's share of an apply.
  lmdb_commit_p50_us: null,
  lmdb_commit_mean_us: null,
  // Scheduler tasks run per apply in the measured phase, all nodes and the clients together (one process, not
  // --threads): every fiber hand-off of an apply is one task (counted by the benchmark's scheduler, not in src/).
  tasks_per_apply: null,
  node_version: process.version,
  num_cpu: os.cpus().length,
  label,
  scheduler: schedulerOption,
  threads: threaded,
  timer_gap_max_ms: null,
  error: "",
  started_at_unix: Math.floor(Date.now() / 1000)
}

/** Durations (ms) of the durable stores' storeLogs calls, kept only while `recording` (the measured phase). */
const commitTimes = { recording: false, durations: [] as Array<number> }

/** `store` with each storeLogs timed into `commitTimes` (from when it starts running): two clock reads per commit. */
const timedStoreLogs = (store: LogStore.LogStore): LogStore.LogStore => ({
  ...store,
  storeLogs: (entries) =>
    Effect.suspend(() => {
      const start = performance.now()
      return Effect.tap(store.storeLogs(entries), () => {
        if (commitTimes.recording) commitTimes.durations.push(performance.now() - start)
      })
    })
})

let emitted = false
function emit(): void {
  if (emitted) return
  emitted = true
  result.peak_rss_mib = process.resourceUsage().maxRSS / 1024
  const memory = process.memoryUsage()
  result.heap_total_mib = memory.heapTotal / 1048576
  result.heap_used_mib = memory.heapUsed / 1048576
  // With --expose-gc: what is really live after a full collection (the retained logs, mostly).
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    result.heap_live_mib = process.memoryUsage().heapUsed / 1048576
  }
  process.stdout.write(JSON.stringify(result) + "\n")
}

// Watchdog: a stuck scenario still produces a JSON line and exits non-zero.
setTimeout(() => {
  result.error = `deadline ${deadlineSeconds}s exceeded`
  emit()
  process.exit(3)
}, deadlineSeconds * 1000).unref()

// ---------------------------------------------------------------- machine probes

/** CPU ticks (utime+stime) of every other user-space process, by pid: what contends with us. */
function otherProcsCpu(): Map<number, number> {
  const out = new Map<number, number>()
  let entries: Array<string>
  try {
    entries = fs.readdirSync("/proc")
  } catch {
    return out
  }
  for (const name of entries) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    let text: string
    try {
      text = fs.readFileSync(`/proc/${name}/stat`, "utf8")
    } catch {
      continue
    }
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ") // fields[0] is field 3 (state)
    if (fields.length < 13) continue
    if ((Number(fields[6]) & 0x00200000) !== 0) continue // PF_KTHREAD
    out.set(pid, Number(fields[11]) + Number(fields[12]))
  }
  return out
}

/** Busy and total jiffies of the whole machine. */
function procStat(): { busy: number; total: number } {
  try {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!
    const values = line.trim().split(/\s+/).slice(1, 9).map(Number)
    let total = 0
    let busy = 0
    values.forEach((v, i) => {
      total += v
      if (i !== 3 && i !== 4) busy += v
    })
    return { busy, total }
  } catch {
    return { busy: 0, total: 0 }
  }
}

const CLK_TCK = 100

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.floor(sorted.length * p + 0.5) - 1))
  return sorted[i]!
}

// ---------------------------------------------------------------- the cluster

interface BenchNode {
  readonly index: number
  readonly id: string
  readonly raft: Raft.Raft
  readonly applied: () => number
  dead: boolean
}

interface LeaderEvent {
  readonly index: number
  readonly at: number
}

const payload = new Uint8Array(size)
for (let i = 0; i < size; i++) payload[i] = 97 + (i % 26)

const program = Effect.gen(function*() {
  if (mode !== "inmem" && mode !== "tcp" && mode !== "lmdb") {
    return yield* Effect.fail(`mode ${mode} is not supported (inmem, tcp, lmdb)`)
  }
  const scope = yield* Effect.scope
  // Modules a mode does not use are not loaded (as in an application that runs Raft in memory): OpenTelemetry,
  // LMDB and the TCP transport would add about 16 MiB to the process (benchmarks/README.md, "Memory").
  const TcpTransport = mode === "inmem" ? undefined : yield* Effect.promise(() => import("../src/transport/TcpTransport.js"))
  const durable = mode === "lmdb"
    ? yield* Effect.promise(() => Promise.all([import("../src/storage/LmdbStore.js"), import("../src/storage/LogCache.js")]))
    : undefined
  const network = MemoryNetwork.make()
  const ids = Array.from({ length: nodeCount }, (_, i) => `node${i}`)
  // tcp: each node listens on its own loopback port, all in this process (as the anchor's NewTCPTransport);
  // each transport has a scope of its own so failover can close the leader's listener and connections.
  const transportScopes: Array<Scope.CloseableScope> = []
  const transports: Array<Transport.Transport> = []
  for (const id of ids) {
    if (TcpTransport === undefined) {
      transports.push(network.transport(id))
      continue
    }
    const transportScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    transportScopes.push(transportScope)
    const transport = yield* TcpTransport.make({
      bind: { host: "127.0.0.1", port: 0 },
      ...(argv["pipeline-depth"] !== undefined ? { pipelineMaxInFlight: Number(argv["pipeline-depth"]) } : {}),
      ...(argv["pipeline-bytes"] !== undefined ? { pipelineMaxBytes: Number(argv["pipeline-bytes"]) } : {})
    }).pipe(Scope.extend(transportScope), Effect.mapError((e) => e.message))
    transports.push(transport)
  }
  const configuration = Configuration.voters(ids.map((id, i) => [id, transports[i]!.localAddress] as const))

  // Stores and bootstrap (not timed). Durable stores are timed per storeLogs (see commitTimes).
  interface BenchStores {
    readonly logs: LogStore.LogStore
    readonly stable: StableStore.StableStore
    readonly snapshots: SnapshotStore.SnapshotStore
    readonly stats: Effect.Effect<LmdbStore.Stats> | undefined
  }
  const stores = yield* Effect.forEach(ids, (id): Effect.Effect<BenchStores, StorageError, Scope.Scope> =>
    durable !== undefined
      ? Effect.map(durable[0].make({ path: path.join(benchDir(), id) }), (lmdb) => ({
        // As the anchor's bolt mode: the durable store behind a LogCache of 512 entries.
        logs: durable[1].make(timedStoreLogs(lmdb.logs), 512),
        stable: lmdb.stable,
        snapshots: SnapshotStore.makeMemory(),
        stats: lmdb.stats
      }))
      : Effect.succeed({
        logs: LogStore.makeMemory(),
        stable: StableStore.makeMemory(),
        snapshots: SnapshotStore.makeMemory(),
        stats: undefined
      }))
  const storeStats = Effect.map(
    Effect.forEach(stores, (s) => s.stats ?? Effect.succeed(undefined)),
    (all) => all.filter((s): s is LmdbStore.Stats => s !== undefined)
  )
  for (const s of stores) {
    yield* Raft.bootstrapCluster(configuration).pipe(
      Effect.provideService(LogStore.LogStore, s.logs),
      Effect.provideService(StableStore.StableStore, s.stable),
      Effect.provideService(SnapshotStore.SnapshotStore, s.snapshots)
    )
  }

  const leaderEvents = yield* Queue.unbounded<LeaderEvent>()
  const nodes: Array<BenchNode> = []

  // Start + first election (timed).
  const tStart = performance.now()
  for (let index = 0; index < ids.length; index++) {
    const id = ids[index]!
    let count = 0
    const fsm = Fsm.fromFunction(() => ++count)
    const layer = Raft.layer({
      localId: id,
      heartbeatTimeout: timers.heartbeatTimeoutMillis,
      electionTimeout: timers.electionTimeoutMillis,
      leaderLeaseTimeout: timers.leaderLeaseTimeoutMillis,
      commitTimeout: timers.commitTimeoutMillis,
      maxAppendEntries: maxAppend,
      traceSampleRate
    }).pipe(
      Layer.provide([
        Fsm.layer(fsm),
        Layer.succeed(LogStore.LogStore, stores[index]!.logs),
        Layer.succeed(StableStore.StableStore, stores[index]!.stable),
        Layer.succeed(SnapshotStore.SnapshotStore, stores[index]!.snapshots),
        Layer.succeed(Transport.Transport, transports[index]!)
      ])
    )
    const context = yield* Layer.buildWithScope(layer, scope)
    const raft = Context.get(context, Raft.Raft)
    nodes.push({ index, id, raft, applied: () => count, dead: false })
    // Leadership notifications, as hashicorp's NotifyCh.
    yield* raft.observe.pipe(
      Stream.runForEach((o) =>
        o._tag === "StateChange" && o.to === "Leader"
          ? Queue.offer(leaderEvents, { index, at: performance.now() })
          : Effect.void
      ),
      Effect.forkScoped
    )
  }
  const first = yield* Queue.take(leaderEvents)
  result.elect_ms = first.at - tStart
  const leader = nodes[first.index]!
  yield* leader.raft.barrier({ timeout: "10 seconds" }).pipe(
    Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "barrier timed out" }),
    Effect.mapError((e) => `barrier on first leader: ${typeof e === "string" ? e : e._tag}`)
  )
  result.ready_ms = performance.now() - tStart

  // Warm-up (not measured).
  if (warmup > 0) {
    const w = yield* load(leader.raft, payload, warmup, conc, false)
    if (w.errors > 0) return yield* Effect.fail(`warmup: ${w.errors} apply errors, first: ${w.firstError}`)
  }
  const leaderChangesBefore = yield* Queue.size(leaderEvents)

  // Measured phase, with a probe of how long a 10 ms interval timer had to wait, i.e. how long the event loop
  // was starved.
  yield* measure(
    Effect.suspend(() => {
      let lastTick = performance.now()
      let maxGap = 0
      const probe = setInterval(() => {
        const t = performance.now()
        maxGap = Math.max(maxGap, t - lastTick)
        lastTick = t
      }, 10)
      return Effect.ensuring(
        load(leader.raft, payload, ops, conc, true),
        Effect.sync(() => {
          clearInterval(probe)
          result.timer_gap_max_ms = Math.max(maxGap, performance.now() - lastTick)
        })
      )
    }),
    storeStats
  )

  // Correctness and follower catch-up.
  const want = warmup + ops
  const tc = performance.now()
  let okAll = false
  while (performance.now() - tc < 15_000) {
    okAll = nodes.every((n) => n.applied() === want)
    if (okAll) break
    yield* Effect.sleep(1)
  }
  result.followers_caught_up_ms = performance.now() - tc
  result.fsm_check_ok = okAll
  result.leader_changes_during_run = (yield* Queue.size(leaderEvents)) - leaderChangesBefore
  if (!okAll) {
    const counts = nodes.map((n) => `${n.id}=${n.applied()}`).join(", ")
    return yield* Effect.fail(`fsm check failed: want ${want}, have ${counts}`)
  }

  // Failover.
  if (argv.failover !== "false" && nodeCount >= 3) {
    yield* Queue.takeAll(leaderEvents) // stale events
    const t0 = performance.now()
    if (mode === "inmem") yield* network.disconnect(leader.id)
    else yield* Scope.close(transportScopes[leader.index]!, Exit.void) // listener and connections closed
    leader.dead = true
    yield* Effect.forkDaemon(leader.raft.shutdown) // do not let a slow shutdown delay the measurement
    let electMs = -1
    while (true) {
      const remaining = 30_000 - (performance.now() - t0)
      const event = yield* Queue.take(leaderEvents).pipe(
        Effect.timeoutFail({ duration: Math.max(0, remaining), onTimeout: () => "failover: no new leader within 30s" })
      )
      const next = nodes[event.index]!
      if (next.dead) continue
      if (electMs < 0) electMs = event.at - t0
      const applied = yield* Effect.either(
        next.raft.apply(payload, { timeout: "5 seconds" }).pipe(Effect.timeout("5 seconds"))
      )
      if (Either.isLeft(applied)) continue // lost leadership again: wait for the next leader
      result.failover_elect_ms = electMs
      result.failover_commit_ms = performance.now() - t0
      break
    }
  }
})

/**
 * The measured phase of either form: runs the load between two readings of this process's CPU, the machine's, the
 * other processes' and the stores' counters, fails on apply errors, and fills the result's figures.
 */
const measure = (
  run: Effect.Effect<LoadResult>,
  storeStats: Effect.Effect<ReadonlyArray<LmdbStore.Stats>>
): Effect.Effect<void, string> =>
  Effect.gen(function*() {
    const stats0 = yield* storeStats
    const cpu0 = process.cpuUsage()
    const st0 = procStat()
    const ot0 = otherProcsCpu()
    commitTimes.recording = true
    const tasks0 = countingScheduler.tasks
    const measured = yield* run
    const tasks = countingScheduler.tasks - tasks0
    commitTimes.recording = false
    if (!threaded) result.tasks_per_apply = tasks / ops
    const cpu1 = process.cpuUsage(cpu0)
    const st1 = procStat()
    const ot1 = otherProcsCpu()
    const stats1 = yield* storeStats
    if (measured.errors > 0) {
      result.errors = measured.errors
      return yield* Effect.fail(`${measured.errors} apply errors, first: ${measured.firstError}`)
    }
    recordMeasurement(measured, cpu1, st0, st1, ot0, ot1, stats0, stats1)
  })

/** Fills the result's throughput, latency, CPU and store figures from one measured load. */
function recordMeasurement(
  measured: LoadResult,
  cpu1: NodeJS.CpuUsage,
  st0: { busy: number; total: number },
  st1: { busy: number; total: number },
  ot0: Map<number, number>,
  ot1: Map<number, number>,
  stats0: ReadonlyArray<LmdbStore.Stats>,
  stats1: ReadonlyArray<LmdbStore.Stats>
): void {
  if (stats1.length > 0) {
    const sum = (list: ReadonlyArray<LmdbStore.Stats>, key: keyof LmdbStore.Stats) => list.reduce((n, s) => n + s[key], 0)
    const commits = sum(stats1, "commits") - sum(stats0, "commits")
    const entries = sum(stats1, "entriesStored") - sum(stats0, "entriesStored")
    result.lmdb_commits = commits
    result.lmdb_entries = entries
    result.lmdb_store_logs_calls = sum(stats1, "storeLogsCalls") - sum(stats0, "storeLogsCalls")
    result.entries_per_fsync = commits > 0 ? entries / commits : null
  }
  if (commitTimes.durations.length > 0) {
    const durations = Float64Array.from(commitTimes.durations).sort()
    result.lmdb_commit_p50_us = pct(durations, 0.5) * 1000
    result.lmdb_commit_mean_us = durations.reduce((a, b) => a + b, 0) / durations.length * 1000
  }
  const elapsedS = measured.elapsedMs / 1000
  result.cpu_user_s = cpu1.user / 1e6
  result.cpu_sys_s = cpu1.system / 1e6
  result.cpu_us_per_op = (cpu1.user + cpu1.system) / ops
  if (st1.total > st0.total) {
    result.machine_busy_cores = (st1.busy - st0.busy) / (st1.total - st0.total) * os.cpus().length
  }
  let other = 0
  for (const [pid, t1] of ot1) other += t1 - (ot0.get(pid) ?? 0)
  result.bg_cpu_cores = other / CLK_TCK / elapsedS
  result.duration_s = elapsedS
  result.ops_per_sec = ops / elapsedS
  result.mb_per_sec = ops * size / elapsedS / 1e6
  const lats = measured.latencies!.sort()
  let sum = 0
  for (const l of lats) sum += l
  const us = 1000 // latencies are in ms
  result.lat_mean_us = sum / lats.length * us
  result.lat_p50_us = pct(lats, 0.5) * us
  result.lat_p90_us = pct(lats, 0.9) * us
  result.lat_p99_us = pct(lats, 0.99) * us
  result.lat_p999_us = pct(lats, 0.999) * us
  result.lat_max_us = lats[lats.length - 1]! * us
}

// ---------------------------------------------------------------- --threads: one worker thread per node

/**
 * The same scenario with each node on a worker thread of its own (`node-thread.ts`): one process, as the anchor,
 * whose Go runtime also runs its three nodes on all the machine's cores; here each node gets an event loop of its
 * own instead of the three sharing one. The clients run on the leader's thread. CPU and peak RSS are the
 * process's, all threads included. Failover terminates the leader's thread (its sockets close with it).
 */
const programThreaded = Effect.gen(function*() {
  if (mode !== "tcp" && mode !== "lmdb") return yield* Effect.fail(`--threads needs mode tcp or lmdb, not ${mode}`)
  const ids = Array.from({ length: nodeCount }, (_, i) => `node${i}`)
  const bundled = import.meta.url.endsWith(".mjs")
  const entry = new URL(bundled ? "./node-thread.mjs" : "./node-thread.ts", import.meta.url)
  const leaderEvents = yield* Queue.unbounded<LeaderEvent>()
  /** Answers by thread, in arrival order, each thread answering its requests one at a time. */
  const answers = ids.map(() => Effect.runSync(Queue.unbounded<Record<string, unknown>>()))
  const workers = ids.map((id, index) => {
    const workerData: NodeThreadData = {
      id,
      mode,
      dir: mode === "lmdb" ? benchDir() : "",
      size,
      ...timers,
      maxAppendEntries: maxAppend,
      pipelineDepth: argv["pipeline-depth"] !== undefined ? Number(argv["pipeline-depth"]) : undefined,
      pipelineBytes: argv["pipeline-bytes"] !== undefined ? Number(argv["pipeline-bytes"]) : undefined,
      logLevel: argv["log-level"] as LogLevel.Literal
    }
    const worker = new Worker(entry, { workerData, ...(bundled ? {} : { execArgv: ["--import", "tsx"] }) })
    worker.on("message", (message: Record<string, unknown>) => {
      if (message.type === "leader") {
        Queue.unsafeOffer(leaderEvents, { index, at: (message.at as number) - performance.timeOrigin })
      } else if (message.type === "failed") {
        process.stderr.write(`${id} failed: ${String(message.error)}\n`)
      } else {
        Queue.unsafeOffer(answers[index]!, message)
      }
    })
    worker.on("error", (error) => process.stderr.write(`${id} thread error: ${String(error)}\n`))
    return worker
  })
  const ask = (index: number, request: NodeThreadRequest) =>
    Effect.suspend(() => {
      workers[index]!.postMessage(request)
      return Queue.take(answers[index]!)
    })
  const addresses = yield* Effect.forEach(ids, (_, index) => Queue.take(answers[index]!))
  const servers = ids.map((id, i) => [id, String(addresses[i]!.address)] as const)

  const tStart = performance.now()
  for (const worker of workers) worker.postMessage({ type: "start", servers } satisfies NodeThreadRequest)
  const first = yield* Queue.take(leaderEvents)
  result.elect_ms = first.at - tStart
  const leader = first.index
  const barrier = yield* ask(leader, { type: "barrier" })
  if (barrier.ok !== true) return yield* Effect.fail(`barrier on first leader: ${String(barrier.error)}`)
  result.ready_ms = performance.now() - tStart

  const runLoad = (total: number, record: boolean) =>
    Effect.map(ask(leader, { type: "load", total, conc, record }), (answer) => ({
      latencies: answer.latencies as Float64Array,
      elapsedMs: answer.elapsedMs as number,
      errors: answer.errors as number,
      firstError: answer.firstError as string
    }))
  const lmdbStats = Effect.map(
    Effect.forEach(ids, (_, index) => ask(index, { type: "stats" })),
    (all) => all.map((a) => a.stats as LmdbStore.Stats | null).filter((s): s is LmdbStore.Stats => s !== null)
  )
  if (warmup > 0) {
    const w = yield* runLoad(warmup, false)
    if (w.errors > 0) return yield* Effect.fail(`warmup: ${w.errors} apply errors, first: ${w.firstError}`)
  }
  const leaderChangesBefore = yield* Queue.size(leaderEvents)
  yield* measure(runLoad(ops, true), lmdbStats)

  const want = warmup + ops
  const tc = performance.now()
  let counts: Array<number> = []
  while (performance.now() - tc < 15_000) {
    counts = (yield* Effect.forEach(ids, (_, index) => ask(index, { type: "applied" }))).map((a) => a.count as number)
    if (counts.every((c) => c === want)) break
    yield* Effect.sleep(1)
  }
  result.followers_caught_up_ms = performance.now() - tc
  result.fsm_check_ok = counts.every((c) => c === want)
  result.leader_changes_during_run = (yield* Queue.size(leaderEvents)) - leaderChangesBefore
  if (result.fsm_check_ok !== true) {
    return yield* Effect.fail(`fsm check failed: want ${want}, have ${counts.map((c, i) => `${ids[i]}=${c}`).join(", ")}`)
  }

  if (argv.failover !== "false" && nodeCount >= 3) {
    yield* Queue.takeAll(leaderEvents)
    const t0 = performance.now()
    void workers[leader]!.terminate()
    let electMs = -1
    while (true) {
      const remaining = 30_000 - (performance.now() - t0)
      const event = yield* Queue.take(leaderEvents).pipe(
        Effect.timeoutFail({ duration: Math.max(0, remaining), onTimeout: () => "failover: no new leader within 30s" })
      )
      if (event.index === leader) continue
      if (electMs < 0) electMs = event.at - t0
      const applied = yield* ask(event.index, { type: "apply-one", timeoutMillis: 5000 })
      if (applied.ok !== true) continue
      result.failover_elect_ms = electMs
      result.failover_commit_ms = (applied.at as number) - performance.timeOrigin - t0
      break
    }
  }
})

/**
 * An experiment, not the default: one task queue drained in microtasks, but
 * after `budgetMs` without a macrotask turn it continues from `setImmediate`,
 * so timers and I/O get their turn under sustained load.
 */
class YieldingScheduler implements Scheduler.Scheduler {
  private queue: Array<Scheduler.Task> = []
  private scheduled = false
  private lastTurn = performance.now()
  constructor(private readonly budgetMs: number) {}
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
      ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
      : false
  }
  scheduleTask(task: Scheduler.Task): void {
    this.queue.push(task)
    if (!this.scheduled) {
      this.scheduled = true
      this.schedule()
    }
  }
  private schedule(): void {
    if (performance.now() - this.lastTurn > this.budgetMs) setImmediate(this.fromMacrotask)
    else queueMicrotask(this.drain)
  }
  private readonly fromMacrotask = () => {
    this.lastTurn = performance.now()
    this.drain()
  }
  private readonly drain = () => {
    const tasks = this.queue
    this.queue = []
    for (const task of tasks) task()
    if (this.queue.length > 0) this.schedule()
    else this.scheduled = false
  }
}

/** Counts the tasks it runs for the scheduler it wraps: the fiber hand-offs of the process. */
class CountingScheduler implements Scheduler.Scheduler {
  tasks = 0
  constructor(private readonly inner: Scheduler.Scheduler) {}
  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return this.inner.shouldYield(fiber)
  }
  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.tasks++
    this.inner.scheduleTask(task, priority)
  }
}

const yieldOption = /^yield:(\d+(?:\.\d+)?)$/.exec(schedulerOption)
/** The nodes' scheduler (the one Raft picks itself unless `--scheduler yield:<ms>`), counting its tasks. */
const countingScheduler = new CountingScheduler(
  yieldOption === null ? fairScheduler : new YieldingScheduler(Number(yieldOption[1]))
)

const withSchedulerOption = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  if (schedulerOption !== "default" && yieldOption === null) {
    return Effect.dieMessage(`unknown --scheduler ${schedulerOption}`)
  }
  return Effect.withScheduler(effect, countingScheduler)
}

const stderrLogger = Logger.make(({ date, logLevel, message }) => {
  const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
  process.stderr.write(`${date.toISOString()} ${logLevel.label} ${text}\n`)
})
const logLevel = LogLevel.fromLiteral(argv["log-level"] as LogLevel.Literal)

/** The temporary directory of the durable stores, made on first use and removed when the process exits. */
let benchDirectory: string | undefined
function benchDir(): string {
  if (benchDirectory === undefined) {
    const made = fs.mkdtempSync(path.join(os.tmpdir(), "effect-raft-bench-"))
    benchDirectory = made
    process.on("exit", () => fs.rmSync(made, { recursive: true, force: true }))
  }
  return benchDirectory
}

/** OpenTelemetry's tracer with a batch span processor over an exporter that drops every span. */
const withTracerOption = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  if (tracer === "none") return effect
  if (tracer !== "otel") return Effect.dieMessage(`unknown --tracer ${tracer} (none, otel)`)
  const dropping: SpanExporter = {
    export: (_spans, done) => done({ code: 0 }), // ExportResultCode.SUCCESS
    shutdown: () => Promise.resolve()
  }
  const modules = Effect.promise(() =>
    Promise.all([import("@effect/opentelemetry/NodeSdk"), import("@opentelemetry/sdk-trace-base")])
  )
  return Effect.flatMap(modules, ([NodeSdk, { BatchSpanProcessor }]) =>
    Effect.provide(
      effect,
      NodeSdk.layer(() => ({ spanProcessor: new BatchSpanProcessor(dropping), resource: { serviceName: "raft-bench" } }))
    ))
}

const t0 = performance.now()
Effect.runPromiseExit(
  // The scope is never closed: the process exits without tearing the cluster down.
  Effect.flatMap(Scope.make(), (scope) => Scope.extend(threaded ? programThreaded : program, scope)).pipe(
    withTracerOption,
    withSchedulerOption,
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger)),
    Logger.withMinimumLogLevel(logLevel)
  )
).then((exit) => {
  result.total_wall_s = (performance.now() - t0) / 1000
  if (exit._tag === "Failure") {
    const failure = Cause.failureOption(exit.cause)
    result.error = failure._tag === "Some" ? String(failure.value) : Cause.pretty(exit.cause)
    emit()
    process.exit(1)
  }
  emit()
  // Exit without tearing the cluster down; nothing is measured after this point.
  process.exit(0)
})
