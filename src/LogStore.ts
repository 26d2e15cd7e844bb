/**
 * Where a node keeps its log. Indices start at 1; a store that holds nothing
 * answers 0 for both `firstIndex` and `lastIndex`. A store must make a
 * `storeLogs` durable before its effect succeeds: the node acknowledges
 * entries to the leader, and counts itself in the commitment, only after that.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { Log } from "./Log.js"
import { registerSyncLog } from "./internal/syncForms.js"
import { LogNotFound, type StorageError } from "./RaftError.js"

/** A node's log. */
export interface LogStore {
  /** Index of the first entry held, 0 when empty. */
  readonly firstIndex: Effect.Effect<number, StorageError>
  /** Index of the last entry held, 0 when empty. */
  readonly lastIndex: Effect.Effect<number, StorageError>
  /** The entry at `index`, or `LogNotFound` when it was compacted or never written. */
  readonly getLog: (index: number) => Effect.Effect<Log, LogNotFound | StorageError>
  /** The entries `from..to` (inclusive), or `LogNotFound` naming the first one missing. */
  readonly getLogs: (from: number, to: number) => Effect.Effect<ReadonlyArray<Log>, LogNotFound | StorageError>
  /** Stores entries (replacing any at the same indices), durably, in one write. */
  readonly storeLogs: (logs: ReadonlyArray<Log>) => Effect.Effect<void, StorageError>
  /** Deletes the entries `min..max` (inclusive): compaction at the front, conflict truncation at the back. */
  readonly deleteRange: (min: number, max: number) => Effect.Effect<void, StorageError>
}

/** The tag of a node's log store. */
export const LogStore: Context.Tag<LogStore, LogStore> = Context.GenericTag<LogStore>("effect-raft/LogStore")

/**
 * A log held in memory, as hashicorp's `InmemStore`: nothing survives the
 * process, but the same instance survives a simulated node restart.
 */
export const makeMemory = (): LogStore => {
  // entries[i] holds index low + i; a Raft log is contiguous, so an array beats a Map on the hot path.
  let entries: Array<Log | undefined> = []
  let low = 0
  let high = 0
  const getLogSync = (index: number): Log | undefined => index < low ? undefined : entries[index - low]
  const storeLogsSync = (logs: ReadonlyArray<Log>): void => {
    for (const log of logs) {
      if (high === 0) {
        entries = [log]
        low = log.index
        high = log.index
        continue
      }
      if (log.index < low) {
        entries = [...new Array<Log | undefined>(low - log.index), ...entries]
        low = log.index
      }
      entries[log.index - low] = log
      if (log.index > high) high = log.index
    }
  }
  const store: LogStore = {
    firstIndex: Effect.sync(() => low),
    lastIndex: Effect.sync(() => high),
    getLog: (index) =>
      Effect.suspend(() => {
        const log = getLogSync(index)
        return log === undefined ? Effect.fail(new LogNotFound({ index })) : Effect.succeed(log)
      }),
    getLogs: (from, to) =>
      Effect.suspend(() => {
        const out: Array<Log> = []
        for (let index = from; index <= to; index++) {
          const log = getLogSync(index)
          if (log === undefined) return Effect.fail(new LogNotFound({ index }))
          out.push(log)
        }
        return Effect.succeed(out)
      }),
    storeLogs: (logs) => Effect.sync(() => storeLogsSync(logs)),
    deleteRange: (min, max) =>
      Effect.sync(() => {
        const from = Math.max(min, low)
        const to = Math.min(max, high)
        if (high === 0 || from > to) return
        if (from === low && to === high) {
          entries = []
          low = 0
          high = 0
          return
        }
        if (from === low) {
          entries = entries.slice(to + 1 - low)
          low = to + 1
        } else if (to === high) {
          entries.length = from - low
          high = from - 1
        } else {
          for (let index = from; index <= to; index++) entries[index - low] = undefined
        }
        while (low <= high && entries[0] === undefined) {
          entries.shift()
          low++
        }
        while (high >= low && entries[high - low] === undefined) {
          entries.pop()
          high--
        }
        if (low > high) {
          entries = []
          low = 0
          high = 0
        }
      })
  }
  // Its writes are done in the call: the engine may store a follower's entries without a hand-off
  // (internal/syncForms.ts).
  return registerSyncLog(store, storeLogsSync)
}

/** A fresh in-memory log per layer build. */
export const layerMemory: Layer.Layer<LogStore> = Layer.sync(LogStore, makeMemory)
