/**
 * `AppendPipeline.trySend` over TCP: a request written at once from the caller's context when that needs no wait,
 * in order with `send`, and refused (nothing written) when the window is full, a send is still waiting, the socket's
 * buffer is full or the pipeline is broken. A leader over TCP that sends one client's entries that way: in
 * PipelineListen.test.ts.
 */
import * as net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import { TransportError } from "../../src/RaftError.js"
import type { AppendPipeline } from "../../src/Transport.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
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
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 2, pipelineMaxBytes: 10_000, maxFrameBytes: 64 * 1024 })
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
      const huge = request(5, 100_000)
      assert.isFalse(pipeline.trySend!(huge))
      const refused = yield* Effect.flip(pipeline.send(huge))
      assert.strictEqual(refused.reason, "oversize")
    }))

  it.scopedLive("trySend refuses while a send waits for room, so it cannot overtake it, and not after that send is interrupted", () =>
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
      // A send interrupted while it waits is no longer before anything.
      rec.gate = yield* Deferred.make<void>()
      assert.isTrue(pipeline.trySend!(request(4)))
      const interrupted = yield* Effect.fork(pipeline.send(request(5)))
      yield* Effect.sleep("50 millis")
      yield* Fiber.interrupt(interrupted)
      yield* Deferred.succeed(rec.gate, undefined)
      yield* eventually(Effect.sync(() => got.length >= 4), "4 answers")
      assert.isTrue(pipeline.trySend!(request(5)))
      yield* eventually(Effect.sync(() => got.length >= 5), "5 answers")
      assert.deepStrictEqual(receivedIndexes(rec), [1, 2, 3, 4, 5])
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
