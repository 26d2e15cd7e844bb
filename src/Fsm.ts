/**
 * The replicated state machine the user provides. The node's FSM runner calls
 * it with committed `Command` entries, in log order, in batches when it can,
 * from a single fiber: an implementation needs no locking. What `apply`
 * returns is handed back to the caller of `Raft.apply` on the leader.
 *
 * `apply` cannot fail: a command the machine rejects should produce a response
 * that says so. A defect (a thrown exception, `Effect.die`) stops the node,
 * because a replica that skipped an entry would silently diverge.
 *
 * Snapshots (hashicorp's `FSMSnapshot`): `snapshot` runs on the FSM fiber,
 * between two applies, and must capture the state as it is then; the runtime
 * then reads the returned `data` stream into the snapshot store from another
 * fiber while `apply` goes on, and calls `release` when it is done (persisted
 * or abandoned). So `data` must not see later applies: copy, or use an
 * immutable structure. `restore` replaces the whole state with a snapshot's
 * bytes; it is called on the FSM fiber, with nothing applied concurrently.
 * Snapshot bytes are a stream end to end: neither side needs the whole state
 * in one buffer, nor its size up front.
 *
 * `typed` builds one from Schemas: commands and responses with types, state
 * as an immutable value, snapshots for free when the state has a Schema too;
 * `Raft.client` is its typed `apply`.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type { ParseError } from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Log } from "./Log.js"
import { registerSyncApply } from "./internal/syncForms.js"
import { CommandRejected, FsmError, type StorageError } from "./RaftError.js"

/** A point-in-time capture of the state, read once by the runtime. */
export interface FsmSnapshot {
  /** The state's bytes, in chunks. */
  readonly data: Stream.Stream<Uint8Array, FsmError>
  /** Frees what the capture holds; called once, after `data` was persisted or abandoned. */
  readonly release: Effect.Effect<void>
}

