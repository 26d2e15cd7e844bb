/**
 * A node's channel into one of its own fibers (the run loop, the FSM runner,
 * the leader's writer): any fiber offers, one fiber drains everything queued
 * at once. It does what `Mailbox.unsafeOffer` and `takeAll` did here, for a
 * single taker, in one scheduler task per hand-off instead of two: Effect's
 * `Mailbox` wakes its taker from a task of its own (`releaseTaker`), which then
 * schedules the taker's fiber; here an offer resumes the waiting taker at
 * once, and the taker collects what was queued when it runs (so offers made
 * in between share its batch). Items come out as a plain array.
 * @internal
 */
import * as Effect from "effect/Effect"

export class Inbox<A> {
  private items: Array<A> = []
  private ended = false
  private taker: ((effect: Effect.Effect<readonly [ReadonlyArray<A>, boolean]>) => void) | undefined = undefined

  /** Queues `item` and wakes the taker; false once the inbox has ended (the item is dropped). */
  unsafeOffer(item: A): boolean {
    if (this.ended) return false
    this.items.push(item)
    this.wake()
    return true
  }

  /** Whether the taker waits in `takeAll` with nothing queued: it holds nothing it has not handled. */
  get waiting(): boolean {
    return this.taker !== undefined && this.items.length === 0
  }

  /** How many items wait. */
  get size(): number {
    return this.items.length
  }

  /**
   * Everything queued, waiting for at least one item; `done` is true once the inbox has ended, with what was
   * queued before its end. One taker at a time.
   */
  readonly takeAll: Effect.Effect<readonly [ReadonlyArray<A>, boolean]> = Effect.suspend(() =>
    this.items.length > 0 || this.ended ? Effect.succeed(this.takeNow()) : this.awaitItems
  )

  /** Takes no more items: a waiting taker gets `done`. */
  unsafeEnd(): void {
    this.ended = true
    this.wake()
  }

  /** Removes and returns what is queued. */
  unsafeClear(): ReadonlyArray<A> {
    const items = this.items
    this.items = []
    return items
  }

  private takeNow(): readonly [ReadonlyArray<A>, boolean] {
    const items = this.items
    if (items.length > 0) this.items = []
    return [items, this.ended]
  }

  private readonly takeWhenRun: Effect.Effect<readonly [ReadonlyArray<A>, boolean]> = Effect.sync(() =>
    this.takeNow()
  )

  /**
   * No canceler: Effect wraps an async that returns one in an `onInterrupt` (about ten runtime steps per wait). An
   * interrupted taker's resume stays in `taker` until the next offer or taker replaces it; calling it then does
   * nothing (the runtime answers each wait once) and the items stay queued for the next `takeAll`.
   */
  private readonly awaitItems: Effect.Effect<readonly [ReadonlyArray<A>, boolean]> = Effect.async((resume) => {
    this.taker = resume
  })

  private wake(): void {
    const taker = this.taker
    if (taker === undefined) return
    this.taker = undefined
    taker(this.takeWhenRun)
  }
}
