/**
 * effect-raft/testing: what a user needs to test a state machine or a store,
 * also exported by `effect-raft` itself. A separate entry point so that a test
 * file's imports say what they are for.
 */
export * as Linearizability from "./Linearizability.js"
export * as Simulator from "./Simulator.js"
export * as SnapshotStoreConformance from "./SnapshotStoreConformance.js"
export * as StoreConformance from "./StoreConformance.js"
export * as TestCluster from "./TestCluster.js"
