import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as StableStore from "../src/StableStore.js"

describe("StableStore.makeMemory", () => {
  it.effect("get of a missing key is none", () =>
    Effect.gen(function*() {
      const store = StableStore.makeMemory()
      assert.isTrue(Option.isNone(yield* store.get("CurrentTerm")))
    }))

  it.effect("set then get returns the bytes", () =>
    Effect.gen(function*() {
      const store = StableStore.makeMemory()
      yield* store.set("LastVoteCand", new Uint8Array([1, 2, 3]))
      const value = yield* store.get("LastVoteCand")
      assert.isTrue(Option.isSome(value))
      assert.deepStrictEqual(Option.getOrThrow(value), new Uint8Array([1, 2, 3]))
      yield* store.set("LastVoteCand", new Uint8Array([9]))
      assert.deepStrictEqual(Option.getOrThrow(yield* store.get("LastVoteCand")), new Uint8Array([9]))
    }))

  it.effect("set stores a copy: mutating the caller's buffer afterwards changes nothing", () =>
    Effect.gen(function*() {
      const store = StableStore.makeMemory()
      const buffer = new Uint8Array([1, 2, 3])
      yield* store.set("k", buffer)
      buffer[0] = 99
      assert.deepStrictEqual(Option.getOrThrow(yield* store.get("k")), new Uint8Array([1, 2, 3]))
    }))

  it.effect("getUint64 of a missing key is 0, and setUint64 round-trips", () =>
    Effect.gen(function*() {
      const store = StableStore.makeMemory()
      assert.strictEqual(yield* store.getUint64("CurrentTerm"), 0)
      yield* store.setUint64("CurrentTerm", 42)
      assert.strictEqual(yield* store.getUint64("CurrentTerm"), 42)
      assert.strictEqual(yield* store.getUint64("LastVoteTerm"), 0)
    }))
})

describe("StableStore.makeMemory: isolation", () => {
  it.effect("a value read cannot be changed behind the store's back", () =>
    Effect.gen(function*() {
      const store = StableStore.makeMemory()
      yield* store.set("k", new Uint8Array([1, 2, 3]))
      const read = yield* store.get("k")
      if (Option.isSome(read)) read.value[0] = 9
      const again = yield* store.get("k")
      assert.deepStrictEqual(Option.map(again, (v) => [...v]), Option.some([1, 2, 3]))
    }))
})
