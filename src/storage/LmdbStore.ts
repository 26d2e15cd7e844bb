/**
 * The durable `LogStore` and `StableStore` of a node, on one LMDB environment
 * (the `lmdb` package): the role raft-boltdb plays for hashicorp/raft.
 *
 * - Every write is a synced LMDB transaction (`overlappingSync` off: the data
 *   pages are fdatasync'ed, then the meta page is written synchronously), and
 *   its effect succeeds only once that commit returned. A `storeLogs` batch is
 *   one transaction. A small write (≤ 512 bytes of data) that finds none of this
 *   store's writes in flight, none arriving with it and no synchronous commit
 *   earlier in the same event-loop turn commits on the calling thread
 *   (`transactionSync`: the same synced commit, without the hand-offs to lmdb's
 *   writer thread and back, which cost a lone write more CPU and latency than
 *   the event loop's wait). Every other write is queued by lmdb's writer thread,
 *   which puts the writes arriving while a commit is in flight into the next one
 *   (group commit), so a busy node keeps its event loop free during `fdatasync`.
 * - Log entries are keyed by index in key order, so first and last index are
 *   one cursor step each; `deleteRange` is one transaction.
 * - Every value starts with a CRC-32 of the rest, bound to its key (the log
 *   index is stored inside the value and compared with the key; a stable value's
 *   CRC is seeded with its key): a corrupt or truncated value fails the read with
 *   a `StorageError`, never returns wrong data.
 * - A format record (`meta/format`) names the on-disk format; opening a store of
 *   another version, or an environment with data but no record, fails.
 * - Before LMDB maps `data.mdb`, its meta pages and length are checked
 *   (`LmdbFileCheck.ts`): a damaged or truncated file fails the open with a
 *   `StorageError` naming it, instead of a SIGSEGV or SIGBUS.
 * - Every lmdb call's failure is a `StorageError`, a failed commit (a full disk)
 *   included: nothing lmdb rejects is left unobserved to end the process.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as lmdb from "lmdb"
import { statfsSync } from "node:fs"
import { join } from "node:path"
import { crc32 } from "node:zlib"
import type { Log } from "../Log.js"
import { LogStore } from "../LogStore.js"
import { LogNotFound, StorageError } from "../RaftError.js"
import { StableStore } from "../StableStore.js"
import * as Codec from "./Codec.js"
import * as LmdbFileCheck from "./LmdbFileCheck.js"
import * as LoneWrite from "./LoneWrite.js"

/** The on-disk format this module writes and reads. */
export const FORMAT_VERSION: number = 1

/** Where and how to open the environment. */
export interface Options {
  /** A directory (created if missing) holding `data.mdb` and `lock.mdb`. */
  readonly path: string
  /** Initial size of the memory map in bytes; lmdb grows it as the data grows. */
  readonly mapSize?: number | undefined
  /** Open without writing (e.g. to inspect a store); every write then fails with a `StorageError`. */
  readonly readOnly?: boolean | undefined
  /**
   * Free bytes the file system holding the store must keep (for unprivileged users: statfs' `bavail`): below
   * them, a write is refused with a `StorageError` before lmdb sees it. Default `DEFAULT_RESERVE_BYTES`; 0 turns
   * the check off. lmdb corrupts its process's heap when a page write fails for lack of space (docs/storage.md),
   * so it must not find the disk full. `deleteRange` is not refused: it frees pages, and compaction must go on.
   */
  readonly reserveBytes?: number | undefined
}

/** The free space a store keeps by default: 64 MiB, room for any batch a node writes at once. */
export const DEFAULT_RESERVE_BYTES: number = 64 * 1024 * 1024

/** Counters of the environment, for benchmarks: synced commits against entries stored. */
export interface Stats {
  /** LMDB write transactions committed (each one synced), since open. */
  readonly commits: number
  /** Of those, the small lone writes committed on the calling thread (`transactionSync`) instead of lmdb's writer thread. */
  readonly syncCommits: number
  /** `storeLogs` calls that succeeded, since open. */
  readonly storeLogsCalls: number
  /** Log entries stored by them. */
  readonly entriesStored: number
}

