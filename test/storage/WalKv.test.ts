import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import * as KvNode from "../../src/kv/KvNode.js"
import { LogStore } from "../../src/LogStore.js"
import { tempDir } from "./temp.js"

/** Builds the production stores and transport of `kv node` (on loopback, port 0) over `dataDir`. */
const build = (dataDir: string, store: KvNode.StoreKind | undefined) =>
  Layer.build(KvNode.durable({ dataDir, raftAddress: "127.0.0.1:0", tls: "plaintext", store }))

const entry = { index: 1, term: 1, type: "Command" as const, data: new Uint8Array([1]) }

/** The files of `<dataDir>/raft` that say which store it is. */
const kindOf = (dataDir: string) => {
  const files = fs.readdirSync(path.join(dataDir, "raft"))
  return [files.some((name) => name.endsWith(".wal")), files.includes("data.mdb")]
}

describe("kv node --store", () => {
  it.scoped("without --store a new data dir gets the WAL, and a data dir holding LMDB stays on LMDB", () =>
    Effect.gen(function*() {
      const fresh = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(fresh, undefined), (context) => Context.get(context, LogStore).storeLogs([entry])))
      assert.deepStrictEqual(kindOf(fresh), [true, false], "a new data dir did not get the WAL")
      const older = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(older, "lmdb"), (context) => Context.get(context, LogStore).storeLogs([entry])))
      const reopened = yield* Effect.scoped(Effect.flatMap(build(older, undefined), (context) => Context.get(context, LogStore).lastIndex))
      assert.strictEqual(reopened, 1, "an LMDB data dir was not reopened as LMDB")
      assert.deepStrictEqual(kindOf(older), [false, true])
    }))


  it.scoped("wal keeps the log in segment files under <data-dir>/raft", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(dataDir, "wal"), (context) => Context.get(context, LogStore).storeLogs([entry])))
      const files = fs.readdirSync(path.join(dataDir, "raft"))
      assert.isTrue(files.some((name) => name.endsWith(".wal")), `no segment in ${files.join(", ")}`)
      assert.isFalse(files.includes("data.mdb"))
    }))

  it.scoped("a data dir holding the other store's files fails to open, naming the option to use", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(dataDir, "lmdb"), (context) => Context.get(context, LogStore).storeLogs([entry])))
      const asWal = yield* Effect.flip(Effect.scoped(build(dataDir, "wal")))
      assert.strictEqual(asWal._tag, "StorageError")
      assert.include(asWal.message, "holds an LMDB store: start with --store lmdb")
      const other = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(other, "wal"), (context) => Context.get(context, LogStore).storeLogs([entry])))
      const asLmdb = yield* Effect.flip(Effect.scoped(build(other, "lmdb")))
      assert.include(asLmdb.message, "holds a WAL store: start with --store wal")
    }))

  it.scopedLive("a node refused for the other store's files starts nothing else: no snapshot directory appears after", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir()
      yield* Effect.scoped(Effect.flatMap(build(dataDir, "wal"), (context) => Context.get(context, LogStore).storeLogs([entry])))
      fs.rmSync(path.join(dataDir, "snapshots"), { recursive: true })
      yield* Effect.flip(Effect.scoped(build(dataDir, "lmdb")))
      // An operation the refused start began would finish in the background after it failed.
      yield* Effect.sleep("50 millis")
      assert.isFalse(fs.existsSync(path.join(dataDir, "snapshots")), "the refused start created the snapshot directory")
    }))
})
