/**
 * The state machine of the replicated key-value service: a map from string
 * keys to string values, changed by typed commands (put, delete,
 * compare-and-set), built with `Fsm.typed` (commands travel through the Raft
 * log as JSON checked by their Schema; `Raft.client(machine)` applies them). It also holds the service's member directory (raft id → HTTP
 * address), changed by `Register`/`Unregister` commands, so that any node can
 * point a client at the leader's HTTP address.
 *
 * The state is an Effect `HashMap` (a persistent structure): a snapshot
 * captures it in O(1) on the FSM fiber, then streams it as JSON lines in
 * chunks of about 64 KiB while applies go on; `restore` reads such a stream
 * line by line and swaps the state in only once the whole stream has checked
 * out (a header with the format version, a trailer with the count).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { ParseError } from "effect/ParseResult"
import * as Fsm from "../Fsm.js"
import { registerSyncApply } from "../internal/syncForms.js"
import type { Log } from "../Log.js"
import { CommandRejected, FsmError } from "../RaftError.js"

// ---------------------------------------------------------------- commands

/** Sets `key` to `value`. */
export const Put = Schema.TaggedStruct("Put", { key: Schema.String, value: Schema.String })
/**
 * Sets each key to its value, in order: the PUTs that arrived together at the leader, written as one log entry
 * (`PutBatch.ts`). All of them share the entry's index.
 */
export const PutMany = Schema.TaggedStruct("PutMany", { entries: Schema.Array(Schema.Tuple(Schema.String, Schema.String)) })
/** Removes `key`. */
export const Delete = Schema.TaggedStruct("Delete", { key: Schema.String })
/** Sets `key` to `value` if its current value is `expected` (absent `expected`: only if the key is absent). */
export const Cas = Schema.TaggedStruct("Cas", {
  key: Schema.String,
  expected: Schema.optional(Schema.String),
  value: Schema.String
})
/** Records the HTTP address of the server `id` in the member directory. */
export const Register = Schema.TaggedStruct("Register", { id: Schema.String, http: Schema.String })
/** Drops the server `id` from the member directory. */
export const Unregister = Schema.TaggedStruct("Unregister", { id: Schema.String })

/** A command of the key-value state machine. */
export const Command = Schema.Union(Put, PutMany, Delete, Cas, Register, Unregister)
/** A command of the key-value state machine. */
export type Command = typeof Command.Type

/** What applying a command answered. `CasFailed` carries the value found (absent when the key was absent). */
export const Response = Schema.Union(
  Schema.TaggedStruct("Written", {}),
  Schema.TaggedStruct("Deleted", { existed: Schema.Boolean }),
  Schema.TaggedStruct("Swapped", {}),
  Schema.TaggedStruct("CasFailed", { current: Schema.optional(Schema.String) }),
  Schema.TaggedStruct("Registered", {})
)
/** What applying a command answered. */
export type Response = typeof Response.Type

const textEncoder = new TextEncoder()

// ---------------------------------------------------------------- the state

/** The state as of some applied index: immutable, so it can be read while applies go on. */
export interface KvData {
  /** The key-value map. */
  readonly entries: HashMap.HashMap<string, string>
  /** The member directory: raft server id → HTTP address. */
  readonly members: HashMap.HashMap<string, string>
  /** Index of the last command applied (0 before any). */
  readonly index: number
}

/** The key-value state machine and read access to its current state. */
export interface KvFsm {
  /** The `Fsm` to give `Raft.layer`. */
  readonly fsm: Fsm.Fsm
  /** The current state (a persistent value: later applies do not change what was read). */
  readonly current: () => KvData
}

/** The tag under which a node's key-value state is provided, for the HTTP API's reads. */
export class KvState extends Context.Tag("effect-raft/kv/KvState")<KvState, KvFsm>() {}

/**
 * A state being changed by a batch: its maps opened for in-place mutation (`HashMap.beginMutation`: nodes shared
 * with the state before are copied on first write, so what readers hold never changes), published as a `KvData`
 * once the batch is applied. Setting a key in place allocates a fraction of what a persistent `set` does.
 */
interface Draft {
  entries: HashMap.HashMap<string, string>
  members: HashMap.HashMap<string, string>
}

