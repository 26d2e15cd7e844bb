import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { decodeAll, fuzzLiveServer, hostile } from "./fuzzing.js"

// `npm run fuzz` runs the same with 100k+ inputs; here a few thousand keep `npm test` short.
describe("TcpTransport under hostile input", () => {
  it("random and mutated frames never make the decoder throw", () => {
    FastCheck.assert(
      FastCheck.property(hostile, FastCheck.integer({ min: 1, max: 64 }), (bytes, step) => {
        assert.include(["ok", "malformed", "oversize", "version", "frame-type", "schema"], decodeAll(bytes, step))
      }),
      { numRuns: 5000 }
    )
  })

  it.scopedLive("a live server closes every hostile connection with a CodecError logged, leaks none, and keeps serving", () =>
    Effect.gen(function*() {
      let unhandled = 0
      const onUnhandled = () => void unhandled++
      process.on("unhandledRejection", onUnhandled)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.off("unhandledRejection", onUnhandled)))
      const inputs = FastCheck.sample(hostile, { numRuns: 300, seed: 42 })
      const report = yield* fuzzLiveServer(inputs, 8)
      assert.strictEqual(report.connections, 300)
      assert.strictEqual(report.codecErrorsLogged, 300)
      assert.strictEqual(report.leaked, 0)
      assert.strictEqual(report.inboundAfter, 0)
      assert.isTrue(report.servingAfter)
      assert.strictEqual(unhandled, 0)
    }))
})
