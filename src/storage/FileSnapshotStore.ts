/**
 * Snapshots in a directory, on `@effect/platform`'s `FileSystem` (the role of
 * hashicorp's FileSnapshotStore). One sub-directory per snapshot:
 *
 * ```
 * <directory>/
 *   000000000007-3-1200/       complete: renamed into place after both files were synced
 *     data                     the state machine's bytes, as streamed
 *     meta.json                `<sha-256 of the body>\n<body>`; the body is JSON with `format: 1`
 *   000000000008-3-1300.tmp/   being written or deleted, or left by a crash (removed when the store opens)
 * ```
 *
 * `create` streams the data to `data` in the temporary directory (never the
 * whole snapshot in memory), fsyncs it, writes and fsyncs `meta.json` (which
 * holds the data's size and SHA-256), fsyncs the temporary directory, renames it
 * into place and fsyncs the parent: a snapshot is visible only once all of that
 * is done, and a failed or interrupted sink removes what it wrote. Reading
 * verifies the metadata's own checksum at `open` and the data's size and
 * checksum as it streams, failing with a `StorageError`.
 *
 * Ids start with a 12-digit sequence number, so they sort in creation order;
 * the sequence continues from the highest one on disk when the store opens.
 *
 * Opening the store fails with a `StorageError` naming the snapshot when any
 * complete snapshot's metadata is missing, corrupt or of an unknown format
 * (hashicorp's store would skip it and start from an older one, which a node
 * may not be able to bridge to its log). `list` at run time skips such a
 * snapshot with a warning.
 *
 * `make` runs on any `FileSystem` and `Path`; `layer` provides Node's.
 */
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Configuration from "../Configuration.js"
import { SnapshotNotFound, StorageError } from "../RaftError.js"
import { type SnapshotMeta, SnapshotStore } from "../SnapshotStore.js"

/** What the file store can be told. */
export interface Options {
  /** How many complete snapshots to keep, newest first; older ones are deleted after each `create`. Default 2. */
  readonly retain?: number | undefined
}

/** The version of the on-disk layout this module writes and reads. */
export const formatVersion = 1

const TEMP_SUFFIX = ".tmp"
const DATA_FILE = "data"
const META_FILE = "meta.json"
/** Small chunks from the state machine are gathered into writes of about this size. */
const WRITE_BUFFER_BYTES = 256 * 1024
const READ_CHUNK_BYTES = 256 * 1024
const ID_PATTERN = /^(\d{12})-(\d+)-(\d+)$/
const TEMP_PATTERN = /^(\d{12})-(\d+)-(\d+)\.tmp$/

const NonNegativeInt = Schema.Int.pipe(Schema.nonNegative())

/** The body of `meta.json`. */
const MetaBody = Schema.Struct({
  format: Schema.Literal(formatVersion),
  id: Schema.String,
  index: NonNegativeInt,
  term: NonNegativeInt,
  configuration: Configuration.Configuration,
  configurationIndex: NonNegativeInt,
  size: NonNegativeInt,
  /** SHA-256 of the data, lower-case hex. */
  sha256: Schema.String
})
const encodeBody = Schema.encodeSync(Schema.parseJson(MetaBody))
const decodeBody = Schema.decodeUnknownEither(MetaBody)

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex")

const storageError = (operation: string) => (error: PlatformError): StorageError =>
  new StorageError({ operation, reason: error.message, cause: error })

/** The metadata file's text: its body's checksum on the first line, the body on the second. */
const metaText = (meta: SnapshotMeta, dataSha256: string): string => {
  const body = encodeBody({
    format: formatVersion,
    id: meta.id,
    index: meta.index,
    term: meta.term,
    configuration: meta.configuration,
    configurationIndex: meta.configurationIndex,
    size: meta.size,
    sha256: dataSha256
  })
  return `${sha256(body)}\n${body}`
}

