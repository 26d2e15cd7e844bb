import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as lmdb from "lmdb"
import * as fs from "node:fs"
import * as path from "node:path"
import { crc32 } from "node:zlib"
import * as Log from "../../src/Log.js"
import * as LogStore from "../../src/LogStore.js"
import { StorageError } from "../../src/RaftError.js"
import * as StableStore from "../../src/StableStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import { tempDir } from "./temp.js"

const entries = (from: number, to: number, term = 1) =>
  Array.from({ length: to - from + 1 }, (_, i) => Log.make(from + i, term, "Command", new Uint8Array([from + i, 1, 2, 3])))

/** Writes entries 1..10 and a term through the store, then closes it. */
const seed = (dir: string) =>
  Effect.scoped(Effect.gen(function*() {
    const store = yield* LmdbStore.make({ path: dir })
    yield* store.logs.storeLogs(entries(1, 10))
    yield* store.stable.setUint64("CurrentTerm", 7)
    yield* store.stable.set("LastVote", new Uint8Array([1, 2, 3]))
  }))

/** Changes raw values behind the store's back, with lmdb directly (the store must be closed). */
const tamper = (dir: string, db: string, edit: (raw: lmdb.Database<Uint8Array, lmdb.Key>) => void) =>
  Effect.promise(async () => {
    const root = lmdb.open<Uint8Array, lmdb.Key>({ path: dir, encoding: "binary", maxDbs: 4 })
    const sub = root.openDB<Uint8Array, lmdb.Key>({ name: db, encoding: "binary" })
    edit(sub)
    await sub.committed
    await root.close()
  })

const flipped = (bytes: Uint8Array | undefined, at: number): Uint8Array => {
  const copy = Uint8Array.from(bytes ?? [])
  copy[at] = copy[at]! ^ 0x40
  return copy
}

/** The StorageError an effect fails with; fails the test otherwise. */
const storageError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.flip(effect), (error) => {
    assert.instanceOf(error, StorageError)
    return error as StorageError
  })

describe("LmdbStore: checksums", () => {
  it.scoped("a flipped byte in an entry's data fails getLog and getLogs with a StorageError naming the entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* tamper(dir, "logs", (db) => db.put(5, flipped(db.getBinary(5), 22)))
      const store = yield* LmdbStore.make({ path: dir })
      const single = yield* storageError(store.logs.getLog(5))
      assert.strictEqual(single.operation, "getLog")
      assert.include(single.reason, "entry 5 fails its checksum")
      const range = yield* storageError(store.logs.getLogs(3, 7))
      assert.strictEqual(range.operation, "getLogs")
      assert.include(range.reason, "entry 5")
      assert.deepStrictEqual((yield* store.logs.getLog(4)).index, 4)
    }))

  it.scoped("a truncated entry and an entry moved under another key fail the read", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* tamper(dir, "logs", (db) => {
        db.put(3, db.getBinary(3)!.subarray(0, 10))
        db.put(8, db.getBinary(9)!)
      })
      const store = yield* LmdbStore.make({ path: dir })
      assert.include((yield* storageError(store.logs.getLog(3))).reason, "truncated")
      assert.include((yield* storageError(store.logs.getLog(8))).reason, "holds index 9")
    }))

  it.scoped("a corrupt stable value fails get and getUint64 with a StorageError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* tamper(dir, "stable", (db) => {
        db.put("b:LastVote", flipped(db.getBinary("b:LastVote"), 5))
        db.put("u:CurrentTerm", flipped(db.getBinary("u:CurrentTerm"), 11))
      })
      const store = yield* LmdbStore.make({ path: dir })
      assert.strictEqual((yield* storageError(store.stable.get("LastVote"))).operation, "get")
      assert.strictEqual((yield* storageError(store.stable.getUint64("CurrentTerm"))).operation, "getUint64")
    }))
})

