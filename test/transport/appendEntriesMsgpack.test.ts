import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { Packr, Unpackr } from "msgpackr"
import type { Log } from "../../src/Log.js"
import { CodecError } from "../../src/RaftError.js"
import type * as Rpc from "../../src/Rpc.js"
import {
  readAppendEntries,
  readAppendEntriesResponse,
  writeAppendEntries,
  writeAppendEntriesResponse
} from "../../src/transport/appendEntriesMsgpack.js"
import * as Codec from "../../src/transport/codec.js"

// The direct path must agree with the general one (msgpackr and the checks of appendEntriesWire.ts) both ways:
// what it writes is what msgpackr writes, and what it reads it reads as the general path does.

/** msgpackr as the codec configures it. */
const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })

/** What the general path reads from `body`, or undefined where it refuses it. */
const generalRead = <A>(body: Uint8Array, check: (record: Record<string, unknown>) => A | string): A | undefined => {
  let value: unknown
  try {
    value = unpackr.unpack(body)
  } catch {
    return undefined
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    return undefined
  }
  const checked = check(value as Record<string, unknown>)
  return typeof checked === "string" ? undefined : checked
}

/** Integers around every boundary of msgpack's unsigned forms, and past 32 bits (written as float64). */
const index = FastCheck.oneof(
  FastCheck.nat({ max: 300 }),
  FastCheck.nat(),
  FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  FastCheck.constantFrom(0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1)
)
/** Mostly ASCII (the direct path), sometimes any Unicode (left to the general path), across the str8 bound. */
const text = (maxLength: number, long = true) =>
  FastCheck.oneof(
    { arbitrary: FastCheck.string({ maxLength, size: "max" }), weight: 6 },
    { arbitrary: FastCheck.fullUnicodeString({ maxLength }), weight: 1 },
    { arbitrary: FastCheck.string({ minLength: long ? 250 : 0, maxLength: long ? 300 : maxLength }), weight: 1 }
  )
const logEntry: FastCheck.Arbitrary<Log> = FastCheck.record({
  index,
  term: index,
  type: FastCheck.constantFrom("Command", "Noop", "Barrier", "Configuration"),
  data: FastCheck.oneof(
    { arbitrary: FastCheck.uint8Array({ maxLength: 20 }), weight: 4 },
    { arbitrary: FastCheck.uint8Array({ minLength: 250, maxLength: 300 }), weight: 1 }
  )
})
const request: FastCheck.Arbitrary<Rpc.AppendEntriesRequest> = FastCheck.record(
  {
    _tag: FastCheck.constant("AppendEntriesRequest" as const),
    term: index,
    leaderId: text(12),
    leaderAddress: text(40),
    prevLogIndex: index,
    prevLogTerm: index,
    entries: FastCheck.array(logEntry, { maxLength: 20, size: "max" }),
    leaderCommitIndex: index,
    traceparent: text(128, false),
    clusterId: text(36)
  },
  { requiredKeys: ["_tag", "term", "leaderId", "leaderAddress", "prevLogIndex", "prevLogTerm", "entries", "leaderCommitIndex"] }
)
const response: FastCheck.Arbitrary<Rpc.AppendEntriesResponse> = FastCheck.record({
  _tag: FastCheck.constant("AppendEntriesResponse" as const),
  term: index,
  lastLog: index,
  success: FastCheck.boolean(),
  noRetryBackoff: FastCheck.boolean()
})

const isAscii = (s: string | undefined) => s === undefined || /^[\x00-\x7f]*$/.test(s)
const asciiRequest = (r: Rpc.AppendEntriesRequest) =>
  isAscii(r.leaderId) && isAscii(r.leaderAddress) && isAscii(r.traceparent) && isAscii(r.clusterId)

/** `bytes` with a few bytes set, inserted or removed, or cut short. */
const mutated = (bytes: Uint8Array, edits: ReadonlyArray<readonly [number, number, number]>): Uint8Array => {
  let out = Array.from(bytes)
  for (const [at, value, kind] of edits) {
    const i = out.length === 0 ? 0 : at % out.length
    if (kind === 0) out[i] = value
    else if (kind === 1) out.splice(i, 0, value)
    else if (kind === 2) out.splice(i, 1)
    else out = out.slice(0, i)
  }
  return Buffer.from(out)
}
const edits = FastCheck.array(
  FastCheck.tuple(FastCheck.nat(), FastCheck.integer({ min: 0, max: 255 }), FastCheck.integer({ min: 0, max: 3 })),
  { minLength: 1, maxLength: 3 }
)

