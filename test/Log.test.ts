import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Log from "../src/Log.js"

const decode = Schema.decodeUnknown(Log.Log)
const valid = { index: 3, term: 2, type: "Command", data: new Uint8Array([1, 2]) }

describe("Log", () => {
  it.effect("the Log schema decodes a valid entry unchanged", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* decode(valid), Log.make(3, 2, "Command", new Uint8Array([1, 2])))
      for (const type of ["Noop", "Barrier", "Configuration"] as const) {
        assert.strictEqual((yield* decode({ ...valid, type })).type, type)
      }
    }))

  it("make defaults data to the shared empty payload", () => {
    const log = Log.make(1, 1, "Noop")
    assert.strictEqual(log.data, Log.empty)
    assert.strictEqual(log.data.length, 0)
  })

  describe("the Log schema rejects malformed entries", () => {
    const { index: _index, ...withoutIndex } = valid
    const { data: _data, ...withoutData } = valid
    const cases: ReadonlyArray<{ readonly name: string; readonly input: unknown }> = [
      { name: "negative index", input: { ...valid, index: -1 } },
      { name: "negative term", input: { ...valid, term: -1 } },
      { name: "fractional index", input: { ...valid, index: 1.5 } },
      { name: "unknown LogType", input: { ...valid, type: "Reconfigure" } },
      { name: "missing index", input: withoutIndex },
      { name: "missing data", input: withoutData },
      { name: "data as an array of numbers", input: { ...valid, data: [1, 2] } },
      { name: "data as a string", input: { ...valid, data: "AQI=" } },
      { name: "not an object", input: 42 }
    ]
    it.effect.each(cases)("$name", ({ input }) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(decode(input))
        assert.strictEqual(error._tag, "ParseError")
      }))
  })
})
