/**
 * `AppendPipeline.trySend` over TCP: a request written at once from the caller's context when that needs no wait,
 * in order with `send`, and refused (nothing written) when the window is full, a send is still waiting, the socket's
 * buffer is full or the pipeline is broken; and a leader over TCP that sends one client's entries that way.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as Configuration from "../../src/Configuration.js"
import * as Fsm from "../../src/Fsm.js"
import * as LogStore from "../../src/LogStore.js"
import * as Raft from "../../src/Raft.js"
import { TransportError } from "../../src/RaftError.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as StableStore from "../../src/StableStore.js"
import { type AppendPipeline, Transport } from "../../src/Transport.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { bytes, recordingFsm, type RecordingFsm } from "../cluster.js"
import { appendEntries, entry, eventually, loopback, pair, recorder } from "./tcpHelpers.js"

/** The request carrying entry `index` (of `size` bytes) after entry `index - 1`. */
const request = (index: number, size = 8) => appendEntries(index - 1, [entry(index, size)])

/** The first entry's index of every AppendEntries the follower received, in order. */
const receivedIndexes = (rec: ReturnType<typeof recorder>) =>
  rec.received.flatMap((r) => r._tag === "AppendEntriesRequest" && r.entries.length > 0 ? [r.entries[0]!.index] : [])

/** Listens to `pipeline`: the `lastLog` of each answer, and the end. */
const listening = (pipeline: AppendPipeline) => {
  const got: Array<number> = []
  const ends: Array<TransportError | undefined> = []
  pipeline.listen!((result) => void got.push(result.response.lastLog), (error) => void ends.push(error))
  return { got, ends }
}

describe("TcpTransport pipeline trySend", () => {
  it.scopedLive("requests taken by trySend and by send leave in call order, and their answers come back in that order", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 8 })
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      assert.isDefined(pipeline.trySend)
      const { got } = listening(pipeline)
      let taken = 0
      for (let i = 1; i <= 300; i++) {
        // Every third through send; the others through trySend, or send when it refuses (the window is full).
        if (i % 3 !== 0 && pipeline.trySend!(request(i))) taken++
        else yield* pipeline.send(request(i))
      }
      yield* eventually(Effect.sync(() => got.length >= 300), "300 answers")
      const inOrder = Array.from({ length: 300 }, (_, i) => i + 1)
      assert.deepStrictEqual(receivedIndexes(rec), inOrder)
      assert.deepStrictEqual(got, inOrder)
      assert.isAbove(taken, 0)
    }))

  it.scopedLive("trySend refuses while the window is full, in count or in bytes, and sends nothing", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 2, pipelineMaxBytes: 10_000 })
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      const { got } = listening(pipeline)
      rec.gate = yield* Deferred.make<void>()
      assert.isTrue(pipeline.trySend!(request(1)))
      assert.isTrue(pipeline.trySend!(request(2)))
      assert.isFalse(pipeline.trySend!(request(3)))
      yield* Deferred.succeed(rec.gate, undefined)
      yield* eventually(Effect.sync(() => got.length >= 2), "2 answers")
      assert.deepStrictEqual(receivedIndexes(rec), [1, 2])
      // Bytes: a second large request does not fit beside the first (each below the socket's 16 KiB mark).
      rec.gate = yield* Deferred.make<void>()
      assert.isTrue(pipeline.trySend!(request(3, 6_000)))
      assert.isFalse(pipeline.trySend!(request(4, 6_000)))
      yield* Deferred.succeed(rec.gate, undefined)
      yield* eventually(Effect.sync(() => got.length >= 3), "3 answers")
      assert.isTrue(pipeline.trySend!(request(4, 6_000)))
      yield* eventually(Effect.sync(() => got.length >= 4), "4 answers")
      assert.deepStrictEqual(got, [1, 2, 3, 4])
      assert.deepStrictEqual(receivedIndexes(rec), [1, 2, 3, 4])
      // Too large for a frame: refused here, and send reports it.
      const huge = request(5, 9 * 1024 * 1024)
      assert.isFalse(pipeline.trySend!(huge))
      const refused = yield* Effect.flip(pipeline.send(huge))
      assert.strictEqual(refused.reason, "oversize")
    }))

  it.scopedLive("trySend refuses while a send waits for room, so it cannot overtake it", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 1 })
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      const got: Array<number> = []
      // Tried when the first answer arrives: it frees the window, but the second send has not been written yet.
      const triedOnFirstAnswer: Array<boolean> = []
      pipeline.listen!((result) => {
        got.push(result.response.lastLog)
        if (got.length === 1) triedOnFirstAnswer.push(pipeline.trySend!(request(3)))
      }, () => {})
      rec.gate = yield* Deferred.make<void>()
      assert.isTrue(pipeline.trySend!(request(1)))
      const second = yield* Effect.fork(pipeline.send(request(2)))
      yield* Effect.sleep("50 millis")
      assert.strictEqual(second.unsafePoll(), null)
      assert.isFalse(pipeline.trySend!(request(3)))
      yield* Deferred.succeed(rec.gate, undefined)
      yield* Fiber.join(second)
      yield* eventually(Effect.sync(() => got.length >= 2), "2 answers")
      assert.deepStrictEqual(triedOnFirstAnswer, [false])
      assert.isTrue(pipeline.trySend!(request(3)))
      yield* eventually(Effect.sync(() => got.length >= 3), "3 answers")
      assert.deepStrictEqual(got, [1, 2, 3])
      assert.deepStrictEqual(receivedIndexes(rec), [1, 2, 3])
    }))

  it.scopedLive("trySend refuses while the socket's buffer is full, and once the pipeline is broken", () =>
    Effect.gen(function*() {
      // A peer that accepts and never reads: the socket's buffers fill up.
      const sockets: Array<net.Socket> = []
      const server = net.createServer((socket) => {
        socket.pause()
        sockets.push(socket)
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () =>
          Effect.sync(() => {
            for (const socket of sockets) socket.destroy()
            server.close()
          })
      )
      const port = (server.address() as net.AddressInfo).port
      const a = yield* TcpTransport.make({ bind: loopback, pipelineMaxInFlight: 1000, pipelineMaxBytes: 1 << 30 })
      const scope = yield* Scope.make()
      const pipeline = yield* Scope.extend(a.appendEntriesPipeline("b", `127.0.0.1:${port}`), scope)
      const { ends } = listening(pipeline)
      let taken = 0
      while (taken < 200 && pipeline.trySend!(request(taken + 1, 256 * 1024))) taken++
      // Far below the window: the socket said to wait for drain.
      assert.isBelow(taken, 200)
      assert.isAbove(taken, 0)
      // Broken: the peer goes away.
      for (const socket of sockets) socket.destroy()
      yield* eventually(Effect.sync(() => ends.length > 0), "the break is told")
      assert.instanceOf(ends[0], TransportError)
      assert.isFalse(pipeline.trySend!(request(taken + 1)))
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(ends.length, 1)
    }))
})

