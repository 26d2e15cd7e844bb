/**
 * A replicated log entry. The leader assigns `index` and `term`; `type` says
 * what the entry is for: a user `Command` for the FSM, the `Noop` every new
 * leader appends to commit its term, a `Barrier` that resolves once all before
 * it is applied, or a `Configuration` change. Entries are plain objects (cheap
 * on the hot path); the `Log` schema validates them where bytes enter.
 */
import * as Schema from "effect/Schema"

/** What an entry is for. */
export const LogType = Schema.Literal("Command", "Noop", "Barrier", "Configuration")
/** What an entry is for. */
export type LogType = typeof LogType.Type

/** A log entry, as the schema that decodes it at a trust boundary. */
export const Log = Schema.Struct({
  index: Schema.NonNegativeInt,
  term: Schema.NonNegativeInt,
  type: LogType,
  data: Schema.Uint8ArrayFromSelf
})
/** A log entry. */
export interface Log {
  readonly index: number
  readonly term: number
  readonly type: LogType
  readonly data: Uint8Array
}

/** An empty payload, shared by entries that carry none. */
export const empty: Uint8Array = new Uint8Array(0)

/** Builds an entry. */
export const make = (index: number, term: number, type: LogType, data: Uint8Array = empty): Log => ({
  index,
  term,
  type,
  data
})
