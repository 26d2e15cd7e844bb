import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import type * as Log from "../../src/Log.js"
import type { LogNotFound, StorageError } from "../../src/RaftError.js"
import * as WalRecord from "../../src/storage/WalRecord.js"
import * as WalSegment from "../../src/storage/WalSegment.js"
import * as WalStore from "../../src/storage/WalStore.js"
import { tempDir } from "./temp.js"

const entries = (from: number, to: number, term = 1): Array<Log.Log> =>
  Array.from({ length: to - from + 1 }, (_, i) => ({
    index: from + i,
    term,
    type: "Command" as const,
    data: new TextEncoder().encode(`entry ${from + i} term ${term}`)
  }))

const texts = (logs: ReadonlyArray<Log.Log>) => logs.map((log) => `${log.index}/${log.term}/${new TextDecoder().decode(log.data)}`)

/** Opens the store in `dir`, runs `f` and closes it again. */
const session = <A, E>(dir: string, f: (store: WalStore.WalStore) => Effect.Effect<A, E>, segmentBytes?: number) =>
  Effect.scoped(Effect.flatMap(WalStore.make({ path: dir, segmentBytes }), f))

const segmentFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir).filter((name) => name.endsWith(".wal")).sort().map((name) => path.join(dir, name))

const tailFile = (dir: string): string => segmentFiles(dir).at(-1)!

/** Flips one byte of `file` at `offset`. */
const flip = (file: string, offset: number) => {
  const bytes = fs.readFileSync(file)
  bytes[offset] = bytes[offset]! ^ 0xff
  fs.writeFileSync(file, bytes)
}

const bounds = (store: WalStore.WalStore) => Effect.all([store.logs.firstIndex, store.logs.lastIndex])

/** Bytes of the frame of `entries(index, index, term)` (all test entries of one width have the same size). */
const frameBytes = (index: number, term = 1) => WalRecord.encodeEntries(entries(index, index, term)).bytes.length

/** Two batches in two sessions, 1..5 then 6..9; returns the tail's size after the first (where the second starts). */
const twoBatches = (dir: string) =>
  Effect.gen(function*() {
    yield* session(dir, (store) => store.logs.storeLogs(entries(1, 5)))
    const committed = fs.statSync(tailFile(dir)).size
    yield* session(dir, (store) => store.logs.storeLogs(entries(6, 9)))
    return committed
  })

