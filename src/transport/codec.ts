/**
 * The wire format of the TCP transport (internal). Every message is one frame:
 *
 *   u32 length (big-endian, bytes after this field) | u8 version | u8 type | u32 id | body
 *
 * Requests and their answers share `id`. Bodies are msgpack maps of the message's fields (the `Rpc` schema's field
 * names, without `_tag`: the frame type says what it is), except log entries, which travel as 4-tuples
 * `[index, term, typeCode, data]` with `data` as msgpack `bin` (raw bytes, never re-encoded), and snapshot chunks,
 * whose body is the raw bytes themselves. The README's "TCP transport" section has the table.
 *
 * `FrameReader` cuts a byte stream into frames without ever allocating more than it has received: a length prefix
 * above `maxFrameBytes` is refused as soon as its four bytes arrive. `decode` turns a frame into a message and
 * decodes it with the `Rpc` schemas, or for AppendEntries and its answer with plain checks that accept exactly
 * what those schemas accept (property-tested); anything else is a `CodecError`, never an exception.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Packr, Unpackr } from "msgpackr"
import { CodecError } from "../RaftError.js"
import * as Rpc from "../Rpc.js"
import {
  readAppendEntries,
  readAppendEntriesResponse,
  writeAppendEntries,
  writeAppendEntriesResponse
} from "./appendEntriesMsgpack.js"
import { appendEntriesFromWire, appendEntriesResponseFromWire, logTypeCode } from "./appendEntriesWire.js"

export { appendEntriesFromWire, appendEntriesResponseFromWire, logsFromWire } from "./appendEntriesWire.js"

/** The protocol version this codec speaks; a frame of any other version closes the connection. */
export const VERSION: number = 1

/** Bytes before a frame's body: length (4), version (1), type (1), id (4). */
export const HEADER_BYTES: number = 10

/** Frame types. Requests are below 0x80, answers (and the error answer) at or above. */
export const FrameType: {
  readonly AppendEntries: 0x01
  readonly RequestVote: 0x02
  readonly RequestPreVote: 0x03
  readonly InstallSnapshot: 0x04
  readonly SnapshotChunk: 0x05
  readonly SnapshotEnd: 0x06
  readonly SnapshotAbort: 0x07
  readonly TimeoutNow: 0x08
  readonly ReadIndex: 0x09
  readonly AppendEntriesResponse: 0x81
  readonly RequestVoteResponse: 0x82
  readonly RequestPreVoteResponse: 0x83
  readonly InstallSnapshotResponse: 0x84
  readonly TimeoutNowResponse: 0x88
  readonly ReadIndexResponse: 0x89
  readonly Error: 0xff
} = {
  AppendEntries: 0x01,
  RequestVote: 0x02,
  RequestPreVote: 0x03,
  InstallSnapshot: 0x04,
  SnapshotChunk: 0x05,
  SnapshotEnd: 0x06,
  SnapshotAbort: 0x07,
  TimeoutNow: 0x08,
  ReadIndex: 0x09,
  AppendEntriesResponse: 0x81,
  RequestVoteResponse: 0x82,
  RequestPreVoteResponse: 0x83,
  InstallSnapshotResponse: 0x84,
  TimeoutNowResponse: 0x88,
  ReadIndexResponse: 0x89,
  Error: 0xff
} as const

/** One frame as cut from the stream, before its body is decoded. */
export interface Frame {
  readonly type: number
  readonly id: number
  readonly body: Uint8Array
}

/** A decoded frame. */
export type Message =
  | { readonly kind: "request"; readonly id: number; readonly request: Rpc.Request }
  | { readonly kind: "response"; readonly id: number; readonly response: Rpc.Response }
  | { readonly kind: "chunk"; readonly id: number; readonly data: Uint8Array }
  | { readonly kind: "end"; readonly id: number }
  | { readonly kind: "abort"; readonly id: number; readonly reason: string }
  | { readonly kind: "error"; readonly id: number; readonly code: ErrorCode; readonly detail: string }

/** Why a node answered a request with an error frame. */
export type ErrorCode = "shutdown" | "no-handler" | "cluster"

const packr = new Packr({ useRecords: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true })

// ---------------------------------------------------------------- encoding

const putUint32 = (out: Uint8Array, at: number, n: number): void => {
  out[at] = n >>> 24
  out[at + 1] = n >>> 16
  out[at + 2] = n >>> 8
  out[at + 3] = n
}

/** Writes a frame's header into the first `HEADER_BYTES` of `out`. */
const putHeader = (out: Uint8Array, type: number, id: number, bodyLength: number): void => {
  putUint32(out, 0, HEADER_BYTES - 4 + bodyLength)
  out[4] = VERSION
  out[5] = type
  putUint32(out, 6, id >>> 0)
}

