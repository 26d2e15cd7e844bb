/**
 * Fibers waiting for a condition that callbacks change (room in a pipeline's window): each waits with `await`, and
 * whoever changes the condition calls `wakeAll`; a woken fiber looks at the condition again. An interrupted waiter is
 * dropped. Used by the TCP and memory pipelines.
 * @internal
 */
import * as Effect from "effect/Effect"

export class Wakers {
  private waiting: Array<() => void> = []

  /** Resumes every fiber waiting now. */
  wakeAll(): void {
    const woken = this.waiting
    this.waiting = []
    for (const wake of woken) wake()
  }

  /** Waits for the next `wakeAll`. */
  readonly await: Effect.Effect<void> = Effect.async<void>((resume) => {
    const wake = () => resume(Effect.void)
    this.waiting.push(wake)
    return Effect.sync(() => void (this.waiting = this.waiting.filter((other) => other !== wake)))
  })
}
