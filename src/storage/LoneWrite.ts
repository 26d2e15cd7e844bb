/**
 * When a durable store's write commits on the calling thread.
 *
 * A store normally hands its writes to a writer (lmdb's writer thread, the
 * WAL's writer fiber and libuv's thread pool), which puts the writes that
 * arrive while a commit is in flight into the next one (group commit) and keeps
 * the event loop free while the disk flushes. A write that is alone gains
 * nothing from that: there is nothing to share its commit with, and the
 * hand-offs to the writer and back cost it more CPU and latency than the event
 * loop's wait in its `fdatasync`. So a small write commits at once, on the
 * calling thread, when it is alone:
 *
 * - it holds at most `SYNC_MAX_BYTES` of data (one client's write, not a batch
 *   that others queued behind);
 * - the store has no write in flight or queued (`busy`), before and after the
 *   write yields once (the fibers ready at the same time run meanwhile: a
 *   leader's replication sends its entries before the thread blocks), and no
 *   other write arrived during that yield;
 * - no write committed on the calling thread earlier in the same event-loop
 *   turn, so that a chain of fibers writing again and again in one turn (a busy
 *   leader's writer) queues instead, and timers and sockets are served between
 *   two blocking commits rather than after thousands of them.
 */
import * as Effect from "effect/Effect"
import { onInterrupted } from "../internal/future.js"

/**
 * The most bytes of entry data a write commits on the calling thread. A few hundred bytes are one client's
 * write; more is a batch (the key-value service folds the PUTs that queued during the last commit into one
 * entry, a leader stores what queued in one `storeLogs`, a follower gets what the leader batched): others wait
 * behind it, and the event loop, blocked in its `fdatasync`, would not serve them meanwhile.
 */
export const SYNC_MAX_BYTES = 512

/** One store's decision; see the module comment. */
export interface LoneWrites {
  /**
   * `now` when the write of `bytes` of data is alone, else `queued`. `busy` says whether the store has a write in
   * flight or queued (or cannot write on this thread at all); it is asked before and after the yield.
   */
  readonly write: <E>(
    bytes: number,
    busy: () => boolean,
    now: Effect.Effect<void, E>,
    queued: Effect.Effect<void, E>
  ) => Effect.Effect<void, E>
}

export const make = (): LoneWrites => {
  // Writes that found the store idle and yielded once, to see whether another write joins them.
  let waiting = 0
  // Set by a write on the calling thread until the event loop's next check phase.
  let blockedThisTurn = false
  const endTurn = () => {
    blockedThisTurn = false
  }
  const leave = () => {
    waiting--
  }
  const write = <E>(
    bytes: number,
    busy: () => boolean,
    now: Effect.Effect<void, E>,
    queued: Effect.Effect<void, E>
  ): Effect.Effect<void, E> =>
    Effect.suspend(() => {
      if (bytes > SYNC_MAX_BYTES || blockedThisTurn || busy()) return queued
      waiting++
      // Interrupted in its yield, before it decides, it must not count as waiting for ever (no write would commit
      // alone again); once it decides, it has left.
      return Effect.zipRight(
        onInterrupted(Effect.yieldNow(), leave),
        Effect.suspend(() => {
          const alone = waiting === 1 && !blockedThisTurn && !busy()
          leave()
          if (!alone) return queued
          blockedThisTurn = true
          // Not a timer: the end of this event-loop turn, which `Effect.sleep(0)` would stretch to a millisecond.
          setImmediate(endTurn)
          return now
        })
      )
    })
  return { write }
}
