/**
 * The replication failure backoff. hashicorp/raft waits
 * `backoff(10ms, failures, 12)` before retrying a follower: 10 ms for the first
 * two failures, then doubling, capped at 10 ms·2¹⁰ = 10.24 s from the twelfth
 * on. The same delays as a `Schedule`, so replicate and heartbeat loops retry
 * with it (`retrying`) and the wait goes through `Clock` (TestClock in tests).
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/** Base wait after a failed RPC (the seed's `failureWait`). */
export const failureWaitMillis = 10
/** Failures after which the wait stops growing (the seed's `maxFailureScale`). */
export const maxFailureScale = 12

/** hashicorp's `backoff(base, round, limit)`, in milliseconds, for reference and tests. */
export const backoffMillis = (round: number, base = failureWaitMillis, limit = maxFailureScale): number => {
  let power = Math.min(round, limit)
  let wait = base
  while (power > 2) {
    wait *= 2
    power--
  }
  return wait
}

/** Retry schedule whose n-th delay equals `backoffMillis(n)`: 10, 10, 20, 40, …, 10240, 10240, … */
export const failureBackoff: Schedule.Schedule<unknown> = Schedule.andThen(
  Schedule.spaced(`${failureWaitMillis} millis`).pipe(Schedule.intersect(Schedule.recurs(1))),
  Schedule.exponential(`${failureWaitMillis} millis`).pipe(
    Schedule.union(Schedule.spaced(`${backoffMillis(maxFailureScale)} millis`))
  )
)

/**
 * `Effect.retry(effect, schedule)` for the replication's hot loops, with the schedule's driver made at the first
 * failure instead of on every call: `Effect.retry` makes one (two `Ref`s) and provides each attempt with its
 * iteration's metadata, about forty runtime steps for every heartbeat that succeeds at once. The waits are the
 * same: the driver steps the schedule and sleeps exactly as `Effect.retry`'s does, and the last error fails the
 * call once the schedule ends.
 */
export const retrying = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  schedule: Schedule.Schedule<unknown, unknown>
): Effect.Effect<A, E, R> =>
  Effect.catchAll(effect, (first) =>
    Effect.flatMap(Schedule.driver(schedule), (driver) => {
      const again = (error: E): Effect.Effect<A, E, R> =>
        Effect.matchEffect(driver.next(error), {
          onFailure: () => Effect.fail(error),
          onSuccess: () => Effect.catchAll(effect, again)
        })
      return again(first)
    }))
