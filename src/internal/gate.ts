/**
 * A gate the node's fibers pass while it is open and wait at while it is closed: what `Effect.Latch` does for a
 * follower's replication triggers, without its cost on the hot path. `Latch.await` is an interruptible async with
 * a canceler, which Effect wraps in an `onInterrupt` (about ten runtime steps, even when the latch is open); here
 * an open gate is passed in one step and a closed one waits in a plain `Effect.async` that registers no canceler.
 * An interrupted waiter's resume then stays in the list until the next opening, where calling it does nothing (the
 * runtime answers each wait once), so the list holds at most one stale entry per interruption while closed.
 * @internal
 */
import * as Effect from "effect/Effect"

export class Gate {
  private waiting: Array<(effect: Effect.Effect<void>) => void> = []

  constructor(private isOpen: boolean) {}

  /** Opens the gate: every waiter passes, and so does every later `await` until `unsafeClose`. */
  unsafeOpen(): void {
    if (this.isOpen) return
    this.isOpen = true
    const waiting = this.waiting
    if (waiting.length === 0) return
    this.waiting = []
    for (const resume of waiting) resume(Effect.void)
  }

  /** Closes the gate: later `await`s wait for the next `unsafeOpen`. */
  unsafeClose(): void {
    this.isOpen = false
  }

  /** Passes an open gate, or waits until it opens. */
  readonly await: Effect.Effect<void> = Effect.suspend(() => (this.isOpen ? Effect.void : this.wait))

  private readonly wait: Effect.Effect<void> = Effect.async<void>((resume) => {
    if (this.isOpen) resume(Effect.void)
    else this.waiting.push(resume)
  })
}