/** Both services over one environment, plus its counters. */
export interface LmdbStore {
  readonly logs: LogStore
  readonly stable: StableStore
  /** The environment's counters now. */
  readonly stats: Effect.Effect<Stats>
}

// ---------------------------------------------------------------- encoding

const LOG_HEADER = 21 // crc 4 | index 8 | term 8 | type 1

/**
 * Each entry as crc | index | term | type | data, the CRC covering everything after it. All of a batch's values
 * are views of one buffer: one allocation per `storeLogs`, and lmdb, which keeps a pointer to each value until its
 * transaction commits, looks up that buffer's address once instead of once per entry.
 */
const encodeLogs = (logs: ReadonlyArray<Log>): Array<Uint8Array> => {
  let total = 0
  for (const log of logs) total += LOG_HEADER + log.data.length
  const bytes = new Uint8Array(total)
  const view = new DataView(bytes.buffer)
  const values = new Array<Uint8Array>(logs.length)
  let at = 0
  for (let i = 0; i < logs.length; i++) {
    const log = logs[i]!
    const end = at + LOG_HEADER + log.data.length
    Codec.writeUint64(view, at + 4, log.index)
    Codec.writeUint64(view, at + 12, log.term)
    bytes[at + 20] = Codec.LOG_TYPE_CODE[log.type]
    bytes.set(log.data, at + LOG_HEADER)
    view.setUint32(at, crc32(bytes.subarray(at + 4, end)))
    values[i] = bytes.subarray(at, end)
    at = end
  }
  return values
}

/** The entries' data bytes, headers not counted. */
const dataBytes = (logs: ReadonlyArray<Log>): number => {
  let total = 0
  for (const log of logs) total += log.data.length
  return total
}

/** The entry, or a reason it cannot be trusted. */
const decodeLog = (index: number, bytes: Uint8Array): Log | string => {
  if (bytes.length < LOG_HEADER) return `entry ${index} is truncated (${bytes.length} bytes)`
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0) !== crc32(bytes.subarray(4))) return `entry ${index} fails its checksum`
  const stored = Codec.readUint64(view, 4)
  if (stored !== index) return `entry under key ${index} holds index ${stored}`
  const type = Codec.LOG_TYPES[bytes[20]!]
  if (type === undefined) return `entry ${index} has unknown type ${bytes[20]}`
  return {
    index,
    term: Codec.readUint64(view, 12),
    type,
    // A plain Uint8Array view of lmdb's copy (not a Buffer), as the other stores hand out.
    data: new Uint8Array(bytes.buffer, bytes.byteOffset + LOG_HEADER, bytes.length - LOG_HEADER)
  }
}

const textEncoder = new TextEncoder()

/** crc | value, the CRC seeded with the key's bytes so a value moved to another key is caught. */
const encodeValue = (key: string, value: Uint8Array): Uint8Array => {
  const bytes = new Uint8Array(4 + value.length)
  bytes.set(value, 4)
  new DataView(bytes.buffer).setUint32(0, crc32(value, crc32(textEncoder.encode(key))))
  return bytes
}

const decodeValue = (key: string, bytes: Uint8Array): Uint8Array | string => {
  if (bytes.length < 4) return `value of ${key} is truncated (${bytes.length} bytes)`
  const value = bytes.slice(4)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return view.getUint32(0) === crc32(value, crc32(textEncoder.encode(key)))
    ? value
    : `value of ${key} fails its checksum`
}

// Stable keys live in two namespaces, as in the memory store: bytes and numbers.
const bytesKey = (key: string): string => `b:${key}`
const numberKey = (key: string): string => `u:${key}`

// ---------------------------------------------------------------- errors

const reasonOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

const failure = (operation: string) => (cause: unknown): StorageError =>
  new StorageError({ operation, reason: reasonOf(cause), cause })

/** A synchronous lmdb call, its exception mapped to a `StorageError` naming the operation. */
const attemptSync = <A>(operation: string, f: () => A): Effect.Effect<A, StorageError> =>
  Effect.try({ try: f, catch: failure(operation) })

/** The `commitError` promise lmdb attaches to a failed commit's error, if any. */
const commitErrorOf = (cause: unknown): Promise<unknown> | undefined => {
  const later = typeof cause === "object" && cause !== null && "commitError" in cause ? cause.commitError : undefined
  return later instanceof Promise ? later : undefined
}

