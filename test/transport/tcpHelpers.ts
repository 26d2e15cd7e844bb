/** Shared pieces of the TCP transport tests: requests, a recording handler, a pair of transports, raw sockets. */
import * as net from "node:net"
import { assert } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Log } from "../../src/Log.js"
import type * as Rpc from "../../src/Rpc.js"
import type * as Transport from "../../src/Transport.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"

export const entry = (index: number, size: number): Log => ({
  index,
  term: 1,
  type: "Command",
  data: Uint8Array.from({ length: size }, (_, i) => (index + i) % 251)
})

export const appendEntries = (prevLogIndex: number, entries: ReadonlyArray<Log> = []): Rpc.AppendEntriesRequest => ({
  _tag: "AppendEntriesRequest",
  term: 1,
  leaderId: "a",
  leaderAddress: "127.0.0.1:1",
  prevLogIndex,
  prevLogTerm: 1,
  entries,
  leaderCommitIndex: 0
})

export const snapshotRequest: Rpc.InstallSnapshotRequest = {
  _tag: "InstallSnapshotRequest",
  term: 2,
  leaderId: "a",
  leaderAddress: "127.0.0.1:1",
  lastLogIndex: 500,
  lastLogTerm: 2,
  configuration: { servers: [{ id: "a", address: "127.0.0.1:1", suffrage: "Voter" }] },
  configurationIndex: 1
}

/** A follower's handler that records what it received; `gate`, when set, holds AppendEntries with entries. */
export interface Recorder {
  readonly received: Array<Rpc.Request>
  readonly snapshots: Array<{ readonly bytes: number; readonly chunks: number; readonly sum: number; readonly error?: string }>
  gate: Deferred.Deferred<void> | undefined
  /** Completed when a snapshot handler has read its first chunk; the handler then waits on `snapshotGate`. */
  snapshotStarted: Deferred.Deferred<void> | undefined
  snapshotGate: Deferred.Deferred<void> | undefined
  readonly handler: Transport.RpcHandler
}

export const recorder = (): Recorder => {
  const self: Recorder = {
    received: [],
    snapshots: [],
    gate: undefined,
    snapshotStarted: undefined,
    snapshotGate: undefined,
    handler: {
      appendEntries: (request) =>
        Effect.gen(function*() {
          if (self.gate !== undefined && request.entries.length > 0) yield* Deferred.await(self.gate)
          self.received.push(request)
          const last = request.entries.at(-1)?.index ?? request.prevLogIndex
          return { _tag: "AppendEntriesResponse", term: request.term, lastLog: last, success: true, noRetryBackoff: false }
        }),
      requestVote: (request) =>
        Effect.sync(() => {
          self.received.push(request)
          return { _tag: "RequestVoteResponse", term: request.term, granted: request.candidateId === "b" } as const
        }),
      requestPreVote: (request) =>
        Effect.sync(() => {
          self.received.push(request)
          return { _tag: "RequestPreVoteResponse", term: request.term - 1, granted: true } as const
        }),
      timeoutNow: (request) =>
        Effect.sync(() => {
          self.received.push(request)
          return { _tag: "TimeoutNowResponse", term: request.term, success: true } as const
        }),
      readIndex: (request) =>
        Effect.sync(() => {
          self.received.push(request)
          return { _tag: "ReadIndexResponse", term: request.term, success: request.lease, index: 42 } as const
        }),
      installSnapshot: (request, data) =>
        Effect.gen(function*() {
          self.received.push(request)
          let bytes = 0
          let chunks = 0
          let sum = 0
          const read = yield* data.pipe(
            Stream.runForEach((chunk) =>
              Effect.gen(function*() {
                if (chunks === 0 && self.snapshotStarted !== undefined) {
                  yield* Deferred.succeed(self.snapshotStarted, undefined)
                  if (self.snapshotGate !== undefined) yield* Deferred.await(self.snapshotGate)
                }
                chunks++
                bytes += chunk.length
                for (let i = 0; i < chunk.length; i += 4096) sum = (sum + chunk[i]!) % 1_000_003
              })
            ),
            Effect.either
          )
          self.snapshots.push(
            read._tag === "Left" ? { bytes, chunks, sum, error: read.left.reason } : { bytes, chunks, sum }
          )
          return { _tag: "InstallSnapshotResponse", term: request.term, success: read._tag === "Right" } as const
        })
    }
  }
  return self
}

export const loopback = { host: "127.0.0.1", port: 0 }

/** Two transports on loopback, `b` serving a recorder. */
export const pair = (options: Partial<TcpTransport.Options> = {}, serverOptions: Partial<TcpTransport.Options> = options) =>
  Effect.gen(function*() {
    const a = yield* TcpTransport.make({ bind: loopback, ...options })
    const b = yield* TcpTransport.make({ bind: loopback, ...serverOptions })
    const rec = recorder()
    yield* b.serve(rec.handler)
    return { a, b, rec }
  })

/** Opens a raw TCP connection to `address`, writes `bytes`, and resolves when the server closes it. */
export const rawSend = (address: string, bytes: Uint8Array | undefined) =>
  Effect.async<"closed">((resume) => {
    const target = TcpTransport.parseAddress(address)!
    const socket = net.connect({ host: target.host, port: target.port }, () => {
      if (bytes !== undefined) socket.write(bytes)
    })
    socket.on("error", () => {})
    socket.on("data", () => {})
    socket.on("close", () => resume(Effect.succeed("closed")))
    return Effect.sync(() => socket.destroy())
  })

/** Waits until `check` holds, polling (the transport closes connections on the event loop). */
export const eventually = (check: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if (yield* check) return
      yield* Effect.sleep("25 millis")
    }
    assert.fail(`never: ${what}`)
  })

export const heartbeat = appendEntries(0)
