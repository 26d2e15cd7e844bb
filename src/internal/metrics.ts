/**
 * The metrics a node updates, named after hashicorp/raft's; each is tagged by
 * node, and by peer where it applies.
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

const microsBoundaries = MetricBoundaries.fromIterable([
  50,
  100,
  250,
  500,
  1000,
  2500,
  5000,
  10_000,
  25_000,
  50_000,
  100_000,
  250_000,
  1_000_000
])
const microsHistogram = (name: string, description: string) => Metric.histogram(name, microsBoundaries, description)

/** Metrics a node updates. */
export const metrics = {
  applies: Metric.counter("raft_apply_total", { description: "commands accepted by the leader" }),
  commitTime: microsHistogram("raft_commit_time_micros", "time from storing a batch on the leader to its commit, µs"),
  appendEntriesRpc: microsHistogram("raft_replication_append_entries_rpc_micros", "AppendEntries round trip per peer, µs"),
  appendEntriesLogs: Metric.counter("raft_replication_append_entries_logs_total", {
    description: "entries sent to each peer"
  }),
  heartbeat: microsHistogram("raft_replication_heartbeat_micros", "heartbeat round trip per peer, µs"),
  installSnapshot: microsHistogram("raft_replication_install_snapshot_micros", "InstallSnapshot transfer per peer, µs"),
  snapshots: Metric.counter("raft_snapshot_total", { description: "snapshots this node took and persisted" }),
  heartbeatFailures: Metric.counter("raft_replication_heartbeat_failures_total", {
    description: "heartbeats that failed, per peer"
  }),
  elections: Metric.counter("raft_election_total", { description: "elections this node started" }),
  stateChanges: Metric.counter("raft_state_change_total", { description: "role changes, tagged by the new state" }),
  leaseStepDowns: Metric.counter("raft_leader_lease_step_down_total", {
    description: "times a leader stepped down for lack of contact with a quorum"
  })
}