const header = (type: number, id: number, bodyLength: number): Uint8Array => {
  const out = new Uint8Array(HEADER_BYTES)
  putHeader(out, type, id, bodyLength)
  return out
}

/** A frame as the two buffers to write (header, body; the body not copied), or the whole frame and an empty second. */
export type Encoded = readonly [Uint8Array, Uint8Array]

const frame = (type: number, id: number, body: Uint8Array): Encoded => [header(type, id, body.length), body]

/** The map msgpackr writes for `request` on the general path (tests compare the direct writer with it). */
export const requestBody = (request: Rpc.Request): Record<string, unknown> => {
  switch (request._tag) {
    case "AppendEntriesRequest": {
      const entries = new Array<unknown>(request.entries.length)
      for (let i = 0; i < request.entries.length; i++) {
        const e = request.entries[i]!
        entries[i] = [e.index, e.term, logTypeCode(e.type), e.data]
      }
      const body: Record<string, unknown> = {
        term: request.term,
        leaderId: request.leaderId,
        leaderAddress: request.leaderAddress,
        prevLogIndex: request.prevLogIndex,
        prevLogTerm: request.prevLogTerm,
        entries,
        leaderCommitIndex: request.leaderCommitIndex
      }
      if (request.traceparent !== undefined) body.traceparent = request.traceparent
      if (request.clusterId !== undefined) body.clusterId = request.clusterId
      return body
    }
    default: {
      const { _tag, clusterId, ...fields } = request
      return clusterId === undefined ? fields : { ...fields, clusterId }
    }
  }
}

const requestType = (request: Rpc.Request): number => {
  switch (request._tag) {
    case "AppendEntriesRequest":
      return FrameType.AppendEntries
    case "RequestVoteRequest":
      return FrameType.RequestVote
    case "RequestPreVoteRequest":
      return FrameType.RequestPreVote
    case "InstallSnapshotRequest":
      return FrameType.InstallSnapshot
    case "TimeoutNowRequest":
      return FrameType.TimeoutNow
    case "ReadIndexRequest":
      return FrameType.ReadIndex
  }
}

const responseType = (response: Rpc.Response): number => {
  switch (response._tag) {
    case "AppendEntriesResponse":
      return FrameType.AppendEntriesResponse
    case "RequestVoteResponse":
      return FrameType.RequestVoteResponse
    case "RequestPreVoteResponse":
      return FrameType.RequestPreVoteResponse
    case "InstallSnapshotResponse":
      return FrameType.InstallSnapshotResponse
    case "TimeoutNowResponse":
      return FrameType.TimeoutNowResponse
    case "ReadIndexResponse":
      return FrameType.ReadIndexResponse
  }
}

const EMPTY = new Uint8Array(0)

/**
 * A frame written whole into `out` by `appendEntriesMsgpack.ts` (its body after `HEADER_BYTES`): the header goes in
 * front, and the frame is one buffer with an empty second part, which a connection writes as it is.
 */
const whole = (type: number, id: number, out: Buffer): Encoded => {
  putHeader(out, type, id, out.length - HEADER_BYTES)
  return [out, EMPTY]
}

/** The frame of a request. */
export const encodeRequest = (id: number, request: Rpc.Request): Encoded => {
  if (request._tag === "AppendEntriesRequest") {
    const out = writeAppendEntries(request, HEADER_BYTES)
    if (out !== undefined) return whole(FrameType.AppendEntries, id, out)
  }
  return frame(requestType(request), id, packr.pack(requestBody(request)))
}

/** The frame of an answer. */
export const encodeResponse = (id: number, response: Rpc.Response): Encoded => {
  if (response._tag === "AppendEntriesResponse") {
    const out = writeAppendEntriesResponse(response, HEADER_BYTES)
    if (out !== undefined) return whole(FrameType.AppendEntriesResponse, id, out)
  }
  const { _tag, ...fields } = response
  return frame(responseType(response), id, packr.pack(fields))
}

/** A piece of a snapshot's data, following its InstallSnapshot request. */
export const encodeChunk = (id: number, data: Uint8Array): Encoded => frame(FrameType.SnapshotChunk, id, data)

/** The end of a snapshot's data. */
export const encodeEnd = (id: number): Encoded => frame(FrameType.SnapshotEnd, id, new Uint8Array(0))

/** The sender gave up on a snapshot mid-way (`reason` for the receiver's log). */
export const encodeAbort = (id: number, reason: string): Encoded =>
  frame(FrameType.SnapshotAbort, id, packr.pack({ reason }))