/** Parses and verifies a metadata file's text; the reason string says what is wrong with it. */
const parseMeta = (
  id: string,
  text: string
): Either.Either<{ readonly meta: SnapshotMeta; readonly sha256: string }, string> => {
  const newline = text.indexOf("\n")
  if (newline < 0) return Either.left("metadata has no checksum line (truncated?)")
  const checksum = text.slice(0, newline)
  const body = text.slice(newline + 1)
  if (sha256(body) !== checksum) return Either.left("metadata checksum mismatch (corrupt or truncated)")
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return Either.left("metadata is not JSON")
  }
  const format = typeof json === "object" && json !== null && "format" in json ? json.format : undefined
  if (format !== formatVersion) return Either.left(`unknown snapshot format version ${String(format)}`)
  const decoded = decodeBody(json)
  if (Either.isLeft(decoded)) return Either.left(`malformed metadata: ${decoded.left.message}`)
  const value = decoded.right
  if (value.id !== id) return Either.left(`metadata names snapshot ${value.id}, found in ${id}`)
  return Either.right({
    meta: {
      id: value.id,
      index: value.index,
      term: value.term,
      configuration: value.configuration,
      configurationIndex: value.configurationIndex,
      size: value.size
    },
    sha256: value.sha256
  })
}

/**
 * A snapshot store in `directory` (created if missing). Opening removes temporary directories a crash left
 * behind and continues the id sequence from what is on disk.
 */
