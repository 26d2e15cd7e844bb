/**
 * A one-shot result that fibers can wait for: what `Deferred` does, for the
 * node's hot paths (one per apply, one per incoming RPC). `Deferred.unsafeMake`
 * copies Effect's commit prototype into every instance, which profiling showed
 * at about 19% of the leader's time at 64 clients; this is a plain object and
 * an `Effect.async`.
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"

export class Future<A, E> {
  private result: Exit.Exit<A, E> | undefined = undefined
  private waiter: ((effect: Effect.Effect<A, E>) => void) | undefined = undefined
  private others: Array<(effect: Effect.Effect<A, E>) => void> | undefined = undefined

  /** Completes the future once; later calls do nothing. Returns whether this call completed it. */
  done(exit: Exit.Exit<A, E>): boolean {
    if (this.result !== undefined) return false
    this.result = exit
    const waiter = this.waiter
    const others = this.others
    this.waiter = undefined
    this.others = undefined
    if (waiter !== undefined) waiter(exit)
    if (others !== undefined) for (const other of others) other(exit)
    return true
  }

  get isDone(): boolean {
    return this.result !== undefined
  }

  /** Waits for the result. An interrupted waiter is resumed into nothing: Effect ignores it. */
  readonly await: Effect.Effect<A, E> = Effect.async<A, E>((resume) => {
    if (this.result !== undefined) return resume(this.result)
    if (this.waiter === undefined) this.waiter = resume
    else (this.others ??= []).push(resume)
  })
}
