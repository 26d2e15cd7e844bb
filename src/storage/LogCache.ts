/**
 * Recent log entries kept in memory in front of any `LogStore`, as
 * hashicorp's `LogCache`: replication reads of fresh entries (the common case:
 * followers are close behind) are answered without touching the disk.
 *
 * A ring of `capacity` slots, slot `index % capacity`, holding at most
 * `maxBytes` of entry data: past it the oldest entries leave first (4,096
 * entries of up to `maxEntryBytes`, 1 MiB, would otherwise hold 4 GiB). An entry enters the
 * cache only after the store below accepted it, so the cache never holds what
 * is not durable; `deleteRange` empties the cache (as hashicorp's does), since
 * compaction and conflict truncation are rare. First and last index always come
 * from the store below.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Log } from "../Log.js"
import { LogStore } from "../LogStore.js"

/** `store` with its newest `capacity` entries (at least 1), at most `maxBytes` of their data, kept in memory. */
export const make = (store: LogStore, capacity: number, maxBytes: number = Number.POSITIVE_INFINITY): LogStore => {
  const size = Math.max(1, Math.floor(capacity))
  let ring = new Array<Log | undefined>(size)
  // The cached entries' count and data bytes; every cached index lies in [low, high] (evicted from low up).
  let count = 0
  let bytes = 0
  let low = 0
  let high = 0
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
          for (const log of logs) {
            const slot = log.index % size
            const replaced = ring[slot]
            if (replaced !== undefined) {
              bytes -= replaced.data.byteLength
              count--
            }
            if (count === 0 || log.index < low) low = log.index
            if (count === 0 || log.index > high) high = log.index
            ring[slot] = log
            bytes += log.data.byteLength
            count++
          }
          // Older slots were overwritten; then the oldest entries leave until the data fits (the newest always stays).
          low = Math.max(low, high - size + 1)
          while (bytes > maxBytes && low < high) {
            const slot = low % size
            const oldest = ring[slot]
            if (oldest !== undefined && oldest.index === low) {
              bytes -= oldest.data.byteLength
              count--
              ring[slot] = undefined
            }
            low++
          }
        })
      }),
    deleteRange: (min, max) =>
      Effect.suspend(() => {
        generation++
        ring = new Array<Log | undefined>(size)
        count = 0
        bytes = 0
        return store.deleteRange(min, max)
      })
  }
}

/** Wraps the `LogStore` in context with a cache of its newest `capacity` entries, at most `maxBytes` of their data. */
export const layer = (capacity: number, maxBytes?: number): Layer.Layer<LogStore, never, LogStore> =>
  Layer.effect(LogStore, Effect.map(LogStore, (store) => make(store, capacity, maxBytes)))
