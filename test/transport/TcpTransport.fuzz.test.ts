import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { clientHello, decodeAll, fuzzLiveServer, hostile, hostileTls, unfinished } from "./fuzzing.js"

/** Counts unhandled rejections while the test runs. */
const countUnhandled = Effect.gen(function*() {
  const seen = { count: 0 }
  const onUnhandled = () => void seen.count++
  process.on("unhandledRejection", onUnhandled)
  yield* Effect.addFinalizer(() => Effect.sync(() => process.off("unhandledRejection", onUnhandled)))
  return seen
})

// `npm run fuzz` runs the same with 100k+ inputs; here a few thousand keep `npm test` short.
describe("TcpTransport under hostile input", () => {
  it("random, mutated, large and unfinished frames never make the decoder throw or keep budget", () => {
    FastCheck.assert(
      FastCheck.property(hostile, FastCheck.integer({ min: 1, max: 64 }), (bytes, step) => {
        assert.include(["ok", "malformed", "oversize", "version", "frame-type", "schema"], decodeAll(bytes, step))
      }),
      { numRuns: 2000 }
    )
  })

  it.scopedLive("a live server closes every hostile connection with a CodecError logged, leaks no connection and no budget, and keeps serving", () =>
    Effect.gen(function*() {
      const unhandled = yield* countUnhandled
      const inputs = FastCheck.sample(hostile, { numRuns: 300, seed: 42 })
      const report = yield* fuzzLiveServer(inputs, 8)
      assert.strictEqual(report.connections, 300)
      assert.strictEqual(report.codecErrorsLogged, 300)
      assert.strictEqual(report.leaked, 0)
      assert.strictEqual(report.inboundAfter, 0)
      assert.strictEqual(report.receivingAfter, 0)
      assert.isTrue(report.servingAfter)
      assert.strictEqual(unhandled.count, 0)
    }))

  it.scopedLive("unfinished large frames arriving together exhaust the receive budget: the excess is refused, the budget never overdrawn and all given back", () =>
    Effect.gen(function*() {
      const inputs = FastCheck.sample(unfinished, { numRuns: 48, seed: 7 })
      const report = yield* fuzzLiveServer(inputs, 16)
      assert.isAbove(report.budgetRefusals, 0)
      assert.isAtMost(report.receivingPeak, 1024 * 1024)
      assert.strictEqual(report.codecErrorsLogged, 48)
      assert.strictEqual(report.leaked, 0)
      assert.strictEqual(report.receivingAfter, 0)
      assert.isTrue(report.servingAfter)
    }))

  it.scopedLive("a TLS server refuses client hellos cut short or overwritten and random bytes, logs each, leaks none, and keeps serving its members", () =>
    Effect.gen(function*() {
      const unhandled = yield* countUnhandled
      const hello = yield* clientHello
      const inputs = FastCheck.sample(hostileTls(hello), { numRuns: 100, seed: 42 })
      const report = yield* fuzzLiveServer(inputs, 8, { tls: true })
      assert.strictEqual(report.tlsRefusals, 100)
      assert.strictEqual(report.leaked, 0)
      assert.strictEqual(report.inboundAfter, 0)
      assert.isTrue(report.servingAfter)
      assert.strictEqual(unhandled.count, 0)
    }))
})