describe("AppendEntries written and read directly (appendEntriesMsgpack.ts)", () => {
  it("writes the bytes msgpackr writes, behind the reserved header, and leaves requests with other text to it", () => {
    let direct = 0
    FastCheck.assert(
      FastCheck.property(request, (r) => {
        const out = writeAppendEntries(r, 10)
        if (!asciiRequest(r)) return assert.isUndefined(out)
        assert(out !== undefined)
        direct++
        assert.deepStrictEqual(Array.from(out.subarray(10)), Array.from(packr.pack(Codec.requestBody(r))))
      }),
      { numRuns: 2000 }
    )
    assert.isAbove(direct, 1000)
  })

  it("writes answers as msgpackr does", () => {
    FastCheck.assert(
      FastCheck.property(response, (r) => {
        const { _tag, ...fields } = r
        const out = writeAppendEntriesResponse(r, 10)
        assert(out !== undefined)
        assert.deepStrictEqual(Array.from(out.subarray(10)), Array.from(packr.pack(fields)))
      }),
      { numRuns: 2000 }
    )
  })

  it("writes a batch past 15 entries and an entry past 64 KiB in msgpack's longer forms", () => {
    const r: Rpc.AppendEntriesRequest = {
      _tag: "AppendEntriesRequest",
      term: 1,
      leaderId: "a",
      leaderAddress: "h:1",
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: Array.from({ length: 70_000 }, (_, i) => ({ index: i + 1, term: 1, type: "Command" as const, data: new Uint8Array(i === 0 ? 70_000 : 1) })),
      leaderCommitIndex: 0
    }
    const out = writeAppendEntries(r, 0)
    assert(out !== undefined)
    assert.deepStrictEqual(out.equals(packr.pack(Codec.requestBody(r))), true)
    assert.deepStrictEqual(readAppendEntries(out), generalRead(out, Codec.appendEntriesFromWire))
    assert.strictEqual(readAppendEntries(out)?.entries.length, 70_000)
  })

  it("reads what it writes, and what msgpackr writes, as the general path reads it", () => {
    FastCheck.assert(
      FastCheck.property(request, (r) => {
        const bytes = packr.pack(Codec.requestBody(r))
        const read = readAppendEntries(bytes)
        if (asciiRequest(r)) assert(read !== undefined)
        if (read !== undefined) assert.deepStrictEqual(read, generalRead(bytes, Codec.appendEntriesFromWire))
      }),
      { numRuns: 2000 }
    )
  })

  it("reads any other body only where the general path takes it, and then the same value", () => {
    // Bodies of canonical requests with bytes changed (other msgpack types, lengths, keys; cut short; trailing
    // bytes) and msgpackr's encodings of arbitrary maps with these keys.
    const odd = FastCheck.oneof(
      FastCheck.anything(),
      FastCheck.constantFrom(-0, -1, 1.5, 2 ** 53, NaN, "x", true, null),
      // Around the 128 characters a trace context may have.
      FastCheck.string({ minLength: 120, maxLength: 140, size: "max" })
    )
    // Entries as tuples whose slots are mostly right, so that one wrong slot (a type code of 4) is often alone.
    const slot = (valid: FastCheck.Arbitrary<unknown>) => FastCheck.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: odd, weight: 1 })
    const tuples = FastCheck.array(
      FastCheck.tuple(slot(index), slot(index), slot(FastCheck.integer({ min: 0, max: 6 })), slot(FastCheck.uint8Array({ maxLength: 3 }))),
      { maxLength: 3 }
    )
    const map = FastCheck.dictionary(
      FastCheck.constantFrom("term", "leaderId", "leaderAddress", "prevLogIndex", "prevLogTerm", "entries", "leaderCommitIndex", "traceparent", "clusterId", "_tag", "lastLog", "success", "noRetryBackoff"),
      odd
    ).chain((m) => Object.hasOwn(m, "entries") ? tuples.map((entries) => ({ ...m, entries })) : FastCheck.constant(m))
    let taken = 0
    let takenResponses = 0
    FastCheck.assert(
      FastCheck.property(request, response, edits, map, (r, a, e, m) => {
        const { _tag, ...fields } = a
        for (const bytes of [mutated(packr.pack(Codec.requestBody(r)), e), packr.pack({ ...Codec.requestBody(r), ...m })]) {
          const read = readAppendEntries(bytes)
          if (read === undefined) continue
          taken++
          assert.deepStrictEqual(read, generalRead(bytes, Codec.appendEntriesFromWire))
        }
        for (const bytes of [mutated(packr.pack(fields), e), packr.pack({ ...fields, ...m })]) {
          const read = readAppendEntriesResponse(bytes)
          if (read === undefined) continue
          takenResponses++
          assert.deepStrictEqual(read, generalRead(bytes, Codec.appendEntriesResponseFromWire))
        }
      }),
      { numRuns: 10_000 }
    )
    assert.isAbove(taken, 500)
    assert.isAbove(takenResponses, 500)
  })

  it("a frame of either path decodes to the request sent, whole or in pieces", () => {
    FastCheck.assert(
      FastCheck.property(request, FastCheck.integer({ min: 1, max: 64 }), (r, step) => {
        const bytes = Codec.concat(Codec.encodeRequest(5, r))
        const reader = new Codec.FrameReader("peer:1", 1 << 20)
        const got: Array<Codec.Message> = []
        for (let at = 0; at < bytes.length; at += step) {
          const frames = reader.push(bytes.subarray(at, at + step))
          assert(!(frames instanceof CodecError))
          for (const frame of frames) {
            const message = Codec.decode("peer:1", frame)
            assert(message._tag === "Right", String(message))
            got.push(message.right)
          }
        }
        assert.deepStrictEqual(got, [{ kind: "request", id: 5, request: r }])
      }),
      { numRuns: 500 }
    )
  })
})
