import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../../src/Configuration.js"
import * as Fsm from "../../src/Fsm.js"
import * as LogStore from "../../src/LogStore.js"
import * as Raft from "../../src/Raft.js"
import type { TransportError } from "../../src/RaftError.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as StableStore from "../../src/StableStore.js"
import { type AppendPipeline, type PipelineResult, Transport } from "../../src/Transport.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { bytes, fastTimers, recordingFsm, type RecordingFsm, seeded } from "../cluster.js"
import { loopback } from "./tcpHelpers.js"

/** How a node sees the pipelines of the memory network. */
type Wrap = (pipeline: AppendPipeline) => Effect.Effect<AppendPipeline>

/** As a third-party transport written before `listen`: answers only through `results`. */
const resultsOnly: Wrap = (pipeline) => Effect.succeed({ send: pipeline.send, results: pipeline.results })

/** Answers only through `listen`: `results` is a mailbox nothing is ever put into. */
const listenOnly: Wrap = (pipeline) =>
  Effect.map(Mailbox.make<PipelineResult, TransportError>(), (results) => ({
    send: pipeline.send,
    results,
    listen: pipeline.listen
  }))

/** Short enough for a quick election, long enough that a loaded machine does not depose the leader mid-test. */
const tcpTimers = { heartbeatTimeout: "500 millis", electionTimeout: "500 millis", leaderLeaseTimeout: "500 millis" } as const

/**
 * Three nodes whose pipelines are seen through `wrap`, on a memory network under the `TestClock`, or with `tcp` on
 * loopback TCP transports in real time; the leader once elected.
 */
const cluster = (wrap: Wrap, { tcp = false } = {}) =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make()
    const ids = ["a", "b", "c"]
    const plains: Array<Transport> = []
    for (const id of ids) plains.push(tcp ? yield* TcpTransport.make({ bind: loopback }) : network.transport(id))
    const configuration = Configuration.voters(ids.map((id, i) => [id, plains[i]!.localAddress] as const))
    const nodes: Array<{ readonly id: string; readonly raft: Raft.Raft; readonly fsm: RecordingFsm }> = []
    for (const id of ids) {
      // A copy of the memory store, without the synchronous writes it registers (src/internal/syncForms.ts): the
      // followers answer from their run loops, so requests stay in flight a while, as over a network, and these
      // tests see how the leader batches behind them.
      const logs: LogStore.LogStore = { ...LogStore.makeMemory() }
      const stable = StableStore.makeMemory()
      const snapshots = SnapshotStore.makeMemory()
      yield* Raft.bootstrapCluster(configuration).pipe(
        Effect.provideService(LogStore.LogStore, logs),
        Effect.provideService(StableStore.StableStore, stable),
        Effect.provideService(SnapshotStore.SnapshotStore, snapshots)
      )
      const plain = plains[ids.indexOf(id)]!
      const transport: Transport = {
        ...plain,
        appendEntriesPipeline: (peer, address) => Effect.flatMap(plain.appendEntriesPipeline(peer, address), wrap)
      }
      const fsm = recordingFsm()
      const context = yield* Layer.build(
        Raft.layer({ localId: id, ...(tcp ? tcpTimers : fastTimers) }).pipe(Layer.provide([
          Fsm.layer(fsm),
          Layer.succeed(LogStore.LogStore, logs),
          Layer.succeed(StableStore.StableStore, stable),
          Layer.succeed(SnapshotStore.SnapshotStore, snapshots),
          Layer.succeed(Transport, transport)
        ]))
      )
      nodes.push({ id, raft: context.unsafeMap.get(Raft.Raft.key) as Raft.Raft, fsm })
    }
    /** Advances the clock (or, over TCP, waits) until `done` holds, at most five seconds. */
    const until = (done: Effect.Effect<boolean>, what: string) =>
      Effect.gen(function*() {
        for (let waited = 0; waited < 5000; waited += 10) {
          if (yield* done) return
          yield* tcp ? Effect.sleep(10) : TestClock.adjust(10)
        }
        assert.fail(`never: ${what}`)
      })
    const leaders = Effect.filter(nodes, (node) => Effect.map(node.raft.state, (state) => state === "Leader"))
    yield* until(Effect.map(leaders, (found) => found.length === 1), "one leader")
    const leader = (yield* leaders)[0]!
    let total = 0
    /** Applies `count` commands at the leader, one after another, until `waitFor` (every node) has applied them. */
    const applyAll = (prefix: string, count: number, waitFor = nodes) =>
      Effect.gen(function*() {
        const applying = yield* Effect.fork(
          Effect.forEach(Array.from({ length: count }, (_, i) => bytes(`${prefix}${i}`)), (command) =>
            leader.raft.apply(command), { discard: true })
        )
        total += count
        yield* until(Effect.sync(() => waitFor.every((node) => node.fsm.applied.length >= total)), `${total} applied`)
        yield* Fiber.join(applying)
      })
    return { network, nodes, leader, applyAll, until }
  })