const written: Response = { _tag: "Written" }
const swapped: Response = { _tag: "Swapped" }
const registered: Response = { _tag: "Registered" }

const open = (data: KvData): Draft => ({
  entries: HashMap.beginMutation(data.entries),
  members: HashMap.beginMutation(data.members)
})

const close = (draft: Draft, index: number): KvData => ({
  entries: HashMap.endMutation(draft.entries),
  members: HashMap.endMutation(draft.members),
  index
})

/** Applies `command` to `draft` in place; its response. */
const change = (draft: Draft, command: Command): Response => {
  switch (command._tag) {
    case "Put":
      draft.entries = HashMap.set(draft.entries, command.key, command.value)
      return written
    case "PutMany":
      for (const [key, value] of command.entries) draft.entries = HashMap.set(draft.entries, key, value)
      return written
    case "Delete": {
      const existed = HashMap.has(draft.entries, command.key)
      if (existed) draft.entries = HashMap.remove(draft.entries, command.key)
      return { _tag: "Deleted", existed }
    }
    case "Cas": {
      const current = Option.getOrUndefined(HashMap.get(draft.entries, command.key))
      if (current !== command.expected) return current === undefined ? { _tag: "CasFailed" } : { _tag: "CasFailed", current }
      draft.entries = HashMap.set(draft.entries, command.key, command.value)
      return swapped
    }
    case "Register":
      draft.members = HashMap.set(draft.members, command.id, command.http)
      return registered
    case "Unregister":
      draft.members = HashMap.remove(draft.members, command.id)
      return registered
  }
}

/** The result of applying `command` to `data`. */
export const step = (data: KvData, command: Command, index: number): readonly [KvData, Response] => {
  const draft = open(data)
  const response = change(draft, command)
  return [close(draft, index), response]
}

/** An empty state. */
export const empty: KvData = { entries: HashMap.empty(), members: HashMap.empty(), index: 0 }

// ---------------------------------------------------------------- snapshots

/** Version of the snapshot format, in its header line. */
export const snapshotFormatVersion = 1
const FORMAT = "effect-raft/kv"

/** Target size of one chunk of a snapshot stream. */
export const snapshotChunkBytes = 64 * 1024

const SnapshotLine = Schema.Union(
  Schema.Struct({ format: Schema.Literal(FORMAT), version: Schema.Number, index: Schema.Number }),
  Schema.Struct({ k: Schema.String, v: Schema.String }),
  Schema.Struct({ m: Schema.String, h: Schema.String }),
  Schema.Struct({ end: Schema.Number })
)
const decodeLine = Schema.decodeUnknownEither(Schema.parseJson(SnapshotLine))

/**
 * The snapshot of `data` as a stream of chunks of JSON lines: a header, one line per entry and per member, and a
 * trailer with the count of lines in between (so a truncated snapshot is detected).
 */
export const snapshotStream = (data: KvData, chunkBytes: number = snapshotChunkBytes): Stream.Stream<Uint8Array> =>
  Stream.suspend(() => {
    const lines = function*(): Generator<string> {
      yield JSON.stringify({ format: FORMAT, version: snapshotFormatVersion, index: data.index })
      let count = 0
      for (const [k, v] of data.entries) {
        count++
        yield JSON.stringify({ k, v })
      }
      for (const [m, h] of data.members) {
        count++
        yield JSON.stringify({ m, h })
      }
      yield JSON.stringify({ end: count })
    }
    const chunks = function*(): Generator<Uint8Array> {
      let pending: Array<Uint8Array> = []
      let size = 0
      const flush = (): Uint8Array => {
        const out = new Uint8Array(size)
        let at = 0
        for (const bytes of pending) {
          out.set(bytes, at)
          at += bytes.length
        }
        pending = []
        size = 0
        return out
      }
      for (const line of lines()) {
        const bytes = textEncoder.encode(line + "\n")
        if (size > 0 && size + bytes.length > chunkBytes) yield flush()
        pending.push(bytes)
        size += bytes.length
      }
      if (size > 0) yield flush()
    }
    return Stream.fromIterable(chunks())
  })

const restoreError = (reason: string) => new FsmError({ operation: "restore", reason })

