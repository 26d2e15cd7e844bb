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
import * as Fsm from "../Fsm.js"
import { FsmError } from "../RaftError.js"

// ---------------------------------------------------------------- commands

/** Sets `key` to `value`. */
export const Put = Schema.TaggedStruct("Put", { key: Schema.String, value: Schema.String })
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
export const Command = Schema.Union(Put, Delete, Cas, Register, Unregister)
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

/** The result of applying `command` to `data`. */
export const step = (data: KvData, command: Command, index: number): readonly [KvData, Response] => {
  switch (command._tag) {
    case "Put":
      return [{ ...data, index, entries: HashMap.set(data.entries, command.key, command.value) }, { _tag: "Written" }]
    case "Delete": {
      const existed = HashMap.has(data.entries, command.key)
      return [{ ...data, index, entries: HashMap.remove(data.entries, command.key) }, { _tag: "Deleted", existed }]
    }
    case "Cas": {
      const current = Option.getOrUndefined(HashMap.get(data.entries, command.key))
      if (current !== command.expected) {
        return [{ ...data, index }, current === undefined ? { _tag: "CasFailed" } : { _tag: "CasFailed", current }]
      }
      return [{ ...data, index, entries: HashMap.set(data.entries, command.key, command.value) }, { _tag: "Swapped" }]
    }
    case "Register":
      return [{ ...data, index, members: HashMap.set(data.members, command.id, command.http) }, { _tag: "Registered" }]
    case "Unregister":
      return [{ ...data, index, members: HashMap.remove(data.members, command.id) }, { _tag: "Registered" }]
  }
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

/**
 * The key-value state machine as a typed one: `Raft.client(machine)` applies `Command`s and answers `Response`s.
 * Snapshots are the JSON-lines stream above; a command that does not decode is answered with `CommandRejected`
 * and only moves the state's index.
 */
export const machine: Fsm.Typed<Command, Response, KvData> = Fsm.typed({
  command: Command,
  response: Response,
  initial: empty,
  apply: (data, command, log) => step(data, command, log.index),
  snapshot: (data) => snapshotStream(data),
  restore: (stream) => readSnapshot(stream),
  rejected: (data, log) => ({ ...data, index: log.index })
})

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
