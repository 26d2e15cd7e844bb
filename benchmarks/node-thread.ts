/**
 * One node of a `--threads` scenario (see scenario.ts): a worker thread with its own event loop, running one
 * Raft node over loopback TCP (and LMDB in mode `lmdb`), driven by the scenario's main thread through messages.
 * The clients of the load run here, in the process of the node they call, as the anchor's clients call `Apply`.
 *
 * Messages in: start (the configuration), load, barrier, applied, stats, apply-one.
 * Messages out: address (once bound), leader (each time this node becomes leader, at an epoch time in ms),
 * and one answer per message in, with the same `type` and `ok`/`error`.
 */
import * as path from "node:path"
import { parentPort, workerData } from "node:worker_threads"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import * as LmdbStore from "../src/storage/LmdbStore.js"
import * as LogCache from "../src/storage/LogCache.js"
import * as Transport from "../src/Transport.js"
import * as TcpTransport from "../src/transport/TcpTransport.js"
import { load } from "./load.js"

/** What the main thread tells a node thread when it starts it. */
export interface NodeThreadData {
  readonly id: string
  readonly mode: "tcp" | "lmdb"
  /** The node's LMDB directory (mode lmdb). */
  readonly dir: string
  readonly size: number
  readonly heartbeatTimeoutMillis: number
  readonly electionTimeoutMillis: number
  readonly leaderLeaseTimeoutMillis: number
  readonly commitTimeoutMillis: number
  readonly maxAppendEntries: number
  readonly pipelineDepth: number | undefined
  readonly pipelineBytes: number | undefined
  readonly logLevel: LogLevel.Literal
}

/** A message from the main thread. */
export type NodeThreadRequest =
  | { readonly type: "start"; readonly servers: ReadonlyArray<readonly [string, string]> }
  | { readonly type: "load"; readonly total: number; readonly conc: number; readonly record: boolean }
  | { readonly type: "barrier" }
  | { readonly type: "applied" }
  | { readonly type: "stats" }
  | { readonly type: "apply-one"; readonly timeoutMillis: number }

const data = workerData as NodeThreadData
const port = parentPort!
const post = (message: Record<string, unknown>, transfer: ReadonlyArray<ArrayBuffer> = []) =>
  port.postMessage(message, transfer as Array<ArrayBuffer>)
/** Wall-clock milliseconds comparable across threads (each thread's `performance.now()` has its own origin). */
const epochNow = () => performance.timeOrigin + performance.now()

const payload = new Uint8Array(data.size)
for (let i = 0; i < data.size; i++) payload[i] = 97 + (i % 26)

const program = Effect.gen(function*() {
  const scope = yield* Effect.scope
  const inbox = yield* Queue.unbounded<NodeThreadRequest>()
  port.on("message", (message: NodeThreadRequest) => Queue.unsafeOffer(inbox, message))

  const transport = yield* TcpTransport.make({
    bind: { host: "127.0.0.1", port: 0 },
    ...(data.pipelineDepth !== undefined ? { pipelineMaxInFlight: data.pipelineDepth } : {}),
    ...(data.pipelineBytes !== undefined ? { pipelineMaxBytes: data.pipelineBytes } : {})
  })
  post({ type: "address", address: transport.localAddress })

  const start = yield* Queue.take(inbox)
  if (start.type !== "start") return yield* Effect.dieMessage(`expected start, got ${start.type}`)
  const configuration = Configuration.voters(start.servers)
  const lmdb = data.mode === "lmdb" ? yield* LmdbStore.make({ path: path.join(data.dir, data.id) }) : undefined
  // As the anchor's bolt mode: the durable store behind a LogCache of 512 entries.
  const logs = lmdb !== undefined ? LogCache.make(lmdb.logs, 512) : LogStore.makeMemory()
  const stable = lmdb?.stable ?? StableStore.makeMemory()
  const snapshots = SnapshotStore.makeMemory()
  yield* Raft.bootstrapCluster(configuration).pipe(
    Effect.provideService(LogStore.LogStore, logs),
    Effect.provideService(StableStore.StableStore, stable),
    Effect.provideService(SnapshotStore.SnapshotStore, snapshots)
  )
  let count = 0
  const context = yield* Layer.buildWithScope(
    Raft.layer({
      localId: data.id,
      heartbeatTimeout: data.heartbeatTimeoutMillis,
      electionTimeout: data.electionTimeoutMillis,
      leaderLeaseTimeout: data.leaderLeaseTimeoutMillis,
      commitTimeout: data.commitTimeoutMillis,
      maxAppendEntries: data.maxAppendEntries
    }).pipe(
      Layer.provide([
        Fsm.layer(Fsm.fromFunction(() => ++count)),
        Layer.succeed(LogStore.LogStore, logs),
        Layer.succeed(StableStore.StableStore, stable),
        Layer.succeed(SnapshotStore.SnapshotStore, snapshots),
        Layer.succeed(Transport.Transport, transport)
      ])
    ),
    scope
  )
  const raft = Context.get(context, Raft.Raft)
  yield* raft.observe.pipe(
    Stream.runForEach((o) =>
      Effect.sync(() => {
        if (o._tag === "StateChange" && o.to === "Leader") post({ type: "leader", at: epochNow() })
      })
    ),
    Effect.forkScoped
  )

  while (true) {
    const request = yield* Queue.take(inbox)
    switch (request.type) {
      case "load": {
        const result = yield* load(raft, payload, request.total, request.conc, request.record)
        const latencies = result.latencies ?? new Float64Array(0)
        post({ type: "load", ...result, latencies }, [latencies.buffer as ArrayBuffer])
        break
      }
      case "barrier": {
        const outcome = yield* Effect.either(raft.barrier({ timeout: "10 seconds" }))
        post({ type: "barrier", ok: Either.isRight(outcome), error: Either.isLeft(outcome) ? outcome.left._tag : "" })
        break
      }
      case "applied":
        post({ type: "applied", count })
        break
      case "stats":
        post({ type: "stats", stats: lmdb === undefined ? null : yield* lmdb.stats })
        break
      case "apply-one": {
        const outcome = yield* Effect.either(
          raft.apply(payload, { timeout: request.timeoutMillis }).pipe(Effect.timeout(request.timeoutMillis))
        )
        post({ type: "apply-one", ok: Either.isRight(outcome), at: epochNow() })
        break
      }
      case "start":
        break
    }
  }
})

const stderrLogger = Logger.make(({ logLevel, message }) => {
  const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
  process.stderr.write(`[${data.id}] ${logLevel.label} ${text}\n`)
})

// The scope is never closed: the main thread ends the process (or terminates this thread, for failover).
void Effect.runPromiseExit(
  Effect.flatMap(Scope.make(), (scope) => Scope.extend(program, scope)).pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger)),
    Logger.withMinimumLogLevel(LogLevel.fromLiteral(data.logLevel))
  )
).then((exit) => {
  if (exit._tag === "Failure") post({ type: "failed", error: String(exit.cause) })
})
