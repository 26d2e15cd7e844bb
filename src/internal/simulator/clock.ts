/**
 * The simulator's virtual time: a `Clock` whose `sleep` files a timer in a heap instead of waiting, and a driver
 * (see `run.ts`) that fires the earliest timer whenever no fiber can run. Equal deadlines fire in the order they
 * were filed, so a run replays exactly.
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { TimeHeap } from "../timeHeap.js"

/**
 * A sleeping fiber, resumed when the clock reaches `at`. A sleep registers no canceler: Effect wraps an async that
 * returns one in an `onInterrupt`, about ten runtime steps on every sleep of a run (most of a run's events are
 * sleeps: network and disk latencies, timers). An interrupted sleeper's timer stays in the heap and fires as an
 * event that resumes nothing (the runtime answers each wait once).
 */
export interface Timer {
  readonly at: number
  readonly seq: number
  readonly resume: () => void
}

/** A `Clock` over virtual milliseconds; `sleep` files a timer that the driver fires. */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  now = 0
  private seq = 0
  private readonly heap = new TimeHeap<Timer>()

  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    return Effect.async<void>((resume) => {
      this.heap.push({ at: this.now + Math.max(0, millis), seq: this.seq++, resume: () => resume(Effect.void) })
    })
  }

  /** The earliest timer, removed from the heap. */
  next(): Timer | undefined {
    return this.heap.pop()
  }
}

/**
 * One node's clock over the run's virtual time, running at `rate` (1: in step). Its time is continuous across rate
 * changes, and a sleep of d ms on it lasts d ÷ rate ms of virtual time (fixed when the sleep starts). At rate 1 from
 * the start it reads and sleeps exactly as `base`, so a run without skew replays as before.
 */
export class SkewedClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  private rate = 1
  /** The virtual time of the last rate change, and this clock's time then. */
  private since = 0
  private localSince = 0

  constructor(private readonly base: VirtualClock) {}

  /** This clock's rate relative to virtual time. */
  get currentRate(): number {
    return this.rate
  }
  /** From now on, run at `rate` (> 0). */
  setRate(rate: number): void {
    this.localSince = this.unsafeCurrentTimeMillis()
    this.since = this.base.now
    this.rate = rate
  }

  unsafeCurrentTimeMillis(): number {
    return this.rate === 1 && this.since === 0 ? this.base.now : this.localSince + (this.base.now - this.since) * this.rate
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.unsafeCurrentTimeMillis() * 1_000_000))
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.unsafeCurrentTimeMillis())
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    return this.rate === 1 ? this.base.sleep(duration) : this.base.sleep(Duration.millis(Duration.toMillis(duration) / this.rate))
  }
}