describe("WalStore", () => {
  it.scoped("a torn tail (the batch being written when the process died) is cut at open, and appends continue after it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const committed = yield* twoBatches(dir)
      // Keep the first two frames of the second batch and half of its third: what a short write leaves.
      fs.truncateSync(tailFile(dir), committed + 2 * frameBytes(6) + 10)
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* bounds(store), [1, 5])
          assert.strictEqual(fs.statSync(tailFile(dir)).size, committed, "the torn bytes were not cut")
          yield* store.logs.storeLogs(entries(6, 7, 2))
        }))
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 7)), texts([...entries(1, 5), ...entries(6, 7, 2)]))
        }))
    }))

  it.scoped("frames whose batch has no commit record are not applied, though each frame is whole", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => Effect.zipRight(store.logs.storeLogs(entries(1, 5)), store.logs.storeLogs(entries(6, 9))))
      fs.truncateSync(tailFile(dir), fs.statSync(tailFile(dir)).size - WalRecord.COMMIT.length)
      yield* session(dir, (store) => Effect.map(bounds(store), (b) => assert.deepStrictEqual(b, [1, 5])))
    }))

  it.scoped("a damaged frame in the last batch of the tail is a torn write (power lost before its fdatasync): cut", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const committed = yield* twoBatches(dir)
      flip(tailFile(dir), committed + frameBytes(6) + 30)
      yield* session(dir, (store) => Effect.map(bounds(store), (b) => assert.deepStrictEqual(b, [1, 5])))
    }))

  it.scoped("a damaged frame with committed batches after it fails the open, naming the file and the offset", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => Effect.zipRight(store.logs.storeLogs(entries(1, 5)), store.logs.storeLogs(entries(6, 9))))
      const offset = WalSegment.HEADER + 2 * frameBytes(1)
      flip(tailFile(dir), offset + 30) // in entry 3's data
      const error = yield* Effect.flip(session(dir, (store) => store.logs.lastIndex))
      assert.strictEqual(error._tag, "StorageError")
      assert.include(error.message, `${path.basename(tailFile(dir))} is corrupt at offset ${offset}`)
      assert.include(error.message, "checksum")
    }))

  it.scoped("a damaged frame in a sealed segment fails the open, even at its end", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => Effect.forEach([1, 11, 21, 31], (from) => store.logs.storeLogs(entries(from, from + 9)), { discard: true }), 256)
      const [first] = segmentFiles(dir)
      assert.isAbove(segmentFiles(dir).length, 1)
      const size = fs.statSync(first!).size
      flip(first!, size - WalRecord.COMMIT.length - 5) // the last entry frame before the last commit
      const error = yield* Effect.flip(session(dir, (store) => store.logs.lastIndex, 256))
      assert.include(error.message, `${path.basename(first!)} is corrupt at offset`)
    }))

  it.scoped("an entry damaged on disk after open fails its read with a StorageError; its neighbours still read", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          yield* store.logs.storeLogs(entries(1, 5))
          flip(tailFile(dir), WalSegment.HEADER + 2 * frameBytes(1) + 30)
          const one = yield* Effect.flip(store.logs.getLog(3))
          assert.strictEqual(one._tag, "StorageError")
          assert.include(one.message, "entry 3")
          const range = yield* Effect.flip(store.logs.getLogs(1, 5))
          assert.strictEqual(range._tag, "StorageError")
          assert.deepStrictEqual(texts([yield* store.logs.getLog(2), yield* store.logs.getLog(4)]), texts([...entries(2, 2), ...entries(4, 4)]))
        }))
    }))

  it.scoped("segments roll over at segmentBytes; reads cross them, before and after a reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          for (let from = 1; from <= 200; from += 5) yield* store.logs.storeLogs(entries(from, from + 4))
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 200)), texts(entries(1, 200)))
          assert.strictEqual((yield* store.stats).segments, segmentFiles(dir).length)
        }), 1024)
      assert.isAtLeast(segmentFiles(dir).length, 5)
      for (const file of segmentFiles(dir).slice(0, -1)) assert.isAtMost(fs.statSync(file).size, 1024 + 5 * frameBytes(1) + 9)
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 200)), texts(entries(1, 200)))
        }), 1024)
    }))

  it.scoped("a conflicting suffix truncated across segments, then appended again: the new entries win, also after a reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const expected = [...entries(1, 49), ...entries(50, 60, 2)]
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          for (let from = 1; from <= 100; from += 10) yield* store.logs.storeLogs(entries(from, from + 9))
          yield* store.logs.deleteRange(50, 100)
          assert.deepStrictEqual(yield* bounds(store), [1, 49])
          yield* store.logs.storeLogs(entries(50, 60, 2))
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 60)), texts(expected))
        }), 1024)
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* bounds(store), [1, 60])
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 60)), texts(expected))
        }), 1024)
    }))

  it.scoped("deleteRange at the head removes the segments it emptied, keeps the one still read, and the bounds survive a reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          for (let from = 1; from <= 200; from += 10) yield* store.logs.storeLogs(entries(from, from + 9))
          const before = segmentFiles(dir).length
          yield* store.logs.deleteRange(1, 150)
          assert.deepStrictEqual(yield* bounds(store), [151, 200])
          assert.isBelow(segmentFiles(dir).length, before, "no segment was removed")
          assert.strictEqual((yield* store.stats).segments, segmentFiles(dir).length)
        }), 1024)
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* bounds(store), [151, 200])
          assert.deepStrictEqual(texts(yield* store.logs.getLogs(151, 200)), texts(entries(151, 200)))
          const missing = yield* Effect.flip(store.logs.getLog(150))
          assert.strictEqual(missing._tag, "LogNotFound")
        }), 1024)
    }))

  it.scoped("writes that arrive while a batch is being synced share the next batch: 64 concurrent storeLogs, few fdatasyncs", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* WalStore.make({ path: dir })
      yield* Effect.forEach(entries(1, 64), (log) => store.logs.storeLogs([log]), { concurrency: "unbounded", discard: true })
      const stats = yield* store.stats
      assert.strictEqual(stats.storeLogsCalls, 64)
      assert.isAtMost(stats.batches, 3, `${stats.batches} batches for 64 concurrent writes`)
      assert.deepStrictEqual(texts(yield* store.logs.getLogs(1, 64)), texts(entries(1, 64)))
    }))

  it.scoped("a tail whose header never became durable (a crash while creating it) is removed at open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => store.logs.storeLogs(entries(1, 5)))
      fs.writeFileSync(path.join(dir, WalSegment.fileName(2)), new Uint8Array(7))
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          assert.deepStrictEqual(yield* bounds(store), [1, 5])
          yield* store.logs.storeLogs(entries(6, 6))
        }))
      yield* session(dir, (store) => Effect.map(bounds(store), (b) => assert.deepStrictEqual(b, [1, 6])))
    }))

  it.scoped("a segment of another format, and a damaged stable file, fail the open with a StorageError naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => Effect.zipRight(store.logs.storeLogs(entries(1, 5)), store.stable.setUint64("CurrentTerm", 7)))
      flip(path.join(dir, "stable"), 25)
      const stable = yield* Effect.flip(session(dir, (store) => store.logs.lastIndex))
      assert.include(stable.message, `${path.join(dir, "stable")} is corrupt`)
      flip(path.join(dir, "stable"), 25)
      flip(tailFile(dir), 0)
      const segment = yield* Effect.flip(session(dir, (store) => store.logs.lastIndex))
      assert.include(segment.message, "bad magic")
    }))

  it.scoped("a stable value is replaced atomically: a leftover temp file from a crash is ignored", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* session(dir, (store) => store.stable.set("LastVote", new Uint8Array([1, 2, 3])))
      fs.writeFileSync(path.join(dir, "stable.tmp"), new Uint8Array([9, 9, 9]))
      yield* session(dir, (store) =>
        Effect.gen(function*() {
          const vote = yield* store.stable.get("LastVote")
          assert.deepStrictEqual(Option.map(vote, (v) => [...v]), Option.some([1, 2, 3]))
          yield* store.stable.set("LastVote", new Uint8Array([4]))
        }))
      yield* session(dir, (store) =>
        Effect.map(store.stable.get("LastVote"), (vote) => assert.deepStrictEqual(Option.map(vote, (v) => [...v]), Option.some([4]))))
    }))

  it.scoped("after the store is closed every operation fails with a StorageError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* session(dir, (store) => Effect.succeed(store))
      const operations: ReadonlyArray<Effect.Effect<unknown, StorageError | LogNotFound>> = [
        store.logs.lastIndex,
        store.logs.getLog(1),
        store.logs.storeLogs(entries(1, 1)),
        store.stable.set("a", new Uint8Array(1))
      ]
      for (const operation of operations) {
        const error = yield* Effect.flip(operation)
        assert.strictEqual(error._tag, "StorageError")
      }
    }))

  it.scoped("writes in flight when the store closes all end, durable or failed, none left waiting; the durable ones reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const scope = yield* Scope.make()
      const store = yield* Scope.extend(WalStore.make({ path: dir }), scope)
      const fibers = yield* Effect.forEach(entries(1, 64), (log) => Effect.fork(store.logs.storeLogs([log])))
      yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      const exits = yield* Effect.forEach(fibers, Fiber.await)
      const stored = exits.flatMap((exit, i) => Exit.isSuccess(exit) ? [i + 1] : [])
      yield* session(dir, (reopened) =>
        Effect.gen(function*() {
          for (const index of stored) assert.strictEqual((yield* reopened.logs.getLog(index)).index, index)
        }))
    }))
})