/** An error answer to request `id`. */
export const encodeError = (id: number, code: ErrorCode, detail: string): Encoded =>
  frame(FrameType.Error, id, packr.pack({ code, detail }))

/**
 * The bytes of an encoded frame in one new buffer (a small frame's single write, tests and fuzzing). From Node's
 * pool when small, as `Buffer.allocUnsafe` does: every byte is written here.
 */
export const concat = (encoded: Encoded): Uint8Array => {
  const out = Buffer.allocUnsafe(encoded[0].length + encoded[1].length)
  out.set(encoded[0], 0)
  out.set(encoded[1], encoded[0].length)
  return out
}

// ---------------------------------------------------------------- framing

/** The length prefix of `encoded`: the bytes after its first four, what a reader compares with `maxFrameBytes`. */
export const frameLength = (encoded: Encoded): number => encoded[0].length - 4 + encoded[1].length

/** The bytes of `encoded`'s body (its frame without the header). */
export const bodyLength = (encoded: Encoded): number => encoded[0].length + encoded[1].length - HEADER_BYTES

/**
 * The bytes all of a transport's connections may hold for frames still being received. A frame of up to
 * `unchargedBytes` (length prefix included) is not charged: each connection may hold one such frame outside the
 * budget, so small frames (heartbeats, votes, small batches) are never refused and memory stays within `limitBytes`
 * plus connections × `unchargedBytes`. A larger frame reserves its whole announced size when its length prefix
 * arrives, or is refused.
 */
export class ReceiveBudget {
  /** Bytes reserved now. */
  used = 0
  /** The most bytes reserved at once since start. */
  peak = 0

  constructor(readonly limitBytes: number, readonly unchargedBytes: number) {}

  /** Reserves `bytes`; false (and nothing reserved) when they do not fit. */
  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limitBytes) return false
    this.used += bytes
    if (this.used > this.peak) this.peak = this.used
    return true
  }

  release(bytes: number): void {
    this.used -= bytes
  }
}

/**
 * Cuts frames out of a byte stream. `push` takes the next chunk and returns the frames it completed, or a
 * `CodecError` after which the reader must not be used again (the connection is closed). With a `budget`, a frame
 * larger than its uncharged size reserves its announced size before any more of it is buffered (see `ReceiveBudget`);
 * `dispose` gives back what a frame cut short still holds.
 */
export class FrameReader {
  private chunks: Array<Uint8Array> = []
  private buffered = 0
  private failed = false
  /** Bytes of the frame being received that are reserved in the budget (0 when none). */
  private reserved = 0
  /**
   * The frame being assembled once it spans more than one push: its whole announced size, allocated once (and
   * charged to the budget when large), so a frame arriving in many small pieces costs one copy of each byte,
   * not a list of pieces and a copy of all of them per piece.
   */
  private partial: Uint8Array | undefined = undefined
  private filled = 0

  constructor(readonly peer: string, readonly maxFrameBytes: number, readonly budget?: ReceiveBudget | undefined) {}

  /** Bytes received but not yet part of a complete frame. */
  get pending(): number {
    return this.buffered + this.filled
  }

  push(chunk: Uint8Array): Array<Frame> | CodecError {
    if (this.failed) return new CodecError({ peer: this.peer, reason: "malformed", detail: "reader already failed" })
    const frames: Array<Frame> = []
    let input = chunk
    const partial = this.partial
    if (partial !== undefined) {
      const n = Math.min(partial.length - this.filled, input.length)
      partial.set(input.subarray(0, n), this.filled)
      this.filled += n
      if (this.filled < partial.length) return frames
      input = input.subarray(n)
      this.partial = undefined
      this.filled = 0
      const error = this.complete(partial, frames)
      if (error !== undefined) return error
    }
    if (input.length > 0) {
      this.chunks.push(input)
      this.buffered += input.length
    }
    while (this.buffered >= 4) {
      const length = this.peekUint32()
      if (length > this.maxFrameBytes) return this.fail("oversize", `length prefix ${length} > ${this.maxFrameBytes}`)
      if (length < HEADER_BYTES - 4) return this.fail("malformed", `length prefix ${length} < ${HEADER_BYTES - 4}`)
      const budget = this.budget
      if (budget !== undefined && this.reserved === 0 && 4 + length > budget.unchargedBytes) {
        if (!budget.reserve(4 + length)) {
          return this.fail(
            "budget",
            `frame of ${4 + length} bytes, ${budget.limitBytes - budget.used} of ${budget.limitBytes} budget bytes free`
          )
        }
        this.reserved = 4 + length
      }
      if (this.buffered < 4 + length) {
        // Incomplete: assemble it in one buffer of its size from now on.
        const assembling = new Uint8Array(4 + length)
        this.filled = this.buffered
        this.partial = assembling
        let at = 0
        for (const piece of this.chunks) {
          assembling.set(piece, at)
          at += piece.length
        }
        this.chunks = []
        this.buffered = 0
        break
      }
      const error = this.complete(this.take(4 + length), frames)
      if (error !== undefined) return error
    }
    return frames
  }