/** The state machine: what committed commands do. */
export interface Fsm {
  /** Applies one committed command; the result is the response of its `Raft.apply`. */
  readonly apply: (log: Log) => Effect.Effect<unknown>
  /** Applies committed commands in order; returns one response per entry. */
  readonly applyBatch: (logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>
  /** Captures the state as of the last applied entry. */
  readonly snapshot: Effect.Effect<FsmSnapshot, FsmError>
  /**
   * Replaces the whole state with the one `data` encodes (as `snapshot` wrote it). All or nothing: on failure the
   * state must be as it was, since the node then refuses the snapshot and goes on with its state. The stream fails
   * at its end when the stored bytes do not match their checksum: replace the state only once it has ended.
   */
  readonly restore: (data: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<void, FsmError | StorageError>
}

/** The tag of the user's state machine. */
export const Fsm: Context.Tag<Fsm, Fsm> = Context.GenericTag<Fsm>("effect-raft/Fsm")

const noSnapshots = Effect.fail(
  new FsmError({ operation: "snapshot", reason: "this state machine does not take snapshots" })
)
const noRestore = () =>
  Effect.fail(new FsmError({ operation: "restore", reason: "this state machine cannot restore snapshots" }))

/**
 * Builds an `Fsm`. Without `applyBatch`, batches are applied one entry after another. Without `snapshot` and
 * `restore`, snapshots fail with `FsmError`: the node keeps working but never compacts its log, and cannot be
 * brought up to date by InstallSnapshot.
 */
export const make = (impl: {
  readonly apply: (log: Log) => Effect.Effect<unknown>
  readonly applyBatch?: ((logs: ReadonlyArray<Log>) => Effect.Effect<ReadonlyArray<unknown>>) | undefined
  readonly snapshot?: Effect.Effect<FsmSnapshot, FsmError> | undefined
  readonly restore?:
    | ((data: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<void, FsmError | StorageError>)
    | undefined
}): Fsm => ({
  apply: impl.apply,
  applyBatch: impl.applyBatch ?? ((logs) => Effect.forEach(logs, impl.apply)),
  snapshot: impl.snapshot ?? noSnapshots,
  restore: impl.restore ?? noRestore
})

/** Collects a snapshot stream into one buffer (for small states, e.g. `fromFunction`'s). */
export const collect = <E>(data: Stream.Stream<Uint8Array, E>): Effect.Effect<Uint8Array, E> =>
  Stream.runFold(data, [] as Array<Uint8Array>, (chunks, chunk) => {
    chunks.push(chunk)
    return chunks
  }).pipe(Effect.map((chunks) => {
    let size = 0
    for (const chunk of chunks) size += chunk.length
    const out = new Uint8Array(size)
    let at = 0
    for (const chunk of chunks) {
      out.set(chunk, at)
      at += chunk.length
    }
    return out
  }))

/** A batch applied by a synchronous function: one response per entry, in order. */
const applyEach = (apply: (log: Log) => unknown) => (logs: ReadonlyArray<Log>): ReadonlyArray<unknown> => {
  const out = new Array<unknown>(logs.length)
  for (let i = 0; i < logs.length; i++) out[i] = apply(logs[i]!)
  return out
}

/**
 * Builds an `Fsm` from a synchronous function, applied to a whole batch in one step. With `state`, it also takes
 * snapshots: `save` returns the whole state as bytes (called on the FSM fiber, so it sees a consistent state) and
 * `load` replaces the state with them. Committed entries may be applied by the fiber or socket callback that saw
 * them committed, while the FSM runner waits with nothing queued, instead of being handed to it; still one batch
 * at a time, in log order. A function that throws stops the node, as a defect of the FSM runner does.
 */
export const fromFunction = (
  apply: (log: Log) => unknown,
  state?: {
    readonly save: () => Uint8Array
    readonly load: (bytes: Uint8Array) => void
  }
): Fsm => {
  const applyBatch = applyEach(apply)
  const fsm: Fsm = {
    apply: (log) => Effect.sync(() => apply(log)),
    applyBatch: (logs) => Effect.sync(() => applyBatch(logs)),
    snapshot: state === undefined ? noSnapshots : Effect.sync(() => {
      const bytes = state.save()
      return { data: Stream.succeed(bytes), release: Effect.void }
    }),
    restore: state === undefined
      ? noRestore
      : (data) =>
        Effect.flatMap(collect(data), (bytes) =>
          Effect.try({
            try: () => state.load(bytes),
            catch: (cause) =>
              new FsmError({
                operation: "restore",
                reason: `the snapshot could not be loaded: ${String(cause)}`,
                cause
              })
          }))
  }
  return registerSyncApply(fsm, applyBatch)
}

/** Provides an `Fsm`. */
export const layer = (fsm: Fsm): Layer.Layer<Fsm> => Layer.succeed(Fsm, fsm)

// ---------------------------------------------------------------- typed state machines

/** What `typed` is given: the Schemas of commands and responses, the state, and how a command changes it. */
export interface TypedOptions<C, CI, R, RI, S, SI> {
  /** The commands. In the log, a command is the UTF-8 JSON of its encoded form. */
  readonly command: Schema.Schema<C, CI>
  /** What applying a command answers; checked when the answer reaches `Raft.client`'s `apply`. */
  readonly response: Schema.Schema<R, RI>
  /** The state before any command. States are values: `apply` returns the next one and never changes its input. */
  readonly initial: S
  /** Applies a committed command: the next state and the response. Pure and deterministic, as on every node. */
  readonly apply: (state: S, command: C, log: Log) => readonly [S, R]
  /** The state's Schema: snapshots are then the UTF-8 JSON of the state's encoded form. */
  readonly state?: Schema.Schema<S, SI> | undefined
  /** Writes a snapshot of a state (instead of `state`'s JSON), e.g. in chunks for a large state. */
  readonly snapshot?: ((state: S) => Stream.Stream<Uint8Array, FsmError>) | undefined
  /** Reads back what `snapshot` wrote. */
  readonly restore?: ((data: Stream.Stream<Uint8Array, StorageError>) => Effect.Effect<S, FsmError | StorageError>) | undefined
  /** The state after a command whose bytes do not decode (it is answered with `CommandRejected`); unchanged by default. */
  readonly rejected?: ((state: S, log: Log) => S) | undefined
}

/** One running instance of a typed state machine: the `Fsm` to give `Raft.layer`, and its current state. */
export interface TypedInstance<S> {
  readonly fsm: Fsm
  /** The state as of the last applied command (a value: later applies do not change what was read). */
  readonly state: () => S
}

/** A state machine with typed commands and responses, as `typed` builds it. */
export interface Typed<C, R, S> {
  /** A fresh instance, at `initial`: one per node. */
  readonly make: () => TypedInstance<S>
  /** Provides a fresh instance's `Fsm` each time it is built. */
  readonly layer: Layer.Layer<Fsm>
  /** The bytes a command travels as in the log. */
  readonly encodeCommand: (command: C) => Either.Either<Uint8Array, ParseError>
  /** A command read back from its bytes. */
  readonly decodeCommand: (bytes: Uint8Array) => Either.Either<C, ParseError>
  /**
   * What `Raft.apply` answered for a command of this machine: its response, or `CommandRejected` when the
   * command's bytes did not decode. Anything else is a defect: the node runs another state machine.
   */
  readonly readResponse: (response: unknown) => Effect.Effect<R, CommandRejected>
}

const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()

/** The snapshot and restore of a state with a Schema: its encoded form as one JSON document. */
const jsonSnapshots = <S, SI>(schema: Schema.Schema<S, SI>) => {
  const json = Schema.parseJson(schema)
  const encode = Schema.encodeEither(json)
  const decode = Schema.decodeUnknownEither(json)
  return {
    snapshot: (state: S): Stream.Stream<Uint8Array, FsmError> =>
      Either.match(encode(state), {
        onLeft: (error) => Stream.fail(new FsmError({ operation: "snapshot", reason: error.message, cause: error })),
        onRight: (text) => Stream.succeed(utf8.encode(text))
      }),
    restore: (data: Stream.Stream<Uint8Array, StorageError>): Effect.Effect<S, FsmError | StorageError> =>
      Effect.flatMap(collect(data), (bytes) =>
        Either.match(decode(fromUtf8.decode(bytes)), {
          onLeft: (error) => Effect.fail(new FsmError({ operation: "restore", reason: error.message, cause: error })),
          onRight: Effect.succeed
        }))
  }
}

/**
 * A state machine from Schemas. Commands go into the log as the JSON of their encoded form; the node decodes each
 * committed one and calls `apply` with the state so far. A command that does not decode is answered with
 * `CommandRejected` and changes nothing (but `rejected`). Snapshots come from `snapshot`/`restore` when given, else
 * from the `state` Schema, else there are none (as `make` without them).
 *
 * ```ts
 * const Counter = Fsm.typed({
 *   command: Schema.Struct({ add: Schema.Number }),
 *   response: Schema.Number,
 *   state: Schema.Number,
 *   initial: 0,
 *   apply: (total, { add }) => [total + add, total + add]
 * })
 * // Raft.layer(...).pipe(Layer.provide([Counter.layer, ...])); then (yield* Raft.client(Counter)).apply({ add: 2 })
 * ```
 */
export const typed = <C, CI, R, RI, S, SI = never>(options: TypedOptions<C, CI, R, RI, S, SI>): Typed<C, R, S> => {
  const commandJson = Schema.parseJson(options.command)
  const encodeText = Schema.encodeEither(commandJson)
  const decodeText = Schema.decodeUnknownEither(commandJson)
  const isResponse = Schema.is(options.response)
  const encodeCommand = (command: C) => Either.map(encodeText(command), (text) => utf8.encode(text))
  const decodeCommand = (bytes: Uint8Array) => decodeText(fromUtf8.decode(bytes))
  const fromState = options.state === undefined ? undefined : jsonSnapshots(options.state)
  const snapshotOf = options.snapshot ?? fromState?.snapshot
  const restoreTo = options.restore ?? fromState?.restore
  const rejected = options.rejected ?? ((state: S) => state)

  const make = (): TypedInstance<S> => {
    let state = options.initial
    const applyOne = (log: Log): unknown => {
      const command = decodeCommand(log.data)
      if (Either.isLeft(command)) {
        state = rejected(state, log)
        return new CommandRejected({ reason: command.left.message })
      }
      const [next, response] = options.apply(state, command.right, log)
      state = next
      return response
    }
    const applyBatch = applyEach(applyOne)
    const fsm: Fsm = {
      apply: (log) => Effect.sync(() => applyOne(log)),
      applyBatch: (logs) => Effect.sync(() => applyBatch(logs)),
      snapshot: snapshotOf === undefined ? noSnapshots : Effect.sync(() => {
        // The state is a value: what is captured here is what the stream writes, whatever is applied meanwhile.
        const captured = state
        return { data: Stream.suspend(() => snapshotOf(captured)), release: Effect.void }
      }),
      restore: restoreTo === undefined ? noRestore : (data) =>
        Effect.map(restoreTo(data), (restored) => {
          state = restored
        })
    }
    // Its apply is synchronous: committed entries may be applied without a hand-off (see `fromFunction`).
    return { fsm: registerSyncApply(fsm, applyBatch), state: () => state }
  }

  const notOurs = (response: unknown) =>
    Effect.dieMessage(`not a response of this state machine: ${String(response)} (the node runs another Fsm)`)

  return {
    make,
    layer: Layer.sync(Fsm, () => make().fsm),
    encodeCommand,
    decodeCommand,
    readResponse: (response) =>
      response instanceof CommandRejected
        ? Effect.fail(response)
        : isResponse(response)
        ? Effect.succeed(response)
        : notOurs(response)
  }
}