describe("AppendPipeline.listen", () => {
  it.scoped("a leader takes pipelined answers through listen when the transport offers it", () =>
    Effect.gen(function*() {
      const { applyAll, network, nodes } = yield* cluster(listenOnly)
      yield* applyAll("x", 50)
      assert.isAbove(network.counters.pipelinedAppendEntries, 0)
      for (const node of nodes) assert.strictEqual(node.fsm.applied.length, 50)
    }).pipe(seeded("listen")))

  it.scoped("a transport whose pipelines only offer results still replicates, and falls back to plain mode on a break", () =>
    Effect.gen(function*() {
      const { applyAll, leader, network, nodes } = yield* cluster(resultsOnly)
      yield* applyAll("x", 50)
      const pipelined = network.counters.pipelinedAppendEntries
      assert.isAbove(pipelined, 0)
      // A follower's answers are lost for a while: its pipeline breaks; plain mode resends once the link is back.
      const follower = nodes.find((node) => node.id !== leader.id)!
      yield* network.block(follower.id, leader.id)
      yield* applyAll("y", 3, [leader])
      yield* network.unblock(follower.id, leader.id)
      yield* applyAll("z", 20)
      for (const node of nodes) assert.strictEqual(node.fsm.applied.length, 73)
      assert.isAbove(network.counters.pipelinesOpened, 2)
      assert.isAbove(network.counters.pipelinedAppendEntries, pipelined)
    }).pipe(seeded("results only")))
})

/** What the leader's pipelines were asked to carry: requests taken by `trySend`, and by `send`. */
interface Sends {
  sentNow: number
  sent: number
}
const counting = (sends: Sends): Wrap => (pipeline) =>
  Effect.succeed({
    ...pipeline,
    send: (request) => Effect.suspend(() => (sends.sent++, pipeline.send(request))),
    trySend: (request) => pipeline.trySend !== undefined && pipeline.trySend(request) && ++sends.sentNow > 0
  })

describe("AppendPipeline.trySend", () => {
  it.scoped("one client's entries go out from the fiber that appends them, not through the sender", () =>
    Effect.gen(function*() {
      const sends: Sends = { sentNow: 0, sent: 0 }
      const { applyAll, nodes } = yield* cluster(counting(sends))
      const before = { ...sends }
      yield* applyAll("x", 40)
      for (const node of nodes) assert.strictEqual(node.fsm.applied.length, 40)
      // Two followers: almost every entry went out at once to each.
      assert.isAtLeast(sends.sentNow - before.sentNow, 2 * 35)
    }).pipe(seeded("try send")))

  it.scopedLive("over TCP, one client's entries go out from the appending fiber to both followers", () =>
    Effect.gen(function*() {
      const sends: Sends = { sentNow: 0, sent: 0 }
      const { applyAll, nodes } = yield* cluster(counting(sends), { tcp: true })
      yield* applyAll("first", 1) // opens the pipelines
      const before = { ...sends }
      yield* applyAll("x", 100)
      for (const node of nodes) assert.strictEqual(node.fsm.applied.length, 101)
      // The follower whose answer committed the last entry has nothing in flight; the other often still has the last
      // request in flight, but its entries are committed already, so that is no overlap of appends either: both
      // followers get almost every entry at once.
      assert.isAtLeast(sends.sentNow - before.sentNow, 2 * 90)
    }))

  it.scoped("with requests in flight, entries appended meanwhile wait for the sender and go out together", () =>
    Effect.gen(function*() {
      const sends: Sends = { sentNow: 0, sent: 0 }
      const { leader, nodes, until } = yield* cluster(counting(sends))
      const before = sends.sentNow + sends.sent
      const commands = Array.from({ length: 64 }, (_, i) => bytes(`c${i}`))
      const applying = yield* Effect.fork(
        Effect.forEach(commands, (command) => leader.raft.apply(command), { concurrency: "unbounded", discard: true })
      )
      yield* until(Effect.sync(() => nodes.every((node) => node.fsm.applied.length >= 64)), "64 applied")
      yield* Fiber.join(applying)
      // Each entry in a request of its own would be 128 requests; batched, a few per follower.
      assert.isAtMost(sends.sentNow + sends.sent - before, 2 * 8)
      // Appends overlapped: the next burst's first entry is not sent alone either, it waits for the sender's batch.
      const sentNow = sends.sentNow
      const again = yield* Effect.fork(
        Effect.forEach(commands, (command) => leader.raft.apply(command), { concurrency: "unbounded", discard: true })
      )
      yield* until(Effect.sync(() => nodes.every((node) => node.fsm.applied.length >= 128)), "128 applied")
      yield* Fiber.join(again)
      assert.strictEqual(sends.sentNow, sentNow)
    }).pipe(seeded("try send batched")))
})
