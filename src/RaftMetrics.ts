/**
 * The metrics a Raft node updates, as Effect `Metric` handles: read them with
 * `Metric.value` (tagged with `Metric.taggedWithLabels`), or export every one
 * with `@effect/opentelemetry`'s `Metrics.layer` (the key-value service serves
 * them as Prometheus text at `GET /metrics`). Names follow hashicorp/raft's
 * (`raft.replication.appendEntries.rpc` becomes
 * `raft_replication_append_entries_rpc_micros`); every one carries the label
 * `node` (the server id), per-follower ones also `peer`.
 *
 * Durations in `*_micros` histograms are measured on `Clock`'s nanosecond
 * time, so a 40 µs round trip lands in the 50 µs bucket, not in 1,000 µs.
 * docs/observability.md lists them with what to watch for.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** Bucket bounds of every `*_micros` histogram: 10 µs to 1 s. */
export const microsBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.fromIterable([
  10,
  25,
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

/** Bucket bounds of the histograms that count entries: 1, 2, 4, … 1024. */
export const countBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 1,
  factor: 2,
  count: 11
})

type Histogram = Metric.Metric.Histogram<number>
type Counter = Metric.Metric.Counter<number>
type Gauge = Metric.Metric.Gauge<number>

const micros = (name: string, description: string): Histogram =>
  Metric.histogram(name, microsBoundaries, description)

/** Commands a leader accepted (hashicorp's raft.apply). */
export const applies: Counter = Metric.counter("raft_apply_total", {
  incremental: true,
  description: "commands and barriers this node accepted as leader"
})

/** From a batch's append on the leader to its commit, µs (hashicorp's raft.commitTime). */
export const commitTime: Histogram = micros(
  "raft_commit_time_micros",
  "time from appending a batch on the leader to its commit, µs"
)

/** Entries committed at once on the leader, per commit (hashicorp's raft.commitNumLogs). */
export const commitNumLogs: Histogram = Metric.histogram(
  "raft_commit_num_logs",
  countBoundaries,
  "entries handed to the state machine by one commit on the leader"
)

/** The state machine's `applyBatch`, per batch, µs (hashicorp's raft.fsm.apply, which it times per entry). */
export const fsmApply: Histogram = micros("raft_fsm_apply_micros", "time the state machine took to apply one batch, µs")

/** Entries per batch the state machine applied (hashicorp's raft.fsm.applyBatchNum). */
export const fsmApplyNumLogs: Histogram = Metric.histogram(
  "raft_fsm_apply_num_logs",
  countBoundaries,
  "entries in one batch applied to the state machine"
)

/** One AppendEntries round trip to a follower, µs, labelled `peer` (raft.replication.appendEntries.rpc). */
export const appendEntriesRpc: Histogram = micros(
  "raft_replication_append_entries_rpc_micros",
  "AppendEntries round trip per peer, µs"
)

/** Entries sent to a follower, labelled `peer` (raft.replication.appendEntries.logs). */
export const appendEntriesLogs: Counter = Metric.counter("raft_replication_append_entries_logs_total", {
  incremental: true,
  description: "entries sent to each peer"
})

/** One heartbeat round trip to a follower, µs, labelled `peer` (raft.replication.heartbeat). */
export const heartbeat: Histogram = micros("raft_replication_heartbeat_micros", "heartbeat round trip per peer, µs")

/** Heartbeats that failed, labelled `peer` (raft.replication.heartbeat.fail). */
export const heartbeatFailures: Counter = Metric.counter("raft_replication_heartbeat_failures_total", {
  incremental: true,
  description: "heartbeats that failed, per peer"
})

/** A whole InstallSnapshot transfer to a follower, µs, labelled `peer` (raft.replication.installSnapshot). */
export const installSnapshot: Histogram = micros(
  "raft_replication_install_snapshot_micros",
  "InstallSnapshot transfer per peer, µs"
)

/**
 * On the leader, milliseconds since each follower last answered, labelled `peer`, sampled at every lease check
 * (hashicorp's raft.leader.lastContact). A follower that stopped answering shows a growing value.
 */
export const lastContact: Gauge = Metric.gauge("raft_leader_last_contact_millis", {
  description: "milliseconds since each follower last answered the leader, per peer"
})

/** Snapshots this node took and persisted (raft.snapshot.takeSnapshot, counted). */
export const snapshots: Counter = Metric.counter("raft_snapshot_total", {
  incremental: true,
  description: "snapshots this node took and persisted"
})

/** Streaming a snapshot this node took into its snapshot store, µs (hashicorp's raft.snapshot.persist). */
export const snapshotPersist: Histogram = micros(
  "raft_snapshot_persist_micros",
  "time to write a snapshot this node took into the snapshot store, µs"
)

/** Replacing the state machine's state with a snapshot, µs (hashicorp's raft.fsm.restore). */
export const fsmRestore: Histogram = micros(
  "raft_fsm_restore_micros",
  "time the state machine took to restore a snapshot, µs"
)

/**
 * Age of the oldest entry in the log store, ms (hashicorp's raft.oldestLogAge): how far back a lagging follower can
 * still catch up from the log alone. Known to within a second for entries appended since the node started; entries
 * it found in its store at start count from the start.
 */
export const oldestLogAge: Gauge = Metric.gauge("raft_oldest_log_age_millis", {
  description: "age of the oldest entry in the log store, ms"
})

/** Elections this node started (raft.election). */
export const elections: Counter = Metric.counter("raft_election_total", {
  incremental: true,
  description: "elections this node started"
})

/** Role changes, labelled `state` with the new role (raft.state.follower, .candidate, .leader). */
export const stateChanges: Counter = Metric.counter("raft_state_change_total", {
  incremental: true,
  description: "role changes, tagged by the new state"
})

/** Times a leader stepped down for lack of contact with a quorum within its lease (hashicorp logs it). */
export const leaseStepDowns: Counter = Metric.counter("raft_leader_lease_step_down_total", {
  incremental: true,
  description: "times a leader stepped down for lack of contact with a quorum"
})
