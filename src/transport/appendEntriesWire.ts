/**
 * The plain checks of the two frames every apply crosses on the TCP transport (codec.ts): an AppendEntries, with
 * its log entries as 4-tuples, and its answer. Each accepts exactly what its `Rpc` (and `Log`) schema accepts with
 * excess properties refused; property tests in test/transport/codec.test.ts compare them on arbitrary input. They
 * replace the schema decode on this path, which cost about four microseconds per entry and a fifth of a node's
 * garbage at one client.
 * @internal
 */
import type * as Types from "effect/Types"
import type { Log, LogType } from "../Log.js"
import type * as Rpc from "../Rpc.js"

/** The log types by their wire code (the index). */
export const logTypes: ReadonlyArray<LogType> = ["Command", "Noop", "Barrier", "Configuration"]

/** The wire code of a log type (its index in `logTypes`). */
export const logTypeCode = (type: LogType): number =>
  type === "Command" ? 0 : type === "Noop" ? 1 : type === "Barrier" ? 2 : 3

export const isNonNegativeInt = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u) && u >= 0

/**
 * Log entries arrive as tuples `[index, term, typeCode, data]`. This check accepts exactly what the `Log` schema
 * accepts (a property test compares the two on arbitrary input); it runs per entry, where a Schema decode cost
 * about four microseconds, a tenth of a node's CPU at 64 clients.
 */
export const logsFromWire = (entries: unknown): Array<Log> | string => {
  if (!Array.isArray(entries)) return "entries is not an array"
  const out = new Array<Log>(entries.length)
  for (let i = 0; i < entries.length; i++) {
    const e: unknown = entries[i]
    if (!Array.isArray(e) || e.length !== 4) return `entry ${i} is not a 4-tuple`
    const [index, term, code, data] = e as [unknown, unknown, unknown, unknown]
    if (!isNonNegativeInt(index) || !isNonNegativeInt(term)) return `entry ${i}: index and term must be non-negative integers`
    if (typeof code !== "number" || !(code === 0 || code === 1 || code === 2 || code === 3)) return `entry ${i}: unknown type`
    if (!(data instanceof Uint8Array)) return `entry ${i}: data is not bytes`
    out[i] = { index, term, type: logTypes[code]!, data }
  }
  return out
}

/**
 * Whether `body` holds exactly `keys` (and perhaps a `_tag`, which the decoder overwrites), each passing its check:
 * what the Rpc schema of a flat struct accepts with excess properties refused. The two frames every apply crosses
 * (AppendEntries and its response) are checked this way, where the schema decode allocated a fifth of a node's
 * garbage at one client; property tests compare each check with its schema on arbitrary input.
 */
const hasExactly = (
  body: Record<string, unknown>,
  checks: Readonly<Record<string, (u: unknown) => boolean>>,
  count: number
): boolean => {
  let seen = 0
  for (const key of Object.keys(body)) {
    if (key === "_tag") continue
    const check = Object.hasOwn(checks, key) ? checks[key] : undefined
    if (check === undefined || !check(body[key])) return false
    seen++
  }
  return seen === count
}

const isString = (u: unknown): u is string => typeof u === "string"
const isBoolean = (u: unknown): u is boolean => typeof u === "boolean"

/** What `Rpc.TraceParent` accepts: a string of at most 128 UTF-16 code units. */
const isTraceParent = (u: unknown): u is string => typeof u === "string" && u.length <= 128

const appendEntriesChecks = {
  term: isNonNegativeInt,
  leaderId: isString,
  leaderAddress: isString,
  prevLogIndex: isNonNegativeInt,
  prevLogTerm: isNonNegativeInt,
  entries: Array.isArray,
  leaderCommitIndex: isNonNegativeInt,
  traceparent: isTraceParent,
  // `Schema.optional`: a key present with `undefined` is accepted, and kept.
  clusterId: (u: unknown) => u === undefined || isString(u)
}

/** The AppendEntries envelope (its entries checked by `logsFromWire`), or why it is not one. */
export const appendEntriesFromWire = (body: Record<string, unknown>): Rpc.AppendEntriesRequest | string => {
  const entries = logsFromWire(body.entries)
  if (typeof entries === "string") return entries
  // Seven fields, and the optional trace context and cluster id.
  const traced = Object.hasOwn(body, "traceparent")
  const hasCluster = Object.hasOwn(body, "clusterId")
  if (!hasExactly(body, appendEntriesChecks, 7 + (traced ? 1 : 0) + (hasCluster ? 1 : 0))) {
    return "not an AppendEntries request"
  }
  // One object per request, the optional fields set only when present (an absent field stays absent).
  const request: Types.Mutable<Rpc.AppendEntriesRequest> = {
    _tag: "AppendEntriesRequest",
    term: body.term as number,
    leaderId: body.leaderId as string,
    leaderAddress: body.leaderAddress as string,
    prevLogIndex: body.prevLogIndex as number,
    prevLogTerm: body.prevLogTerm as number,
    entries,
    leaderCommitIndex: body.leaderCommitIndex as number
  }
  if (traced) request.traceparent = body.traceparent as string
  if (hasCluster) request.clusterId = body.clusterId as string | undefined
  return request
}

const appendEntriesResponseChecks = {
  term: isNonNegativeInt,
  lastLog: isNonNegativeInt,
  success: isBoolean,
  noRetryBackoff: isBoolean
}

/** The AppendEntries response, or why it is not one. */
export const appendEntriesResponseFromWire = (body: Record<string, unknown>): Rpc.AppendEntriesResponse | string =>
  hasExactly(body, appendEntriesResponseChecks, 4)
    ? {
      _tag: "AppendEntriesResponse",
      term: body.term as number,
      lastLog: body.lastLog as number,
      success: body.success as boolean,
      noRetryBackoff: body.noRetryBackoff as boolean
    }
    : "not an AppendEntries response"
