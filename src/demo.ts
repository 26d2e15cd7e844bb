/**
 * `npm run demo`: a 3-node cluster in one process, on the memory network and
 * memory stores, with hashicorp's default timers. A few clients apply commands
 * to whoever is leader; about once a second a line shows the leader, its term,
 * its commit index and the throughput. Halfway through, the leader is cut off
 * the network for a couple of seconds and then reconnected, so the output shows
 * a failover and the old leader rejoining as a follower. It ends by itself
 * after `--seconds N` (10 by default) or on Ctrl-C, closing every node.
 *
 *   npm run demo -- [--seconds 10] [--clients 4] [--verbose]
 *
 * Each client keeps 16 commands in flight at a time.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Configuration from "./Configuration.js"
import * as Fsm from "./Fsm.js"
import * as LogStore from "./LogStore.js"
import * as Raft from "./Raft.js"
import * as SnapshotStore from "./SnapshotStore.js"
import * as StableStore from "./StableStore.js"
import * as MemoryNetwork from "./transport/MemoryNetwork.js"

// ---------------------------------------------------------------- options

/** The value after `--name` on the command line, as a positive number. */
const numberOption = (name: string, fallback: number): number => {
  const args = process.argv.slice(2)
  const at = args.indexOf(`--${name}`)
  const value = at >= 0 ? Number(args[at + 1]) : NaN
  return Number.isFinite(value) && value > 0 ? value : fallback
}
const seconds = numberOption("seconds", 10)
const clients = Math.floor(numberOption("clients", 4))
const verbose = process.argv.includes("--verbose")
/** How long the leader stays cut off, at most a fifth of the run. */
const partitionMillis = Math.min(2_000, Math.floor(seconds * 1000 / 5))

// ---------------------------------------------------------------- the cluster

/** A state machine that counts commands and folds their bytes into a hash, to show the replicas agree. */
interface CountingFsm {
  readonly fsm: Fsm.Fsm
  readonly count: () => number
  readonly hash: () => number
}

const countingFsm = (): CountingFsm => {
  let count = 0
  let hash = 2166136261
  const fsm = Fsm.fromFunction((log) => {
    count++
    for (let i = 0; i < log.data.length; i++) hash = Math.imul(hash ^ log.data[i]!, 16777619) >>> 0
    return count
  })
  return { fsm, count: () => count, hash: () => hash }
}

interface DemoNode {
  readonly id: string
  readonly raft: Raft.Raft
  readonly state: CountingFsm
}

const ids = ["node1", "node2", "node3"] as const
const configuration = Configuration.voters(ids.map((id) => [id, `mem://${id}`] as const))

/** Starts node `id` in the current scope, on the memory network in context. */
const startNode = (id: string) =>
  Effect.gen(function*() {
    const state = countingFsm()
    const context = yield* Layer.build(
      Raft.layer({ localId: id }).pipe(
        Layer.provide([
          Fsm.layer(state.fsm),
          LogStore.layerMemory,
          StableStore.layerMemory,
          SnapshotStore.layerMemory,
          MemoryNetwork.layerTransport(id)
        ])
      )
    )
    const node: DemoNode = { id, raft: Context.get(context, Raft.Raft), state }
    return node
  })

const formatNumber = (n: number): string => Math.round(n).toLocaleString("en-US")

// ---------------------------------------------------------------- the program