  /** Takes a complete frame's bytes (length prefix included) into `frames`, giving back its budget. */
  private complete(bytes: Uint8Array, frames: Array<Frame>): CodecError | undefined {
    this.dispose()
    const version = bytes[4]!
    if (version !== VERSION) return this.fail("version", `protocol version ${version}, expected ${VERSION}`)
    const id = ((bytes[6]! << 24) | (bytes[7]! << 16) | (bytes[8]! << 8) | bytes[9]!) >>> 0
    frames.push({ type: bytes[5]!, id, body: bytes.subarray(HEADER_BYTES) })
    return undefined
  }

  /** Gives back the budget a frame being received holds (when it completes, fails, or its connection closes). */
  dispose(): void {
    if (this.reserved === 0) return
    this.budget?.release(this.reserved)
    this.reserved = 0
  }

  private fail(reason: CodecError["reason"], detail: string): CodecError {
    this.failed = true
    this.chunks = []
    this.buffered = 0
    this.partial = undefined
    this.filled = 0
    this.dispose()
    return new CodecError({ peer: this.peer, reason, detail })
  }

  private peekUint32(): number {
    const first = this.chunks[0]!
    if (first.length >= 4) {
      return ((first[0]! << 24) | (first[1]! << 16) | (first[2]! << 8) | first[3]!) >>> 0
    }
    let value = 0
    let got = 0
    for (const chunk of this.chunks) {
      for (let i = 0; i < chunk.length && got < 4; i++, got++) value = value * 256 + chunk[i]!
      if (got === 4) break
    }
    return value
  }

  /** Removes `n` buffered bytes (n ≤ buffered): a view when they sit in one chunk, else one copy. */
  private take(n: number): Uint8Array {
    this.buffered -= n
    const first = this.chunks[0]!
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let offset = 0
    while (offset < n) {
      const chunk = this.chunks[0]!
      const want = n - offset
      if (chunk.length <= want) {
        out.set(chunk, offset)
        offset += chunk.length
        this.chunks.shift()
      } else {
        out.set(chunk.subarray(0, want), offset)
        this.chunks[0] = chunk.subarray(want)
        offset += want
      }
    }
    return out
  }
}

// ---------------------------------------------------------------- decoding

const options = { onExcessProperty: "error", errors: "first" } as const
const decoders: Record<number, (input: unknown) => Either.Either<Rpc.Request | Rpc.Response, unknown>> = {
  [FrameType.RequestVote]: Schema.decodeUnknownEither(Rpc.RequestVoteRequest, options),
  [FrameType.RequestPreVote]: Schema.decodeUnknownEither(Rpc.RequestPreVoteRequest, options),
  [FrameType.InstallSnapshot]: Schema.decodeUnknownEither(Rpc.InstallSnapshotRequest, options),
  [FrameType.TimeoutNow]: Schema.decodeUnknownEither(Rpc.TimeoutNowRequest, options),
  [FrameType.ReadIndex]: Schema.decodeUnknownEither(Rpc.ReadIndexRequest, options),
  [FrameType.RequestVoteResponse]: Schema.decodeUnknownEither(Rpc.RequestVoteResponse, options),
  [FrameType.RequestPreVoteResponse]: Schema.decodeUnknownEither(Rpc.RequestPreVoteResponse, options),
  [FrameType.InstallSnapshotResponse]: Schema.decodeUnknownEither(Rpc.InstallSnapshotResponse, options),
  [FrameType.TimeoutNowResponse]: Schema.decodeUnknownEither(Rpc.TimeoutNowResponse, options),
  [FrameType.ReadIndexResponse]: Schema.decodeUnknownEither(Rpc.ReadIndexResponse, options)
}
const tags: Record<number, string> = {
  [FrameType.RequestVote]: "RequestVoteRequest",
  [FrameType.RequestPreVote]: "RequestPreVoteRequest",
  [FrameType.InstallSnapshot]: "InstallSnapshotRequest",
  [FrameType.TimeoutNow]: "TimeoutNowRequest",
  [FrameType.ReadIndex]: "ReadIndexRequest",
  [FrameType.RequestVoteResponse]: "RequestVoteResponse",
  [FrameType.RequestPreVoteResponse]: "RequestPreVoteResponse",
  [FrameType.InstallSnapshotResponse]: "InstallSnapshotResponse",
  [FrameType.TimeoutNowResponse]: "TimeoutNowResponse",
  [FrameType.ReadIndexResponse]: "ReadIndexResponse"
}
const AbortBody = Schema.Struct({ reason: Schema.String })
const decodeAbort = Schema.decodeUnknownEither(AbortBody, options)
const ErrorBody = Schema.Struct({
  code: Schema.Literal("shutdown", "no-handler", "cluster"),
  detail: Schema.String
})
const decodeErrorBody = Schema.decodeUnknownEither(ErrorBody, options)

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !(u instanceof Uint8Array)

