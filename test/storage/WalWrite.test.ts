import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import fsModule from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import * as path from "node:path"
import { afterEach, vi } from "vitest"
import type * as Log from "../../src/Log.js"
import * as WalSegment from "../../src/storage/WalSegment.js"
import * as WalStore from "../../src/storage/WalStore.js"
import { tempDir } from "./temp.js"

// The spies replace node:fs functions on the module object; syncBuiltinESMExports makes the named exports the
// store imports (`import * as fs`) see them.
const spyOnFs = <K extends "writev" | "writevSync" | "fdatasync" | "fdatasyncSync">(name: K) => {
  const spy = vi.spyOn(fsModule, name)
  syncBuiltinESMExports()
  return spy
}

afterEach(() => {
  vi.restoreAllMocks()
  syncBuiltinESMExports()
})

const entries = (from: number, to: number): Array<Log.Log> =>
  Array.from({ length: to - from + 1 }, (_, i) => ({
    index: from + i,
    term: 1,
    type: "Command" as const,
    data: new TextEncoder().encode(`entry ${from + i}`)
  }))

/** Where a segment's data ends: its last byte that is not zero (a commit frame ends in its kind, 3). */
const dataEnd = (file: string) => {
  const bytes = fs.readFileSync(file)
  let end = bytes.length
  while (end > 0 && bytes[end - 1] === 0) end--
  return end
}

/** What node:fs throws for a failed call: an Error with an errno code. */
const fsError = (code: string, message: string) => Object.assign(new Error(`${code}: ${message}`), { code })

/** The segment files of the log in `dir`, in order (the first is the only one until the log rolls over). */
const segmentFiles = (dir: string) => fs.readdirSync(dir).filter((name) => name.endsWith(".wal")).sort()

/** A WAL store in a new temporary directory, and the path of its one segment file. */
const freshStore = Effect.gen(function*() {
  const dir = yield* tempDir()
  const store = yield* WalStore.make({ path: dir })
  const [segment] = segmentFiles(dir)
  return { store, segment: segment!, file: path.join(dir, segment!) }
})

