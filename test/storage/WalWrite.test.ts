import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
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
const spyOnFs = <K extends "writev" | "writevSync" | "fdatasync">(name: K) => {
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

describe("WalStore writes", () => {
  it.scoped("a batch takes one trip through libuv's thread pool, its fdatasync: the write is made on the calling thread", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const store = yield* WalStore.make({ path: dir })
      const writev = spyOnFs("writev")
      const fdatasync = spyOnFs("fdatasync")
      yield* store.logs.storeLogs(entries(1, 3))
      yield* store.logs.storeLogs(entries(4, 4))
      assert.strictEqual(writev.mock.calls.length, 0, "a batch was written through the thread pool")
      assert.strictEqual(fdatasync.mock.calls.length, 2)
      assert.deepStrictEqual((yield* store.logs.getLogs(1, 4)).map((log) => log.index), [1, 2, 3, 4])
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
      yield* WalSegment.writeAllNow("test", file, fd, parts, 2)
      assert.strictEqual(fs.readFileSync(file).subarray(2).toString(), "abcdefghijkl")
    }))
})
