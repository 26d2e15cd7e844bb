/**
 * The metric handles the engine updates, gathered in one record for its
 * modules; they are defined (and documented) in the public `RaftMetrics`
 * module. Each is tagged by node, and by peer where it applies.
 * @internal
 */
import * as RaftMetrics from "../RaftMetrics.js"

/** Metrics a node updates. */
export const metrics = {
  applies: RaftMetrics.applies,
  commitTime: RaftMetrics.commitTime,
  commitNumLogs: RaftMetrics.commitNumLogs,
  fsmApply: RaftMetrics.fsmApply,
  fsmApplyNumLogs: RaftMetrics.fsmApplyNumLogs,
  appendEntriesRpc: RaftMetrics.appendEntriesRpc,
  appendEntriesLogs: RaftMetrics.appendEntriesLogs,
  heartbeat: RaftMetrics.heartbeat,
  heartbeatFailures: RaftMetrics.heartbeatFailures,
  installSnapshot: RaftMetrics.installSnapshot,
  lastContact: RaftMetrics.lastContact,
  snapshots: RaftMetrics.snapshots,
  snapshotPersist: RaftMetrics.snapshotPersist,
  fsmRestore: RaftMetrics.fsmRestore,
  oldestLogAge: RaftMetrics.oldestLogAge,
  elections: RaftMetrics.elections,
  stateChanges: RaftMetrics.stateChanges,
  leaseStepDowns: RaftMetrics.leaseStepDowns
} as const