/** The event loop's next turn: a write after it may be flushed on the calling thread again. */
const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("WalStore writes", () => {
  it.scoped("a lone small write is written and flushed on the calling thread; writes that arrive together are one batch", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* WalStore.make({ path: dir })
      const writev = spyOnFs("writev")
      const fdatasync = spyOnFs("fdatasync")
      const fdatasyncSync = spyOnFs("fdatasyncSync")
      yield* store.logs.storeLogs(entries(1, 1))
      assert.strictEqual(fdatasyncSync.mock.calls.length, 1, "the lone write was not flushed on the calling thread")
      assert.strictEqual(fdatasync.mock.calls.length, 0)
      assert.strictEqual((yield* store.stats).loneBatches, 1)
      yield* nextTurn
      // Three at once share one batch: the writer fiber writes it on the calling thread, its fdatasync in the pool.
      yield* Effect.all([2, 3, 4].map((i) => store.logs.storeLogs(entries(i, i))), { concurrency: "unbounded" })
      assert.strictEqual(fdatasync.mock.calls.length, 1)
      assert.strictEqual(writev.mock.calls.length, 0, "a batch was written through the thread pool")
      yield* nextTurn
      // A large write is a batch too: others would wait behind its flush on a blocked event loop.
      yield* store.logs.storeLogs([{ index: 5, term: 1, type: "Command", data: new Uint8Array(64 * 1024) }])
      assert.strictEqual(fdatasync.mock.calls.length, 2)
      const stats = yield* store.stats
      assert.deepStrictEqual([stats.batches, stats.loneBatches], [3, 1])
      assert.deepStrictEqual((yield* store.logs.getLogs(1, 5)).map((log) => log.index), [1, 2, 3, 4, 5])
    }))

  it.scoped("a lone write waits while the writer's batch is being flushed, and lands after it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* WalStore.make({ path: dir })
        const writevSync = spyOnFs("writevSync")
        // Hold the writer's first fdatasync until released.
        const real = fsModule.fdatasync
        let release: (() => void) | undefined
        spyOnFs("fdatasync").mockImplementationOnce((fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
          release = () => {
            release = () => {}
            real(fd, callback)
          }
        })
        // Released at the end even when an assertion fails first, so that the store can close.
        yield* Effect.addFinalizer(() => Effect.sync(() => release?.()))
        const batch = yield* Effect.fork(
          Effect.all([1, 2].map((i) => store.logs.storeLogs(entries(i, i))), { concurrency: "unbounded" })
        )
        while (release === undefined) yield* nextTurn
        const written = writevSync.mock.calls.length
        const lone = yield* Effect.fork(store.logs.storeLogs(entries(3, 3)))
        yield* nextTurn
        yield* nextTurn
        assert.strictEqual(writevSync.mock.calls.length, written, "a write went to the file while a batch was being flushed")
        release()
        yield* Fiber.join(batch)
        yield* Fiber.join(lone)
        assert.deepStrictEqual((yield* store.logs.getLogs(1, 3)).map((log) => log.index), [1, 2, 3])
      }))
      // Both batches are whole in the file, one after the other.
      const reopened = yield* WalStore.make({ path: dir })
      assert.deepStrictEqual((yield* reopened.logs.getLogs(1, 3)).map((log) => log.index), [1, 2, 3])
    }))

  it.scoped("a lone write whose flush fails fails, and so does every write after it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* WalStore.make({ path: dir })
      spyOnFs("fdatasyncSync").mockImplementationOnce(() => {
        throw fsError("EIO", "i/o error, fdatasync")
      })
      const first = yield* Effect.flip(store.logs.storeLogs(entries(1, 1)))
      assert.include(first.reason, "EIO")
      yield* nextTurn
      const later = yield* Effect.flip(store.logs.storeLogs(entries(1, 1)))
      assert.include(later.reason, "an earlier write failed")
    }))

  for (const shape of ["lone", "batched"] as const) {
    it.scoped(`a ${shape} write that finds the disk full fails, leaves nothing of itself in the file, and later writes go on`, () =>
      Effect.gen(function*() {
        const dir = yield* tempDir()
        yield* Effect.scoped(Effect.gen(function*() {
          const store = yield* WalStore.make({ path: dir })
          yield* store.logs.storeLogs(entries(1, 1))
          const [segment] = segmentFiles(dir)
          const durableEnd = dataEnd(path.join(dir, segment!))
          // The failing write gets part of its batch into the file, then ENOSPC.
          const real = fs.writevSync
          spyOnFs("writevSync").mockImplementationOnce(
            (fd: number, buffers: ReadonlyArray<NodeJS.ArrayBufferView>, position?: number | null) =>
              real(fd, [(buffers as ReadonlyArray<Uint8Array>)[0]!.subarray(0, 7)], position ?? undefined)
          ).mockImplementationOnce(() => {
            throw fsError("ENOSPC", "no space left on device, write")
          })
          yield* nextTurn
          const failed = shape === "lone"
            ? store.logs.storeLogs(entries(2, 2))
            : Effect.all([2, 3].map((i) => store.logs.storeLogs(entries(i, i))), { concurrency: "unbounded" })
          const error = yield* Effect.flip(failed)
          assert.include(error.reason, "ENOSPC")
          // Cut back to the last batch: neither the failed batch's bytes nor the zeros written ahead are left.
          assert.strictEqual(fs.statSync(path.join(dir, segment!)).size, durableEnd, "the failed batch's bytes were left in the file")
          yield* nextTurn
          yield* store.logs.storeLogs(entries(2, 2))
          assert.deepStrictEqual((yield* store.logs.getLogs(1, 2)).map((log) => log.index), [1, 2])
        }))
        const reopened = yield* WalStore.make({ path: dir })
        assert.strictEqual(yield* reopened.logs.lastIndex, 2)
      }))
  }

  it.scoped("batches are written into zeros the file already holds, so a flush does not change the file's length", () =>
    Effect.gen(function*() {
      const { store, segment, file } = yield* freshStore
      yield* store.logs.storeLogs(entries(1, 1))
      const length = fs.statSync(file).size
      assert.isAtLeast(length, WalSegment.PREALLOCATE_BYTES, "no zeros were written ahead of the log's end")
      for (let i = 2; i <= 20; i++) {
        yield* nextTurn
        yield* store.logs.storeLogs(entries(i, i))
      }
      yield* Effect.all([21, 22, 23].map((i) => store.logs.storeLogs(entries(i, i))), { concurrency: "unbounded" })
      assert.strictEqual(fs.statSync(file).size, length, "a batch changed the file's length")
      // What a crash leaves (the zeros after the last batch) reopens whole, and the zeros are cut at open.
      const copy = yield* tempDir()
      fs.copyFileSync(file, path.join(copy, segment))
      const reopened = yield* WalStore.make({ path: copy })
      assert.deepStrictEqual((yield* reopened.logs.getLogs(1, 23)).map((log) => log.index), Array.from({ length: 23 }, (_, i) => i + 1))
      assert.strictEqual(fs.statSync(path.join(copy, segment)).size, dataEnd(file))
    }))

  it.scoped("a segment ends at its last batch once the next one starts: no zeros a reopen would take for damage", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* WalStore.make({ path: dir, segmentBytes: 4096 })
        for (let i = 1; i <= 200; i++) {
          yield* nextTurn
          yield* store.logs.storeLogs(entries(i, i))
        }
        const files = segmentFiles(dir)
        assert.isAtLeast(files.length, 3)
        for (const sealed of files.slice(0, -1)) {
          const file = path.join(dir, sealed)
          assert.strictEqual(fs.statSync(file).size, dataEnd(file), `${sealed} kept zeros after its last batch`)
        }
        // Opened while this store still has zeros at its tail: what a crash leaves.
        const copy = yield* tempDir()
        for (const name of files) fs.copyFileSync(path.join(dir, name), path.join(copy, name))
        const reopened = yield* WalStore.make({ path: copy, segmentBytes: 4096 })
        assert.strictEqual(yield* reopened.logs.lastIndex, 200)
      }))
    }))

  it.scoped("a write with no room left for the zeros ahead of the tail is written without them", () =>
    Effect.gen(function*() {
      const { store, file } = yield* freshStore
      // The first write of zeros finds the disk full; the batch itself still fits.
      spyOnFs("writevSync").mockImplementationOnce(() => {
        throw fsError("ENOSPC", "no space left on device, write")
      })
      yield* store.logs.storeLogs(entries(1, 1))
      assert.strictEqual(fs.statSync(file).size, dataEnd(file), "zeros were left after the batch")
      yield* nextTurn
      yield* store.logs.storeLogs(entries(2, 2))
      assert.deepStrictEqual((yield* store.logs.getLogs(1, 2)).map((log) => log.index), [1, 2])
    }))

  it.scoped("a lone write whose caller is interrupted while head segments are removed still removes them all", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* WalStore.make({ path: dir, segmentBytes: 100 })
      const count = 1001
      for (let i = 1; i <= count; i++) yield* store.logs.storeLogs(entries(i, i))
      const files = () => segmentFiles(dir).length
      assert.isAbove(files(), 300)
      yield* nextTurn
      // A lone delete of everything frees every head segment; its caller is interrupted once removal has begun.
      const deleting = yield* Effect.fork(store.logs.deleteRange(1, count))
      let interruptedWith = 0
      for (let k = 0; k < 100 && interruptedWith === 0; k++) {
        yield* Effect.yieldNow()
        const now = files()
        if (now > 1 && now < count / 2) {
          interruptedWith = now
          yield* Fiber.interrupt(deleting)
        }
      }
      assert.isAbove(interruptedWith, 1, "the removal was not caught half-way")
      yield* Fiber.await(deleting)
      // The removal ran to its end (and its directory sync) though its caller was interrupted.
      assert.deepStrictEqual([files(), (yield* store.stats).segments], [1, 1], "head segments were left behind")
    }))

  it.scoped("a short write goes on from the first byte not written", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const file = path.join(dir, "short")
      const fd = fs.openSync(file, "w+")
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.closeSync(fd)))
      const real = fs.writevSync
      // Each call writes at most 3 bytes, as a write cut short by a signal would.
      spyOnFs("writevSync").mockImplementation(
        (fd: number, buffers: ReadonlyArray<NodeJS.ArrayBufferView>, position?: number | null) => {
          const first = (buffers as ReadonlyArray<Uint8Array>).find((buffer) => buffer.length > 0)!
          return real(fd, [first.subarray(0, 3)], position ?? undefined)
        }
      )
      const parts = ["abcd", "", "efghijk", "l"].map((text) => new TextEncoder().encode(text))
      WalSegment.writeAllSync(fd, parts, 2)
      assert.strictEqual(fs.readFileSync(file).subarray(2).toString(), "abcdefghijkl")
    }))
})
