/**
 * Segment files of the write-ahead log (`WalStore.ts`) and the file calls the
 * store makes, each an `Effect` failing with a `StorageError` that names the
 * operation and the file.
 *
 * A segment is `<seq>.wal` (20 digits, so names sort as numbers) holding a
 * 16-byte header (magic `EFRAFTWL`, format version u32, CRC-32 of both) and
 * then frames (`WalRecord.ts`). Only the last segment (the tail) is written;
 * a new one is created, synced and its directory entry synced before the
 * first batch goes into it, so every segment but the tail ends with a commit.
 *
 * `scan` reads a segment back at open: the batches up to the last commit, and
 * what to do about anything after it. After a crash the tail may end in a
 * batch that was being written (never acknowledged: its `fdatasync` had not
 * returned): that torn tail is cut. A frame that fails its checks with a
 * committed batch after it held acknowledged data: that is corruption, and
 * the open fails naming the file and the offset.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import { StorageError } from "../RaftError.js"
import * as WalRecord from "./WalRecord.js"

/** The segment format this module writes and reads. */
export const FORMAT_VERSION: number = 1
/** Bytes of a segment's header. */
export const HEADER: number = 16
const MAGIC = new TextEncoder().encode("EFRAFTWL")

// ---------------------------------------------------------------- file calls

const reasonOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** A failure of `operation` on `file`, with the cause's message. */
export const failure = (operation: string, file: string) => (cause: unknown): StorageError =>
  new StorageError({ operation, reason: `${file}: ${reasonOf(cause)}`, cause })

/** A node:fs callback call as an Effect. Not interruptible once started: the kernel finishes it anyway. */
const call = <A>(
  operation: string,
  file: string,
  start: (done: (error: NodeJS.ErrnoException | null, value: A) => void) => void
): Effect.Effect<A, StorageError> =>
  Effect.async<A, StorageError>((resume) => {
    start((error, value) => resume(error === null ? Effect.succeed(value) : Effect.fail(failure(operation, file)(error))))
  })

/** A synchronous node:fs call, its exception mapped to a `StorageError`. */
export const attempt = <A>(operation: string, file: string, f: () => A): Effect.Effect<A, StorageError> =>
  Effect.try({ try: f, catch: failure(operation, file) })

/** Writes `buffers` at `position` of `fd`, all of them (a short write is retried from where it stopped). */
export const writeAll = (
  operation: string,
  file: string,
  fd: number,
  buffers: ReadonlyArray<Uint8Array>,
  position: number
): Effect.Effect<void, StorageError> => {
  let total = 0
  for (const buffer of buffers) total += buffer.length
  return Effect.flatMap(
    call<number>(operation, file, (done) => fs.writev(fd, buffers as Array<Uint8Array>, position, done)),
    // Rare (a signal, a huge batch): write the rest.
    (written) => written >= total ? Effect.void : writeAll(operation, file, fd, unwritten(buffers, written), position + written)
  )
}

/** What of `buffers` a write of `written` bytes left: the buffers after them, the first one cut where it stopped. */
const unwritten = (buffers: ReadonlyArray<Uint8Array>, written: number): ReadonlyArray<Uint8Array> => {
  let i = 0
  let skip = written
  while (i < buffers.length && skip >= buffers[i]!.length) skip -= buffers[i++]!.length
  return i < buffers.length && skip > 0 ? [buffers[i]!.subarray(skip), ...buffers.slice(i + 1)] : buffers.slice(i)
}

/**
 * Writes `buffers` at `position` of `fd` on the calling thread, all of them. A batch is small (a write to the page
 * cache, no flush), so this costs less than a round trip through libuv's thread pool, which wakes a pool thread
 * and then the event loop; the flush that follows is the one call that waits for the disk. Throws what node:fs
 * throws.
 */
export const writeAllSync = (fd: number, buffers: ReadonlyArray<Uint8Array>, position: number): void => {
  let pending: ReadonlyArray<Uint8Array> = buffers
  let at = position
  while (pending.length > 0) {
    const written = fs.writevSync(fd, pending as Array<Uint8Array>, at)
    at += written
    // A short write (a signal, a huge batch): go on from the first byte not written.
    pending = unwritten(pending, written)
  }
}

/** fdatasync: the file's data (and its size) are on disk when this succeeds. */
export const datasync = (operation: string, file: string, fd: number): Effect.Effect<void, StorageError> =>
  call<void>(operation, file, (done) => fs.fdatasync(fd, (error) => done(error, undefined)))

/** fsync of a directory: names created, renamed or removed in it are on disk when this succeeds. */
export const syncDirectory = (operation: string, dir: string): Effect.Effect<void, StorageError> =>
  attempt(operation, dir, () => {
    const fd = fs.openSync(dir, "r")
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  })

/** Closes `fd`; a failure is logged, not returned (nothing is left to do with the file). */
export const close = (file: string, fd: number): Effect.Effect<void> =>
  Effect.catchAll(
    attempt("close", file, () => fs.closeSync(fd)),
    (error) => Effect.logWarning(`closing ${file} failed`, error)
  )

// ---------------------------------------------------------------- segments

