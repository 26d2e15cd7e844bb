/**
 * Hostile input for the TCP transport, shared by the property test (a few thousand inputs in `npm test`) and
 * `npm run fuzz` (100k+). Inputs are random bytes, valid frames, valid frames with bytes overwritten, cut short,
 * or with their length prefix, version or type changed, valid frames too large for the receiver or large enough to
 * be charged to its receive budget, and large frames announced and left unfinished (which exhaust the budget when
 * several arrive at once); they go into the frame reader and decoder directly, and over real sockets into a live
 * transport. Against a TLS transport, the inputs are client hellos cut short or overwritten, and random bytes.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as tls from "node:tls"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Logger from "effect/Logger"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Log } from "../../src/Log.js"
import { CodecError } from "../../src/RaftError.js"
import type * as Rpc from "../../src/Rpc.js"
import type * as Transport from "../../src/Transport.js"
import * as Codec from "../../src/transport/codec.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"

const entry = (index: number, data: Uint8Array): Log => ({ index, term: 1, type: "Command", data })

/** The frame of an AppendEntries (request `id`) from leader "a" at term 1 carrying `entries`. */
const appendEntriesFrame = (id: number, entries: ReadonlyArray<Log>): Uint8Array =>
  Codec.concat(Codec.encodeRequest(id, {
    _tag: "AppendEntriesRequest",
    term: 1,
    leaderId: "a",
    leaderAddress: "127.0.0.1:1",
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries,
    leaderCommitIndex: 0
  }))

const samples: ReadonlyArray<Uint8Array> = [
  appendEntriesFrame(1, [entry(1, new Uint8Array([1, 2, 3])), entry(2, new Uint8Array(40))]),
  Codec.concat(Codec.encodeRequest(2, {
    _tag: "RequestVoteRequest",
    term: 2,
    candidateId: "b",
    candidateAddress: "h:1",
    lastLogIndex: 3,
    lastLogTerm: 1,
    leadershipTransfer: false
  })),
  Codec.concat(Codec.encodeRequest(3, {
    _tag: "RequestPreVoteRequest",
    term: 2,
    candidateId: "b",
    candidateAddress: "h:1",
    lastLogIndex: 3,
    lastLogTerm: 1
  })),
  Codec.concat(Codec.encodeRequest(4, {
    _tag: "InstallSnapshotRequest",
    term: 2,
    leaderId: "a",
    leaderAddress: "h:1",
    lastLogIndex: 9,
    lastLogTerm: 2,
    configuration: { servers: [{ id: "a", address: "h:1", suffrage: "Voter" }] },
    configurationIndex: 1
  })),
  Codec.concat(Codec.encodeChunk(4, new Uint8Array([5, 6, 7]))),
  Codec.concat(Codec.encodeEnd(4)),
  Codec.concat(Codec.encodeAbort(4, "gone")),
  Codec.concat(Codec.encodeRequest(5, { _tag: "TimeoutNowRequest", term: 3, leaderId: "a", leaderAddress: "h:1" })),
  Codec.concat(Codec.encodeResponse(6, { _tag: "AppendEntriesResponse", term: 1, lastLog: 2, success: true, noRetryBackoff: false })),
  Codec.concat(Codec.encodeError(7, "shutdown", "x"))
]

/** A valid frame with a few bytes overwritten, cut short, or with its header changed. */
const mutated: FastCheck.Arbitrary<Uint8Array> = FastCheck.tuple(
  FastCheck.constantFrom(...samples),
  FastCheck.oneof(
    FastCheck.record({
      kind: FastCheck.constant("overwrite" as const),
      edits: FastCheck.array(FastCheck.tuple(FastCheck.nat(), FastCheck.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })
    }),
    FastCheck.record({ kind: FastCheck.constant("truncate" as const), at: FastCheck.nat() }),
    FastCheck.record({ kind: FastCheck.constant("length" as const), value: FastCheck.nat({ max: 0xffffffff }) }),
    FastCheck.record({ kind: FastCheck.constant("header" as const), at: FastCheck.integer({ min: 4, max: 9 }), value: FastCheck.integer({ min: 0, max: 255 }) })
  )
).map(([frame, mutation]) => {
  const copy = Uint8Array.from(frame)
  switch (mutation.kind) {
    case "overwrite":
      for (const [at, value] of mutation.edits) copy[Codec.HEADER_BYTES + (at % Math.max(1, copy.length - Codec.HEADER_BYTES))] = value
      return copy
    case "truncate":
      return copy.subarray(0, mutation.at % copy.length)
    case "length":
      new DataView(copy.buffer).setUint32(0, mutation.value)
      return copy
    case "header":
      copy[mutation.at] = mutation.value
      return copy
  }
})

/** The live server's limits: frames of 64 KiB to 256 KiB are valid and charged to a budget of four of them. */
export const liveLimits = { maxFrameBytes: 256 * 1024, receiveBudgetBytes: 1024 * 1024 } as const

