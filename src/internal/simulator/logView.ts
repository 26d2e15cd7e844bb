/**
 * A simulated server's log as the checks read it: a copy of what its log store holds, kept in step with the
 * store by the store itself (`stores.ts`), so that the checks after every event read entries without running an
 * effect.
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Log from "../../Log.js"
import type * as SnapshotStore from "../../SnapshotStore.js"

/**
 * What a node's log store holds, kept in step with it, for the checks to read without running an effect: every
 * write and deletion updates the view right after the store, in the same fiber step.
 */
export class LogView {
  private readonly entries = new Map<number, Log.Log>()
  /** Index of the first entry held, 0 when empty (as the store's `firstIndex`). */
  first = 0
  /** Index of the last entry held, 0 when empty (as the store's `lastIndex`). */
  last = 0

  get(index: number): Log.Log | undefined {
    return this.entries.get(index)
  }

  store(logs: ReadonlyArray<Log.Log>): void {
    for (const log of logs) {
      this.entries.set(log.index, log)
      if (this.last === 0) {
        this.first = log.index
        this.last = log.index
      } else {
        if (log.index < this.first) this.first = log.index
        if (log.index > this.last) this.last = log.index
      }
    }
  }

  delete(min: number, max: number): void {
    const from = Math.max(min, this.first)
    const to = Math.min(max, this.last)
    if (this.last === 0 || from > to) return
    for (let index = from; index <= to; index++) this.entries.delete(index)
    while (this.first <= this.last && !this.entries.has(this.first)) this.first++
    while (this.last >= this.first && !this.entries.has(this.last)) this.last--
    if (this.first > this.last) {
      this.first = 0
      this.last = 0
    }
  }
}

/** The term of the entry before `index` in a log (held, or covered by a snapshot ending there), if known. */
export const termBefore = (view: LogView, snapshots: SnapshotStore.SnapshotStore, index: number): number | undefined => {
  if (index <= 1) return 0
  const held = view.get(index - 1)
  if (held !== undefined) return held.term
  return Effect.runSync(snapshots.list).find((meta) => meta.index === index - 1)?.term
}
