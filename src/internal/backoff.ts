/**
 * The replication failure backoff. hashicorp/raft waits
 * `backoff(10ms, failures, 12)` before retrying a follower: 10 ms for the first
 * two failures, then doubling, capped at 10 ms·2¹⁰ = 10.24 s from the twelfth
 * on. The same delays as a `Schedule`, so replicate and heartbeat loops retry
 * with `Effect.retry` and the wait goes through `Clock` (TestClock in tests).
 * @internal
 */
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