export const make = (
  directory: string,
  options?: Options
): Effect.Effect<SnapshotStore, StorageError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const retain = options?.retain ?? 2
    if (!Number.isInteger(retain) || retain < 1) {
      return yield* new StorageError({
        operation: "open snapshot store",
        reason: `retain must be a positive integer (got ${retain})`
      })
    }
    yield* fs.makeDirectory(directory, { recursive: true }).pipe(Effect.mapError(storageError("open snapshot store")))
    const names = yield* fs.readDirectory(directory).pipe(Effect.mapError(storageError("open snapshot store")))

    // Continue the sequence after every id on disk, temporary ones included, so ids never repeat.
    let sequence = 0
    for (const name of names) {
      const match = ID_PATTERN.exec(name) ?? TEMP_PATTERN.exec(name)
      if (match !== null) sequence = Math.max(sequence, Number(match[1]))
    }
    for (const name of names) {
      if (!name.endsWith(TEMP_SUFFIX)) continue
      yield* fs.remove(path.join(directory, name), { recursive: true, force: true }).pipe(
        Effect.mapError(storageError("remove incomplete snapshot"))
      )
      yield* Effect.logWarning(`removed incomplete snapshot ${name} (left by an interrupted write)`)
    }

    const fsyncPath = (target: string) =>
      Effect.scoped(Effect.flatMap(fs.open(target, { flag: "r" }), (file) => file.sync))

    const completeIds = Effect.map(
      fs.readDirectory(directory),
      (entries) => entries.filter((name) => ID_PATTERN.test(name)).sort().reverse()
    )

    const readMeta = (id: string) =>
      fs.readFileString(path.join(directory, id, META_FILE)).pipe(
        Effect.mapError((error) =>
          error._tag === "SystemError" && error.reason === "NotFound"
            ? "incomplete: it has no metadata file"
            : `metadata unreadable: ${error.message}`
        ),
        Effect.flatMap((text) => Either.match(parseMeta(id, text), { onLeft: Effect.fail, onRight: Effect.succeed }))
      )

    /**
     * Deletes a complete snapshot: renamed to a temporary name first, in one step, so that a crash during the
     * removal of its files leaves a directory that the next open removes, never one with a snapshot's name and no
     * metadata (which would refuse the open).
     */
    const discard = (id: string) =>
      fs.rename(path.join(directory, id), path.join(directory, `${id}${TEMP_SUFFIX}`)).pipe(
        Effect.catchIf((error) => error._tag === "SystemError" && error.reason === "NotFound", () => Effect.void),
        Effect.zipRight(fs.remove(path.join(directory, `${id}${TEMP_SUFFIX}`), { recursive: true, force: true }))
      )

    /** Deletes every complete snapshot older than the newest `retain`; a failure is logged, not raised. */
    const reap = Effect.gen(function*() {
      const ids = yield* completeIds
      for (const id of ids.slice(retain)) yield* discard(id)
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning(`could not delete old snapshots: ${error.message}`))
    )

    const create: SnapshotStore["create"] = (meta) =>
      Sink.unwrapScoped(Effect.gen(function*() {
        sequence += 1
        const id = `${String(sequence).padStart(12, "0")}-${meta.term}-${meta.index}`
        const temp = path.join(directory, `${id}${TEMP_SUFFIX}`)
        const failed = storageError("create snapshot")
        // Whatever ends the sink other than success (a failed stream, an interruption, a write error)
        // removes the temporary directory: nothing of this snapshot is left behind.
        yield* Effect.addFinalizer((exit) =>
          Exit.isSuccess(exit) ? Effect.void : Effect.ignore(fs.remove(temp, { recursive: true, force: true }))
        )
        yield* fs.makeDirectory(temp).pipe(Effect.mapError(failed))
        // The data file has a scope of its own, so it is closed before the rename.
        const fileScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const file = yield* fs.open(path.join(temp, DATA_FILE), { flag: "wx" }).pipe(
          Scope.extend(fileScope),
          Effect.mapError(failed)
        )
        const hash = createHash("sha256")
        let size = 0
        const buffer = new Uint8Array(WRITE_BUFFER_BYTES)
        let buffered = 0
        const flush = Effect.suspend(() => {
          if (buffered === 0) return Effect.void
          const bytes = buffer.subarray(0, buffered)
          buffered = 0
          return file.writeAll(bytes)
        })
        const write = (bytes: Uint8Array) =>
          Effect.suspend(() => {
            hash.update(bytes)
            size += bytes.length
            if (buffered + bytes.length <= buffer.length) {
              buffer.set(bytes, buffered)
              buffered += bytes.length
              return Effect.void
            }
            // Too big to gather: write what is gathered, then this chunk as it is (the sink waits for the write).
            return Effect.zipRight(flush, bytes.length >= buffer.length / 2 ? file.writeAll(bytes) : Effect.sync(() => {
              buffer.set(bytes, 0)
              buffered = bytes.length
            }))
          })

        const finish = Effect.gen(function*() {
          yield* flush
          yield* file.sync
          yield* Scope.close(fileScope, Exit.void)
          const full: SnapshotMeta = { ...meta, id, size }
          yield* Effect.scoped(Effect.gen(function*() {
            const metaFile = yield* fs.open(path.join(temp, META_FILE), { flag: "wx" })
            yield* metaFile.writeAll(new TextEncoder().encode(metaText(full, hash.digest("hex"))))
            yield* metaFile.sync
          }))
          yield* fsyncPath(temp)
          yield* fs.rename(temp, path.join(directory, id))
          yield* fsyncPath(directory)
          return full
        }).pipe(
          Effect.mapError(failed),
          // Once the stream has ended, the snapshot is either published completely or not at all.
          Effect.uninterruptible,
          Effect.tap(() => reap)
        )

        return Sink.forEachChunk((chunk: Iterable<Uint8Array>) =>
          Effect.forEach(chunk, write, { discard: true }).pipe(Effect.mapError(failed))
        ).pipe(Sink.mapEffect(() => finish))
      }))

    const list: SnapshotStore["list"] = Effect.gen(function*() {
      const ids = yield* completeIds.pipe(Effect.mapError(storageError("list snapshots")))
      const out: Array<SnapshotMeta> = []
      for (const id of ids) {
        const read = yield* Effect.either(readMeta(id))
        if (Either.isRight(read)) out.push(read.right.meta)
        else yield* Effect.logWarning(`skipping snapshot ${id} in ${directory}: ${read.left}`)
      }
      return out
    })

    const verified = (dataPath: string, meta: SnapshotMeta, expected: string): Stream.Stream<Uint8Array, StorageError> =>
      Stream.suspend(() => {
        const hash = createHash("sha256")
        let seen = 0
        const corrupt = (reason: string) =>
          new StorageError({ operation: "read snapshot", reason: `snapshot ${meta.id}: ${reason}` })
        return fs.stream(dataPath, { chunkSize: READ_CHUNK_BYTES }).pipe(
          Stream.mapError(storageError("read snapshot")),
          Stream.mapChunksEffect((chunk) =>
            Effect.suspend(() => {
              for (const bytes of chunk) {
                seen += bytes.length
                hash.update(bytes)
              }
              return seen > meta.size
                ? Effect.fail(corrupt(`data is longer than the ${meta.size} bytes its metadata records`))
                : Effect.succeed(chunk)
            })
          ),
          Stream.concat(Stream.drain(Stream.fromEffect(Effect.suspend(() => {
            if (seen !== meta.size) {
              return Effect.fail(corrupt(`data ends after ${seen} of ${meta.size} bytes (truncated)`))
            }
            return hash.digest("hex") === expected
              ? Effect.void
              : Effect.fail(corrupt("data checksum mismatch (corrupt)"))
          }))))
        )
      })

    const open: SnapshotStore["open"] = (id) =>
      Effect.gen(function*() {
        const notFound = new SnapshotNotFound({ reason: `no snapshot with id ${id} in ${directory}` })
        if (!ID_PATTERN.test(id)) return yield* notFound
        const exists = yield* fs.exists(path.join(directory, id)).pipe(Effect.mapError(storageError("open snapshot")))
        if (!exists) return yield* notFound
        const read = yield* Effect.either(readMeta(id))
        if (Either.isLeft(read)) {
          return yield* new StorageError({ operation: "open snapshot", reason: `snapshot ${id}: ${read.left}` })
        }
        const { meta, sha256: expected } = read.right
        const dataPath = path.join(directory, id, DATA_FILE)
        const info = yield* fs.stat(dataPath).pipe(Effect.mapError(storageError("open snapshot")))
        if (Number(info.size) !== meta.size) {
          return yield* new StorageError({
            operation: "open snapshot",
            reason: `snapshot ${id}: data is ${info.size} bytes, its metadata records ${meta.size} (truncated or corrupt)`
          })
        }
        return { meta, data: verified(dataPath, meta, expected) }
      })

    const remove: SnapshotStore["delete"] = (id) =>
      Effect.gen(function*() {
        if (!ID_PATTERN.test(id)) return
        yield* discard(id)
        yield* fsyncPath(directory)
      }).pipe(Effect.mapError(storageError("delete snapshot")))

    // Every complete snapshot's metadata must read back: a damaged one is the operator's to look at, not a
    // snapshot to skip silently (the node would start from an older one, or from none, without a word).
    for (const id of yield* completeIds.pipe(Effect.mapError(storageError("open snapshot store")))) {
      const read = yield* Effect.either(readMeta(id))
      if (Either.isLeft(read)) {
        return yield* new StorageError({
          operation: "open snapshot store",
          reason: `${path.join(directory, id)}: ${read.left}; move that directory out of ${directory} to start ` +
            `from an older snapshot, or restore the node's data`
        })
      }
    }

    return { create, list, open, delete: remove }
  })

/** A file snapshot store under `directory` on Node's file system; fails if the directory cannot be opened. */
export const layer = (directory: string, options?: Options): Layer.Layer<SnapshotStore, StorageError> =>
  Layer.effect(SnapshotStore, make(directory, options)).pipe(Layer.provide([NodeFileSystem.layer, NodePath.layer]))
