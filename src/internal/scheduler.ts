/**
 * The scheduler a node's fibers run on when the application has not chosen
 * one. Effect 3.22 gives every fiber a task runner of its own; each drains in
 * microtasks and falls back to a macrotask only after 2048 turns without going
 * idle. A node hands work from fiber to fiber (client → run loop → replicator
 * → follower → decoder → FSM runner), each runner goes idle in between, so
 * none ever reaches the fallback: under sustained load the microtask queue
 * never empties and no timer or socket callback runs — no heartbeat, no lease
 * check, no timeout.
 *
 * This scheduler keeps one queue and one budget for all the node's fibers. It
 * drains in microtasks, and a `setImmediate` marker tells it whether the event
 * loop got a turn since: after `maxTurns` microtask drains without one, it
 * continues from `setImmediate`, after timers and I/O. No clock is read: the
 * budget counts turns, so runs stay reproducible.
 * @internal
 */
import * as FiberRef from "effect/FiberRef"
import type * as Fiber from "effect/Fiber"
import * as Scheduler from "effect/Scheduler"

class FairScheduler implements Scheduler.Scheduler {
  private tasks = new Scheduler.PriorityBuckets()
  private running = false
  private turns = 0
  private markerPending = false

  constructor(
    private readonly maxTurns: number,
    private readonly macrotask: (callback: () => void) => void
  ) {}

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
      ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
      : false
  }

  scheduleTask(task: Scheduler.Task, priority: number): void {
    this.tasks.scheduleTask(task, priority)
    if (!this.running) {
      this.running = true
      this.schedule()
    }
  }

  private schedule(): void {
    if (!this.markerPending) {
      this.markerPending = true
      this.macrotask(this.marker)
    }
    if (this.turns >= this.maxTurns) {
      this.macrotask(this.drainAfterTurn)
    } else {
      this.turns++
      queueMicrotask(this.drain)
    }
  }

  /** Runs once the event loop has had a turn: the budget starts again. */
  private readonly marker = () => {
    this.markerPending = false
    this.turns = 0
  }

  private readonly drainAfterTurn = () => {
    this.turns = 0
    this.drain()
  }

  private readonly drain = () => {
    const buckets = this.tasks.buckets
    this.tasks.buckets = []
    for (const [, tasks] of buckets) {
      for (let i = 0; i < tasks.length; i++) tasks[i]!()
    }
    if (this.tasks.buckets.length > 0) this.schedule()
    else this.running = false
  }
}

const setImmediateOf = (globalThis as { readonly setImmediate?: (callback: () => void) => unknown }).setImmediate

/** One fair scheduler for every node of the process; Effect's default where `setImmediate` does not exist. */
export const fairScheduler: Scheduler.Scheduler = setImmediateOf === undefined
  ? Scheduler.defaultScheduler
  : new FairScheduler(128, (callback) => void setImmediateOf(callback))