/**
 * An lmdb write: `f` queues the puts/removes (in this event turn, so one transaction) and returns its promise.
 * A failed commit (a full disk, an I/O error) rejects with "Commit failed" and a second promise, `commitError`,
 * that lmdb rejects with the cause right after: it is observed here (unobserved, it would end the process as an
 * unhandled rejection) and its message goes into the `StorageError`.
 */
const commitAsync = (operation: string, f: () => Promise<unknown> | undefined): Effect.Effect<void, StorageError> =>
  Effect.tryPromise({ try: () => f() ?? Promise.resolve(true), catch: (cause) => cause }).pipe(
    Effect.asVoid,
    Effect.catchAll((cause) => {
      const later = commitErrorOf(cause)
      if (later === undefined) return Effect.fail(failure(operation)(cause))
      const detail = later.then(() => "cause unknown", reasonOf)
      return Effect.promise(() => detail).pipe(
        Effect.timeoutTo({ duration: "1 second", onSuccess: (reason) => reason, onTimeout: () => "cause unknown" }),
        Effect.flatMap((reason) => Effect.fail(new StorageError({ operation, reason: `commit failed: ${reason}`, cause })))
      )
    })
  )

/**
 * A write committed on the calling thread (`transactionSync`); its exception, a failed commit (a full disk)
 * included, becomes a `StorageError` worded as the writer thread's failure is.
 */
const commitSync = (operation: string, f: () => void): Effect.Effect<void, StorageError> =>
  Effect.try({
    try: f,
    catch: (cause) => new StorageError({ operation, reason: `commit failed: ${reasonOf(cause)}`, cause })
  })

// ---------------------------------------------------------------- the store

type Db = lmdb.Database<Uint8Array, lmdb.Key>

const openEnvironment = (options: Options): Effect.Effect<lmdb.RootDatabase<Uint8Array, lmdb.Key>, StorageError> =>
  attemptSync("open", () =>
    lmdb.open<Uint8Array, lmdb.Key>({
      // Counts commits (getStats().txns), for the benchmark's entries-per-fsync figure; not in lmdb's typings.
      ...{ trackMetrics: true },
      path: options.path,
      noSubdir: false,
      // Synced commits: a write's promise resolves after fdatasync of the data and the synchronous meta write.
      overlappingSync: false,
      // lmdb gathers the writes of one event turn into one transaction behind a "batch start" write whose promise
      // it keeps to itself; if that transaction fails (a full disk), the promise rejects with nobody listening and
      // Node ends the process. Releasing the batch start at the first write instead (any threshold below 1) makes
      // it resolve that write's own promise, which the caller awaits. Same transactions, same commits.
      ...{ batchStartThreshold: 0.5 },
      noSync: false,
      noMetaSync: false,
      encoding: "binary",
      maxDbs: 4,
      ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }),
      ...(options.readOnly === true ? { readOnly: true } : {})
    }))

/** Checks (or, in a new environment, writes) the format record. */
const checkFormat = (
  meta: Db,
  logs: Db,
  stable: Db,
  readOnly: boolean
): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    const raw = yield* attemptSync("open", () => meta.getBinary("format"))
    if (raw === undefined) {
      const empty = yield* attemptSync("open", () => logs.getKeysCount({ limit: 1 }) === 0 && stable.getKeysCount({ limit: 1 }) === 0)
      if (!empty) {
        return yield* Effect.fail(
          new StorageError({ operation: "open", reason: "the environment holds data but no format record: not a store of this format" })
        )
      }
      if (readOnly) return
      const record = new Uint8Array(4)
      new DataView(record.buffer).setUint32(0, FORMAT_VERSION)
      yield* commitAsync("open", () => meta.put("format", encodeValue("format", record)))
      return
    }
    const decoded = decodeValue("format", raw)
    if (typeof decoded === "string" || decoded.length !== 4) {
      return yield* Effect.fail(new StorageError({ operation: "open", reason: "the format record is corrupt" }))
    }
    const version = new DataView(decoded.buffer, decoded.byteOffset).getUint32(0)
    if (version !== FORMAT_VERSION) {
      return yield* Effect.fail(
        new StorageError({
          operation: "open",
          reason: `the store has format version ${version}; this library reads version ${FORMAT_VERSION} only`
        })
      )
    }
  })

