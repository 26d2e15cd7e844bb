/**
 * effect-raft/wal: the durable `LogStore` and `StableStore` as a write-ahead
 * log of our own (append-only segment files, one fdatasync per batch; no
 * native module). Put `LogCache` (from `effect-raft`) in front of the log.
 * docs/storage.md describes the format and what it guarantees.
 */
export * as WalStore from "./storage/WalStore.js"
