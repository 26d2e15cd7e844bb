import { describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as LogStore from "../../src/LogStore.js"
import * as StableStore from "../../src/StableStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import * as LogCache from "../../src/storage/LogCache.js"
import * as WalStore from "../../src/storage/WalStore.js"
import * as StoreConformance from "../../src/testing/StoreConformance.js"
import { tempDir } from "./temp.js"

/** A fresh LMDB directory per check; every open is a new environment on it. */
const lmdb = <S>(pick: (store: LmdbStore.LmdbStore) => S): StoreConformance.MakeSubject<S> =>
  Effect.map(tempDir(), (path) => ({ open: Effect.map(LmdbStore.make({ path }), pick) }))

/** A fresh WAL directory per check, with small segments so the checks also cross segment boundaries. */
const wal = <S>(pick: (store: WalStore.WalStore) => S): StoreConformance.MakeSubject<S> =>
  Effect.map(tempDir(), (path) => ({ open: Effect.map(WalStore.make({ path, segmentBytes: 4096 }), pick) }))

const register = (suite: string, checks: ReadonlyArray<StoreConformance.Check>) =>
  describe(suite, () => {
    for (const check of checks) it.scoped(check.name, () => check.run)
  })

register("LogStore conformance: memory", StoreConformance.logStore(StoreConformance.inMemory(LogStore.makeMemory)))
register(
  "LogStore conformance: LogCache over memory",
  StoreConformance.logStore(StoreConformance.inMemory(() => LogCache.make(LogStore.makeMemory(), 8)))
)
register(
  "LogStore conformance: LogCache over memory, 64 bytes of entries at most",
  StoreConformance.logStore(StoreConformance.inMemory(() => LogCache.make(LogStore.makeMemory(), 8, 64)))
)
register("LogStore conformance: LMDB", StoreConformance.logStore(lmdb((store) => store.logs)))
register(
  "LogStore conformance: LogCache over LMDB",
  StoreConformance.logStore(lmdb((store) => LogCache.make(store.logs, 8)))
)
register("StableStore conformance: memory", StoreConformance.stableStore(StoreConformance.inMemory(StableStore.makeMemory)))
register("StableStore conformance: LMDB", StoreConformance.stableStore(lmdb((store) => store.stable)))
register("LogStore conformance: WAL", StoreConformance.logStore(wal((store) => store.logs)))
register("LogStore conformance: LogCache over WAL", StoreConformance.logStore(wal((store) => LogCache.make(store.logs, 8))))
register("StableStore conformance: WAL", StoreConformance.stableStore(wal((store) => store.stable)))