/**
 * Opens the environment at `options.path` and returns both services over it;
 * the environment closes with the scope. Fails with a `StorageError` naming
 * `open` when the path cannot be opened or holds another format.
 */
export const make = (options: Options): Effect.Effect<LmdbStore, StorageError, Scope.Scope> =>
  Effect.gen(function*() {
    // lmdb throws an uncaught exception from a timer (and never settles the write) when a write is queued on a
    // closed environment, so operations check this flag first and fail with a StorageError instead.
    let closed = false
    yield* LmdbFileCheck.check(join(options.path, "data.mdb"))
    const root = yield* Effect.acquireRelease(openEnvironment(options), (env) =>
      Effect.suspend(() => {
        closed = true
        return Effect.tryPromise(() => env.close())
      }).pipe(Effect.catchAll((error) => Effect.logWarning("closing the LMDB environment failed", error))))
    const whenOpen = (operation: string) =>
      closed ? Effect.fail(new StorageError({ operation, reason: "the store is closed" })) : Effect.void
    const attempt = <A>(operation: string, f: () => A): Effect.Effect<A, StorageError> =>
      Effect.suspend(() => Effect.zipRight(whenOpen(operation), attemptSync(operation, f)))
    // This store's writes handed to lmdb's writer thread and not yet settled.
    let inFlight = 0
    const commit = (operation: string, f: () => Promise<unknown> | undefined): Effect.Effect<void, StorageError> =>
      Effect.suspend(() => {
        if (closed) return whenOpen(operation)
        inFlight++
        return Effect.ensuring(commitAsync(operation, f), Effect.sync(() => inFlight--))
      })
    const lone = LoneWrite.make()
    let syncCommits = 0
    const countSync = () => {
      syncCommits++
    }
    // A read-only store's writes take the writer's path, which fails them.
    const busy = () => closed || inFlight > 0 || options.readOnly === true
    /**
     * A write of `bytes` of data: alone (`LoneWrite`), it commits at once on this thread (`now`, inside one
     * `transactionSync`); otherwise it joins lmdb's group commit through `queued`.
     */
    const write = (
      operation: string,
      bytes: number,
      now: () => void,
      queued: () => Promise<unknown> | undefined
    ): Effect.Effect<void, StorageError> =>
      Effect.zipRight(
        roomFor(operation),
        lone.write(
          bytes,
          busy,
          Effect.tap(commitSync(operation, () => root.transactionSync(now)), countSync),
          commit(operation, queued)
        )
      )
    // A read-only store's writes fail as lmdb fails them, whatever the space.
    const reserve = options.readOnly === true ? 0 : options.reserveBytes ?? DEFAULT_RESERVE_BYTES
    /** Succeeds while the file system keeps `reserve` bytes free (see `Options.reserveBytes`). */
    const roomFor = (operation: string): Effect.Effect<void, StorageError> =>
      reserve <= 0 ? Effect.void : Effect.flatMap(
        attemptSync(operation, () => statfsSync(options.path)),
        (fsStats) => {
          const free = fsStats.bavail * fsStats.bsize
          return free >= reserve ? Effect.void : Effect.fail(
            new StorageError({
              operation,
              reason: `no room: ${free} bytes free on the file system, below the ${reserve} this store keeps free`
            })
          )
        }
      )
    const openDb = (name: string) =>
      attempt("open", () => root.openDB<Uint8Array, lmdb.Key>({ name, encoding: "binary" }))
    const meta = yield* openDb("meta")
    const logDb = yield* openDb("logs")
    const stableDb = yield* openDb("stable")
    yield* checkFormat(meta, logDb, stableDb, options.readOnly === true)

    let storeLogsCalls = 0
    let entriesStored = 0

    const edge = (operation: string, reverse: boolean) =>
      attempt(operation, () => {
        for (const key of logDb.getKeys({ limit: 1, reverse })) return key as number
        return 0
      })

    const readLog = (operation: string, index: number): Effect.Effect<Log, LogNotFound | StorageError> =>
      Effect.flatMap(attempt(operation, () => logDb.getBinary(index)), (raw): Effect.Effect<Log, LogNotFound | StorageError> => {
        if (raw === undefined) return Effect.fail(new LogNotFound({ index }))
        const log = decodeLog(index, raw)
        return typeof log === "string" ? Effect.fail(new StorageError({ operation, reason: log })) : Effect.succeed(log)
      })

    const logs: LogStore = {
      firstIndex: edge("firstIndex", false),
      lastIndex: edge("lastIndex", true),
      getLog: (index) => readLog("getLog", index),
      getLogs: (from, to) =>
        Effect.flatMap(
          attempt("getLogs", () => {
            const out: Array<Log> = []
            let expected = from
            for (const { key, value } of logDb.getRange({ start: from, end: to + 1 })) {
              const index = key as number
              if (index !== expected) return expected
              const log = decodeLog(index, value)
              if (typeof log === "string") return log
              out.push(log)
              expected++
            }
            return expected > to ? out : expected
          }),
          (result): Effect.Effect<ReadonlyArray<Log>, LogNotFound | StorageError> =>
            typeof result === "number"
              ? Effect.fail(new LogNotFound({ index: result }))
              : typeof result === "string"
              ? Effect.fail(new StorageError({ operation: "getLogs", reason: result }))
              : Effect.succeed(result)
        ),
      storeLogs: (entries) =>
        entries.length === 0 ? Effect.void : write("storeLogs", dataBytes(entries), () => {
          const values = encodeLogs(entries)
          for (let i = 0; i < entries.length; i++) logDb.putSync(entries[i]!.index, values[i]!)
        }, () => {
          const values = encodeLogs(entries)
          let last: Promise<boolean> | undefined
          for (let i = 0; i < entries.length; i++) last = logDb.put(entries[i]!.index, values[i]!)
          return last
        }).pipe(Effect.tap(() => {
          storeLogsCalls++
          entriesStored += entries.length
        })),
      deleteRange: (min, max) =>
        min > max ? Effect.void : commit("deleteRange", () =>
          // Inside the write transaction, so it also sees entries queued by writes not yet committed.
          logDb.transaction(() => {
            for (const key of logDb.getKeys({ start: min, end: max + 1 })) logDb.remove(key)
          }))
    }

    const readStable = (operation: string, key: string, stored: string) =>
      Effect.flatMap(attempt(operation, () => stableDb.getBinary(stored)), (raw) => {
        if (raw === undefined) return Effect.succeed(Option.none<Uint8Array>())
        const value = decodeValue(stored, raw)
        return typeof value === "string"
          ? Effect.fail(new StorageError({ operation, reason: `${value} (key ${key})` }))
          : Effect.succeed(Option.some(value))
      })

    const stable: StableStore = {
      get: (key) => readStable("get", key, bytesKey(key)),
      set: (key, value) => {
        const stored = bytesKey(key)
        return Effect.suspend(() => {
          const encoded = encodeValue(stored, value)
          return write("set", value.length, () => stableDb.putSync(stored, encoded), () => stableDb.put(stored, encoded))
        })
      },
      getUint64: (key) => Effect.flatMap(readStable("getUint64", key, numberKey(key)), (stored) => Codec.decodeUint64(key, stored)),
      setUint64: (key, value) =>
        Effect.suspend(() => {
          const stored = numberKey(key)
          const encoded = encodeValue(stored, Codec.encodeUint64(value))
          return write("setUint64", 8, () => stableDb.putSync(stored, encoded), () => stableDb.put(stored, encoded))
        })
    }

    const stats = Effect.sync((): Stats => {
      let commits = 0
      try {
        commits = (root.getStats() as { readonly txns?: number }).txns ?? 0
      } catch {
        // A closed environment has no counters left to read.
      }
      return { commits, syncCommits, storeLogsCalls, entriesStored }
    })

    return { logs, stable, stats }
  })

/** A `LogStore` and a `StableStore` on one LMDB environment at `options.path`, closed with the layer's scope. */
export const layer = (options: Options): Layer.Layer<LogStore | StableStore, StorageError> =>
  Layer.scopedContext(
    Effect.map(make(options), (store) => Context.make(LogStore, store.logs).pipe(Context.add(StableStore, store.stable)))
  )