const unpack = (peer: string, body: Uint8Array): Either.Either<Record<string, unknown>, CodecError> => {
  let value: unknown
  try {
    value = unpackr.unpack(body)
  } catch (error) {
    return Either.left(
      new CodecError({ peer, reason: "malformed", detail: error instanceof Error ? error.message : "bad msgpack" })
    )
  }
  return isRecord(value)
    ? Either.right(value)
    : Either.left(new CodecError({ peer, reason: "schema", detail: "body is not a map" }))
}

const schemaError = (peer: string, type: number, error: unknown): CodecError =>
  new CodecError({
    peer,
    reason: "schema",
    detail: `frame type 0x${type.toString(16)}: ${
      error instanceof Error ? error.message.split("\n").slice(0, 6).join(" ") : "invalid"
    }`
  })

/** A frame whose body is checked by hand (`check` returns why not, as a string), as a message. */
const checked = <A>(
  peer: string,
  frame: Frame,
  check: (body: Record<string, unknown>) => A | string,
  message: (value: A) => Message
): Either.Either<Message, CodecError> =>
  Either.flatMap(unpack(peer, frame.body), (body) => {
    const value = check(body)
    return typeof value === "string"
      ? Either.left(schemaError(peer, frame.type, new Error(value)))
      : Either.right(message(value))
  })

/** Decodes a frame's body with the `Rpc` schemas (or the small schemas of the control frames). */
export const decode = (peer: string, frame: Frame): Either.Either<Message, CodecError> => {
  const { id, type } = frame
  switch (type) {
    case FrameType.SnapshotChunk:
      return Either.right({ kind: "chunk", id, data: frame.body })
    case FrameType.SnapshotEnd:
      return frame.body.length === 0
        ? Either.right({ kind: "end", id })
        : Either.left(new CodecError({ peer, reason: "malformed", detail: "snapshot end with a body" }))
    case FrameType.SnapshotAbort:
      return Either.flatMap(unpack(peer, frame.body), (body) =>
        Either.match(decodeAbort(body), {
          onLeft: (error) => Either.left(schemaError(peer, type, error)),
          onRight: (abort) => Either.right({ kind: "abort", id, reason: abort.reason })
        }))
    case FrameType.Error:
      return Either.flatMap(unpack(peer, frame.body), (body) =>
        Either.match(decodeErrorBody(body), {
          onLeft: (error) => Either.left(schemaError(peer, type, error)),
          onRight: (error) => Either.right({ kind: "error", id, code: error.code, detail: error.detail })
        }))
    case FrameType.AppendEntries: {
      const request = readAppendEntries(frame.body)
      return request !== undefined
        ? Either.right({ kind: "request", id, request })
        : checked(peer, frame, appendEntriesFromWire, (request) => ({ kind: "request", id, request }))
    }
    case FrameType.AppendEntriesResponse: {
      const response = readAppendEntriesResponse(frame.body)
      return response !== undefined
        ? Either.right({ kind: "response", id, response })
        : checked(peer, frame, appendEntriesResponseFromWire, (response) => ({ kind: "response", id, response }))
    }
    default: {
      const decoder = decoders[type]
      if (decoder === undefined) {
        return Either.left(new CodecError({ peer, reason: "frame-type", detail: `unknown frame type 0x${type.toString(16)}` }))
      }
      return Either.flatMap(unpack(peer, frame.body), (body) =>
        Either.match(decoder({ ...body, _tag: tags[type] }), {
          onLeft: (error) => Either.left(schemaError(peer, type, error)),
          onRight: (message): Either.Either<Message, CodecError> =>
            type < 0x80
              ? Either.right({ kind: "request", id, request: message as Rpc.Request })
              : Either.right({ kind: "response", id, response: message as Rpc.Response })
        }))
    }
  }
}
