/** The file snapshot store: durability layout, integrity checks on read, crash leftovers, reopen. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as FileSystem from "@effect/platform/FileSystem"
import type * as Path from "@effect/platform/Path"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as path from "node:path"
import * as Configuration from "../../src/Configuration.js"
import { StorageError } from "../../src/RaftError.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as FileSnapshotStore from "../../src/storage/FileSnapshotStore.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)
const configuration = Configuration.voters([["a", "mem://a"], ["b", "mem://b"], ["c", "mem://c"]])
const meta = (index: number, term = 1) => ({ index, term, configuration, configurationIndex: 1 })

/** `count` chunks of `size` bytes, each filled from its position, so any misplaced byte shows. */
const chunksOf = (count: number, size: number): Array<Uint8Array> =>
  Array.from({ length: count }, (_, i) => {
    const chunk = new Uint8Array(size)
    for (let j = 0; j < size; j++) chunk[j] = (i * 31 + j * 7) & 0xff
    return chunk
  })

const write = (store: SnapshotStore.SnapshotStore, index: number, chunks: ReadonlyArray<Uint8Array>, term = 1) =>
  Stream.run(Stream.fromIterable(chunks), store.create(meta(index, term)))

const read = (store: SnapshotStore.SnapshotStore, id: string) =>
  Effect.flatMap(store.open(id), ({ data }) => Stream.runCollect(data)).pipe(
    Effect.map((chunks) => Buffer.concat(Chunk.toReadonlyArray(chunks)))
  )

/** A fresh temporary directory, removed when the test's scope closes. */
const tempDir = Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "effect-raft-snap-" }))

/** Runs `effect` with its log messages collected into `into` (and not printed). */
const capturingLogs = (into: Array<string>) =>
  Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => into.push(String(message))))

const entries = (directory: string) => Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readDirectory(directory))

const scenario = <A, E>(name: string, body: () => Effect.Effect<A, E, FileSystem.FileSystem | Path.Path | Scope.Scope>) =>
  it.live(name, () => body().pipe(Effect.scoped, Effect.provide(platform)), 60_000)

