/**
 * effect-raft/file-snapshots: the `SnapshotStore` in files, on
 * `@effect/platform`'s `FileSystem` (`FileSnapshotStore.make`) or on Node's
 * (`FileSnapshotStore.layer`).
 */
export * as FileSnapshotStore from "./storage/FileSnapshotStore.js"
