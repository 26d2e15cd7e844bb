/**
 * effect-raft/lmdb: the durable `LogStore` and `StableStore` on LMDB (the
 * `lmdb` package, a native module). Put `LogCache` (from `effect-raft`) in
 * front of the log.
 */
export * as LmdbStore from "./storage/LmdbStore.js"