describe("FileSnapshotStore.make", () => {
  scenario("a 12 MiB snapshot in 3,072 chunks reads back byte for byte, in chunks, with its checksum verified", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const chunks = chunksOf(3072, 4096)
      const created = yield* write(store, 5000, chunks, 7)
      assert.strictEqual(created.size, 3072 * 4096)
      const { data, meta: opened } = yield* store.open(created.id)
      assert.deepStrictEqual(opened, created)
      let pieces = 0
      const back = yield* Stream.runFold(data, [] as Array<Uint8Array>, (acc, chunk) => {
        pieces++
        acc.push(chunk)
        return acc
      })
      assert.isAbove(pieces, 1, "the data is streamed in more than one chunk")
      assert.isTrue(Buffer.concat(back).equals(Buffer.concat(chunks)), "bytes differ")
    }))

  scenario("the data goes to a temporary file as it streams, and the snapshot is invisible until the sink completes", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const halfway = yield* Deferred.make<void>()
      const proceed = yield* Deferred.make<void>()
      const stream = Stream.fromIterable(chunksOf(1024, 4096)).pipe(
        Stream.concat(Stream.drain(Stream.fromEffect(Effect.zipRight(Deferred.succeed(halfway, undefined), Deferred.await(proceed))))),
        Stream.concat(Stream.fromIterable(chunksOf(16, 4096)))
      )
      const fiber = yield* Effect.fork(Stream.run(stream, store.create(meta(10))))
      yield* Deferred.await(halfway)
      const names = yield* entries(dir)
      assert.strictEqual(names.length, 1)
      assert.match(names[0]!, /\.tmp$/)
      const size = Number((yield* fs.stat(path.join(dir, names[0]!, "data"))).size)
      // All but the last write buffer (256 KiB) of the 4 MiB streamed so far is already in the file.
      assert.isAtLeast(size, 4 * 1024 * 1024 - 256 * 1024)
      assert.deepStrictEqual(yield* store.list, [])
      yield* Deferred.succeed(proceed, undefined)
      const created = yield* Fiber.join(fiber)
      assert.deepStrictEqual(yield* entries(dir), [created.id])
      assert.deepStrictEqual((yield* entries(path.join(dir, created.id))).sort(), ["data", "meta.json"])
      assert.deepStrictEqual((yield* store.list).map((m) => m.id), [created.id])
    }))

  scenario("a failed or interrupted sink leaves no file behind", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const failing = Stream.concat(
        Stream.fromIterable(chunksOf(100, 4096)),
        Stream.fail(new StorageError({ operation: "test", reason: "producer failed" }))
      )
      const exit = yield* Effect.exit(Stream.run(failing, store.create(meta(1))))
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* entries(dir), [])

      const started = yield* Deferred.make<void>()
      const endless = Stream.fromIterable(chunksOf(100, 4096)).pipe(
        Stream.concat(Stream.drain(Stream.fromEffect(Deferred.succeed(started, undefined)))),
        Stream.concat(Stream.never)
      )
      const fiber = yield* Effect.fork(Stream.run(endless, store.create(meta(2))))
      yield* Deferred.await(started)
      assert.strictEqual((yield* entries(dir)).length, 1, "the interrupted write had started a temporary directory")
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* entries(dir), [])
    }))

  scenario("a flipped byte in the data fails the read with a StorageError once the stream is consumed", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const created = yield* write(store, 3, chunksOf(64, 4096))
      const file = path.join(dir, created.id, "data")
      const bytes = yield* fs.readFile(file)
      bytes[100_000] = bytes[100_000]! ^ 0x01
      yield* fs.writeFile(file, bytes)
      const error = yield* Effect.flip(read(store, created.id))
      assert.instanceOf(error, StorageError)
      assert.match(error.message, /checksum mismatch/)
    }))

  scenario("a truncated data file fails open with a StorageError, and so does one truncated after open", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const created = yield* write(store, 3, chunksOf(64, 4096))
      const file = path.join(dir, created.id, "data")
      const opened = yield* store.open(created.id)
      yield* fs.truncate(file, 1000)
      const late = yield* Effect.flip(Stream.runDrain(opened.data))
      assert.instanceOf(late, StorageError)
      assert.match(late.message, /truncated/)
      const early = yield* Effect.flip(store.open(created.id))
      assert.instanceOf(early, StorageError)
      assert.match(early.message, /truncated/)
    }))

  scenario("bytes appended to the data file fail the read with a StorageError", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const created = yield* write(store, 3, chunksOf(8, 1000))
      const opened = yield* store.open(created.id)
      yield* fs.writeFile(path.join(dir, created.id, "data"), new Uint8Array(10), { flag: "a" })
      const error = yield* Effect.flip(Stream.runDrain(opened.data))
      assert.instanceOf(error, StorageError)
      assert.match(error.message, /longer/)
    }))

  scenario("corrupt, truncated or unknown-version metadata fails open with a StorageError and list skips it", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir, { retain: 5 })
      const good = yield* write(store, 1, chunksOf(2, 10))
      const metaFile = (id: string) => path.join(dir, id, "meta.json")

      const flipped = yield* write(store, 2, chunksOf(2, 10))
      const text = yield* fs.readFileString(metaFile(flipped.id))
      yield* fs.writeFileString(metaFile(flipped.id), text.replace(`"index":2`, `"index":3`))

      const truncated = yield* write(store, 3, chunksOf(2, 10))
      const full = yield* fs.readFileString(metaFile(truncated.id))
      yield* fs.writeFileString(metaFile(truncated.id), full.slice(0, full.length - 5))

      // A well-formed file of a future format, with a valid checksum of its own.
      const future = yield* write(store, 4, chunksOf(2, 10))
      const body = (yield* fs.readFileString(metaFile(future.id))).split("\n")[1]!.replace(`"format":1`, `"format":2`)
      yield* fs.writeFileString(metaFile(future.id), `${createHash("sha256").update(body).digest("hex")}\n${body}`)

      const missing = yield* write(store, 5, chunksOf(2, 10))
      yield* fs.remove(metaFile(missing.id))

      for (const [id, pattern] of [
        [flipped.id, /checksum mismatch/],
        [truncated.id, /checksum mismatch/],
        [future.id, /unknown snapshot format version 2/],
        [missing.id, /no metadata/]
      ] as const) {
        const error = yield* Effect.flip(store.open(id))
        assert.instanceOf(error, StorageError, id)
        assert.match(error.message, pattern)
      }
      const warnings: Array<string> = []
      const listed = yield* store.list.pipe(Effect.provide(capturingLogs(warnings)))
      assert.deepStrictEqual(listed.map((m) => m.id), [good.id])
      for (const id of [flipped.id, truncated.id, future.id, missing.id]) {
        assert.isTrue(warnings.some((line) => line.includes(`skipping snapshot ${id}`)), `no warning for ${id}`)
      }
    }))

  scenario("reopening a store with a corrupt or missing meta.json fails with a StorageError naming that snapshot", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir, { retain: 3 })
      yield* write(store, 1, chunksOf(2, 10))
      const newest = yield* write(store, 2, chunksOf(2, 10))
      const metaFile = path.join(dir, newest.id, "meta.json")
      const text = yield* fs.readFileString(metaFile)
      yield* fs.writeFileString(metaFile, text.replace(`"index":2`, `"index":9`))
      const corrupt = yield* Effect.flip(FileSnapshotStore.make(dir, { retain: 3 }))
      assert.instanceOf(corrupt, StorageError)
      assert.strictEqual(corrupt.operation, "open snapshot store")
      assert.include(corrupt.reason, path.join(dir, newest.id))
      assert.match(corrupt.reason, /metadata checksum mismatch.*move that directory out of/)
      yield* fs.remove(metaFile)
      const missing = yield* Effect.flip(FileSnapshotStore.make(dir, { retain: 3 }))
      assert.match(missing.reason, /has no metadata file/)
      // Moved aside, as the message says: the store opens on the older snapshot.
      yield* fs.rename(path.join(dir, newest.id), path.join(path.dirname(dir), `${newest.id}-moved-${path.basename(dir)}`))
      const reopened = yield* FileSnapshotStore.make(dir, { retain: 3 })
      assert.lengthOf(yield* reopened.list, 1)
      yield* fs.remove(path.join(path.dirname(dir), `${newest.id}-moved-${path.basename(dir)}`), { recursive: true })
    }))

  scenario("SnapshotStore.verify answers the metadata of intact data and fails with a StorageError on a flipped byte", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const created = yield* write(store, 4, chunksOf(64, 1024))
      assert.deepStrictEqual(yield* SnapshotStore.verify(store, created.id), created)
      const dataFile = path.join(dir, created.id, "data")
      const bytes = yield* fs.readFile(dataFile)
      bytes[40_000] = bytes[40_000]! ^ 0x01
      yield* fs.writeFile(dataFile, bytes)
      const error = yield* Effect.flip(SnapshotStore.verify(store, created.id))
      assert.instanceOf(error, StorageError)
      assert.match(error.message, /data checksum mismatch/)
    }))

  scenario("delete removes a snapshot's directory from disk and ignores ids that are not snapshot ids", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir, { retain: 3 })
      const kept = yield* write(store, 1, chunksOf(1, 10))
      const dropped = yield* write(store, 2, chunksOf(1, 10))
      yield* store.delete(dropped.id)
      yield* store.delete("..")
      assert.deepStrictEqual(yield* entries(dir), [kept.id])
    }))

  scenario("a reopened store lists the same snapshots in the same order and its next id is greater", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const first = yield* FileSnapshotStore.make(dir, { retain: 3 })
      const a = yield* write(first, 10, chunksOf(3, 100), 1)
      const b = yield* write(first, 20, chunksOf(3, 100), 2)
      const before = yield* first.list
      const second = yield* FileSnapshotStore.make(dir, { retain: 3 })
      assert.deepStrictEqual(yield* second.list, before)
      assert.deepStrictEqual(before.map((m) => m.id), [b.id, a.id])
      assert.isTrue((yield* read(second, a.id)).equals(Buffer.concat(chunksOf(3, 100))))
      // Same term and index as an existing snapshot: the id must still be new and greater.
      const c = yield* write(second, 20, chunksOf(1, 5), 2)
      assert.isTrue(c.id > b.id, `${c.id} > ${b.id}`)
      assert.deepStrictEqual((yield* second.list).map((m) => m.id), [c.id, b.id, a.id])
    }))

  scenario("retain deletes the directories of older snapshots from disk", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir, { retain: 2 })
      const created = []
      for (let i = 1; i <= 4; i++) created.push(yield* write(store, i, chunksOf(1, 10)))
      assert.deepStrictEqual((yield* entries(dir)).sort(), [created[2]!.id, created[3]!.id])
    }))

  scenario("a deletion cut short (by a crash, say) leaves nothing that stops the store from opening again", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      // A file system whose recursive removal stops after the first file, as a process killed during `rm -r`.
      const cutShort: FileSystem.FileSystem = {
        ...fs,
        remove: (target, options) =>
          options?.recursive === true
            ? Effect.zipRight(
              fs.remove(path.join(target, "meta.json"), { force: true }),
              fs.remove(path.join(dir, "no such file"))
            )
            : fs.remove(target, options)
      }
      const store = yield* FileSnapshotStore.make(dir, { retain: 1 }).pipe(
        Effect.provideService(FileSystem.FileSystem, cutShort),
        Effect.provide(capturingLogs([]))
      )
      const first = yield* write(store, 1, chunksOf(1, 10))
      const second = yield* write(store, 2, chunksOf(1, 10)).pipe(Effect.provide(capturingLogs([])))
      assert.isTrue(Exit.isFailure(yield* Effect.exit(store.delete(second.id))))
      assert.notInclude(yield* entries(dir), first.id)
      const reopened = yield* FileSnapshotStore.make(dir).pipe(Effect.provide(capturingLogs([])))
      assert.deepStrictEqual(yield* reopened.list, [])
    }))

  scenario("temporary directories a crash left behind are removed at open and their ids are not reused", () =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const dir = yield* tempDir
      const store = yield* FileSnapshotStore.make(dir)
      const kept = yield* write(store, 7, chunksOf(1, 10))
      const leftover = path.join(dir, "000000000009-2-40.tmp")
      yield* fs.makeDirectory(leftover)
      yield* fs.writeFile(path.join(leftover, "data"), new Uint8Array(100))
      const warnings: Array<string> = []
      const reopened = yield* FileSnapshotStore.make(dir).pipe(Effect.provide(capturingLogs(warnings)))
      assert.isTrue(warnings.some((line) => line.includes("000000000009-2-40.tmp")))
      assert.deepStrictEqual(yield* entries(dir), [kept.id])
      const next = yield* write(reopened, 50, chunksOf(1, 10), 2)
      assert.isTrue(next.id > "000000000009-2-40", next.id)
    }))

  scenario("a retain below 1 is refused with a StorageError", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const error = yield* Effect.flip(FileSnapshotStore.make(dir, { retain: 0 }))
      assert.instanceOf(error, StorageError)
    }))

  scenario("FileSnapshotStore.layer provides a working store on Node's file system", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const created = yield* Effect.flatMap(SnapshotStore.SnapshotStore, (store) => write(store, 1, chunksOf(2, 10))).pipe(
        Effect.provide(FileSnapshotStore.layer(path.join(dir, "nested", "snapshots")))
      )
      const again = yield* Effect.flatMap(SnapshotStore.SnapshotStore, (store) => store.list).pipe(
        Effect.provide(FileSnapshotStore.layer(path.join(dir, "nested", "snapshots")))
      )
      assert.deepStrictEqual(again.map((m) => m.id), [created.id])
    }))
})
