/**
 * A conformance suite for `SnapshotStore` implementations: the behaviour the
 * node relies on, as named checks any store can run against itself, with no
 * test framework attached. Each check is an `Effect` that fails with a
 * `ConformanceFailure` (or the store's own error) when the store misbehaves:
 *
 * ```ts
 * for (const check of SnapshotStoreConformance.snapshotStore(({ retain }) => Effect.sync(() => SnapshotStore.makeMemory(retain)))) {
 *   it.effect(check.name, () => check.run)
 * }
 * ```
 */
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../Configuration.js"
import { type SnapshotNotFound, StorageError } from "../RaftError.js"
import type { SnapshotMeta, SnapshotStore } from "../SnapshotStore.js"

/** A store broke the property a check names; `reason` says how. */
export class ConformanceFailure extends Data.TaggedError("ConformanceFailure")<{
  readonly check: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.check}: ${this.reason}`
  }
}

/** One named property and the effect that checks it. */
export interface Check<E, R> {
  readonly name: string
  readonly run: Effect.Effect<void, ConformanceFailure | StorageError | SnapshotNotFound | E, R>
}

const configuration: Configuration.Configuration = {
  servers: [
    { id: "a", address: "mem://a", suffrage: "Voter" },
    { id: "b", address: "mem://b", suffrage: "Voter" },
    { id: "c", address: "mem://c", suffrage: "Nonvoter" }
  ]
}
const metaOf = (index: number, term = 1) => ({ index, term, configuration, configurationIndex: 3 })

/** Deterministic bytes: `count` chunks of varied sizes (empty ones included), filled from `seed`. */
const pattern = (seed: number, count: number, maxChunk: number): Array<Uint8Array> => {
  let x = seed >>> 0 || 1
  const next = () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < count; i++) {
    const chunk = new Uint8Array(i % 17 === 0 ? 0 : next() % maxChunk)
    for (let j = 0; j < chunk.length; j++) chunk[j] = next() & 0xff
    chunks.push(chunk)
  }
  return chunks
}

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0))
  let at = 0
  for (const chunk of chunks) {
    out.set(chunk, at)
    at += chunk.length
  }
  return out
}

const sameBytes = (a: Uint8Array, b: Uint8Array): number | undefined => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? undefined : n
}

/** Writes `chunks` as a snapshot, one stream chunk each. */
const write = (store: SnapshotStore, index: number, chunks: ReadonlyArray<Uint8Array>, term = 1) =>
  Stream.run(Stream.fromIterable(chunks).pipe(Stream.rechunk(1)), store.create(metaOf(index, term)))

/** The whole data of snapshot `id`. */
const read = (store: SnapshotStore, id: string) =>
  Effect.flatMap(store.open(id), ({ data }) => Effect.map(Stream.runCollect(data), (c) => concat(Chunk.toReadonlyArray(c))))

/**
 * The checks, each on a fresh store from `make`. `make` receives how many snapshots the store must retain
 * (1 to 3); a scope it uses (e.g. for a temporary directory) is closed when the check ends.
 */
export const snapshotStore = <E, R>(
  make: (options: { readonly retain: number }) => Effect.Effect<SnapshotStore, E, R>
): ReadonlyArray<Check<E, Exclude<R, Scope.Scope>>> => {
  const check = (
    name: string,
    body: (
      fail: (reason: string) => ConformanceFailure
    ) => Effect.Effect<void, ConformanceFailure | StorageError | SnapshotNotFound | E, R | Scope.Scope>
  ): Check<E, Exclude<R, Scope.Scope>> => ({
    name,
    run: Effect.scoped(body((reason) => new ConformanceFailure({ check: name, reason })))
  })
  const expect = (condition: boolean, failure: ConformanceFailure) => condition ? Effect.void : Effect.fail(failure)
  const ids = (store: SnapshotStore) => Effect.map(store.list, (list) => list.map((meta) => meta.id))

  return [
    check("a snapshot streamed in many chunks reads back byte for byte, with the metadata create returned", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        if ((yield* store.list).length !== 0) return yield* fail("a fresh store lists snapshots")
        const chunks = pattern(7, 600, 4096)
        const bytes = concat(chunks)
        const created = yield* write(store, 120, chunks, 4)
        const expected: Omit<SnapshotMeta, "id"> = { ...metaOf(120, 4), size: bytes.length }
        for (const key of ["index", "term", "configurationIndex", "size"] as const) {
          yield* expect(created[key] === expected[key], fail(`create returned ${key} ${created[key]}, not ${expected[key]}`))
        }
        yield* expect(
          Configuration.equals(created.configuration, configuration),
          fail("create returned a different configuration")
        )
        const listed = yield* store.list
        yield* expect(listed.length === 1 && listed[0]!.id === created.id, fail(`list is ${JSON.stringify(listed)}`))
        yield* expect(
          Configuration.equals(listed[0]!.configuration, configuration) && listed[0]!.size === bytes.length,
          fail("list's metadata differs from create's")
        )
        const opened = yield* store.open(created.id)
        yield* expect(opened.meta.index === 120 && opened.meta.term === 4, fail("open's metadata differs"))
        const back = yield* read(store, created.id)
        const at = sameBytes(back, bytes)
        yield* expect(at === undefined, fail(`data differs at byte ${at} (read ${back.length} of ${bytes.length})`))
      })),

    check("an empty stream makes a snapshot of size 0 that reads back empty", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        const created = yield* write(store, 1, [])
        yield* expect(created.size === 0, fail(`size ${created.size}`))
        yield* expect((yield* read(store, created.id)).length === 0, fail("data is not empty"))
      })),

    check("a snapshot can be read twice, and by two readers at once", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        const chunks = pattern(11, 50, 2048)
        const created = yield* write(store, 5, chunks)
        const [a, b] = yield* Effect.all([read(store, created.id), read(store, created.id)], { concurrency: 2 })
        const c = yield* read(store, created.id)
        const bytes = concat(chunks)
        for (const copy of [a, b, c]) yield* expect(sameBytes(copy, bytes) === undefined, fail("a reading differs"))
      })),

    check("list is newest first and ids grow in creation order, across terms 9 → 10 and a repeated index", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 3 })
        const created: Array<SnapshotMeta> = []
        for (const [index, term] of [[99, 9], [100, 10], [100, 10]] as const) {
          created.push(yield* write(store, index, [new Uint8Array([index & 0xff])], term))
        }
        const order = created.map((meta) => meta.id)
        yield* expect(new Set(order).size === order.length, fail(`ids repeat: ${order.join(", ")}`))
        for (let i = 1; i < order.length; i++) {
          yield* expect(order[i]! > order[i - 1]!, fail(`${order[i]} was created after ${order[i - 1]} but is not greater`))
        }
        const listed = yield* ids(store)
        yield* expect(
          listed.join() === [...order].reverse().join(),
          fail(`list is ${listed.join(", ")}, newest first would be ${[...order].reverse().join(", ")}`)
        )
      })),

    check("retain keeps the newest N; the dropped ones cannot be opened", (fail) =>
      Effect.gen(function*() {
        for (const retain of [1, 2, 3]) {
          const store = yield* make({ retain })
          const created: Array<SnapshotMeta> = []
          for (let i = 1; i <= retain + 2; i++) created.push(yield* write(store, i * 10, [new Uint8Array([i])]))
          const kept = created.slice(-retain).reverse().map((meta) => meta.id)
          const listed = yield* ids(store)
          yield* expect(
            listed.join() === kept.join(),
            fail(`retain ${retain}: list is ${listed.join(", ")}, not ${kept.join(", ")}`)
          )
          for (const meta of created.slice(-retain)) {
            const back = yield* read(store, meta.id)
            yield* expect(back.length === 1 && back[0] === meta.index / 10, fail(`retain ${retain}: ${meta.id} reads wrong`))
          }
          for (const meta of created.slice(0, -retain)) {
            const error = yield* Effect.flip(store.open(meta.id)).pipe(
              Effect.mapError(() => fail(`retain ${retain}: dropped ${meta.id} still opens`))
            )
            yield* expect(error._tag === "SnapshotNotFound", fail(`retain ${retain}: dropped ${meta.id}: ${error._tag}`))
          }
        }
      })),

    check("open of an unknown id fails with SnapshotNotFound", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        const created = yield* write(store, 1, [new Uint8Array([1])])
        for (const id of ["no-such-id", `${created.id}0`, "../../etc/passwd", ""]) {
          const error = yield* Effect.flip(store.open(id)).pipe(
            Effect.mapError(() => fail(`open(${JSON.stringify(id)}) succeeded`))
          )
          yield* expect(error._tag === "SnapshotNotFound", fail(`open(${JSON.stringify(id)}) failed with ${error._tag}`))
        }
      })),

    check("delete removes one snapshot, leaves the others, and ignores an unknown id", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 3 })
        const older = yield* write(store, 1, [new Uint8Array([1])])
        const newer = yield* write(store, 2, [new Uint8Array([2])])
        yield* store.delete(newer.id)
        yield* store.delete("no-such-id")
        const listed = yield* ids(store)
        yield* expect(listed.join() === older.id, fail(`list after delete is ${listed.join(", ")}`))
        const error = yield* Effect.flip(store.open(newer.id)).pipe(
          Effect.mapError(() => fail(`deleted ${newer.id} still opens`))
        )
        yield* expect(error._tag === "SnapshotNotFound", fail(`open of the deleted snapshot: ${error._tag}`))
        yield* expect((yield* read(store, older.id))[0] === 1, fail("the other snapshot changed"))
        const next = yield* write(store, 3, [new Uint8Array([3])])
        yield* expect(next.id > newer.id, fail(`${next.id} after a deleted ${newer.id} is not greater`))
      })),

    check("a stream that fails leaves nothing visible and earlier snapshots intact", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        const kept = yield* write(store, 3, [new Uint8Array([9, 9])])
        const failing = Stream.concat(
          Stream.fromIterable(pattern(3, 20, 1024)),
          Stream.fail(new StorageError({ operation: "test", reason: "the producer failed" }))
        )
        const exit = yield* Effect.exit(Stream.run(failing, store.create(metaOf(5))))
        yield* expect(Exit.isFailure(exit), fail("the sink succeeded although its stream failed"))
        const listed = yield* ids(store)
        yield* expect(listed.join() === kept.id, fail(`list after the failure is ${listed.join(", ")}`))
        const back = yield* read(store, kept.id)
        yield* expect(back.length === 2 && back[0] === 9, fail("the earlier snapshot changed"))
        // The store still works after a failed write.
        const next = yield* write(store, 6, [new Uint8Array([6])])
        yield* expect(
          (yield* ids(store)).join() === [next.id, kept.id].join(),
          fail("a write after the failure is not listed")
        )
      })),

    check("an interrupted sink leaves nothing visible and earlier snapshots intact", (fail) =>
      Effect.gen(function*() {
        const store = yield* make({ retain: 2 })
        const kept = yield* write(store, 3, [new Uint8Array([7])])
        const consumed = yield* Deferred.make<void>()
        // The stream signals once the sink has taken its first chunks, then never ends.
        const endless = Stream.fromIterable(pattern(5, 30, 4096)).pipe(
          Stream.concat(Stream.drain(Stream.fromEffect(Deferred.succeed(consumed, undefined)))),
          Stream.concat(Stream.never)
        )
        const fiber = yield* Effect.fork(Stream.run(endless, store.create(metaOf(5))))
        yield* Deferred.await(consumed)
        yield* Fiber.interrupt(fiber)
        const listed = yield* ids(store)
        yield* expect(listed.join() === kept.id, fail(`list after the interruption is ${listed.join(", ")}`))
        yield* expect((yield* read(store, kept.id))[0] === 7, fail("the earlier snapshot changed"))
      }))
  ]
}
