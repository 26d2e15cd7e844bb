/**
 * Recent log entries kept in memory in front of any `LogStore`, as
 * hashicorp's `LogCache`: replication reads of fresh entries (the common case:
 * followers are close behind) are answered without touching the disk.
 *
 * A ring of `capacity` slots, slot `index % capacity`. An entry enters the
 * cache only after the store below accepted it, so the cache never holds what
 * is not durable; `deleteRange` empties the cache (as hashicorp's does), since
 * compaction and conflict truncation are rare. First and last index always come
 * from the store below.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Log } from "../Log.js"
import { LogStore } from "../LogStore.js"

/** `store` with its newest `capacity` entries (at least 1) kept in memory. */
export const make = (store: LogStore, capacity: number): LogStore => {
  const size = Math.max(1, Math.floor(capacity))
  let ring = new Array<Log | undefined>(size)
  // Bumped by deleteRange: a store that was in flight across a delete does not fill the cache.
  let generation = 0
  const cached = (index: number): Log | undefined => {
    const log = ring[index % size]
    return log !== undefined && log.index === index ? log : undefined
  }
  return {
    firstIndex: store.firstIndex,
    lastIndex: store.lastIndex,
    getLog: (index) =>
      Effect.suspend(() => {
        const log = cached(index)
        return log === undefined ? store.getLog(index) : Effect.succeed(log)
      }),
    getLogs: (from, to) =>
      Effect.suspend(() => {
        if (to - from + 1 > size) return store.getLogs(from, to)
        const out: Array<Log> = []
        for (let index = from; index <= to; index++) {
          const log = cached(index)
          if (log === undefined) return store.getLogs(from, to)
          out.push(log)
        }
        return Effect.succeed(out)
      }),
    storeLogs: (logs) =>
      Effect.suspend(() => {
        const started = generation
        return Effect.tap(store.storeLogs(logs), () => {
          if (started !== generation) return
          for (const log of logs) ring[log.index % size] = log
        })
      }),
    deleteRange: (min, max) =>
      Effect.suspend(() => {
        generation++
        ring = new Array<Log | undefined>(size)
        return store.deleteRange(min, max)
      })
  }
}

/** Wraps the `LogStore` in context with a cache of its newest `capacity` entries. */
export const layer = (capacity: number): Layer.Layer<LogStore, never, LogStore> =>
  Layer.effect(LogStore, Effect.map(LogStore, (store) => make(store, capacity)))
