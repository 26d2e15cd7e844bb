/**
 * What a node keeps of an apply once it is answered: nothing. The leader's record of its entries in flight
 * (`LeaderState.inflight`, read by commit.ts) held each apply's future, and through it the future's result, until
 * 4,096 had committed; at 250,000 applies a second that is 16 ms, longer than a young-generation collection's period,
 * so every answered apply was promoted to V8's old generation as garbage (the in-memory row of `npm run bench` peaked
 * at 129–146 MiB against 107–110 without it). The test follows the state machine's responses with `WeakRef`s.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { bytes, makeCluster, seeded } from "./cluster.js"

/** A full collection: `--expose-gc` set at run time gives a new context a `gc` function. */
const collect = (): void => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  gc()
}

/** A macrotask later: a `WeakRef` keeps its target alive until the job that made or read it ends. */
const nextTask = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("Raft: what the leader keeps of answered applies", () => {
  it.scoped("nothing: the state machine's responses of 600 answered applies can be collected", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3 })
      const leader = yield* cluster.waitForLeader()
      const responses: Array<WeakRef<object>> = []
      for (let i = 0; i < 600; i++) {
        const result = yield* leader.raft.apply(bytes(`c${i}`))
        responses.push(new WeakRef(result.response as object))
      }
      yield* nextTask
      collect()
      yield* nextTask
      const kept = responses.filter((response) => response.deref() !== undefined).length
      // The leader drops passed records 64 or more at a time, so up to 63 may wait for the next cut; a few more may be
      // held by what is still answering. Without the cut, all 600 are held.
      assert.isAtMost(kept, 100, `${kept} of 600 answered applies are still held`)
    }).pipe(seeded("retention")))
})
