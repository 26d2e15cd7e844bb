/**
 * A durable `LogStore` and `StableStore` of our own: an append-only
 * write-ahead log in segment files, one `fdatasync` per batch (the design of
 * hashicorp's raft-wal and etcd's WAL; docs/storage.md has the format).
 *
 * - Every change to the log is a record appended to the tail segment: entries,
 *   and deletions (compaction at the front, truncation of a conflicting suffix
 *   at the back) as a record naming the range. Nothing is rewritten in place.
 * - Group commit: one writer fiber takes every write queued, appends them and
 *   a commit record with one `writev`, and makes them durable with one
 *   `fdatasync`; writes that arrive meanwhile wait for the next batch. A
 *   write's effect succeeds once its batch is durable.
 * - The index (log index → segment, offset) lives in memory, built at open by
 *   replaying the committed batches; reads are one `pread` each, checked
 *   against their CRC and index, so a damaged frame fails the read.
 * - At open a torn tail (the batch being written when the process died) is
 *   cut; a damaged frame with committed data after it fails the open with a
 *   `StorageError` naming the file and offset (`WalSegment.scan`).
 * - A new segment starts when the tail passes `segmentBytes`; segments at the
 *   head whose entries were all deleted or replaced are removed.
 * - A write that fails (a full disk) cuts the file back to where the failed
 *   batch began, and later writes go on from there. After a failed
 *   `fdatasync` the store refuses further log writes (a failed fsync may have
 *   dropped pages, so nothing after it can be trusted); reopening recovers
 *   what is durable.
 * - A small write that is alone is written and flushed on the calling thread
 *   (`LoneWrite`), without the writer fiber and libuv's thread pool.
 * - The stable store is one small file replaced atomically (`WalStable.ts`).
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import type { Log } from "../Log.js"
import { LogStore } from "../LogStore.js"
import { LogNotFound, StorageError } from "../RaftError.js"
import { StableStore } from "../StableStore.js"
import * as LoneWrite from "./LoneWrite.js"
import * as WalIndex from "./WalIndex.js"
import * as WalRecord from "./WalRecord.js"
import * as WalSegment from "./WalSegment.js"
import * as WalStable from "./WalStable.js"

/** Where and how to open the log. */
export interface Options {
  /** A directory (created if missing) holding the segments `<seq>.wal` and the stable file. */
  readonly path: string
  /** A new segment starts once the tail holds this many bytes (64 MiB by default). */
  readonly segmentBytes?: number | undefined
}

/** Counters since open, for benchmarks and tests. */
export interface Stats {
  /** Batches written, each with one `fdatasync` of the log. */
  readonly batches: number
  /** Of those, the lone writes written and flushed on the calling thread instead of by the writer fiber. */
  readonly loneBatches: number
  /** `storeLogs` calls that succeeded. */
  readonly storeLogsCalls: number
  /** Log entries stored by them. */
  readonly entriesStored: number
  /** Segment files now. */
  readonly segments: number
}

/** Both services over one directory, plus its counters. */
export interface WalStore {
  readonly logs: LogStore
  readonly stable: StableStore
  readonly stats: Effect.Effect<Stats>
}

/** Default size at which the tail segment is sealed and a new one started. */
export const DEFAULT_SEGMENT_BYTES: number = 64 * 1024 * 1024

/** A write's frames, and what it changes in the index once they are durable at `base` of segment `seq`. */
interface Frames {
  readonly bytes: Uint8Array
  readonly apply: (seq: number, base: number) => void
}

/** A write waiting for the writer's next batch, and who waits for it. */
interface Pending extends Frames {
  readonly done: Deferred.Deferred<void, StorageError>
}

const closedError = (operation: string) => new StorageError({ operation, reason: "the store is closed" })

/**
 * Opens (or creates) the log at `options.path`, recovering what it holds, and returns both services over it; the
 * files close with the scope. Fails with a `StorageError` naming `open` when a file cannot be read or is corrupt.
 */