/** Reads a snapshot stream written by `snapshotStream` back into a state; fails on anything malformed or cut short. */
export const readSnapshot = <E>(data: Stream.Stream<Uint8Array, E>): Effect.Effect<KvData, FsmError | E> =>
  Effect.gen(function*() {
    let header = false
    let ended = false
    let count = 0
    let entries = HashMap.beginMutation(HashMap.empty<string, string>())
    let members = HashMap.beginMutation(HashMap.empty<string, string>())
    let index = 0
    const onLine = (line: string): Effect.Effect<void, FsmError> => {
      if (line.length === 0) return Effect.void
      if (ended) return Effect.fail(restoreError("data after the trailer"))
      const decoded = decodeLine(line)
      if (Either.isLeft(decoded)) return Effect.fail(restoreError(`malformed line: ${line.slice(0, 80)}`))
      const value = decoded.right
      if ("format" in value) {
        if (header) return Effect.fail(restoreError("a second header"))
        if (value.version !== snapshotFormatVersion) {
          return Effect.fail(restoreError(`unknown snapshot format version ${value.version}`))
        }
        header = true
        index = value.index
        return Effect.void
      }
      if (!header) return Effect.fail(restoreError("no header"))
      if ("end" in value) {
        if (value.end !== count) return Effect.fail(restoreError(`trailer says ${value.end} lines, read ${count}`))
        ended = true
      } else if ("k" in value) {
        count++
        entries = HashMap.set(entries, value.k, value.v)
      } else {
        count++
        members = HashMap.set(members, value.m, value.h)
      }
      return Effect.void
    }
    yield* data.pipe(
      Stream.decodeText(),
      Stream.splitLines,
      Stream.runForEach(onLine)
    )
    if (!ended) return yield* restoreError(header ? "no trailer: the snapshot was cut short" : "empty snapshot")
    entries = HashMap.endMutation(entries)
    members = HashMap.endMutation(members)
    return { entries, members, index }
  })

// ---------------------------------------------------------------- the Fsm

/** The state machine as `Fsm.typed` builds it from the Schemas: the reference the fast paths below agree with. */
const bySchema: Fsm.Typed<Command, Response, KvData> = Fsm.typed({
  command: Command,
  response: Response,
  initial: empty,
  apply: (data, command, log) => step(data, command, log.index),
  snapshot: (data) => snapshotStream(data),
  restore: (stream) => readSnapshot(stream),
  rejected: (data, log) => ({ ...data, index: log.index })
})

/**
 * The command in `parsed` (a log entry's JSON) as the `Command` Schema decodes it, or undefined when the Schema
 * would refuse it. Plain checks, because every node decodes every command: the Schema's decoder cost more than the
 * map update itself. Property-tested against the Schema (test/kv/KvFsm.test.ts).
 */
const commandOf = (parsed: unknown): Command | undefined => {
  if (typeof parsed !== "object" || parsed === null) return undefined
  const c = parsed as { readonly [field: string]: unknown }
  switch (c._tag) {
    case "Put":
      return typeof c.key === "string" && typeof c.value === "string" ? { _tag: "Put", key: c.key, value: c.value } : undefined
    case "PutMany": {
      const entries = c.entries
      if (!Array.isArray(entries)) return undefined
      for (const entry of entries) {
        if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" || typeof entry[1] !== "string") {
          return undefined
        }
      }
      return { _tag: "PutMany", entries: entries as ReadonlyArray<readonly [string, string]> }
    }
    case "Delete":
      return typeof c.key === "string" ? { _tag: "Delete", key: c.key } : undefined
    case "Cas":
      if (typeof c.key !== "string" || typeof c.value !== "string") return undefined
      if (c.expected === undefined) return { _tag: "Cas", key: c.key, value: c.value }
      return typeof c.expected === "string" ? { _tag: "Cas", key: c.key, expected: c.expected, value: c.value } : undefined
    case "Register":
      return typeof c.id === "string" && typeof c.http === "string" ? { _tag: "Register", id: c.id, http: c.http } : undefined
    case "Unregister":
      return typeof c.id === "string" ? { _tag: "Unregister", id: c.id } : undefined
    default:
      return undefined
  }
}

const fromUtf8 = new TextDecoder()