/** Short enough for a quick election, long enough that a loaded machine does not depose the leader mid-test. */
const timers = { heartbeatTimeout: "500 millis", electionTimeout: "500 millis", leaderLeaseTimeout: "500 millis" } as const

/** What the leader's pipelines were asked to carry: requests taken by `trySend`, and by `send`. */
interface Sends {
  sentNow: number
  sent: number
}

describe("a leader over TCP", () => {
  it.scopedLive("one client's entries go out from the fiber that appends them, through trySend, to a follower with nothing in flight", () =>
    Effect.gen(function*() {
      const ids = ["a", "b", "c"]
      const transports: Array<Transport> = []
      for (let i = 0; i < ids.length; i++) transports.push(yield* TcpTransport.make({ bind: loopback }))
      const configuration = Configuration.voters(ids.map((id, i) => [id, transports[i]!.localAddress] as const))
      const sends: Sends = { sentNow: 0, sent: 0 }
      const nodes: Array<{ readonly raft: Raft.Raft; readonly fsm: RecordingFsm }> = []
      for (let i = 0; i < ids.length; i++) {
        const logs = LogStore.makeMemory()
        const stable = StableStore.makeMemory()
        const snapshots = SnapshotStore.makeMemory()
        yield* Raft.bootstrapCluster(configuration).pipe(
          Effect.provideService(LogStore.LogStore, logs),
          Effect.provideService(StableStore.StableStore, stable),
          Effect.provideService(SnapshotStore.SnapshotStore, snapshots)
        )
        const plain = transports[i]!
        // Counts what each pipeline is asked to carry, and how.
        const counted: Transport = {
          ...plain,
          appendEntriesPipeline: (peer, address) =>
            Effect.map(plain.appendEntriesPipeline(peer, address), (pipeline): AppendPipeline => ({
              ...pipeline,
              send: (request) => Effect.suspend(() => (sends.sent++, pipeline.send(request))),
              trySend: (request) => pipeline.trySend !== undefined && pipeline.trySend(request) && ++sends.sentNow > 0
            }))
        }
        const fsm = recordingFsm()
        const context = yield* Layer.build(
          Raft.layer({ localId: ids[i]!, ...timers }).pipe(Layer.provide([
            Fsm.layer(fsm),
            Layer.succeed(LogStore.LogStore, logs),
            Layer.succeed(StableStore.StableStore, stable),
            Layer.succeed(SnapshotStore.SnapshotStore, snapshots),
            Layer.succeed(Transport, counted)
          ]))
        )
        nodes.push({ raft: context.unsafeMap.get(Raft.Raft.key) as Raft.Raft, fsm })
      }
      const leaders = Effect.filter(nodes, (node) => Effect.map(node.raft.state, (state) => state === "Leader"))
      yield* eventually(Effect.map(leaders, (found) => found.length === 1), "one leader")
      const leader = (yield* leaders)[0]!
      // The first apply opens the pipelines; then one client, one apply at a time.
      yield* leader.raft.apply(bytes("first"))
      const before = { ...sends }
      for (let i = 0; i < 100; i++) yield* leader.raft.apply(bytes(`x${i}`))
      yield* eventually(Effect.sync(() => nodes.every((node) => node.fsm.applied.length >= 101)), "101 applied")
      // The engine sends at once only to a follower with nothing in flight: the follower whose answer committed the
      // last entry has none, the other often still has the last request in flight and is sent to by its sender.
      // So at least one of the two followers gets almost every entry at once.
      assert.isAtLeast(sends.sentNow - before.sentNow, 60)
    }))
})