export const make = (options: Options): Effect.Effect<WalStore, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = options.path
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES
    yield* WalSegment.attempt("open", dir, () => fs.mkdirSync(dir, { recursive: true }))

    let closed = false
    let broken: StorageError | undefined
    const segments: Array<WalSegment.Segment> = []
    const bySeq = new Map<number, WalSegment.Segment>()
    // Writes waiting for the next batch; `wake` tells the writer there are some (a signal, not the writes: a write
    // handed over by a queue could be lost if the writer were interrupted as it took it).
    let queued: Array<Pending> = []
    // The writer fiber has taken a batch and not yet told its writers how it went.
    let flushing = false
    const wake = yield* Queue.dropping<true>(1)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const left = queued
        queued = []
        for (const pending of left) yield* Deferred.fail(pending.done, closedError("write"))
        // A store closed in order leaves no zeros after its last batch (a reopen would cut them anyway).
        const tail = segments.at(-1)
        if (tail !== undefined && tail.allocated > tail.size && broken === undefined) {
          yield* WalSegment.attempt("close", tail.file, () => WalSegment.cut(tail)).pipe(
            Effect.catchAll((error) => Effect.logWarning("cutting the log's preallocated end failed", error))
          )
        }
        for (const segment of segments) yield* WalSegment.close(segment.file, segment.fd)
      })
    )
    const index = WalIndex.make((seq) => {
      bySeq.get(seq)!.live--
    })
    const place = (frame: WalRecord.Frame, seq: number, at: number) => {
      if (frame.kind === "entry") {
        index.set(frame.index, seq, at, frame.end - at)
        bySeq.get(seq)!.live++
      } else if (frame.kind === "delete") {
        index.remove(frame.min, frame.max)
      }
    }

    // Recovery: replay every committed batch in order; cut the torn end of the tail.
    const seqs = yield* WalSegment.list(dir)
    for (let i = 0; i < seqs.length; i++) {
      const { bytes, segment } = yield* WalSegment.open(dir, seqs[i]!)
      const isTail = i === seqs.length - 1
      const scanned = yield* WalSegment.scan(segment.file, bytes, isTail).pipe(
        Effect.tapError(() => WalSegment.close(segment.file, segment.fd))
      )
      if (scanned.committedEnd === 0) {
        // The tail was being created when the process died: its header never became durable.
        yield* WalSegment.remove(segment)
        yield* WalSegment.syncDirectory("open", dir)
        continue
      }
      segments.push(segment)
      bySeq.set(segment.seq, segment)
      for (const batch of scanned.batches) for (const { at, frame } of batch) place(frame, segment.seq, at)
      if (scanned.committedEnd < bytes.length) yield* WalSegment.truncate(segment, scanned.committedEnd)
    }
    if (segments.length === 0) {
      const first = yield* WalSegment.create(dir, (seqs.at(-1) ?? 0) + 1)
      segments.push(first)
      bySeq.set(first.seq, first)
    }

    // A removal of head segments is running: one at a time, so that they go oldest first and each is synced.
    let dropping = false
    /**
     * Removes head segments nothing points into any more (never the tail), then syncs the directory. Not
     * interruptible: a segment taken off the list is always removed (a lone write runs this on its caller's fiber).
     * A call while another runs returns at once; that one goes on until no head segment is left to remove.
     */
    const dropHead = Effect.uninterruptible(Effect.suspend(() => {
      if (dropping) return Effect.void
      dropping = true
      return Effect.gen(function*() {
        let dropped = 0
        while (segments.length > 1 && segments[0]!.live === 0) {
          const segment = segments.shift()!
          bySeq.delete(segment.seq)
          yield* WalSegment.remove(segment)
          dropped++
        }
        if (dropped > 0) yield* WalSegment.syncDirectory("deleteRange", dir)
      }).pipe(Effect.ensuring(Effect.sync(() => {
        dropping = false
      })))
    }))
    yield* dropHead

    let batches = 0
    let loneBatches = 0
    let storeLogsCalls = 0
    let entriesStored = 0

    /** After a failed flush, nothing more is written (a failed fsync may have dropped pages that were written). */
    const breakOn = (error: StorageError) =>
      Effect.sync(() => {
        broken = new StorageError({ operation: "write", reason: `an earlier write failed: ${error.reason}`, cause: error })
      })

    /**
     * After a failed write (a full disk: ENOSPC, EDQUOT, EFBIG): the file is cut back to the tail's durable end, so
     * that no part of the failed batch is left after the next one, and the store goes on; the failed batch's writers
     * get the error. A cut that fails too ends writing, as a failed flush does.
     */
    const cutBack = (tail: WalSegment.Segment, error: StorageError) =>
      WalSegment.attempt("storeLogs", tail.file, () => WalSegment.cut(tail)).pipe(Effect.catchAll(() => breakOn(error)))

    /** The batch's frames are durable at `base` of the tail: the index points at them, the tail grows past them. */
    const placed = (batch: ReadonlyArray<Frames>, tail: WalSegment.Segment) => {
      let at = tail.size
      for (const pending of batch) {
        pending.apply(tail.seq, at)
        at += pending.bytes.length
      }
      tail.size = at + WalRecord.COMMIT.length
      batches++
    }

    /** Removes head segments left with no entry; the batch before is durable whatever happens here. */
    const dropHeadAfter = Effect.suspend(() =>
      segments.length > 1 && segments[0]!.live === 0
        // A segment left behind is removed after a later batch.
        ? Effect.catchAll(dropHead, (error) => Effect.logWarning("removing a deleted segment failed", error))
        : Effect.void
    )

    /** Appends the batch and a commit to the tail, fdatasyncs it, then updates the index. */
    const flush = (batch: ReadonlyArray<Pending>): Effect.Effect<void, StorageError> =>
      Effect.gen(function*() {
        if (broken !== undefined) return yield* Effect.fail(broken)
        let tail = segments.at(-1)!
        if (tail.size >= segmentBytes) {
          tail = yield* WalSegment.create(dir, tail.seq + 1)
          segments.push(tail)
          bySeq.set(tail.seq, tail)
        }
        const buffers = batch.map((pending) => pending.bytes)
        buffers.push(WalRecord.COMMIT)
        const segment = tail
        yield* Effect.tapError(
          WalSegment.attempt("storeLogs", tail.file, () => WalSegment.append(segment, buffers, segmentBytes)),
          (error) => cutBack(segment, error)
        )
        yield* Effect.tapError(WalSegment.datasync("storeLogs", tail.file, tail.fd), breakOn)
        placed(batch, tail)
        yield* dropHeadAfter
      })

    /**
     * A lone write's batch, written and flushed on the calling thread (`LoneWrite`): one `writev` and one
     * `fdatasync` without waking the writer fiber and a pool thread. Never while the writer has a batch (`busy`),
     * and not when the tail is full (a new segment is the writer's).
     */
    const flushNow = (frames: Frames, queue: Effect.Effect<void, StorageError>): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => {
        if (broken !== undefined) return Effect.fail(broken)
        const tail = segments.at(-1)!
        // One synchronous step: nothing else writes at the tail's end before it has grown past these frames. It
        // checks `busy` again itself, so that no yield between the decision and the write can let a batch in.
        let written = false
        const durable = WalSegment.attempt("storeLogs", tail.file, () => {
          if (busy()) return false
          WalSegment.append(tail, [frames.bytes, WalRecord.COMMIT], segmentBytes)
          written = true
          fs.fdatasyncSync(tail.fd)
          placed([frames], tail)
          loneBatches++
          return true
        })
        return Effect.matchEffect(durable, {
          onFailure: (error) => Effect.zipRight(written ? breakOn(error) : cutBack(tail, error), Effect.fail(error)),
          onSuccess: (done) => done ? dropHeadAfter : queue
        })
      })

    // The writer: everything queued while the previous batch was being synced goes into the next one.
    // Only the wait for work is interruptible: a batch once taken runs to its end, and its writers hear how it went,
    // even when the scope is closing (the finalizer then fails whatever is still queued).
    yield* Effect.forkScoped(Effect.forever(Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        yield* restore(Queue.take(wake))
        const batch = queued
        queued = []
        if (batch.length === 0) return
        flushing = true
        const exit = yield* Effect.exit(flush(batch))
        flushing = false
        yield* Effect.forEach(batch, (pending) => Deferred.done(pending.done, exit), { discard: true })
      })
    )))
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    const whenOpen = (operation: string): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => closed ? Effect.fail(closedError(operation)) : Effect.void)

    const enqueue = (operation: string, bytes: Uint8Array, apply: Pending["apply"]): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => {
        if (closed) return Effect.fail(closedError(operation))
        const done = Deferred.unsafeMake<void, StorageError>(FiberId.none)
        queued.push({ bytes, apply, done })
        return Effect.zipRight(Queue.offer(wake, true), Deferred.await(done))
      })

    const lone = LoneWrite.make()
    // The writer has a batch, or writes wait for it, or the tail is full (a new segment is the writer's).
    const busy = () => closed || flushing || queued.length > 0 || segments.at(-1)!.size >= segmentBytes

    /** A write of `dataBytes` of entry data: flushed at once when alone (`LoneWrite`), else batched by the writer. */
    const write = (
      operation: string,
      bytes: Uint8Array,
      dataBytes: number,
      apply: Pending["apply"]
    ): Effect.Effect<void, StorageError> => {
      // Both are lazy: nothing runs until `lone` picks one.
      const queued = enqueue(operation, bytes, apply)
      return lone.write(dataBytes, busy, flushNow({ bytes, apply }, queued), queued)
    }

    /** Reads and checks the entries `from..to`; entries lying one after another in a segment take one `pread`. */
    const read = (operation: string, from: number, to: number): Effect.Effect<Array<Log>, LogNotFound | StorageError> =>
      Effect.suspend((): Effect.Effect<Array<Log>, LogNotFound | StorageError> => {
        if (closed) return Effect.fail(closedError(operation))
        const out: Array<Log> = []
        let next = from
        while (next <= to) {
          const slot = index.get(next)
          if (slot === undefined) return Effect.fail(new LogNotFound({ index: next }))
          let end = slot.offset + slot.length
          let last = next
          for (let following = index.get(last + 1); last < to; following = index.get(last + 1)) {
            if (following === undefined || following.seq !== slot.seq || following.offset !== end) break
            end += following.length
            last++
          }
          const segment = bySeq.get(slot.seq)!
          const bytes = WalSegment.read(segment, slot.offset, end - slot.offset)
          if (typeof bytes === "string") return Effect.fail(new StorageError({ operation, reason: bytes }))
          let at = 0
          for (let expected = next; expected <= last; expected++) {
            const frame = WalRecord.decodeFrame(bytes, at, bytes.length)
            const problem = frame.kind === "bad"
              ? frame.reason
              : frame.kind !== "entry" || frame.index !== expected
              ? `the index points entry ${expected} at a frame that is not it`
              : undefined
            if (problem !== undefined || frame.kind !== "entry") {
              const where = `${segment.file} at offset ${slot.offset + at}`
              return Effect.fail(new StorageError({ operation, reason: `entry ${expected} in ${where}: ${problem}` }))
            }
            out.push({ index: frame.index, term: frame.term, type: frame.type, data: frame.data })
            at = frame.end
          }
          next = last + 1
        }
        return Effect.succeed(out)
      })

    const logs: LogStore = {
      firstIndex: Effect.zipRight(whenOpen("firstIndex"), Effect.sync(() => index.first())),
      lastIndex: Effect.zipRight(whenOpen("lastIndex"), Effect.sync(() => index.last())),
      getLog: (i) => Effect.map(read("getLog", i, i), (out) => out[0]!),
      getLogs: (from, to) => read("getLogs", from, to),
      storeLogs: (entries) => {
        if (entries.length === 0) return Effect.void
        const { bytes, offsets } = WalRecord.encodeEntries(entries)
        let dataBytes = 0
        for (const entry of entries) dataBytes += entry.data.length
        return Effect.tap(
          write("storeLogs", bytes, dataBytes, (seq, base) => {
            const segment = bySeq.get(seq)!
            for (let i = 0; i < entries.length; i++) {
              const end = i + 1 < entries.length ? offsets[i + 1]! : bytes.length
              index.set(entries[i]!.index, seq, base + offsets[i]!, end - offsets[i]!)
              segment.live++
            }
          }),
          () => {
            storeLogsCalls++
            entriesStored += entries.length
          }
        )
      },
      deleteRange: (min, max) =>
        min > max ? Effect.void : write("deleteRange", WalRecord.encodeDelete(min, max), 0, () => index.remove(min, max))
    }

    const stable = yield* WalStable.make(dir, whenOpen)
    const stats = Effect.sync((): Stats => ({ batches, loneBatches, storeLogsCalls, entriesStored, segments: segments.length }))
    return { logs, stable, stats }
  })

/** A `LogStore` and a `StableStore` in the directory `options.path`, closed with the layer's scope. */
export const layer = (options: Options): Layer.Layer<LogStore | StableStore, StorageError> =>
  Layer.scopedContext(
    Effect.map(make(options), (store) => Context.make(LogStore, store.logs).pipe(Context.add(StableStore, store.stable)))
  )