/** A command read back from its bytes; what the Schema refuses is left to it, so its error says why. */
const decodeCommand = (bytes: Uint8Array): Either.Either<Command, ParseError> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(fromUtf8.decode(bytes))
  } catch {
    return bySchema.decodeCommand(bytes)
  }
  const command = commandOf(parsed)
  return command === undefined ? bySchema.decodeCommand(bytes) : Either.right(command)
}

/** A command's bytes: a `Put`'s and a `PutMany`'s written out directly, as the JSON the Schema's encoding gives. */
const encodeCommand = (command: Command): Either.Either<Uint8Array, ParseError> => {
  if (command._tag === "Put" && typeof command.key === "string" && typeof command.value === "string") {
    return Either.right(textEncoder.encode(`{"_tag":"Put","key":${JSON.stringify(command.key)},"value":${JSON.stringify(command.value)}}`))
  }
  if (command._tag === "PutMany" && commandOf(command) !== undefined) {
    return Either.right(textEncoder.encode(`{"_tag":"PutMany","entries":${JSON.stringify(command.entries)}}`))
  }
  return bySchema.encodeCommand(command)
}

/**
 * One running instance: a batch of entries is applied to one `Draft` in one step, and the state published once at
 * its end (nothing reads it in between: the batch runs in one synchronous step).
 */
const makeInstance = (): Fsm.TypedInstance<KvData> => {
  let state = empty
  const applyAll = (logs: ReadonlyArray<Log>): ReadonlyArray<unknown> => {
    const out = new Array<unknown>(logs.length)
    if (logs.length === 0) return out
    const draft = open(state)
    for (let i = 0; i < logs.length; i++) {
      const command = decodeCommand(logs[i]!.data)
      // A command that does not decode only moves the index (as `rejected` says).
      out[i] = Either.isLeft(command) ? new CommandRejected({ reason: command.left.message }) : change(draft, command.right)
    }
    state = close(draft, logs[logs.length - 1]!.index)
    return out
  }
  const fsm: Fsm.Fsm = {
    apply: (log) => Effect.sync(() => applyAll([log])[0]),
    applyBatch: (logs) => Effect.sync(() => applyAll(logs)),
    snapshot: Effect.sync(() => {
      // The state is a value: what is captured here is what the stream writes, whatever is applied meanwhile.
      const captured = state
      return { data: Stream.suspend(() => snapshotStream(captured)), release: Effect.void }
    }),
    restore: (data) =>
      Effect.map(readSnapshot(data), (restored) => {
        state = restored
      })
  }
  // Its apply is synchronous: committed entries may be applied without a hand-off to the FSM runner (Fsm.ts
  // `fromFunction`).
  return { fsm: registerSyncApply(fsm, applyAll), state: () => state }
}

/**
 * The key-value state machine as a typed one: `Raft.client(machine)` applies `Command`s and answers `Response`s.
 * Snapshots are the JSON-lines stream above; a command that does not decode is answered with `CommandRejected`
 * and only moves the state's index. It behaves as `Fsm.typed` over the Schemas above would (same bytes in the
 * log, same answers, same errors), with the per-command work done by plain code.
 */
export const machine: Fsm.Typed<Command, Response, KvData> = {
  make: makeInstance,
  layer: Layer.sync(Fsm.Fsm, () => makeInstance().fsm),
  encodeCommand,
  decodeCommand,
  readResponse: (response) =>
    // The common answer without the Schema's check (`Schema.is` of the Response union accepts it as it is).
    typeof response === "object" && response !== null && (response as { readonly _tag?: unknown })._tag === "Written"
      ? Effect.succeed(response as Response)
      : bySchema.readResponse(response)
}

/** A fresh key-value state machine. */
export const make = (): KvFsm => {
  const instance = machine.make()
  return { fsm: instance.fsm, current: instance.state }
}

/** A fresh key-value state machine, provided both as the node's `Fsm` and as `KvState` for reads. */
export const layer: Layer.Layer<Fsm.Fsm | KvState> = Layer.effectContext(
  Effect.sync(() => {
    const kv = make()
    return Context.make(KvState, kv).pipe(Context.add(Fsm.Fsm, kv.fsm))
  })
)
