/**
 * PUTs that arrive while earlier ones are being committed go into the log together, as one `KvFsm.PutMany` entry.
 *
 * Most of a PUT's cost on the three nodes is paid per log entry, not per byte: the leader's append and the frame to
 * each follower, each follower's pass through the engine, its share of a synced LMDB transaction and its answer, and
 * the state machine's decode on every node. At 64 clients the leader appended about three entries at a time, so each
 * PUT paid most of that on its own. Here at most `maxInFlight` writes are in Raft at once; a PUT that finds them all
 * taken waits, and when one completes, everything that waited goes out as one entry (up to `maxEntryBytes`). No
 * timer: a lone PUT (one client) goes out at once, in its caller's fiber, as a plain `Put`, the very entry it was
 * before.
 *
 * Every PUT of an entry shares its outcome and its index. A PUT whose caller gives up (its deadline, a client gone)
 * before its entry was sent is dropped, as Raft drops a write still in its queue; a lone PUT is interrupted in Raft
 * as before; a shared entry, once sent, goes on for the others, and the caller's answer says the outcome is
 * unknown, as it would have.
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { onInterrupted } from "../internal/future.js"
import type * as KvFsm from "./KvFsm.js"

/** What a batcher is built from. */
export interface Options<E> {
  /** Writes one command through Raft: its index and the state machine's answer. */
  readonly apply: (command: KvFsm.Command) => Effect.Effect<{ readonly index: number; readonly response: KvFsm.Response }, E>
  /** What a batch's entry fails with when the state machine answers something other than `Written`. */
  readonly rejected: (response: KvFsm.Response) => E
  /** Runs a batch's write, calling `onExit` with its outcome (`Runtime.runCallback` of the service's runtime). */
  readonly run: <A>(effect: Effect.Effect<A, E>, onExit: (exit: Exit.Exit<A, E>) => void) => void
  /** The largest log entry Raft accepts (`RaftConfig.maxEntryBytes`): a batch's entry stays within it. */
  readonly maxEntryBytes: number
  /** Writes in Raft at once. */
  readonly maxInFlight: number
}

interface Waiter<E> {
  readonly key: string
  readonly value: string
  readonly bytes: number
  settled: boolean
  readonly resume: (effect: Effect.Effect<{ readonly index: number }, E>) => void
}

/**
 * An upper bound of the bytes one pair adds to a `PutMany` entry: JSON escapes a UTF-16 unit into at most six
 * bytes (`\u001f`), plus the brackets, quotes and commas around the pair.
 */
const boundOf = (key: string, value: string): number => 6 * (key.length + value.length) + 8
/** The bytes of a `PutMany` entry around its pairs. */
const envelope = 32

/** A `put` that gathers concurrent PUTs into shared log entries; see the module's comment. */
export const make = <E>(options: Options<E>): (key: string, value: string) => Effect.Effect<{ readonly index: number }, E> => {
  const { apply, maxEntryBytes, maxInFlight, rejected, run } = options
  const queue: Array<Waiter<E>> = []
  let inFlight = 0

  /** The next batch off the queue: waiters still waiting, in arrival order, within `maxEntryBytes`. */
  const take = (): Array<Waiter<E>> => {
    const batch: Array<Waiter<E>> = []
    let bytes = envelope
    let taken = 0
    while (taken < queue.length) {
      const waiter = queue[taken]!
      if (!waiter.settled) {
        // A PUT too large to share an entry goes alone (and fails as it always did, when too large for any).
        if (batch.length > 0 && bytes + waiter.bytes > maxEntryBytes) break
        batch.push(waiter)
        bytes += waiter.bytes
      }
      taken++
    }
    queue.splice(0, taken)
    return batch
  }

  const write = (batch: ReadonlyArray<{ readonly key: string; readonly value: string }>): Effect.Effect<{ readonly index: number }, E> => {
    const command: KvFsm.Command = batch.length === 1
      ? { _tag: "Put", key: batch[0]!.key, value: batch[0]!.value }
      : { _tag: "PutMany", entries: batch.map((waiter) => [waiter.key, waiter.value] as const) }
    return Effect.flatMap(apply(command), ({ index, response }) =>
      response._tag === "Written" ? Effect.succeed({ index }) : Effect.fail(rejected(response)))
  }

  const pump = (): void => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = take()
      if (batch.length === 0) return
      inFlight++
      run(write(batch), (exit) => {
        inFlight--
        for (const waiter of batch) {
          if (waiter.settled) continue
          waiter.settled = true
          waiter.resume(exit)
        }
        pump()
      })
    }
  }

  const done = Effect.sync(() => {
    inFlight--
    pump()
  })

  return (key, value) =>
    Effect.suspend(() => {
      // Nothing in Raft and nobody waiting: written at once, in the caller's fiber, as a plain Put (interrupting the
      // caller interrupts its write, as before); whoever arrives meanwhile waits for it.
      if (inFlight < maxInFlight && queue.length === 0) {
        inFlight++
        return Effect.ensuring(write([{ key, value }]), done)
      }
      // An interrupted waiter is settled, so the batcher skips it (onInterrupted: cheaper than a canceler).
      let waiter: Waiter<E> | undefined
      const wait = Effect.async<{ readonly index: number }, E>((resume) => {
        waiter = { key, value, bytes: boundOf(key, value), settled: false, resume }
        queue.push(waiter)
        pump()
      })
      return onInterrupted(wait, () => {
        if (waiter !== undefined) waiter.settled = true
      })
    })
}
