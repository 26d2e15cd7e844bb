import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ClusterMismatch, RaftShutdown, StorageError, TransportError } from "../../src/RaftError.js"
import type * as Rpc from "../../src/Rpc.js"
import type * as Transport from "../../src/Transport.js"
import * as Codec from "../../src/transport/codec.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { captureLogs } from "./captureLogs.js"
import {
  appendEntries,
  entry,
  eventually,
  heartbeat,
  loopback,
  pair,
  rawSend,
  recorder,
  snapshotRequest
} from "./tcpHelpers.js"

const fixtures = path.join(import.meta.dirname, "../fixtures/tls")
const pem = (name: string) => fs.readFileSync(path.join(fixtures, name), "utf8")

/** A success answer to an AppendEntries carrying entries: `lastLog` is its first entry's index. */
const accepted = (request: Rpc.AppendEntriesRequest): Rpc.AppendEntriesResponse => ({
  _tag: "AppendEntriesResponse",
  term: 1,
  lastLog: request.entries[0]!.index,
  success: true,
  noRetryBackoff: false
})

describe("TcpTransport", () => {
  it.scopedLive("carries every RPC over loopback and answers each with its own response", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair()
      assert.match(b.localAddress, /^127\.0\.0\.1:\d+$/)
      const entries = Array.from({ length: 64 }, (_, i) => entry(i + 1, 128))
      const ae = yield* a.appendEntries("b", b.localAddress, appendEntries(0, entries))
      assert.deepStrictEqual(ae, { _tag: "AppendEntriesResponse", term: 1, lastLog: 64, success: true, noRetryBackoff: false })
      const got = rec.received[0] as Rpc.AppendEntriesRequest
      assert.deepStrictEqual(got.entries.map((e) => Array.from(e.data)), entries.map((e) => Array.from(e.data)))
      const hb = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(hb.lastLog, 0)
      const vote = yield* a.requestVote("b", b.localAddress, {
        _tag: "RequestVoteRequest",
        term: 3,
        candidateId: "b",
        candidateAddress: a.localAddress,
        lastLogIndex: 64,
        lastLogTerm: 1,
        leadershipTransfer: false
      })
      assert.deepStrictEqual(vote, { _tag: "RequestVoteResponse", term: 3, granted: true })
      const preVote = yield* a.requestPreVote("b", b.localAddress, {
        _tag: "RequestPreVoteRequest",
        term: 4,
        candidateId: "a",
        candidateAddress: a.localAddress,
        lastLogIndex: 64,
        lastLogTerm: 1
      })
      assert.deepStrictEqual(preVote, { _tag: "RequestPreVoteResponse", term: 3, granted: true })
      const now = yield* a.timeoutNow("b", b.localAddress, {
        _tag: "TimeoutNowRequest",
        term: 5,
        leaderId: "a",
        leaderAddress: a.localAddress
      })
      assert.deepStrictEqual(now, { _tag: "TimeoutNowResponse", term: 5, success: true })
      const read = yield* a.readIndex!("b", b.localAddress, {
        _tag: "ReadIndexRequest",
        term: 5,
        serverId: "a",
        serverAddress: a.localAddress,
        lease: true
      })
      assert.deepStrictEqual(read, { _tag: "ReadIndexResponse", term: 5, success: true, index: 42 })
      assert.deepStrictEqual(rec.received.map((r) => r._tag), [
        "AppendEntriesRequest",
        "AppendEntriesRequest",
        "RequestVoteRequest",
        "RequestPreVoteRequest",
        "TimeoutNowRequest",
        "ReadIndexRequest"
      ])
    }))

  it.scopedLive("a request's cluster id crosses the wire, and a refusal for another cluster reaches the sender as TransportError identity", () =>
    Effect.gen(function*() {
      const a = yield* TcpTransport.make({ bind: loopback })
      const b = yield* TcpTransport.make({ bind: loopback })
      const rec = recorder()
      const refuse = (request: { readonly clusterId?: string | undefined }) =>
        request.clusterId === "red" ? Effect.fail(new ClusterMismatch({ expected: "blue", got: "red" })) : undefined
      yield* b.serve({
        ...rec.handler,
        appendEntries: (request) => refuse(request) ?? rec.handler.appendEntries(request),
        requestVote: (request) => refuse(request) ?? rec.handler.requestVote(request)
      })
      yield* a.appendEntries("b", b.localAddress, { ...appendEntries(0, [entry(1, 8)]), clusterId: "blue" })
      assert.strictEqual((rec.received[0] as Rpc.AppendEntriesRequest).clusterId, "blue")
      const refused = yield* Effect.flip(
        a.appendEntries("b", b.localAddress, { ...appendEntries(1, [entry(2, 8)]), clusterId: "red" })
      )
      assert.strictEqual(refused.reason, "identity")
      assert.include(refused.detail ?? "", "cluster")
      const vote = yield* Effect.flip(a.requestVote("b", b.localAddress, {
        _tag: "RequestVoteRequest",
        term: 3,
        candidateId: "b",
        candidateAddress: a.localAddress,
        lastLogIndex: 1,
        lastLogTerm: 1,
        leadershipTransfer: false,
        clusterId: "red"
      }))
      assert.strictEqual(vote._tag === "TransportError" ? vote.reason : vote._tag, "identity")
      assert.strictEqual(rec.received.length, 1, "a refused request reached the handler")
    }))

  it.scopedLive("streams a multi-MiB InstallSnapshot in chunks, byte for byte, and reuses the connection after", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ snapshotChunkBytes: 64 * 1024 })
      const pieces = Array.from({ length: 24 }, (_, i) => Uint8Array.from({ length: 256 * 1024 }, (_, j) => (i * 7 + j) % 256))
      let expected = 0
      for (const p of pieces) for (let i = 0; i < p.length; i += 4096) expected = (expected + p[i]!) % 1_000_003
      const response = yield* a.installSnapshot("b", b.localAddress, snapshotRequest, Stream.fromIterable(pieces))
      assert.deepStrictEqual(response, { _tag: "InstallSnapshotResponse", term: 2, success: true })
      assert.strictEqual(rec.snapshots.length, 1)
      assert.strictEqual(rec.snapshots[0]!.bytes, 6 * 1024 * 1024)
      assert.strictEqual(rec.snapshots[0]!.chunks, 96) // 256 KiB pieces re-cut to 64 KiB frames
      assert.strictEqual(rec.snapshots[0]!.sum, expected)
      assert.deepStrictEqual(rec.received[0], snapshotRequest)
      const after = yield* a.appendEntries("b", b.localAddress, appendEntries(3, [entry(4, 10)]))
      assert.strictEqual(after.lastLog, 4)
    }))

  it.scopedLive("a snapshot stream failing mid-way fails the sender with its StorageError and the receiver's stream with a TransportError", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair()
      const data = Stream.concat(
        Stream.fromIterable([new Uint8Array(100_000), new Uint8Array(100_000)]),
        Stream.fail(new StorageError({ operation: "open", reason: "disk gone" }))
      )
      const exit = yield* Effect.exit(a.installSnapshot("b", b.localAddress, snapshotRequest, data))
      assert(Exit.isFailure(exit))
      const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.strictEqual(error?._tag, "StorageError")
      yield* eventually(Effect.sync(() => rec.snapshots.length === 1), "the receiver's handler ended")
      assert.strictEqual(rec.snapshots[0]!.error, "remote")
      assert.strictEqual(rec.snapshots[0]!.bytes, 200_000)
      // The receiver keeps serving.
      const hb = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(hb.success, true)
    }))

  it.scopedLive("a heartbeat is answered while a large AppendEntries and a snapshot transfer are held up on the same peer", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair()
      rec.gate = yield* Deferred.make<void>()
      rec.snapshotStarted = yield* Deferred.make<void>()
      rec.snapshotGate = yield* Deferred.make<void>()
      const big = yield* Effect.fork(
        a.appendEntries("b", b.localAddress, appendEntries(0, Array.from({ length: 64 }, (_, i) => entry(i + 1, 16 * 1024))))
      )
      const snapshot = yield* Effect.fork(
        a.installSnapshot("b", b.localAddress, snapshotRequest, Stream.fromIterable(Array.from({ length: 64 }, () => new Uint8Array(64 * 1024))))
      )
      yield* Deferred.await(rec.snapshotStarted)
      for (let i = 0; i < 5; i++) {
        const hb = yield* a.appendEntries("b", b.localAddress, heartbeat)
        assert.strictEqual(hb.success, true)
      }
      assert.strictEqual(big.unsafePoll(), null)
      assert.strictEqual(snapshot.unsafePoll(), null)
      yield* Deferred.succeed(rec.gate, undefined)
      yield* Deferred.succeed(rec.snapshotGate, undefined)
      assert.strictEqual((yield* Fiber.join(big)).lastLog, 64)
      assert.strictEqual((yield* Fiber.join(snapshot)).success, true)
    }))

  it.scopedLive("pipelined answers arrive in request order, and send waits while the window is full", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 4 })
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      for (let i = 0; i < 200; i++) yield* pipeline.send(appendEntries(i, [entry(i + 1, 1 + (i % 50))]))
      const got: Array<number> = []
      while (got.length < 200) {
        const [results] = yield* pipeline.results.takeAll
        for (const r of results) {
          assert.strictEqual(r.response.lastLog, r.request.entries[0]!.index)
          got.push(r.response.lastLog)
        }
      }
      assert.deepStrictEqual(got, Array.from({ length: 200 }, (_, i) => i + 1))
      // With the follower stalled, the fifth send waits for room.
      rec.gate = yield* Deferred.make<void>()
      for (let i = 0; i < 4; i++) yield* pipeline.send(appendEntries(200 + i, [entry(201 + i, 10)]))
      const fifth = yield* Effect.fork(pipeline.send(appendEntries(204, [entry(205, 10)])))
      yield* Effect.sleep("200 millis")
      assert.strictEqual(fifth.unsafePoll(), null)
      yield* Deferred.succeed(rec.gate, undefined)
      yield* Fiber.join(fifth)
      const rest: Array<number> = []
      while (rest.length < 5) {
        const [results] = yield* pipeline.results.takeAll
        for (const r of results) rest.push(r.response.lastLog)
      }
      assert.deepStrictEqual(rest, [201, 202, 203, 204, 205])
    }))

  it.scopedLive("AppendEntries handed straight from the socket (submitAppendEntries) and through the inbox are handled and answered in arrival order", () =>
    Effect.gen(function*() {
      // A handler that, like a node, takes requests into one queue in the order it is given them, and answers
      // them only when the test releases them.
      const queue: Array<{ readonly request: Rpc.AppendEntriesRequest; readonly via: string; readonly answer: () => void }> = []
      const handled: Array<string> = []
      const response = accepted
      const release = (n: number) =>
        Effect.sync(() => {
          for (const item of queue.splice(0, n)) {
            handled.push(`${item.request.entries[0]!.index}:${item.via}`)
            item.answer()
          }
        })
      const base = recorder().handler
      const handler: Transport.RpcHandler = {
        ...base,
        appendEntries: (request) =>
          Effect.async((resume) => {
            queue.push({ request, via: "effect", answer: () => resume(Effect.succeed(response(request))) })
          }),
        submitAppendEntries: (request, onDone) => {
          queue.push({ request, via: "submit", answer: () => onDone(Exit.succeed(response(request))) })
        }
      }
      const a = yield* TcpTransport.make({ bind: loopback, pipelineMaxInFlight: 200 })
      const b = yield* TcpTransport.make({ bind: loopback })
      yield* b.serve(handler)
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      const send = (from: number, to: number) =>
        Effect.forEach(Array.from({ length: to - from + 1 }, (_, i) => from + i), (i) =>
          pipeline.send(appendEntries(i - 1, [entry(i, 8)])), { discard: true })
      yield* send(1, 80)
      // 64 go straight to the handler; the 65th is taken by the server's loop (an effect); 15 wait in its inbox.
      yield* eventually(Effect.sync(() => queue.length === 65), "65 requests reach the handler")
      yield* Effect.sleep("50 millis")
      assert.strictEqual(queue.length, 65)
      assert.deepStrictEqual(queue.map((q) => q.via), [...Array(64).fill("submit"), "effect"])
      // With the direct ones answered and the inbox not yet empty, new requests must queue behind the inbox.
      yield* release(64)
      yield* send(81, 90)
      const got: Array<number> = []
      for (let round = 0; round < 100 && got.length < 90; round++) {
        yield* release(queue.length)
        const results = yield* pipeline.results.takeAll.pipe(Effect.timeout("100 millis"), Effect.option)
        if (results._tag === "Some") for (const r of results.value[0]) got.push(r.response.lastLog)
      }
      assert.deepStrictEqual(got, Array.from({ length: 90 }, (_, i) => i + 1))
      assert.deepStrictEqual(handled.map((h) => Number(h.split(":")[0])), Array.from({ length: 90 }, (_, i) => i + 1))
      assert.deepStrictEqual(handled.slice(64, 90).map((h) => h.split(":")[1]), Array(26).fill("effect"))
      // Once the inbox has drained and the loop is idle, requests go straight to the handler again.
      yield* send(91, 91)
      yield* eventually(Effect.sync(() => queue.length === 1), "the 91st request reaches the handler")
      assert.strictEqual(queue[0]!.via, "submit")
      yield* release(1)
      const [last] = yield* pipeline.results.takeAll
      assert.deepStrictEqual(Array.from(last, (r) => r.response.lastLog), [91])
    }))

  it.scopedLive("answers to direct submissions leave in arrival order when the handler completes them out of order", () =>
    Effect.gen(function*() {
      const held: Array<() => void> = []
      const handler: Transport.RpcHandler = {
        ...recorder().handler,
        submitAppendEntries: (request, onDone) => {
          held.push(() => onDone(Exit.succeed(accepted(request))))
          // The third completes first, then the second, then the first (as a node failing new requests at once
          // while shutting down, with earlier ones still queued).
          if (held.length === 3) for (const done of held.reverse()) done()
        }
      }
      const a = yield* TcpTransport.make({ bind: loopback })
      const b = yield* TcpTransport.make({ bind: loopback })
      yield* b.serve(handler)
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      for (let i = 1; i <= 3; i++) yield* pipeline.send(appendEntries(i - 1, [entry(i, 8)]))
      const got: Array<number> = []
      while (got.length < 3) {
        const [results] = yield* pipeline.results.takeAll
        for (const r of results) got.push(r.response.lastLog)
      }
      assert.deepStrictEqual(got, [1, 2, 3])
    }))

  it.scopedLive("a pipeline's listener gets every answer once and in order, and its end once: at close, or at a break and not again", () =>
    Effect.gen(function*() {
      const a = yield* TcpTransport.make({ bind: loopback, pipelineMaxInFlight: 8 })
      const serving = yield* Scope.make()
      const b = yield* Scope.extend(TcpTransport.make({ bind: loopback }), serving)
      yield* Scope.extend(b.serve(recorder().handler), serving)
      const open = Effect.gen(function*() {
        const scope = yield* Scope.make()
        const pipeline = yield* Scope.extend(a.appendEntriesPipeline("b", b.localAddress), scope)
        const got: Array<number> = []
        const ends: Array<TransportError | undefined> = []
        pipeline.listen!((result) => void got.push(result.response.lastLog), (error) => void ends.push(error))
        for (let i = 1; i <= 100; i++) yield* pipeline.send(appendEntries(i - 1, [entry(i, 8)]))
        yield* eventually(Effect.sync(() => got.length >= 100), "100 answers")
        assert.deepStrictEqual(got, Array.from({ length: 100 }, (_, i) => i + 1))
        assert.deepStrictEqual(pipeline.results.unsafeSize(), Option.some(0))
        assert.deepStrictEqual(ends, [])
        return { scope, ends }
      })
      const closed = yield* open
      yield* Scope.close(closed.scope, Exit.void)
      assert.deepStrictEqual(closed.ends, [undefined])
      const broken = yield* open
      yield* Scope.close(serving, Exit.void)
      yield* eventually(Effect.sync(() => broken.ends.length > 0), "the break is told")
      assert.instanceOf(broken.ends[0], TransportError)
      yield* Scope.close(broken.scope, Exit.void)
      assert.strictEqual(broken.ends.length, 1)
    }))

  it.scopedLive("the pipeline window is also bounded by bytes", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ pipelineMaxInFlight: 100, pipelineMaxBytes: 50_000 })
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      rec.gate = yield* Deferred.make<void>()
      yield* pipeline.send(appendEntries(0, [entry(1, 30_000)]))
      const second = yield* Effect.fork(pipeline.send(appendEntries(1, [entry(2, 30_000)])))
      yield* Effect.sleep("200 millis")
      assert.strictEqual(second.unsafePoll(), null)
      yield* Deferred.succeed(rec.gate, undefined)
      yield* Fiber.join(second)
    }))

  it.scopedLive("a peer that shuts down answers with a closed TransportError; an unknown port is unreachable; a silent peer times out", () =>
    Effect.gen(function*() {
      const a = yield* TcpTransport.make({ bind: loopback, rpcTimeout: "300 millis" })
      const b = yield* TcpTransport.make({ bind: loopback })
      yield* b.serve({ ...recorder().handler, requestVote: () => Effect.never })
      const vote = yield* Effect.flip(
        a.requestVote("b", b.localAddress, {
          _tag: "RequestVoteRequest",
          term: 1,
          candidateId: "a",
          candidateAddress: a.localAddress,
          lastLogIndex: 0,
          lastLogTerm: 0,
          leadershipTransfer: false
        })
      )
      assert.strictEqual(vote.reason, "timeout")
      const closedPort = yield* Effect.promise(() =>
        new Promise<number>((resolve) => {
          const s = net.createServer().listen(0, "127.0.0.1", () => {
            const port = (s.address() as net.AddressInfo).port
            s.close(() => resolve(port))
          })
        })
      )
      const unreachable = yield* Effect.flip(a.appendEntries("b", `127.0.0.1:${closedPort}`, heartbeat))
      assert.strictEqual(unreachable.reason, "unreachable")
      const shut = yield* TcpTransport.make({ bind: loopback })
      yield* shut.serve({ ...recorder().handler, timeoutNow: () => Effect.fail(new RaftShutdown()) })
      const closed = yield* Effect.flip(a.timeoutNow("c", shut.localAddress, { _tag: "TimeoutNowRequest", term: 1, leaderId: "a", leaderAddress: "x:1" }))
      assert.strictEqual(closed.reason, "closed")
    }))

  it.scopedLive("bad input closes only that connection, logs a CodecError with the peer's address, and the node keeps serving", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { a, b } = yield* pair({}, { maxFrameBytes: 64 * 1024 }).pipe(Effect.provide(logs.layer))
      const healthy = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(healthy.success, true)
      const oversize = new Uint8Array([0x7f, 0xff, 0xff, 0xff, 1, 1])
      const badVersion = Codec.concat(Codec.encodeRequest(1, heartbeat))
      badVersion[4] = 9
      const unknownType = Codec.concat(Codec.encodeRequest(1, heartbeat))
      unknownType[5] = 0x55
      const badSchema = Codec.concat(Codec.encodeResponse(1, { _tag: "RequestVoteResponse", term: 1, granted: true }))
      badSchema[5] = Codec.FrameType.AppendEntries
      const responseFromClient = Codec.concat(Codec.encodeResponse(1, { _tag: "TimeoutNowResponse", term: 1, success: true }))
      for (const bytes of [oversize, badVersion, unknownType, badSchema, responseFromClient]) {
        assert.strictEqual(yield* rawSend(b.localAddress, bytes), "closed")
      }
      yield* eventually(Effect.map(b.stats, (s) => s.inbound === 1), "only the healthy connection stays open")
      assert.strictEqual((yield* b.stats).rejected, 5)
      const again = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(again.success, true)
      const codecLines = logs.lines.filter((l) => l.includes("bad input"))
      assert.strictEqual(codecLines.length, 5)
      for (const reason of ["oversize", "version", "frame-type", "schema", "malformed"]) {
        assert(codecLines.some((l) => l.includes(reason)), `a CodecError with reason ${reason} was logged`)
      }
      assert(codecLines.every((l) => /peer=127\.0\.0\.1:\d+/.test(l)), codecLines.join("\n"))
    }))

  it.scopedLive("a peer that connects and never speaks, or stalls mid-frame, is disconnected", () =>
    Effect.gen(function*() {
      const b = yield* TcpTransport.make({ bind: loopback, frameTimeout: "300 millis", openTimeout: "300 millis" })
      yield* b.serve(recorder().handler)
      const half = Codec.concat(Codec.encodeRequest(1, heartbeat)).subarray(0, 12)
      const [silent, stalled] = yield* Effect.all([rawSend(b.localAddress, undefined), rawSend(b.localAddress, half)], {
        concurrency: 2
      })
      assert.strictEqual(silent, "closed")
      assert.strictEqual(stalled, "closed")
      yield* eventually(Effect.map(b.stats, (s) => s.inbound === 0), "no inbound connection left")
      assert.strictEqual((yield* b.stats).rejected, 2)
    }))

  it.scopedLive("mutual TLS: peers with certificates from the cluster's CA talk; a client without one, or with another CA's, is refused and the refusal logged", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const material = (id: string) => ({ cert: pem(`${id}.pem`), key: pem(`${id}.key`), ca: pem("ca.pem") })
      const { a, b } = yield* pair({ tls: material("a") }, { tls: material("b") }).pipe(Effect.provide(logs.layer))
      const ok = yield* a.appendEntries("b", b.localAddress, appendEntries(0, [entry(1, 100)]))
      assert.strictEqual(ok.lastLog, 1)
      const rogue = yield* TcpTransport.make({
        bind: loopback,
        tls: { cert: pem("rogue.pem"), key: pem("rogue.key"), ca: pem("ca.pem") }
      })
      const refused = yield* Effect.flip(rogue.appendEntries("b", b.localAddress, heartbeat))
      assert.include(["unreachable", "closed"], refused.reason)
      const target = TcpTransport.parseAddress(b.localAddress)!
      const anonymous = yield* Effect.async<string>((resume) => {
        const socket = tls.connect({ host: target.host, port: target.port, ca: pem("ca.pem") }, () => {
          socket.write(Codec.concat(Codec.encodeRequest(1, heartbeat)))
        })
        socket.on("data", () => resume(Effect.succeed("answered")))
        socket.on("error", () => {})
        socket.on("close", () => resume(Effect.succeed("closed")))
      })
      assert.strictEqual(anonymous, "closed")
      yield* eventually(Effect.sync(() => logs.lines.filter((l) => l.includes("refused a TLS connection")).length >= 2), "two refusals logged")
      // A plain-TCP client does not get through either.
      const plain = yield* TcpTransport.make({ bind: loopback })
      const plainRefused = yield* Effect.flip(plain.appendEntries("b", b.localAddress, heartbeat))
      assert.include(["unreachable", "closed", "timeout", "remote"], plainRefused.reason)
      // And the TLS node still serves its peer.
      const still = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(still.success, true)
    }))

  it.scopedLive("closing a transport closes its connections while other transports go on", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair()
      rec.gate = yield* Deferred.make<void>()
      const pending = yield* Effect.fork(a.appendEntries("b", b.localAddress, appendEntries(0, [entry(1, 1)])))
      yield* eventually(Effect.map(b.stats, (s) => s.inbound === 1), "connected")
      const closed = yield* Effect.scoped(
        Effect.gen(function*() {
          const c = yield* TcpTransport.make({ bind: loopback })
          yield* c.appendEntries("b", b.localAddress, heartbeat)
          assert.strictEqual((yield* c.stats).outbound, 1)
          return c
        })
      ).pipe(Effect.flatMap((c) => c.stats))
      assert.deepStrictEqual(closed.outbound, 0)
      yield* Deferred.succeed(rec.gate, undefined)
      const answered = yield* Fiber.join(pending)
      assert.strictEqual(answered.lastLog, 1)
    }))
})
