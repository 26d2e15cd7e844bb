import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Configuration from "../../src/Configuration.js"
import * as Log from "../../src/Log.js"
import * as LogStore from "../../src/LogStore.js"
import { StorageError } from "../../src/RaftError.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as StableStore from "../../src/StableStore.js"
import * as FaultyStores from "../../src/testing/FaultyStores.js"

const entry = (index: number) => Log.make(index, 1, "Command", new Uint8Array([index]))

describe("FaultyStores", () => {
  it.effect("failing(stores, 2): the next two writes fail with a StorageError and store nothing, then writes go through", () =>
    Effect.gen(function*() {
      const logs = LogStore.makeMemory()
      const stable = StableStore.makeMemory()
      const faulty = yield* FaultyStores.failing({ logs, stable }, 2)
      const first = yield* Effect.flip(faulty.logs.storeLogs([entry(1)]))
      assert.instanceOf(first, StorageError)
      assert.strictEqual(first.message, "storage storeLogs failed: injected write failure")
      const second = yield* Effect.flip(faulty.stable.setUint64("CurrentTerm", 4))
      assert.strictEqual(second.operation, "setUint64")
      assert.strictEqual(yield* logs.lastIndex, 0)
      assert.strictEqual(yield* stable.getUint64("CurrentTerm"), 0)
      yield* faulty.logs.storeLogs([entry(1), entry(2)])
      yield* faulty.stable.setUint64("CurrentTerm", 4)
      assert.strictEqual(yield* faulty.logs.lastIndex, 2)
      assert.strictEqual(yield* faulty.stable.getUint64("CurrentTerm"), 4)
      assert.deepStrictEqual(yield* faulty.faults.failed, ["storeLogs", "setUint64"])
      assert.strictEqual(yield* faulty.faults.armed, 0)
    }))

  it.effect("reads go through while armed, and failNext re-arms (0 disarms)", () =>
    Effect.gen(function*() {
      const faulty = yield* FaultyStores.failing({ logs: LogStore.makeMemory(), stable: StableStore.makeMemory() }, 0)
      yield* faulty.logs.storeLogs([entry(1), entry(2), entry(3)])
      yield* faulty.faults.failNext(5)
      assert.strictEqual((yield* faulty.logs.getLogs(1, 3)).length, 3)
      assert.strictEqual(yield* faulty.stable.getUint64("x"), 0)
      assert.instanceOf(yield* Effect.flip(faulty.logs.deleteRange(1, 1)), StorageError)
      assert.strictEqual(yield* faulty.logs.firstIndex, 1)
      yield* faulty.faults.failNext(0)
      yield* faulty.logs.deleteRange(1, 1)
      assert.strictEqual(yield* faulty.logs.firstIndex, 2)
    }))

  it.effect("layer wraps the stores in context; an armed snapshot create fails and leaves nothing", () =>
    Effect.gen(function*() {
      const faults = yield* FaultyStores.makeWriteFaults(1)
      const stores = Layer.mergeAll(LogStore.layerMemory, StableStore.layerMemory, SnapshotStore.layerMemory)
      yield* Effect.gen(function*() {
        const snapshots = yield* SnapshotStore.SnapshotStore
        const meta = { index: 1, term: 1, configuration: Configuration.voters([["a", "mem://a"]]), configurationIndex: 1 }
        const failed = yield* Effect.flip(Stream.run(Stream.make(new Uint8Array([1])), snapshots.create(meta)))
        assert.strictEqual(failed.operation, "create snapshot")
        assert.lengthOf(yield* snapshots.list, 0)
        yield* Stream.run(Stream.make(new Uint8Array([1])), snapshots.create(meta))
        assert.lengthOf(yield* snapshots.list, 1)
        const logs = yield* LogStore.LogStore
        yield* logs.storeLogs([entry(1)])
        assert.strictEqual(yield* logs.lastIndex, 1)
      }).pipe(Effect.provide(FaultyStores.layer(faults).pipe(Layer.provide(stores))))
    }))
})
