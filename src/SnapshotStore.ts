/**
 * Where snapshots of the state machine are kept. Snapshot data is a stream of
 * bytes end to end: `create` is a sink, and a snapshot becomes visible to
 * `list`/`open` only when its sink completes; a failed or interrupted write
 * leaves nothing behind. `list` answers newest first.
 *
 * This module holds the interface, its tag and the memory store; snapshots in
 * files are `FileSnapshotStore` (`effect-raft/file-snapshots`).
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { Configuration } from "./Configuration.js"
import { SnapshotNotFound, type StorageError } from "./RaftError.js"

/** What is known about a snapshot without reading it. */
export interface SnapshotMeta {
  /** Unique, and ordered by creation: a later snapshot has a greater id. */
  readonly id: string
  /** Index of the last entry the snapshot covers. */
  readonly index: number
  /** Term of that entry. */
  readonly term: number
  /** The configuration in force at `index`, and the index it was appended at. */
  readonly configuration: Configuration
  readonly configurationIndex: number
  /** Size of the data in bytes. */
  readonly size: number
}

/** A node's snapshots. */
export interface SnapshotStore {
  /** A sink that stores a snapshot's data; it completes with the snapshot's metadata once it is visible. */
  readonly create: (meta: Omit<SnapshotMeta, "id" | "size">) => Sink.Sink<SnapshotMeta, Uint8Array, never, StorageError>
  /** The snapshots held, newest first. */
  readonly list: Effect.Effect<ReadonlyArray<SnapshotMeta>, StorageError>
  /** A snapshot's metadata and a stream of its data. */
  readonly open: (id: string) => Effect.Effect<
    { readonly meta: SnapshotMeta; readonly data: Stream.Stream<Uint8Array, StorageError> },
    SnapshotNotFound | StorageError
  >
  /** Deletes a snapshot (nothing when it is not held): a node drops one its state machine could not restore. */
  readonly delete: (id: string) => Effect.Effect<void, StorageError>
}

/** The tag of a node's snapshot store. */
export const SnapshotStore: Context.Tag<SnapshotStore, SnapshotStore> = Context.GenericTag<SnapshotStore>(
  "effect-raft/SnapshotStore"
)

/** Snapshots held in memory, keeping the newest `retain`. */
export const makeMemory = (retain = 2): SnapshotStore => {
  let snapshots: Array<{ readonly meta: SnapshotMeta; readonly chunks: ReadonlyArray<Uint8Array> }> = []
  let sequence = 0
  return {
    create: (meta) =>
      Sink.foldLeftChunks(Chunk.empty<Uint8Array>(), (acc, chunk: Chunk.Chunk<Uint8Array>) => Chunk.appendAll(acc, chunk))
        .pipe(Sink.map((chunks) => {
          const data = Chunk.toReadonlyArray(chunks)
          sequence += 1
          const full: SnapshotMeta = {
            ...meta,
            // The sequence leads, zero-padded, so ids compare (as strings) in creation order.
            id: `${String(sequence).padStart(12, "0")}-${meta.term}-${meta.index}`,
            size: data.reduce((n, chunk) => n + chunk.length, 0)
          }
          snapshots = [{ meta: full, chunks: data }, ...snapshots].slice(0, Math.max(1, retain))
          return full
        })),
    list: Effect.sync(() => snapshots.map((snapshot) => snapshot.meta)),
    open: (id) =>
      Effect.suspend(() => {
        const found = snapshots.find((snapshot) => snapshot.meta.id === id)
        return found === undefined
          ? Effect.fail(new SnapshotNotFound({ reason: `no snapshot with id ${id}` }))
          : Effect.succeed({ meta: found.meta, data: Stream.fromIterable(found.chunks) })
      }),
    delete: (id) =>
      Effect.sync(() => {
        snapshots = snapshots.filter((snapshot) => snapshot.meta.id !== id)
      })
  }
}

/**
 * Reads snapshot `id` through to its end and answers its metadata: with a store that checks its data as it is read
 * (the file store verifies size and SHA-256 at the end of the stream), damaged data fails here with a `StorageError`
 * before any of it reaches code that acts on bytes as they come (a state machine whose restore is not all or nothing,
 * a copy to elsewhere).
 */
export const verify = (store: SnapshotStore, id: string): Effect.Effect<SnapshotMeta, SnapshotNotFound | StorageError> =>
  Effect.flatMap(store.open(id), ({ data, meta }) => Effect.as(Stream.runDrain(data), meta))

/** A fresh in-memory snapshot store per layer build. */
export const layerMemory: Layer.Layer<SnapshotStore> = Layer.sync(SnapshotStore, () => makeMemory())
