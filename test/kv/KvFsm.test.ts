import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Fsm from "../../src/Fsm.js"
import * as KvFsm from "../../src/kv/KvFsm.js"
import * as Log from "../../src/Log.js"

let nextIndex = 1
const entry = (command: KvFsm.Command): Log.Log =>
  Log.make(nextIndex++, 1, "Command", Either.getOrThrow(KvFsm.machine.encodeCommand(command)))

const applyAll = (kv: KvFsm.KvFsm, commands: ReadonlyArray<KvFsm.Command>) =>
  Effect.flatMap(kv.fsm.applyBatch(commands.map(entry)), (responses) => Effect.forEach(responses, KvFsm.machine.readResponse))

const valueOf = (kv: KvFsm.KvFsm, key: string) => Option.getOrUndefined(HashMap.get(kv.current().entries, key))

/** Splits a stream's bytes into pieces of `size` bytes, cutting lines and multi-byte characters anywhere. */
const rechunk = (size: number) => (stream: Stream.Stream<Uint8Array>): Stream.Stream<Uint8Array> =>
  Stream.unwrap(Effect.map(Fsm.collect(stream), (bytes) => {
    const pieces: Array<Uint8Array> = []
    for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size))
    return Stream.fromIterable(pieces)
  }))

describe("KvFsm", () => {
  it.effect("put, delete and compare-and-set answer what they did", () =>
    Effect.gen(function*() {
      const kv = KvFsm.make()
      const responses = yield* applyAll(kv, [
        { _tag: "Put", key: "a", value: "1" },
        { _tag: "Cas", key: "a", expected: "2", value: "3" },
        { _tag: "Cas", key: "a", expected: "1", value: "3" },
        { _tag: "Cas", key: "b", value: "new" },
        { _tag: "Cas", key: "b", value: "again" },
        { _tag: "Delete", key: "a" },
        { _tag: "Delete", key: "a" }
      ])
      assert.deepStrictEqual(responses.map((r) => r._tag), [
        "Written",
        "CasFailed",
        "Swapped",
        "Swapped",
        "CasFailed",
        "Deleted",
        "Deleted"
      ])
      assert.deepStrictEqual(responses[1], { _tag: "CasFailed", current: "1" })
      assert.deepStrictEqual(responses[4], { _tag: "CasFailed", current: "new" })
      assert.deepStrictEqual(responses[5], { _tag: "Deleted", existed: true })
      assert.deepStrictEqual(responses[6], { _tag: "Deleted", existed: false })
      assert.strictEqual(valueOf(kv, "a"), undefined)
      assert.strictEqual(valueOf(kv, "b"), "new")
      assert.strictEqual(kv.current().index, nextIndex - 1)
    }))

  it.effect("a malformed command is rejected and changes no key", () =>
    Effect.gen(function*() {
      const kv = KvFsm.make()
      yield* applyAll(kv, [{ _tag: "Put", key: "a", value: "1" }])
      const bad = Log.make(nextIndex++, 1, "Command", new TextEncoder().encode(`{"_tag":"Put","key":"a"}`))
      const error = yield* Effect.flip(Effect.flatMap(kv.fsm.apply(bad), KvFsm.machine.readResponse))
      assert.strictEqual(error._tag, "CommandRejected")
      assert.strictEqual(valueOf(kv, "a"), "1")
      assert.strictEqual(kv.current().index, bad.index)
    }))

  it.effect("the member directory follows Register and Unregister", () =>
    Effect.gen(function*() {
      const kv = KvFsm.make()
      yield* applyAll(kv, [
        { _tag: "Register", id: "n1", http: "127.0.0.1:8001" },
        { _tag: "Register", id: "n2", http: "127.0.0.1:8002" },
        { _tag: "Register", id: "n1", http: "127.0.0.1:9001" },
        { _tag: "Unregister", id: "n2" }
      ])
      assert.deepStrictEqual(Array.from(kv.current().members), [["n1", "127.0.0.1:9001"]])
    }))

  it.effect("a snapshot restores the same map and directory, streamed in many chunks", () =>
    Effect.gen(function*() {
      const source = KvFsm.make()
      const commands: Array<KvFsm.Command> = []
      for (let i = 0; i < 5000; i++) commands.push({ _tag: "Put", key: `key-${i}`, value: `välue ✓ ${i}\n"quoted"` })
      commands.push({ _tag: "Register", id: "n1", http: "127.0.0.1:8001" })
      yield* applyAll(source, commands)

      const snapshot = yield* source.fsm.snapshot
      const chunks = Chunk.toReadonlyArray(yield* Stream.runCollect(snapshot.data))
      yield* snapshot.release
      assert.isAbove(chunks.length, 3, "the map is streamed in several chunks, not one buffer")
      for (const chunk of chunks) assert.isAtMost(chunk.length, KvFsm.snapshotChunkBytes)

      const target = KvFsm.make()
      yield* applyAll(target, [{ _tag: "Put", key: "stale", value: "x" }])
      // Cut into 7-byte pieces: lines and multi-byte characters straddle chunk boundaries.
      yield* target.fsm.restore(rechunk(7)(Stream.fromIterable(chunks)))
      assert.isTrue(HashMap.size(target.current().entries) === 5000)
      assert.strictEqual(valueOf(target, "stale"), undefined)
      assert.strictEqual(valueOf(target, "key-4999"), `välue ✓ 4999\n"quoted"`)
      assert.deepStrictEqual(Array.from(target.current().members), [["n1", "127.0.0.1:8001"]])
      assert.strictEqual(target.current().index, source.current().index)
    }))

  it.effect("a snapshot holds the state when it was taken, not later applies", () =>
    Effect.gen(function*() {
      const kv = KvFsm.make()
      yield* applyAll(kv, [{ _tag: "Put", key: "a", value: "before" }])
      const snapshot = yield* kv.fsm.snapshot
      yield* applyAll(kv, [{ _tag: "Put", key: "a", value: "after" }, { _tag: "Put", key: "b", value: "new" }])
      const restored = yield* KvFsm.readSnapshot(snapshot.data)
      assert.deepStrictEqual(Array.from(restored.entries), [["a", "before"]])
    }))

  it.effect("a truncated or foreign snapshot fails to restore and leaves the state as it was", () =>
    Effect.gen(function*() {
      const source = KvFsm.make()
      const commands: Array<KvFsm.Command> = []
      for (let i = 0; i < 2000; i++) commands.push({ _tag: "Put", key: `k${i}`, value: `v${i}` })
      yield* applyAll(source, commands)
      const bytes = yield* Fsm.collect(KvFsm.snapshotStream(source.current(), 1024))

      const target = KvFsm.make()
      yield* applyAll(target, [{ _tag: "Put", key: "kept", value: "yes" }])
      const cut = bytes.subarray(0, Math.floor(bytes.length / 2))
      const truncated = yield* Effect.exit(target.fsm.restore(Stream.make(cut)))
      assert.isTrue(Exit.isFailure(truncated))
      const lastLineDropped = bytes.subarray(0, bytes.lastIndexOf(10, bytes.length - 2) + 1)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(target.fsm.restore(Stream.make(lastLineDropped)))))
      const foreign = new TextEncoder().encode(`{"format":"effect-raft/kv","version":99,"index":1}\n{"end":0}\n`)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(target.fsm.restore(Stream.make(foreign)))))
      assert.isTrue(Exit.isFailure(yield* Effect.exit(target.fsm.restore(Stream.empty))))
      assert.strictEqual(valueOf(target, "kept"), "yes")
      assert.strictEqual(HashMap.size(target.current().entries), 1)
    }))

  describe("commands in the log, decoded and encoded without the Schema", () => {
    const json = Schema.parseJson(KvFsm.Command)
    const bySchema = Schema.decodeUnknownEither(json)
    const encodeBySchema = Schema.encodeEither(json)
    const utf8 = new TextEncoder()
    const text = FastCheck.oneof(FastCheck.string({ maxLength: 6 }), FastCheck.constantFrom("", "a", "k\"\\\n✓"))
    const odd = FastCheck.oneof(FastCheck.integer(), FastCheck.boolean(), FastCheck.constant(null), FastCheck.array(text, { maxLength: 2 }))
    const field = FastCheck.oneof({ arbitrary: text, weight: 6 }, { arbitrary: odd, weight: 1 })
    const tag = FastCheck.oneof(
      { arbitrary: FastCheck.constantFrom("Put", "PutMany", "Delete", "Cas", "Register", "Unregister"), weight: 8 },
      { arbitrary: FastCheck.oneof(FastCheck.constantFrom("put", "Get", "", "Put "), odd), weight: 1 }
    )
    const pair = FastCheck.oneof(
      { arbitrary: FastCheck.tuple(text, text), weight: 8 },
      { arbitrary: FastCheck.array(field, { maxLength: 3 }), weight: 1 },
      { arbitrary: odd, weight: 1 }
    )
    const entries = FastCheck.oneof({ arbitrary: FastCheck.array(pair, { maxLength: 3 }), weight: 6 }, { arbitrary: field, weight: 1 })
    const command = FastCheck.record(
      { _tag: tag, key: field, value: field, expected: field, id: field, http: field, entries, extra: field },
      { requiredKeys: [] }
    )
    const document = FastCheck.oneof(
      { arbitrary: command.map((c) => JSON.stringify(c)), weight: 12 },
      { arbitrary: FastCheck.oneof(FastCheck.json(), FastCheck.string({ maxLength: 20 })), weight: 1 },
      { arbitrary: command.map((c) => JSON.stringify([c])), weight: 1 }
    )

    it("a command decodes to what the Schema decodes it to, and fails where the Schema fails, with its message", () => {
      let accepted = 0
      FastCheck.assert(
        FastCheck.property(document, (doc) => {
          const fast = KvFsm.machine.decodeCommand(utf8.encode(doc))
          const reference = bySchema(doc)
          assert.strictEqual(Either.isRight(fast), Either.isRight(reference), doc)
          if (Either.isRight(fast) && Either.isRight(reference)) {
            accepted++
            assert.deepStrictEqual(fast.right, reference.right, doc)
          } else if (Either.isLeft(fast) && Either.isLeft(reference)) {
            assert.strictEqual(fast.left.message, reference.left.message)
          }
        }),
        { numRuns: 4000 }
      )
      assert.isAbove(accepted, 500, "the documents exercise the accepted side too")
    })

    it("a command's bytes in the log are the JSON the Schema encodes it to", () => {
      const commands: FastCheck.Arbitrary<KvFsm.Command> = FastCheck.oneof(
        FastCheck.record({ _tag: FastCheck.constant("Put" as const), key: text, value: text }),
        FastCheck.record({ _tag: FastCheck.constant("Delete" as const), key: text }),
        FastCheck.record({ _tag: FastCheck.constant("Cas" as const), key: text, expected: text, value: text }, {
          requiredKeys: ["_tag", "key", "value"]
        }),
        FastCheck.record({ _tag: FastCheck.constant("Register" as const), id: text, http: text }),
        FastCheck.record({
          _tag: FastCheck.constant("PutMany" as const),
          entries: FastCheck.array(FastCheck.tuple(text, text), { maxLength: 4 })
        })
      )
      FastCheck.assert(
        FastCheck.property(commands, (c) => {
          const fast = Either.getOrThrow(KvFsm.machine.encodeCommand(c))
          assert.deepStrictEqual(fast, utf8.encode(Either.getOrThrow(encodeBySchema(c))))
        }),
        { numRuns: 2000 }
      )
    })

    it("a batch applied in one step leaves earlier states as they were", () =>
      Effect.runSync(Effect.gen(function*() {
        const kv = KvFsm.make()
        yield* applyAll(kv, [{ _tag: "Put", key: "a", value: "1" }, { _tag: "Register", id: "n1", http: "h1" }])
        const before = kv.current()
        yield* applyAll(kv, [
          { _tag: "Put", key: "a", value: "2" },
          { _tag: "PutMany", entries: [["b", "3"], ["c", "4"], ["c", "5"]] },
          { _tag: "Delete", key: "a" },
          { _tag: "Register", id: "n2", http: "h2" }
        ])
        assert.deepStrictEqual(Array.from(before.entries), [["a", "1"]])
        assert.deepStrictEqual(Array.from(before.members), [["n1", "h1"]])
        assert.deepStrictEqual(new Map(kv.current().entries), new Map([["b", "3"], ["c", "5"]]))
        assert.strictEqual(HashMap.size(kv.current().members), 2)
      })))
  })
})
