/** The benchmark's client load, shared by the one-thread scenario and the node threads of `--threads`. */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Raft from "../src/Raft.js"

/** What one run of the load measured; latencies in ms, by operation, when recorded. */
export interface LoadResult {
  readonly latencies: Float64Array | undefined
  readonly elapsedMs: number
  readonly errors: number
  readonly firstError: string
}

/** `total` applies of `payload` from `conc` fibers taking the next index from a shared counter (as the anchor's clients). */
export const load = (
  raft: Raft.Raft,
  payload: Uint8Array,
  total: number,
  conc: number,
  record: boolean
): Effect.Effect<LoadResult> =>
  Effect.gen(function*() {
    const latencies = record ? new Float64Array(total) : undefined
    let next = 0
    let errors = 0
    let firstError = ""
    const worker = Effect.gen(function*() {
      while (true) {
        const i = next++
        if (i >= total) return
        const t = performance.now()
        const outcome = yield* Effect.either(raft.apply(payload))
        const d = performance.now() - t
        if (latencies !== undefined) latencies[i] = d
        if (Either.isLeft(outcome)) {
          if (errors++ === 0) firstError = outcome.left._tag
          return
        }
      }
    })
    const start = performance.now()
    yield* Effect.all(Array.from({ length: conc }, () => worker), { concurrency: "unbounded", discard: true })
    const elapsedMs = performance.now() - start
    return { latencies, elapsedMs, errors, firstError }
  })