/** A valid AppendEntries of `size` bytes of entry data: over the uncharged 64 KiB, some over `maxFrameBytes`. */
const large: FastCheck.Arbitrary<Uint8Array> = FastCheck.integer({ min: 64 * 1024, max: 320 * 1024 }).map((size) =>
  appendEntriesFrame(8, [entry(1, new Uint8Array(size))])
)

/** A large frame announced and left unfinished: it holds its size in the receive budget until its connection ends. */
export const unfinished: FastCheck.Arbitrary<Uint8Array> = FastCheck.tuple(
  FastCheck.integer({ min: 65 * 1024, max: liveLimits.maxFrameBytes }),
  FastCheck.integer({ min: 0, max: 16 * 1024 })
).map(([announced, sent]) => {
  const out = new Uint8Array(4 + Math.min(sent, announced))
  new DataView(out.buffer).setUint32(0, announced)
  out[4] = Codec.VERSION
  out[5] = Codec.FrameType.AppendEntries
  return out
})

/** Any hostile input: random bytes, a mutated frame, a large or unfinished frame, or several frames back to back. */
export const hostile: FastCheck.Arbitrary<Uint8Array> = FastCheck.oneof(
  { arbitrary: FastCheck.uint8Array({ maxLength: 300 }), weight: 3 },
  { arbitrary: mutated, weight: 3 },
  { arbitrary: large, weight: 1 },
  { arbitrary: unfinished, weight: 1 },
  {
    arbitrary: FastCheck.array(FastCheck.oneof(FastCheck.constantFrom(...samples), mutated), { minLength: 1, maxLength: 5 })
      .map((parts) => {
        const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
        let at = 0
        for (const p of parts) (out.set(p, at), at += p.length)
        return out
      }),
    weight: 3
  }
)

/**
 * Feeds one input to a fresh reader (with the live server's limits and budget) in pieces of `step` bytes (256 times
 * that for inputs over 64 KiB, unless `step` is 1: those still go byte by byte); tells how it ended. Throws only on
 * a bug, or when the reader keeps budget after it is disposed.
 */
export const decodeAll = (bytes: Uint8Array, step: number): "ok" | CodecError["reason"] => {
  const budget = new Codec.ReceiveBudget(liveLimits.receiveBudgetBytes, 64 * 1024)
  const reader = new Codec.FrameReader("fuzz:1", liveLimits.maxFrameBytes, budget)
  const piece = bytes.length > 64 * 1024 && step > 1 ? step * 256 : step
  const outcome = ((): "ok" | CodecError["reason"] => {
    for (let at = 0; at < bytes.length; at += piece) {
      const frames = reader.push(bytes.subarray(at, at + piece))
      if (frames instanceof CodecError) return frames.reason
      for (const frame of frames) {
        const message = Codec.decode("fuzz:1", frame)
        if (Either.isLeft(message)) return message.left.reason
      }
    }
    return "ok"
  })()
  reader.dispose()
  if (budget.used !== 0) throw new Error(`the reader kept ${budget.used} budget bytes`)
  return outcome
}

const fixtures = path.join(import.meta.dirname, "../fixtures/tls")
const pem = (name: string) => fs.readFileSync(path.join(fixtures, name), "utf8")

/** The TLS material of the live server in TLS mode (the test CA's "b"). */
const serverTls = () => ({ cert: pem("b.pem"), key: pem("b.key"), ca: pem("ca.pem") })

/** The first bytes a TLS client sends (its hello), captured from a real `tls.connect` to a silent socket. */
export const clientHello: Effect.Effect<Uint8Array> = Effect.async<Uint8Array>((resume) => {
  const server = net.createServer((socket) => {
    socket.once("data", (chunk: Buffer) => {
      resume(Effect.succeed(new Uint8Array(chunk)))
      socket.destroy()
      server.close()
    })
  })
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }).on("error", () => {})
  })
})

/** Hostile input for a TLS server: the client hello cut short or overwritten, or random bytes. */
export const hostileTls = (hello: Uint8Array): FastCheck.Arbitrary<Uint8Array> =>
  FastCheck.oneof(
    FastCheck.uint8Array({ maxLength: 300 }),
    FastCheck.nat({ max: hello.length - 1 }).map((at) => hello.subarray(0, at)),
    FastCheck.array(FastCheck.tuple(FastCheck.nat({ max: hello.length - 1 }), FastCheck.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 6
    }).map((edits) => {
      const copy = Uint8Array.from(hello)
      for (const [at, value] of edits) copy[at] = value
      return copy
    })
  )

