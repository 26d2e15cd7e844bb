import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import { pack } from "msgpackr"
import * as Schema from "effect/Schema"
import { Log } from "../../src/Log.js"
import { CodecError } from "../../src/RaftError.js"
import * as Rpc from "../../src/Rpc.js"
import * as Codec from "../../src/transport/codec.js"

const entry = (index: number, data: Uint8Array, type: Log["type"] = "Command"): Log => ({ index, term: 2, type, data })

const requests: ReadonlyArray<Rpc.Request> = [
  {
    _tag: "AppendEntriesRequest",
    term: 3,
    leaderId: "a",
    leaderAddress: "127.0.0.1:7001",
    prevLogIndex: 10,
    prevLogTerm: 2,
    entries: [entry(11, new Uint8Array([1, 2, 3])), entry(12, new Uint8Array(0), "Noop"), entry(13, new Uint8Array(300), "Barrier")],
    leaderCommitIndex: 9
  },
  {
    _tag: "RequestVoteRequest",
    term: 4,
    candidateId: "b",
    candidateAddress: "h:1",
    lastLogIndex: 7,
    lastLogTerm: 3,
    leadershipTransfer: true
  },
  { _tag: "RequestPreVoteRequest", term: 5, candidateId: "c", candidateAddress: "h:2", lastLogIndex: 1, lastLogTerm: 1 },
  {
    _tag: "InstallSnapshotRequest",
    term: 6,
    leaderId: "a",
    leaderAddress: "h:3",
    lastLogIndex: 100,
    lastLogTerm: 5,
    configuration: { servers: [{ id: "a", address: "h:3", suffrage: "Voter" }, { id: "d", address: "h:4", suffrage: "Nonvoter" }] },
    configurationIndex: 90
  },
  { _tag: "TimeoutNowRequest", term: 7, leaderId: "a", leaderAddress: "h:3" },
  { _tag: "ReadIndexRequest", term: 8, serverId: "b", serverAddress: "h:4", lease: true }
]

/** Requests of traced operations: they carry the sender's trace context (docs/wire-format.md). */
const tracedRequests: ReadonlyArray<Rpc.Request> = [
  {
    _tag: "AppendEntriesRequest",
    term: 3,
    leaderId: "a",
    leaderAddress: "127.0.0.1:7001",
    prevLogIndex: 13,
    prevLogTerm: 2,
    entries: [entry(14, new Uint8Array([4]))],
    leaderCommitIndex: 13,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
  },
  {
    _tag: "RequestVoteRequest",
    term: 4,
    candidateId: "b",
    candidateAddress: "h:1",
    lastLogIndex: 7,
    lastLogTerm: 3,
    leadershipTransfer: false,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
  },
  {
    _tag: "RequestPreVoteRequest",
    term: 5,
    candidateId: "c",
    candidateAddress: "h:2",
    lastLogIndex: 1,
    lastLogTerm: 1,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b8-01"
  },
  {
    _tag: "InstallSnapshotRequest",
    term: 6,
    leaderId: "a",
    leaderAddress: "h:3",
    lastLogIndex: 100,
    lastLogTerm: 5,
    configuration: { servers: [{ id: "a", address: "h:3", suffrage: "Voter" }] },
    configurationIndex: 90,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b9-00"
  }
]

const responses: ReadonlyArray<Rpc.Response> = [
  { _tag: "AppendEntriesResponse", term: 3, lastLog: 13, success: true, noRetryBackoff: false },
  { _tag: "RequestVoteResponse", term: 4, granted: false },
  { _tag: "RequestPreVoteResponse", term: 5, granted: true },
  { _tag: "InstallSnapshotResponse", term: 6, success: true },
  { _tag: "TimeoutNowResponse", term: 7, success: true },
  { _tag: "ReadIndexResponse", term: 8, success: true, index: 1234 }
]

