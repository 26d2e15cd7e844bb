/**
 * effect-raft: Raft consensus for TypeScript, built on Effect. Each module is
 * exported as a namespace, as Effect's own packages do.
 *
 * This entry point is platform-neutral: the core, the memory stores and
 * network, and the testing tools. It loads no native module and no
 * Node-only package. The pieces that need Node are subpaths, each a file
 * beside this one: `effect-raft/lmdb` (`lmdb.ts`), `effect-raft/tcp`
 * (`tcp.ts`), `effect-raft/file-snapshots` (`file-snapshots.ts`) and
 * `effect-raft/kv` (`kv/index.ts`); `effect-raft/testing`
 * (`testing/index.ts`) repeats the testing tools for test files.
 */
export * as Configuration from "./Configuration.js"
export * as Fsm from "./Fsm.js"
export * as Linearizability from "./testing/Linearizability.js"
export * as Log from "./Log.js"
export * as LogCache from "./storage/LogCache.js"
export * as LogStore from "./LogStore.js"
export * as MemoryNetwork from "./transport/MemoryNetwork.js"
export * as Raft from "./Raft.js"
export * as RaftConfig from "./RaftConfig.js"
export * as RaftError from "./RaftError.js"
export * as Rpc from "./Rpc.js"
export * as SnapshotStore from "./SnapshotStore.js"
export * as SnapshotStoreConformance from "./testing/SnapshotStoreConformance.js"
export * as Simulator from "./testing/Simulator.js"
export * as StableStore from "./StableStore.js"
export * as StoreConformance from "./testing/StoreConformance.js"
export * as TestCluster from "./testing/TestCluster.js"
export * as Transport from "./Transport.js"