const program = Effect.gen(function*() {
  const network = yield* MemoryNetwork.MemoryNetwork
  const startedAt = yield* Clock.currentTimeMillis
  const stamp = Effect.map(Clock.currentTimeMillis, (now) => `[${((now - startedAt) / 1000).toFixed(1).padStart(5)}s]`)
  const say = (text: string) => Effect.flatMap(stamp, (at) => Console.log(`${at} ${text}`))

  yield* Console.log(
    `effect-raft demo: ${ids.length} nodes in one process (memory network and stores, default timers), ` +
      `${clients} clients, ${seconds} s; Ctrl-C stops it.`
  )
  const nodes: Array<DemoNode> = []
  for (const id of ids) nodes.push(yield* startNode(id))
  for (const node of nodes) yield* node.raft.bootstrapCluster(configuration)
  yield* say(`started ${ids.join(", ")}; waiting for the first election`)

  // Report every node that wins an election, and every leader that steps down.
  let disconnectedAt: number | undefined
  for (const node of nodes) {
    yield* node.raft.observe.pipe(
      Stream.runForEach((observation) => {
        if (observation._tag !== "StateChange") return Effect.void
        if (observation.to === "Leader") {
          return Effect.flatMap(Clock.currentTimeMillis, (now) =>
            say(
              `${node.id} became leader in term ${observation.term}` +
                (disconnectedAt === undefined ? "" : ` (${formatNumber(now - disconnectedAt)} ms after the disconnect)`)
            ))
        }
        if (observation.from === "Leader") {
          return say(`${node.id} stepped down (${observation.from} -> ${observation.to}, term ${observation.term})`)
        }
        return Effect.void
      }),
      Effect.forkScoped
    )
  }

  /** The node that believes it leads and can still reach the others, if any. */
  const currentLeader = Effect.gen(function*() {
    for (const node of nodes) {
      if ((yield* node.raft.state) !== "Leader") continue
      if (ids.some((other) => other !== node.id && network.canReach(node.id, other))) return Option.some(node)
    }
    return Option.none<DemoNode>()
  })

  // Clients: each applies a burst of commands to the leader, back to back; on a
  // failure it waits a little and looks for the leader again. (The nodes run on
  // a fair scheduler, so the reporter's and the nodes' timers fire under load.)
  let committed = 0
  let failed = 0
  const encoder = new TextEncoder()
  const burst = Array.from({ length: 16 }, (_, i) => i)
  const client = (n: number) =>
    Effect.gen(function*() {
      let seq = 0
      while (true) {
        const leader = yield* currentLeader
        if (Option.isNone(leader)) {
          yield* Effect.sleep("20 millis")
          continue
        }
        const outcomes = yield* Effect.forEach(
          burst,
          () => Effect.either(leader.value.raft.apply(encoder.encode(`client${n} op${seq++}`), { timeout: "1 second" })),
          { concurrency: "unbounded" }
        )
        let ok = true
        for (const outcome of outcomes) {
          if (outcome._tag === "Right") committed++
          else {
            failed++
            ok = false
          }
        }
        if (!ok) yield* Effect.sleep("20 millis")
      }
    })
  const clientFibers: Array<Fiber.RuntimeFiber<never>> = []
  for (let n = 1; n <= clients; n++) clientFibers.push(yield* Effect.forkScoped(client(n)))

  // About once a second: leader, term, commit index, throughput.
  const reporter = Effect.gen(function*() {
    let lastCommitted = 0
    let lastAt = yield* Clock.currentTimeMillis
    while (true) {
      yield* Effect.sleep("1 second")
      const now = yield* Clock.currentTimeMillis
      const rate = (committed - lastCommitted) * 1000 / Math.max(1, now - lastAt)
      lastCommitted = committed
      lastAt = now
      const leader = yield* currentLeader
      const applied = nodes.map((node) => formatNumber(node.state.count())).join(" / ")
      if (Option.isNone(leader)) {
        yield* say(`no leader          ops/s ${formatNumber(rate).padStart(7)}   applied ${applied}`)
        continue
      }
      const stats = yield* leader.value.raft.stats
      yield* say(
        `leader ${leader.value.id}  term ${stats.term}  commit ${formatNumber(stats.commitIndex).padStart(8)}  ` +
          `ops/s ${formatNumber(rate).padStart(7)}   applied ${applied}`
      )
    }
  })
  const reporterFiber = yield* Effect.forkScoped(reporter)

  // Halfway: cut the leader off for a couple of seconds, then let it back in.
  const failover = Effect.gen(function*() {
    yield* Effect.sleep(Math.max(0, seconds * 1000 / 2 - partitionMillis / 2))
    const leader = yield* currentLeader
    if (Option.isNone(leader)) return yield* say("no leader to disconnect")
    const id = leader.value.id
    disconnectedAt = yield* Clock.currentTimeMillis
    yield* network.disconnect(id)
    yield* say(`disconnected leader ${id} from the network for ${formatNumber(partitionMillis)} ms`)
    yield* Effect.sleep(partitionMillis)
    yield* network.reconnect(id)
    yield* say(`reconnected ${id}; it rejoins as a follower and catches up`)
  })
  const failoverFiber = yield* Effect.forkScoped(failover)

  yield* Effect.sleep(seconds * 1000)
  yield* Fiber.interruptAll([failoverFiber, reporterFiber, ...clientFibers])
  yield* network.heal

  // Clients stopped: let the followers catch up (they learn the last commit index
  // from the next heartbeat or commit tick), then show that every replica agrees.
  const leader = yield* currentLeader
  if (Option.isSome(leader)) {
    const target = yield* leader.value.raft.appliedIndex
    for (let waited = 0; waited < 3_000; waited += 10) {
      const applied = yield* Effect.forEach(nodes, (node) => node.raft.appliedIndex)
      if (applied.every((index) => index >= target)) break
      yield* Effect.sleep("10 millis")
    }
  }
  yield* say(
    `done: ${formatNumber(committed)} commands acknowledged; ${formatNumber(failed)} got no acknowledgement ` +
      `(refused, or in flight when leadership was lost: those may still have committed, as the counts below show)`
  )
  for (const node of nodes) {
    const stats = yield* node.raft.stats
    yield* Console.log(
      `        ${node.id}: ${stats.state.padEnd(8)} term ${stats.term}, applied index ${formatNumber(stats.appliedIndex)}, ` +
        `${formatNumber(node.state.count())} commands, state hash ${node.state.hash().toString(16).padStart(8, "0")}`
    )
  }
}).pipe(
  Effect.onInterrupt(() => Console.log("\ninterrupted: shutting the nodes down")),
  Effect.scoped,
  Effect.provide(MemoryNetwork.layer()),
  Logger.withMinimumLogLevel(verbose ? LogLevel.Info : LogLevel.Error)
)

NodeRuntime.runMain(program)
