/**
 * Deadlines for many calls of the same length, kept by one fiber: `Effect.timeout` on each call forks two fibers and
 * arms a timer per call (about 90 µs of CPU each, measured in `docs/kv.md`), more than a whole stale read. A call of a
 * fixed timeout gets a deadline later than every earlier call's, so each lane is a queue in deadline order: adding is
 * a push, a call that ends marks its entry done, and the keeper wakes at the oldest deadline of each lane (at most
 * `maxSleepMillis` apart) and expires what is due. The key-value front (`kv/HttpFront.ts`) interrupts a call whose
 * deadline passed and answers the timeout error the call itself would have failed with; the TCP transport's client
 * (`tcp/client.ts`) fails an RPC whose answer did not come within `rpcTimeout`.
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** One call's deadline: `done` once the call ended (its `expire` is then never called). */
export interface Deadline {
  readonly done: () => void
}

/** A queue of calls of one timeout. */
export interface Lane {
  /** Registers a call that started now; `expire` runs once, at its deadline, unless it was done before. */
  readonly add: (expire: () => void) => Deadline
}

interface Entry extends Deadline {
  readonly at: number
  expire: (() => void) | undefined
}

/** The longest the keeper sleeps while calls are in flight (so a lane added later is looked at in time). */
export const maxSleepMillis = 50

/** The keeper of some lanes; `lane(timeoutMillis)` makes one. Its fiber ends with the scope. */
export const make: Effect.Effect<{ readonly lane: (timeoutMillis: number) => Lane }, never, Scope.Scope> = Effect.gen(
  function*() {
    const clock = yield* Effect.clock
    const wake = yield* Effect.makeLatch(false)
    const queues: Array<{ entries: Array<Entry>; head: number }> = []

    /** Drops the entries at the head of `queue` that are done; the oldest pending deadline, or undefined. */
    const oldest = (queue: { entries: Array<Entry>; head: number }): number | undefined => {
      while (queue.head < queue.entries.length && queue.entries[queue.head]!.expire === undefined) queue.head++
      if (queue.head === queue.entries.length) {
        queue.entries = []
        queue.head = 0
        return undefined
      }
      if (queue.head > 1024 && queue.head * 2 > queue.entries.length) {
        queue.entries = queue.entries.slice(queue.head)
        queue.head = 0
      }
      return queue.entries[queue.head]!.at
    }

    const earliest = (): number | undefined => {
      let next: number | undefined
      for (const queue of queues) {
        const at = oldest(queue)
        if (at !== undefined && (next === undefined || at < next)) next = at
      }
      return next
    }

    const expireDue = (now: number) => {
      for (const queue of queues) {
        while (queue.head < queue.entries.length && queue.entries[queue.head]!.at <= now) {
          const entry = queue.entries[queue.head++]!
          const expire = entry.expire
          entry.expire = undefined
          expire?.()
        }
      }
    }

    yield* Effect.gen(function*() {
      for (;;) {
        const next = earliest()
        if (next === undefined) {
          wake.unsafeClose()
          if (earliest() === undefined) yield* wake.await
          continue
        }
        const wait = next - clock.unsafeCurrentTimeMillis()
        if (wait > 0) yield* Clock.sleep(Math.min(wait, maxSleepMillis))
        expireDue(clock.unsafeCurrentTimeMillis())
      }
    }).pipe(Effect.interruptible, Effect.forkScoped)

    const lane = (timeoutMillis: number): Lane => {
      const queue = { entries: [] as Array<Entry>, head: 0 }
      queues.push(queue)
      return {
        add: (expire) => {
          const entry: Entry = {
            at: clock.unsafeCurrentTimeMillis() + timeoutMillis,
            expire,
            done: () => void (entry.expire = undefined)
          }
          if (queue.head === queue.entries.length) wake.unsafeOpen()
          queue.entries.push(entry)
          return entry
        }
      }
    }
    return { lane }
  }
)
