import * as Layer from "effect/Layer"
import { LogCache, Raft } from "effect-raft"
import { FileSnapshotStore } from "effect-raft/file-snapshots"
import { LmdbStore } from "effect-raft/lmdb"
import { TcpTransport } from "effect-raft/tcp"
import { Counter } from "./counter.js"

// Server "a" of a cluster of processes: its log and term in LMDB, snapshots in files, its peers over TCP.
export const node = Raft.layer({ localId: "a" }).pipe(
  Layer.provide(LogCache.layer(512)), // the newest entries in memory, in front of the LMDB log
  Layer.provide([
    Counter.layer,
    LmdbStore.layer({ path: "data/a/raft" }),
    FileSnapshotStore.layer("data/a/snapshots"),
    TcpTransport.layer({ bind: { host: "0.0.0.0", port: 7001 }, advertise: "10.0.0.1:7001" })
  ])
)
