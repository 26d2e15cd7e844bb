/**
 * The TCP transport's limits (issue 16): a request that would need a frame over `maxFrameBytes` fails unsent, options
 * that cannot work are refused at construction, frames being received are held within the receive budget, connections
 * that stay silent after opening are closed, and connections over the cap are refused and counted.
 */
import * as net from "node:net"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Rpc from "../../src/Rpc.js"
import * as Codec from "../../src/transport/codec.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { captureLogs } from "./captureLogs.js"
import { appendEntries, entry, eventually, heartbeat, loopback, pair, rawSend, snapshotRequest } from "./tcpHelpers.js"

const fixtures = path.join(import.meta.dirname, "../fixtures/tls")
const pem = (name: string) => fs.readFileSync(path.join(fixtures, name), "utf8")

/** A raw connection that announces a frame of `length` bytes and sends `sent` of them; resolves with the socket once written. */
const partialFrame = (address: string, length: number, sent: number) =>
  Effect.async<{ readonly socket: net.Socket; readonly closed: Promise<void> }>((resume) => {
    const target = TcpTransport.parseAddress(address)!
    const socket = net.connect({ host: target.host, port: target.port })
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
    socket.on("error", () => {})
    socket.on("connect", () => {
      const bytes = new Uint8Array(4 + sent)
      new DataView(bytes.buffer).setUint32(0, length)
      bytes[4] = Codec.VERSION
      bytes[5] = Codec.FrameType.AppendEntries
      socket.write(bytes, () => resume(Effect.succeed({ socket, closed })))
    })
    return Effect.sync(() => socket.destroy())
  })

describe("TcpTransport limits", () => {
  it.scopedLive("a request whose frame would exceed maxFrameBytes fails with TransportError oversize, unsent; smaller ones go on", () =>
    Effect.gen(function*() {
      const { a, b, rec } = yield* pair({ maxFrameBytes: 64 * 1024 }, {})
      const big = appendEntries(0, [entry(1, 64 * 1024)])
      const refused = yield* Effect.flip(a.appendEntries("b", b.localAddress, big))
      assert.strictEqual(refused.reason, "oversize")
      assert.include(refused.detail, "maxFrameBytes is 65536")
      // The pipeline refuses that one send and stays usable.
      const pipeline = yield* a.appendEntriesPipeline("b", b.localAddress)
      const pipelined = yield* Effect.flip(pipeline.send(big))
      assert.strictEqual(pipelined.reason, "oversize")
      yield* pipeline.send(appendEntries(0, [entry(1, 100)]))
      const answer = yield* pipeline.results.take
      assert.strictEqual(answer.response.lastLog, 1)
      // An InstallSnapshot whose request alone is too big (a configuration of many servers) is not sent either.
      const servers = Array.from({ length: 2000 }, (_, i) => ({ id: `s${i}`, address: `10.0.0.${i}:7000`, suffrage: "Voter" as const }))
      const hugeSnapshot: Rpc.InstallSnapshotRequest = { ...snapshotRequest, configuration: { servers } }
      const snapshot = yield* Effect.flip(a.installSnapshot("b", b.localAddress, hugeSnapshot, Stream.empty))
      assert.strictEqual(snapshot._tag === "TransportError" && snapshot.reason, "oversize")
      assert.deepStrictEqual(rec.received.map((r) => r._tag), ["AppendEntriesRequest"], "only the small request arrived")
      assert.strictEqual((yield* b.stats).rejected, 0, "the receiver never saw an oversize frame")
    }))

  it.scoped("options that cannot work together fail construction with a BindError naming the option", () =>
    Effect.gen(function*() {
      const chunk = yield* Effect.flip(TcpTransport.make({ bind: loopback, maxFrameBytes: 4096, snapshotChunkBytes: 4096 }))
      assert.include(chunk.reason, "snapshotChunkBytes")
      const budget = yield* Effect.flip(TcpTransport.make({ bind: loopback, receiveBudgetBytes: 1024 * 1024 }))
      assert.include(budget.reason, "receiveBudgetBytes")
      const frame = yield* Effect.flip(TcpTransport.make({ bind: loopback, maxFrameBytes: 100 }))
      assert.include(frame.reason, "maxFrameBytes")
      const fits = yield* TcpTransport.make({ bind: loopback, maxFrameBytes: 4096, snapshotChunkBytes: 4096 - 6 })
      assert.strictEqual(fits.maxFrameBytes, 4096)
    }))

  it.scopedLive("a frame the receive budget has no room for is refused at its length prefix: the connection closes with CodecError budget logged, small frames still pass", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const maxFrameBytes = 1024 * 1024
      const { a, b } = yield* pair({}, { maxFrameBytes, receiveBudgetBytes: maxFrameBytes + 4 }).pipe(Effect.provide(logs.layer))
      const first = yield* partialFrame(b.localAddress, 600_000, 300_000)
      yield* eventually(Effect.map(b.stats, (s) => s.receiving === 600_004), "the first frame holds its announced size")
      const second = yield* partialFrame(b.localAddress, 600_000, 1000)
      yield* Effect.promise(() => second.closed)
      yield* eventually(
        Effect.sync(() => logs.lines.some((l) => l.includes("bad input") && l.includes("budget"))),
        "a CodecError budget was logged"
      )
      // A heartbeat is under the uncharged size: it passes while the budget is full.
      const beat = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(beat.success, true)
      first.socket.destroy()
      yield* eventually(Effect.map(b.stats, (s) => s.receiving === 0), "a frame cut short gives its budget back")
      const stats = yield* b.stats
      assert.strictEqual(stats.receivingPeak, 600_004)
      assert.strictEqual(stats.rejected, 1)
    }))

  it.scopedLive("a connection silent for openTimeout after opening is closed, whatever frameTimeout is; so is a TLS handshake cut short", () =>
    Effect.gen(function*() {
      const b = yield* TcpTransport.make({ bind: loopback, frameTimeout: "60 seconds", openTimeout: "200 millis" })
      yield* b.serve({ ...(yield* pair()).rec.handler })
      assert.strictEqual(yield* rawSend(b.localAddress, undefined), "closed")
      const secure = yield* TcpTransport.make({
        bind: loopback,
        frameTimeout: "60 seconds",
        openTimeout: "200 millis",
        tls: { cert: pem("b.pem"), key: pem("b.key"), ca: pem("ca.pem") }
      })
      // A client hello cut short: the record header announces more than is sent.
      assert.strictEqual(yield* rawSend(secure.localAddress, new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])), "closed")
      // And one that never starts its handshake.
      assert.strictEqual(yield* rawSend(secure.localAddress, undefined), "closed")
    }))

  it.scopedLive("connections over maxInboundConnections are refused and counted; the ones served go on", () =>
    Effect.gen(function*() {
      const { a, b } = yield* pair({}, { maxInboundConnections: 2 })
      const held = yield* Effect.all([partialFrame(b.localAddress, 100, 10), partialFrame(b.localAddress, 100, 10)])
      yield* eventually(Effect.map(b.stats, (s) => s.inbound === 2), "two connections served")
      assert.strictEqual(yield* rawSend(b.localAddress, Codec.concat(Codec.encodeRequest(1, heartbeat))), "closed")
      yield* eventually(Effect.map(b.stats, (s) => s.rejected === 1), "the refusal counted")
      for (const h of held) h.socket.destroy()
      yield* eventually(Effect.map(b.stats, (s) => s.inbound === 0), "the held connections closed")
      const beat = yield* a.appendEntries("b", b.localAddress, heartbeat)
      assert.strictEqual(beat.success, true)
    }))
})