describe("LmdbStore: format version", () => {
  const formatRecord = (version: number) => {
    const value = new Uint8Array(4)
    new DataView(value.buffer).setUint32(0, version)
    const bytes = new Uint8Array(8)
    bytes.set(value, 4)
    new DataView(bytes.buffer).setUint32(0, crc32(value, crc32(new TextEncoder().encode("format"))))
    return bytes
  }

  it.scoped("a store of a newer format version fails to open with a StorageError naming both versions", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* tamper(dir, "meta", (db) => db.put("format", formatRecord(2)))
      const error = yield* storageError(Effect.scoped(LmdbStore.make({ path: dir })))
      assert.strictEqual(error.operation, "open")
      assert.include(error.reason, "format version 2")
      assert.include(error.reason, `version ${LmdbStore.FORMAT_VERSION}`)
    }))

  it.scoped("a store written with the current format reopens; one with data but no format record does not", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* Effect.scoped(LmdbStore.make({ path: dir }))
      yield* tamper(dir, "meta", (db) => db.remove("format"))
      const error = yield* storageError(Effect.scoped(LmdbStore.make({ path: dir })))
      assert.include(error.reason, "no format record")
    }))

  it.scoped("a corrupt format record fails the open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      yield* tamper(dir, "meta", (db) => db.put("format", flipped(formatRecord(1), 7)))
      assert.include((yield* storageError(Effect.scoped(LmdbStore.make({ path: dir })))).reason, "format record is corrupt")
    }))
})

describe("LmdbStore: errors from LMDB", () => {
  it.scoped("a path that is a file fails the open with a StorageError naming open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const file = path.join(dir, "not-a-directory")
      fs.writeFileSync(file, "x")
      const error = yield* storageError(Effect.scoped(LmdbStore.make({ path: file })))
      assert.strictEqual(error.operation, "open")
    }))

  it.scoped("writes to a store opened read-only fail with a StorageError naming the operation", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* seed(dir)
      const store = yield* LmdbStore.make({ path: dir, readOnly: true })
      assert.strictEqual((yield* store.logs.getLog(3)).index, 3)
      assert.strictEqual((yield* storageError(store.logs.storeLogs(entries(11, 11)))).operation, "storeLogs")
      assert.strictEqual((yield* storageError(store.stable.setUint64("CurrentTerm", 8))).operation, "setUint64")
      assert.strictEqual((yield* storageError(store.logs.deleteRange(1, 2))).operation, "deleteRange")
    }))

  it.scoped("after the layer's scope closes, every operation fails with a StorageError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const { logs, stable } = yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(LmdbStore.layer({ path: dir }))
        const logs = yield* Effect.provide(LogStore.LogStore, Layer.succeedContext(context))
        const stable = yield* Effect.provide(StableStore.StableStore, Layer.succeedContext(context))
        yield* logs.storeLogs(entries(1, 3))
        return { logs, stable }
      }))
      assert.strictEqual((yield* storageError(logs.storeLogs(entries(4, 4)))).operation, "storeLogs")
      assert.strictEqual((yield* storageError(logs.getLog(1))).operation, "getLog")
      assert.strictEqual((yield* storageError(stable.get("x"))).operation, "get")
      // The data written before the close is on disk.
      const again = yield* LmdbStore.make({ path: dir })
      assert.strictEqual(yield* again.logs.lastIndex, 3)
    }))
})

describe("LmdbStore: group commit", () => {
  it.scoped("16 storeLogs calls issued together share fewer commits than calls, and all are durable on reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* LmdbStore.make({ path: dir })
        const before = yield* store.stats
        yield* Effect.forEach(
          Array.from({ length: 16 }, (_, b) => entries(b * 4 + 1, b * 4 + 4)),
          (batch) => store.logs.storeLogs(batch),
          { concurrency: "unbounded", discard: true }
        )
        const after = yield* store.stats
        assert.strictEqual(after.storeLogsCalls - before.storeLogsCalls, 16)
        assert.strictEqual(after.entriesStored - before.entriesStored, 64)
        assert.isBelow(after.commits - before.commits, 16)
      }))
      const store = yield* LmdbStore.make({ path: dir })
      assert.strictEqual(yield* store.logs.lastIndex, 64)
      assert.strictEqual((yield* store.logs.getLogs(1, 64)).length, 64)
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(store.logs.getLog(64))))
    }))
})