/** Feeds `bytes` to a fresh reader in pieces of `step` bytes and decodes every frame. */
const readAll = (bytes: Uint8Array, step: number, maxFrameBytes = 1 << 20): Array<Codec.Message> | CodecError => {
  const reader = new Codec.FrameReader("peer:1", maxFrameBytes)
  const out: Array<Codec.Message> = []
  for (let at = 0; at < bytes.length; at += step) {
    const frames = reader.push(bytes.subarray(at, at + step))
    if (frames instanceof CodecError) return frames
    for (const frame of frames) {
      const message = Codec.decode("peer:1", frame)
      if (Either.isLeft(message)) return message.left
      out.push(message.right)
    }
  }
  return out
}

const frameOf = (type: number, body: Uint8Array, version = Codec.VERSION): Uint8Array => {
  const out = new Uint8Array(Codec.HEADER_BYTES + body.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, 6 + body.length)
  out[4] = version
  out[5] = type
  view.setUint32(6, 1)
  out.set(body, Codec.HEADER_BYTES)
  return out
}

const reasonOf = (result: Array<Codec.Message> | CodecError): string =>
  result instanceof CodecError ? result.reason : "decoded"

describe("codec", () => {
  it("the trace context of a traced request survives encoding, whole or in pieces", () => {
    const frames = tracedRequests.map((r, i) => Codec.concat(Codec.encodeRequest(i + 1, r)))
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
    let at = 0
    for (const f of frames) (all.set(f, at), at += f.length)
    for (const step of [1, 7, all.length]) {
      const messages = readAll(all, step)
      assert(!(messages instanceof CodecError), `step ${step}: ${String(messages)}`)
      assert.deepStrictEqual(messages.map((m) => (m.kind === "request" ? m.request : m)), [...tracedRequests])
    }
  })

  it("every request and response survives encoding, whole or cut into pieces of any size", () => {
    const frames = [
      ...requests.map((r, i) => Codec.concat(Codec.encodeRequest(i + 1, r))),
      ...responses.map((r, i) => Codec.concat(Codec.encodeResponse(i + 100, r))),
      Codec.concat(Codec.encodeChunk(7, new Uint8Array([9, 9, 9]))),
      Codec.concat(Codec.encodeEnd(7)),
      Codec.concat(Codec.encodeAbort(8, "disk gone")),
      Codec.concat(Codec.encodeError(9, "shutdown", "RaftShutdown"))
    ]
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
    let at = 0
    for (const f of frames) (all.set(f, at), at += f.length)
    for (const step of [1, 3, 7, 64, all.length]) {
      const messages = readAll(all, step)
      assert(!(messages instanceof CodecError), `step ${step}: ${String(messages)}`)
      assert.deepStrictEqual(
        messages.filter((m) => m.kind === "request").map((m) => m.request),
        requests.map((r) => ({ ...r })) as Array<Rpc.Request>
      )
      assert.deepStrictEqual(messages.filter((m) => m.kind === "response").map((m) => m.response), [...responses])
      assert.deepStrictEqual(messages.slice(12).map((m) => m.kind), ["chunk", "end", "abort", "error"])
      assert.deepStrictEqual(messages.filter((m) => m.kind === "request").map((m) => m.id), [1, 2, 3, 4, 5, 6])
    }
  })

  it("command payloads arrive byte for byte", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.array(FastCheck.uint8Array({ maxLength: 2000 }), { maxLength: 20 }), (payloads) => {
        const request: Rpc.AppendEntriesRequest = {
          ...(requests[0] as Rpc.AppendEntriesRequest),
          entries: payloads.map((p, i) => entry(11 + i, p))
        }
        const messages = readAll(Codec.concat(Codec.encodeRequest(1, request)), 1000)
        assert(!(messages instanceof CodecError))
        const got = messages[0]!
        assert(got.kind === "request" && got.request._tag === "AppendEntriesRequest")
        assert.deepStrictEqual(got.request.entries.map((e) => Array.from(e.data)), payloads.map((p) => Array.from(p)))
      }),
      { numRuns: 200 }
    )
  })

  it("a length prefix above maxFrameBytes is refused from its four bytes alone", () => {
    const reader = new Codec.FrameReader("peer:1", 1024)
    const prefix = new Uint8Array([0x7f, 0xff, 0xff, 0xff])
    const result = reader.push(prefix)
    assert(result instanceof CodecError)
    assert.strictEqual(result.reason, "oversize")
    assert.strictEqual(result.peer, "peer:1")
    assert.strictEqual(reader.pending, 0)
  })

  it("a frame of another protocol version is refused", () => {
    const body = pack({ term: 1, granted: true })
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.RequestVoteResponse, body, 2), 100)), "version")
  })

  it("an unknown frame type is refused", () => {
    assert.strictEqual(reasonOf(readAll(frameOf(0x42, pack({ term: 1 })), 100)), "frame-type")
  })

  it("a body that is not msgpack is malformed, and one that fails the schema is a schema error", () => {
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.RequestVote, new Uint8Array([0x85, 0xa1])), 100)), "malformed")
    const negativeTerm = pack({ term: -1, granted: true })
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.RequestVoteResponse, negativeTerm), 100)), "schema")
    const extraField = pack({ term: 1, granted: true, admin: true })
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.RequestVoteResponse, extraField), 100)), "schema")
    const badEntry = pack({
      term: 1,
      leaderId: "a",
      leaderAddress: "h:1",
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: [[1, 1, 9, new Uint8Array(1)]],
      leaderCommitIndex: 0
    })
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.AppendEntries, badEntry), 100)), "schema")
    assert.strictEqual(reasonOf(readAll(frameOf(Codec.FrameType.RequestVote, pack([1, 2])), 100)), "schema")
  })

  it("the entry check of AppendEntries accepts exactly what the Log schema accepts", () => {
    const decodeLog = Schema.decodeUnknownEither(Log)
    const names = ["Command", "Noop", "Barrier", "Configuration"]
    const odd = FastCheck.oneof(
      FastCheck.integer({ min: -5, max: 5 }),
      FastCheck.double(),
      FastCheck.constantFrom(-0, NaN, Infinity, 2 ** 53, 2 ** 53 - 1, "1", null, undefined, "Command"),
      FastCheck.anything()
    )
    // Each slot is valid most of the time, so whole tuples are often valid and often wrong in one place only.
    const slot = (valid: FastCheck.Arbitrary<unknown>) => FastCheck.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: odd, weight: 1 })
    const tuple = FastCheck.tuple(
      slot(FastCheck.nat()),
      slot(FastCheck.nat()),
      slot(FastCheck.integer({ min: 0, max: 4 })),
      slot(FastCheck.uint8Array({ maxLength: 4 })),
      FastCheck.integer({ min: 3, max: 5 })
    ).map(([a, b, c, d, length]) => [a, b, c, d, 0].slice(0, length))
    FastCheck.assert(
      FastCheck.property(tuple, (tuple) => {
        const fast = typeof Codec.logsFromWire([tuple]) !== "string"
        const code = tuple[2]
        const type = typeof code === "number" && [0, 1, 2, 3].includes(code) ? names[code] : undefined
        const schema = tuple.length === 4 && Either.isRight(decodeLog({ index: tuple[0], term: tuple[1], type, data: tuple[3] }))
        assert.strictEqual(fast, schema, JSON.stringify(tuple, (_, v) => (v instanceof Uint8Array ? "bytes" : v)))
      }),
      { numRuns: 5000 }
    )
  })

  // The two frames of every apply are checked by hand (as `logsFromWire` checks entries); the schemas stay the
  // reference: on arbitrary bodies, each check accepts exactly what its schema accepts, and returns the same value.
  const odd = FastCheck.oneof(
    FastCheck.integer({ min: -5, max: 5 }),
    FastCheck.double(),
    FastCheck.constantFrom(-0, NaN, Infinity, 2 ** 53, 2 ** 53 - 1, 1.5, "1", "", null, undefined, true, [], {}),
    FastCheck.anything()
  )
  const field = (valid: FastCheck.Arbitrary<unknown>) =>
    FastCheck.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: odd, weight: 1 })
  /** A body with each field present most of the time, mostly valid, and sometimes a key too many. */
  const body = (
    fields: Record<string, FastCheck.Arbitrary<unknown>>,
    optional: Record<string, FastCheck.Arbitrary<unknown>> = {}
  ) =>
    FastCheck.tuple(
      FastCheck.record({ ...fields, ...optional }, { requiredKeys: [] }),
      FastCheck.boolean(),
      FastCheck.option(FastCheck.tuple(FastCheck.constantFrom("_tag", "extra", "Term", "entries "), odd), { freq: 4 })
    ).map(([record, complete, extra]) => {
      const out: Record<string, unknown> = complete ? { ...record } : record
      if (complete) {
        for (const key of Object.keys(fields)) if (!(key in out)) out[key] = 0
      }
      if (extra !== null) out[extra[0]] = extra[1]
      return out
    })
  /** Checks that `fast` accepts what `schema` accepts (a Right), with the same value, and that both accept often. */
  const agree = <A>(
    arbitrary: FastCheck.Arbitrary<Record<string, unknown>>,
    fast: (input: Record<string, unknown>) => A | string,
    schema: (input: Record<string, unknown>) => Either.Either<A, unknown>
  ) => {
    let accepted = 0
    FastCheck.assert(
      FastCheck.property(arbitrary, (input) => {
        const a = fast(input)
        const b = schema(input)
        assert.strictEqual(typeof a !== "string", Either.isRight(b), show(input))
        if (typeof a !== "string" && Either.isRight(b)) {
          accepted++
          assert.deepStrictEqual(a, b.right)
        }
      }),
      { numRuns: 5000 }
    )
    assert.isAbove(accepted, 100)
  }
  const show = (u: unknown) => JSON.stringify(u, (_, v) => (v instanceof Uint8Array ? "bytes" : v === undefined ? "undefined" : v))
  const options = { onExcessProperty: "error", errors: "first" } as const

  it("the AppendEntries check accepts exactly what the AppendEntriesRequest schema accepts, with the same value", () => {
    const decode = Schema.decodeUnknownEither(Rpc.AppendEntriesRequest, options)
    const entries = FastCheck.array(FastCheck.tuple(FastCheck.nat(), FastCheck.nat(), FastCheck.constant(0), FastCheck.uint8Array({ maxLength: 3 })), { maxLength: 2 })
    const arbitrary = body({
      term: field(FastCheck.nat()),
      leaderId: field(FastCheck.string()),
      leaderAddress: field(FastCheck.string()),
      prevLogIndex: field(FastCheck.nat()),
      prevLogTerm: field(FastCheck.nat()),
      entries: field(entries),
      leaderCommitIndex: field(FastCheck.nat())
    }, { traceparent: field(FastCheck.string({ maxLength: 130 })), clusterId: field(FastCheck.option(FastCheck.string(), { nil: undefined })) })
    agree(arbitrary, Codec.appendEntriesFromWire, (input) => {
      const logs = Codec.logsFromWire(input.entries)
      return typeof logs === "string"
        ? Either.left("entries")
        : Either.map(decode({ ...input, _tag: "AppendEntriesRequest", entries: [] }), (r) => ({ ...r, entries: logs }))
    })
  })

  it("the AppendEntries response check accepts exactly what the AppendEntriesResponse schema accepts, with the same value", () => {
    const decode = Schema.decodeUnknownEither(Rpc.AppendEntriesResponse, options)
    const arbitrary = body({
      term: field(FastCheck.nat()),
      lastLog: field(FastCheck.nat()),
      success: field(FastCheck.boolean()),
      noRetryBackoff: field(FastCheck.boolean())
    })
    agree(arbitrary, Codec.appendEntriesResponseFromWire, (input) => decode({ ...input, _tag: "AppendEntriesResponse" }))
  })

  it("a length prefix too short for a header is malformed", () => {
    assert.strictEqual(reasonOf(readAll(new Uint8Array([0, 0, 0, 2, 1, 1]), 100)), "malformed")
  })
})