/**
 * One segment file, open. `size` is where the next batch goes; `allocated` is the file's length, zeros from `size`
 * on (`append`); `live` counts the entries the index reads from it.
 */
export interface Segment {
  readonly seq: number
  readonly file: string
  readonly fd: number
  size: number
  allocated: number
  live: number
}

/**
 * Zeros written ahead of the tail's end, so that a batch's `fdatasync` flushes data into blocks the file already
 * has, without a change of its length for the file system's journal to commit: with three nodes syncing on one
 * disk, about a quarter less time per `fdatasync` on this project's machine (benchmarks/README.md). Recovery reads
 * the zeros as the torn end of the tail and cuts them; a store closed in order cuts them itself.
 */
export const PREALLOCATE_BYTES: number = 1024 * 1024

const ZEROS = new Uint8Array(64 * 1024)

/**
 * Writes `buffers` at the segment's end on the calling thread, zeros first when they would run past what the file
 * holds: up to `PREALLOCATE_BYTES` past them, but not past `limit`, the size at which the segment is sealed, so that
 * a sealed segment ends at its last batch (zeros there would read as damage at open, since only the tail may end
 * torn). Throws what node:fs throws; the caller maps it, and cuts the file back to `size` after a failure.
 */
export const append = (segment: Segment, buffers: ReadonlyArray<Uint8Array>, limit: number): void => {
  let total = 0
  for (const buffer of buffers) total += buffer.length
  const end = segment.size + total
  if (end > segment.allocated) {
    const target = Math.max(end, Math.min(end + PREALLOCATE_BYTES, limit))
    try {
      for (let at = segment.allocated; at < target; at += ZEROS.length) {
        writeAllSync(segment.fd, [ZEROS.subarray(0, Math.min(ZEROS.length, target - at))], at)
        segment.allocated = Math.min(at + ZEROS.length, target)
      }
    } catch {
      // No room for the zeros (a nearly full disk): drop what was written of them, and write the batch alone.
      fs.ftruncateSync(segment.fd, segment.size)
      segment.allocated = segment.size
    }
  }
  writeAllSync(segment.fd, buffers, segment.size)
  // The file holds at least the batch now: the next zeros start after it, never over it.
  if (segment.allocated < end) segment.allocated = end
}

/** Cuts the file back to `size` (the end of its last durable batch), durably: no zeros or failed batch after it. */
export const cut = (segment: Segment): void => {
  fs.ftruncateSync(segment.fd, segment.size)
  fs.fdatasyncSync(segment.fd)
  segment.allocated = segment.size
}

/** The file name of segment `seq`. */
export const fileName = (seq: number): string => `${String(seq).padStart(20, "0")}.wal`

const NAME = /^(\d{20})\.wal$/

/** The sequence numbers of the segments in `dir`, in order. */
export const list = (dir: string): Effect.Effect<Array<number>, StorageError> =>
  attempt("open", dir, () =>
    fs.readdirSync(dir)
      .map((name) => NAME.exec(name))
      .filter((match) => match !== null)
      .map((match) => Number(match[1]))
      .sort((a, b) => a - b))

const header = (): Uint8Array => {
  const bytes = new Uint8Array(HEADER)
  const view = new DataView(bytes.buffer)
  bytes.set(MAGIC)
  view.setUint32(8, FORMAT_VERSION)
  view.setUint32(12, crc32(bytes.subarray(0, 12)))
  return bytes
}

/** Why a segment's header is not ours, or undefined when it is. */
const checkHeader = (bytes: Uint8Array): string | undefined => {
  if (bytes.length < HEADER) return `the header is cut short (${bytes.length} of ${HEADER} bytes)`
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) return "not a segment of this log (bad magic)"
  if (view.getUint32(12) !== crc32(bytes.subarray(0, 12))) return "the header fails its checksum"
  const version = view.getUint32(8)
  if (version !== FORMAT_VERSION) {
    return `format version ${version}; this library reads version ${FORMAT_VERSION} only`
  }
  return undefined
}

/** Creates segment `seq` in `dir` with its header, durably (the file synced, then the directory). */
export const create = (dir: string, seq: number): Effect.Effect<Segment, StorageError> =>
  Effect.gen(function*() {
    const file = join(dir, fileName(seq))
    const fd = yield* attempt("create segment", file, () => fs.openSync(file, "wx+"))
    yield* writeAll("create segment", file, fd, [header()], 0).pipe(
      Effect.zipRight(datasync("create segment", file, fd)),
      Effect.zipRight(syncDirectory("create segment", dir)),
      // Leave no half-made file behind: the next attempt creates the same name.
      Effect.tapError(() =>
        Effect.zipRight(close(file, fd), Effect.ignore(attempt("create segment", file, () => fs.unlinkSync(file)))))
    )
    return { seq, file, fd, size: HEADER, allocated: HEADER, live: 0 }
  })

