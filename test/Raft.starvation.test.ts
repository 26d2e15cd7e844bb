import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import { bytes, makeCluster } from "./cluster.js"

describe("Raft: fairness to the event loop", () => {
  // Under a steady stream of applies the node's fibers must still let timers and I/O run: heartbeats,
  // lease checks and apply timeouts all wait on timers. Effect 3.22 schedules each fiber's microtasks on
  // a runner of its own, so a chain of fibers handing work to each other never yields to the event loop.
  it.scopedLive("timers keep firing while a 3-node cluster is under sustained load", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, testClock: false })
      const leader = yield* cluster.waitForLeader({ limitMillis: 5_000 })
      // A plain 10 ms interval of the event loop, outside Effect: it fires only if the loop gets turns.
      // The load runs until the interval has fired 10 times during at least 1,000 applies, or for 10 s of
      // wall clock (read inline, not by a timer, so a starved loop cannot hang the test). A loaded machine only
      // makes this take longer; a starved event loop never gets there.
      let ticks = 0
      const interval = setInterval(() => ticks++, 10)
      const started = performance.now()
      let applied = 0
      const load = yield* Effect.fork(
        Effect.all(
          Array.from({ length: 16 }, () =>
            Effect.whileLoop({
              while: () => (ticks < 10 || applied < 1000) && performance.now() - started < 10_000,
              body: () => leader.raft.apply(bytes("x")),
              step: () => void applied++
            })),
          { concurrency: "unbounded", discard: true }
        )
      )
      yield* Fiber.join(load)
      clearInterval(interval)
      assert.isAbove(applied, 1000, "the load did not run")
      const seconds = ((performance.now() - started) / 1000).toFixed(1)
      assert.isAtLeast(ticks, 10, `a 10 ms interval fired ${ticks} times in ${seconds} s of load (${applied} applies)`)
    }).pipe(Effect.withRandom(Random.make("fair"))), 30_000)
})
