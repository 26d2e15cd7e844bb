/**
 * effect-raft: Raft consensus for TypeScript, built on Effect. Each module is
 * exported as a namespace, as Effect's own packages do.
 */
export * as Configuration from "./Configuration.js"
export * as Fsm from "./Fsm.js"
export * as Linearizability from "./testing/Linearizability.js"
export * as LmdbStore from "./storage/LmdbStore.js"
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
export * as TcpTransport from "./transport/TcpTransport.js"
export * as Transport from "./Transport.js"