/** Opens segment `seq` for reading and writing, and reads all of it. */
export const open = (dir: string, seq: number): Effect.Effect<{ segment: Segment; bytes: Uint8Array }, StorageError> =>
  Effect.gen(function*() {
    const file = join(dir, fileName(seq))
    const fd = yield* attempt("open", file, () => fs.openSync(file, "r+"))
    const bytes = yield* attempt("open", file, () => {
      const size = fs.fstatSync(fd).size
      const bytes = new Uint8Array(size)
      let at = 0
      while (at < size) {
        const read = fs.readSync(fd, bytes, at, size - at, at)
        if (read === 0) break
        at += read
      }
      return bytes.subarray(0, at)
    }).pipe(Effect.tapError(() => close(file, fd)))
    return { segment: { seq, file, fd, size: bytes.length, allocated: bytes.length, live: 0 }, bytes }
  })

/** Reads `length` bytes at `position` of a segment (a read of what the index says is there). */
export const read = (segment: Segment, position: number, length: number): Uint8Array | string => {
  const bytes = new Uint8Array(length)
  let at = 0
  try {
    while (at < length) {
      const read = fs.readSync(segment.fd, bytes, at, length - at, position + at)
      if (read === 0) return `${segment.file}: ${length} bytes expected at offset ${position}, the file ends before`
      at += read
    }
  } catch (cause) {
    return `${segment.file}: ${reasonOf(cause)}`
  }
  return bytes
}

// ---------------------------------------------------------------- recovery

/** A frame of a committed batch and where it starts. */
export interface Placed {
  readonly at: number
  readonly frame: WalRecord.Frame
}

/** What a segment holds: its committed batches, in order, and where the committed part ends. */
export interface Scan {
  readonly batches: ReadonlyArray<ReadonlyArray<Placed>>
  readonly committedEnd: number
}

/**
 * Does a batch after the one holding `at` end in a valid commit, frame by frame from `at`? Batches are written one
 * after the other, each only once the one before is durable, so a later committed batch means the damaged frame's
 * batch was acknowledged: corruption, not a torn write. (The damaged frame's own commit proves nothing: without the
 * fdatasync, the page holding the commit may have reached the disk and the page before it not.)
 */
const laterBatchCommitted = (bytes: Uint8Array, at: number): boolean => {
  let commits = 0
  while (at < bytes.length) {
    const frame = WalRecord.decodeFrame(bytes, at, bytes.length)
    if (frame.kind === "bad") return false
    if (frame.kind === "commit" && ++commits === 2) return true
    at = frame.end
  }
  return false
}

/**
 * Reads the frames of a segment. In the tail (`isTail`), a header cut short, a frame cut short, or a damaged frame
 * in the last batch (no later batch committed after it), is the torn end of the last write: the committed part ends before it (the caller
 * truncates the file there). Anything else damaged (a bad header, a damaged frame followed by a committed batch, or
 * uncommitted frames at the end of a segment that is not the tail) fails with a `StorageError` naming the file and
 * the offset.
 */
export const scan = (file: string, bytes: Uint8Array, isTail: boolean): Effect.Effect<Scan, StorageError> =>
  Effect.suspend(() => {
    const corrupt = (offset: number, reason: string) =>
      Effect.fail(new StorageError({ operation: "open", reason: `${file} is corrupt at offset ${offset}: ${reason}` }))
    const headerProblem = checkHeader(bytes.subarray(0, HEADER))
    if (headerProblem !== undefined) {
      // A crash while creating the tail can leave its header short; nothing was ever committed in it.
      if (isTail && bytes.length < HEADER) return Effect.succeed({ batches: [], committedEnd: 0 })
      return corrupt(0, headerProblem)
    }
    const batches: Array<Array<Placed>> = []
    let batch: Array<Placed> = []
    let committedEnd = HEADER
    let at = HEADER
    while (at < bytes.length) {
      const frame = WalRecord.decodeFrame(bytes, at, bytes.length)
      if (frame.kind === "bad") {
        const after = frame.declaredEnd
        const acknowledgedAfter = after !== undefined && after < bytes.length && laterBatchCommitted(bytes, after)
        if (isTail && !acknowledgedAfter) return Effect.succeed({ batches, committedEnd })
        return corrupt(at, frame.reason)
      }
      if (frame.kind === "commit") {
        batches.push(batch)
        batch = []
        committedEnd = frame.end
      } else {
        batch.push({ at, frame })
      }
      at = frame.end
    }
    if (batch.length > 0 && !isTail) return corrupt(committedEnd, "the segment ends in a batch with no commit")
    return Effect.succeed({ batches, committedEnd })
  })

/** Cuts the tail segment at `size` (its committed end), durably. */
export const truncate = (segment: Segment, size: number): Effect.Effect<void, StorageError> =>
  attempt("open", segment.file, () => fs.ftruncateSync(segment.fd, size)).pipe(
    Effect.zipRight(datasync("open", segment.file, segment.fd)),
    Effect.tap(() => {
      segment.size = size
      segment.allocated = size
    })
  )

/** Closes and removes a segment (the caller syncs the directory). */
export const remove = (segment: Segment): Effect.Effect<void, StorageError> =>
  Effect.zipRight(close(segment.file, segment.fd), attempt("deleteRange", segment.file, () => fs.unlinkSync(segment.file)))