describe("LmdbStore: the free-space reserve", () => {
  it.scoped("below its reserve every write is refused before lmdb sees it, deleteRange is not, and reads go on", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* LmdbStore.make({ path: dir, reserveBytes: 0 })
        yield* store.logs.storeLogs(entries(1, 4))
      }))
      // More than any file system has free: every write is refused.
      const store = yield* LmdbStore.make({ path: dir, reserveBytes: Number.MAX_SAFE_INTEGER })
      const before = yield* store.stats
      for (
        const [operation, write] of [
          ["storeLogs", store.logs.storeLogs(entries(5, 5))],
          ["set", store.stable.set("k", new Uint8Array([1]))],
          ["setUint64", store.stable.setUint64("CurrentTerm", 3)]
        ] as const
      ) {
        const error = yield* storageError(write)
        assert.strictEqual(error.operation, operation)
        assert.match(error.reason, /^no room: \d+ bytes free on the file system, below the \d+ this store keeps free$/)
      }
      assert.strictEqual((yield* store.stats).commits, before.commits, "a refused write committed")
      assert.strictEqual(yield* store.logs.lastIndex, 4)
      yield* store.logs.deleteRange(1, 2)
      assert.strictEqual(yield* store.logs.firstIndex, 3)
      assert.strictEqual((yield* store.logs.getLog(4)).index, 4)
    }))

  it.scoped("the default reserve is 64 MiB, and a read-only store's writes fail as lmdb fails them", () =>
    Effect.gen(function*() {
      assert.strictEqual(LmdbStore.DEFAULT_RESERVE_BYTES, 64 * 1024 * 1024)
      const dir = yield* tempDir()
      yield* Effect.scoped(LmdbStore.make({ path: dir }))
      const store = yield* LmdbStore.make({ path: dir, readOnly: true, reserveBytes: Number.MAX_SAFE_INTEGER })
      const error = yield* storageError(store.logs.storeLogs(entries(1, 1)))
      assert.notMatch(error.reason, /^no room/)
    }))
})

describe("LmdbStore: a write alone commits on the calling thread", () => {
  it.scoped("lone small writes commit synchronously, are durable on reopen, and 16 writes issued together still share commits", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* LmdbStore.make({ path: dir })
        const before = yield* store.stats
        // Each write waits for the event loop's next turn, as a node's writes do between network messages.
        for (let index = 1; index <= 4; index++) {
          yield* store.logs.storeLogs(entries(index, index))
          yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        }
        yield* store.stable.setUint64("CurrentTerm", 9)
        const lone = yield* store.stats
        assert.strictEqual(lone.syncCommits - before.syncCommits, 5, "every lone write committed on the calling thread")
        assert.strictEqual(lone.commits - before.commits, 5)
        // Writes issued together (fibers ready at once) in a later turn join lmdb's group commit instead.
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        yield* Effect.forEach(
          Array.from({ length: 16 }, (_, b) => entries(5 + b * 2, 6 + b * 2)),
          (batch) => store.logs.storeLogs(batch),
          { concurrency: "unbounded", discard: true }
        )
        const together = yield* store.stats
        assert.strictEqual(together.syncCommits, lone.syncCommits)
        assert.isBelow(together.commits - lone.commits, 16)
      }))
      // Reopened by lmdb directly: what the synchronous commits acknowledged is on disk.
      const store = yield* LmdbStore.make({ path: dir })
      assert.strictEqual(yield* store.logs.lastIndex, 36)
      assert.deepStrictEqual((yield* store.logs.getLogs(1, 4)).map((log) => log.index), [1, 2, 3, 4])
      assert.strictEqual(yield* store.stable.getUint64("CurrentTerm"), 9)
    }))

  it.scoped("a write interrupted while it yields leaves later lone writes committing on the calling thread", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* LmdbStore.make({ path: dir })
      const fiber = yield* Effect.fork(store.logs.storeLogs(entries(1, 1)))
      yield* Effect.yieldNow() // the write runs up to its own yield
      yield* Fiber.interrupt(fiber)
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      const before = yield* store.stats
      yield* store.logs.storeLogs(entries(1, 1))
      assert.strictEqual((yield* store.stats).syncCommits, before.syncCommits + 1)
    }))

  it.scoped("a large write, or a write in the same event-loop turn as a synchronous commit, goes to lmdb's writer thread", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* LmdbStore.make({ path: dir })
      const before = yield* store.stats
      yield* store.logs.storeLogs([Log.make(1, 1, "Command", new Uint8Array(64 * 1024))])
      const large = yield* store.stats
      assert.strictEqual(large.syncCommits, before.syncCommits, "64 KiB committed on the calling thread")
      yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      // Back to back in one turn: the first blocks, the second must not block the event loop again.
      yield* store.logs.storeLogs(entries(2, 2))
      yield* store.logs.storeLogs(entries(3, 3))
      const pair = yield* store.stats
      assert.strictEqual(pair.syncCommits - large.syncCommits, 1)
      assert.strictEqual(pair.commits - large.commits, 2)
      assert.strictEqual(yield* store.logs.lastIndex, 3)
    }))
})
