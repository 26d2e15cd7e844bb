/**
 * The node's deadline keeper: one fiber that expires the timeouts of the node's callers (`apply`, `readIndex`,
 * membership changes), instead of an `Effect.timeoutFail` per call, which forks two fibers and arms a timer for
 * each. A caller registers its deadline and what to do when it passes (`add`), and cancels the entry when its call
 * ends first; deadlines differ per call (each caller's own timeout), so they wait in a binary heap ordered by
 * deadline (equal deadlines in the order added), and a cancelled entry stays in the heap until it comes to the top
 * or the heap is rebuilt without it.
 *
 * The keeper waits at a gate (`gate.ts`). While entries are pending, a sleeper fiber on the node's `Clock` opens
 * it at the earliest deadline; an entry added earlier than the one the sleeper waits for opens it at once, and the
 * keeper arms a new sleeper. So a TestClock or the simulator's virtual clock drives it, an entry expires exactly at
 * its deadline, and with nothing pending nothing sleeps. Expiry callbacks run in the keeper's fiber, synchronously:
 * they must not block (resuming a waiting fiber is what they are for).
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { Gate } from "./gate.js"
import { TimeHeap } from "./timeHeap.js"

/** A registered deadline: `cancel` once the call ended first, and its expiry never runs. */
export interface Deadline {
  readonly cancel: () => void
}

class Entry implements Deadline {
  constructor(
    readonly at: number,
    readonly seq: number,
    public expire: (() => void) | undefined,
    private readonly keeper: Deadlines
  ) {}
  cancel(): void {
    if (this.expire === undefined) return
    this.expire = undefined
    this.keeper.cancelled()
  }
}

/** The keeper of one node's deadlines; `run` is its fiber, forked into the node's scope. */
export class Deadlines {
  private readonly heap = new TimeHeap<Entry>()
  private live = 0
  private seq = 0
  /** The deadline the armed sleeper wakes the keeper at; Infinity when none is armed. */
  private armedAt = Infinity
  private sleeper: Fiber.RuntimeFiber<void> | undefined = undefined
  /** Counts the sleepers armed: a sleeper that wakes after a newer one was armed changes nothing but the gate. */
  private armings = 0
  /**
   * The latest deadline a sleeper slept until: reached, whatever the clock reads (a skewed clock of the simulator may
   * read a hair before it after the sleep, from rounding, and a keeper that trusted only the reading would sleep
   * for that hair again and again).
   */
  private reached = -Infinity
  private stopped = false
  private readonly wake = new Gate(false)

  constructor(private readonly clock: Clock.Clock) {}

  /** Calls `expire` once, when the clock reaches `at`, unless the handle is cancelled first. */
  add(at: number, expire: () => void): Deadline {
    const entry = new Entry(at, this.seq++, expire, this)
    this.live++
    this.heap.push(entry)
    if (at < this.armedAt) this.wake.unsafeOpen()
    return entry
  }

  /** How many entries wait to expire (cancelled ones not counted). */
  get pending(): number {
    return this.live
  }

  /** Whether the keeper's fiber has ended (the node stopped): nothing expires any more. */
  get isStopped(): boolean {
    return this.stopped
  }

  /** @internal An entry was cancelled: rebuilds the heap once it is mostly cancelled entries. */
  cancelled(): void {
    this.live--
    if (this.heap.size > 64 && this.live * 2 < this.heap.size) this.heap.retain((entry) => entry.expire !== undefined)
  }

  /** The keeper's fiber: expires what is due, arms the sleeper for the next deadline, waits. Ends with its scope. */
  readonly run: Effect.Effect<never> = Effect.forever(Effect.suspend(() => this.turn())).pipe(
    Effect.ensuring(Effect.sync(() => {
      this.stopped = true
      this.disarm()
    }))
  )

  private turn(): Effect.Effect<void> {
    this.wake.unsafeClose()
    const now = Math.max(this.clock.unsafeCurrentTimeMillis(), this.reached)
    this.expireDue(now)
    const next = this.heap.peek()?.at ?? Infinity
    if (next === this.armedAt) return this.wake.await
    // The sleeper armed for another deadline (later, or now cancelled) stops: one sleeps at a time.
    this.disarm()
    if (next === Infinity) return this.wake.await
    this.armedAt = next
    const armed = ++this.armings
    const sleep = Effect.zipRight(
      this.clock.sleep(Duration.millis(next - now)),
      Effect.sync(() => {
        if (this.armings === armed) {
          this.armedAt = Infinity
          this.sleeper = undefined
          this.reached = next
        }
        this.wake.unsafeOpen()
      })
    )
    // A child of the keeper's fiber: it ends with the keeper.
    return Effect.flatMap(Effect.fork(sleep), (fiber) => {
      if (this.armings === armed && this.armedAt === next) this.sleeper = fiber
      return this.wake.await
    })
  }

  private disarm(): void {
    this.armings++
    this.armedAt = Infinity
    this.sleeper?.unsafeInterruptAsFork(FiberId.none)
    this.sleeper = undefined
  }

  private expireDue(now: number): void {
    for (;;) {
      const entry = this.heap.peek()
      if (entry === undefined || (entry.expire !== undefined && entry.at > now)) return
      this.heap.pop()
      const expire = entry.expire
      if (expire === undefined) continue
      entry.expire = undefined
      this.live--
      expire()
    }
  }
}