/** A handler that answers everything at once and reads snapshot streams to their end. */
export const echoHandler: Transport.RpcHandler = {
  appendEntries: (r) => Effect.succeed({ _tag: "AppendEntriesResponse", term: r.term, lastLog: 0, success: true, noRetryBackoff: false }),
  requestVote: (r) => Effect.succeed({ _tag: "RequestVoteResponse", term: r.term, granted: false }),
  requestPreVote: (r) => Effect.succeed({ _tag: "RequestPreVoteResponse", term: r.term, granted: false }),
  timeoutNow: (r) => Effect.succeed({ _tag: "TimeoutNowResponse", term: r.term, success: false }),
  installSnapshot: (r, data) =>
    Effect.as(Effect.ignore(Stream.runDrain(data)), { _tag: "InstallSnapshotResponse" as const, term: r.term, success: true })
}

/**
 * Sends `input` on a fresh connection, then an oversize length prefix so the server always ends the connection,
 * and waits until it does (or 5 s pass: a server that never closes is a leak).
 */
const sendAndAwaitClose = (address: { host: string; port: number }, input: Uint8Array) =>
  new Promise<"closed" | "leaked">((resolve) => {
    const socket = net.connect(address, () => {
      socket.write(input)
      socket.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]))
    })
    const timer = setTimeout(() => {
      socket.destroy()
      resolve("leaked")
    }, 5000)
    socket.on("data", () => {})
    socket.on("error", () => {})
    socket.on("close", () => {
      clearTimeout(timer)
      resolve("closed")
    })
  })

/** What a live run saw. */
export interface LiveReport {
  readonly connections: number
  /** Connections the server closed with a CodecError logged. */
  readonly codecErrorsLogged: number
  /** Of those, frames refused because the receive budget had no room. */
  readonly budgetRefusals: number
  /** TLS connections refused before their handshake completed, logged. */
  readonly tlsRefusals: number
  readonly leaked: number
  readonly inboundAfter: number
  /** Bytes still reserved in the receive budget once every connection is closed (a leak unless 0). */
  readonly receivingAfter: number
  /** The most bytes reserved at once during the run. */
  readonly receivingPeak: number
  readonly servingAfter: boolean
}

/**
 * Sends `inputs` to a live transport (a TLS one with `tls`), `concurrency` connections at a time, and checks it is
 * still whole after: no connection left open, no budget kept, and it answers a client.
 */
export const fuzzLiveServer = (
  inputs: ReadonlyArray<Uint8Array>,
  concurrency: number,
  options: { readonly tls?: boolean } = {}
): Effect.Effect<LiveReport, never, Scope.Scope> =>
  Effect.gen(function*() {
    let codecErrorsLogged = 0
    let budgetRefusals = 0
    let tlsRefusals = 0
    const counting = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => {
        const parts = Array.isArray(message) ? message : [message]
        const codec = parts.find((m): m is CodecError => m instanceof CodecError)
        if (codec !== undefined) {
          codecErrorsLogged++
          if (codec.reason === "budget") budgetRefusals++
        }
        if (parts[0] === "refused a TLS connection") tlsRefusals++
      })
    )
    const tlsMaterial = options.tls === true ? serverTls() : undefined
    const server = yield* Effect.orDie(
      TcpTransport.make({
        bind: { host: "127.0.0.1", port: 0 },
        ...liveLimits,
        frameTimeout: "300 millis",
        openTimeout: "300 millis",
        tls: tlsMaterial
      })
    ).pipe(Effect.provide(counting))
    yield* server.serve(echoHandler)
    // In TLS mode the client is the test CA's "a", a member.
    const client = yield* Effect.orDie(TcpTransport.make({
      bind: { host: "127.0.0.1", port: 0 },
      tls: tlsMaterial === undefined ? undefined : { cert: pem("a.pem"), key: pem("a.key"), ca: pem("ca.pem") }
    }))
    const address = TcpTransport.parseAddress(server.localAddress)!
    let next = 0
    let leaked = 0
    const worker = Effect.promise(async () => {
      while (next < inputs.length) {
        const input = inputs[next++]!
        if ((await sendAndAwaitClose(address, input)) === "leaked") leaked++
      }
    })
    yield* Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded", discard: true })
    let inboundAfter = -1
    for (let i = 0; i < 100; i++) {
      inboundAfter = (yield* server.stats).inbound
      if (inboundAfter === 0) break
      yield* Effect.sleep("20 millis")
    }
    const vote: Rpc.RequestVoteRequest = {
      _tag: "RequestVoteRequest",
      term: 1,
      candidateId: tlsMaterial === undefined ? "z" : "a",
      candidateAddress: client.localAddress,
      lastLogIndex: 0,
      lastLogTerm: 0,
      leadershipTransfer: false
    }
    const servingAfter = Either.isRight(
      yield* Effect.either(client.requestVote(tlsMaterial === undefined ? "s" : "b", server.localAddress, vote))
    )
    const stats = yield* server.stats
    return {
      connections: inputs.length,
      codecErrorsLogged,
      budgetRefusals,
      tlsRefusals,
      leaked,
      inboundAfter,
      receivingAfter: stats.receiving,
      receivingPeak: stats.receivingPeak,
      servingAfter
    }
  })
