/**
 * The messages Raft nodes exchange. Each is a Schema so a transport can decode
 * untrusted bytes at its boundary; inside a process they are plain objects.
 * Field meanings follow the Raft paper (§5) and hashicorp/raft's `commands.go`.
 */
import * as Schema from "effect/Schema"
import { Configuration } from "./Configuration.js"
import { Log } from "./Log.js"

/**
 * The W3C trace context of the sender's span (`00-<trace id>-<span id>-<flags>`), on requests of a traced
 * operation only: the receiver's span becomes its child, so one apply's trace spans the cluster. At most 128
 * characters; a value the receiver cannot read starts a trace of its own.
 */
export const TraceParent = Schema.String.pipe(Schema.maxLength(128))

/**
 * The sender's cluster id, on every request when its node has one: a node of another cluster refuses the request
 * (`ClusterMismatch`), and a node that has none yet takes its leader's.
 */
const clusterId = Schema.optional(Schema.String)

/** Leader → follower: append `entries` after `prevLogIndex`/`prevLogTerm`; also the heartbeat (no entries). */
export const AppendEntriesRequest = Schema.TaggedStruct("AppendEntriesRequest", {
  term: Schema.NonNegativeInt,
  leaderId: Schema.String,
  leaderAddress: Schema.String,
  prevLogIndex: Schema.NonNegativeInt,
  prevLogTerm: Schema.NonNegativeInt,
  entries: Schema.Array(Log),
  leaderCommitIndex: Schema.NonNegativeInt,
  traceparent: Schema.optionalWith(TraceParent, { exact: true }),
  clusterId
})
/** Leader → follower: append entries, or heartbeat. */
export type AppendEntriesRequest = typeof AppendEntriesRequest.Type

/** Follower → leader. `lastLog` is the follower's last index, a hint for stepping `nextIndex` back on rejection. */
export const AppendEntriesResponse = Schema.TaggedStruct("AppendEntriesResponse", {
  term: Schema.NonNegativeInt,
  lastLog: Schema.NonNegativeInt,
  success: Schema.Boolean,
  noRetryBackoff: Schema.Boolean
})
/** Follower → leader answer to AppendEntries. */
export type AppendEntriesResponse = typeof AppendEntriesResponse.Type

/** Candidate → voter. `leadershipTransfer` asks voters to ignore a live leader (TimeoutNow campaigns). */
export const RequestVoteRequest = Schema.TaggedStruct("RequestVoteRequest", {
  term: Schema.NonNegativeInt,
  candidateId: Schema.String,
  candidateAddress: Schema.String,
  lastLogIndex: Schema.NonNegativeInt,
  lastLogTerm: Schema.NonNegativeInt,
  leadershipTransfer: Schema.Boolean,
  traceparent: Schema.optionalWith(TraceParent, { exact: true }),
  clusterId
})
/** Candidate → voter. */
export type RequestVoteRequest = typeof RequestVoteRequest.Type

/** Voter → candidate. */
export const RequestVoteResponse = Schema.TaggedStruct("RequestVoteResponse", {
  term: Schema.NonNegativeInt,
  granted: Schema.Boolean
})
/** Voter → candidate. */
export type RequestVoteResponse = typeof RequestVoteResponse.Type

/**
 * Candidate → voter, before an election (PreVote, Raft thesis §9.6): would you vote for me at `term`?
 * The voter changes nothing, neither its term nor its vote; the candidate campaigns only if a quorum says yes.
 */
export const RequestPreVoteRequest = Schema.TaggedStruct("RequestPreVoteRequest", {
  term: Schema.NonNegativeInt,
  candidateId: Schema.String,
  candidateAddress: Schema.String,
  lastLogIndex: Schema.NonNegativeInt,
  lastLogTerm: Schema.NonNegativeInt,
  traceparent: Schema.optionalWith(TraceParent, { exact: true }),
  clusterId
})
/** Candidate → voter, before an election. */
export type RequestPreVoteRequest = typeof RequestPreVoteRequest.Type

/** Voter → candidate: whether it would grant a vote at the asked term. `term` is the voter's own. */
export const RequestPreVoteResponse = Schema.TaggedStruct("RequestPreVoteResponse", {
  term: Schema.NonNegativeInt,
  granted: Schema.Boolean
})
/** Voter → candidate answer to a pre-vote. */
export type RequestPreVoteResponse = typeof RequestPreVoteResponse.Type

/**
 * Leader → follower: replace your state with this snapshot. The snapshot's bytes travel after the request as a
 * stream (no size is needed up front); `lastLogIndex`/`lastLogTerm` name the last entry it covers.
 */
export const InstallSnapshotRequest = Schema.TaggedStruct("InstallSnapshotRequest", {
  term: Schema.NonNegativeInt,
  leaderId: Schema.String,
  leaderAddress: Schema.String,
  lastLogIndex: Schema.NonNegativeInt,
  lastLogTerm: Schema.NonNegativeInt,
  configuration: Configuration,
  configurationIndex: Schema.NonNegativeInt,
  traceparent: Schema.optionalWith(TraceParent, { exact: true }),
  clusterId
})
/** Leader → follower: install a snapshot (its data follows as a stream). */
export type InstallSnapshotRequest = typeof InstallSnapshotRequest.Type

/** Follower → leader: whether the snapshot was stored and installed. */
export const InstallSnapshotResponse = Schema.TaggedStruct("InstallSnapshotResponse", {
  term: Schema.NonNegativeInt,
  success: Schema.Boolean
})
/** Follower → leader answer to InstallSnapshot. */
export type InstallSnapshotResponse = typeof InstallSnapshotResponse.Type

/** Leader → its chosen successor (leadership transfer): campaign now, without waiting for a timeout. */
export const TimeoutNowRequest = Schema.TaggedStruct("TimeoutNowRequest", {
  term: Schema.NonNegativeInt,
  leaderId: Schema.String,
  leaderAddress: Schema.String,
  clusterId
})
/** Leader → successor: campaign now. */
export type TimeoutNowRequest = typeof TimeoutNowRequest.Type

/** Successor → leader. */
export const TimeoutNowResponse = Schema.TaggedStruct("TimeoutNowResponse", {
  term: Schema.NonNegativeInt,
  success: Schema.Boolean
})
/** Successor → leader answer to TimeoutNow. */
export type TimeoutNowResponse = typeof TimeoutNowResponse.Type

/**
 * Follower → leader: the read index of a linearizable read (`raft.readIndex` on a follower). Reads that arrive
 * together share one request. With `lease`, the leader may answer from its lease instead of a heartbeat round.
 */
export const ReadIndexRequest = Schema.TaggedStruct("ReadIndexRequest", {
  term: Schema.NonNegativeInt,
  serverId: Schema.String,
  serverAddress: Schema.String,
  lease: Schema.Boolean,
  clusterId
})
/** Follower → leader: asks for a read index. */
export type ReadIndexRequest = typeof ReadIndexRequest.Type

/**
 * Leader → follower. With `success`, `index` is the leader's commit index (at least its no-op's) recorded after the
 * request arrived and confirmed by a heartbeat round or the lease: once the follower has applied it, its state
 * machine holds every write acknowledged before the read began. Without, the node is not (or no longer) the leader.
 */
export const ReadIndexResponse = Schema.TaggedStruct("ReadIndexResponse", {
  term: Schema.NonNegativeInt,
  success: Schema.Boolean,
  index: Schema.NonNegativeInt
})
/** Leader → follower answer to ReadIndex. */
export type ReadIndexResponse = typeof ReadIndexResponse.Type

/** Every request a node serves. */
export const Request = Schema.Union(
  AppendEntriesRequest,
  RequestVoteRequest,
  RequestPreVoteRequest,
  InstallSnapshotRequest,
  TimeoutNowRequest,
  ReadIndexRequest
)
/** Every request a node serves. */
export type Request = typeof Request.Type

/** Every response a node sends. */
export const Response = Schema.Union(
  AppendEntriesResponse,
  RequestVoteResponse,
  RequestPreVoteResponse,
  InstallSnapshotResponse,
  TimeoutNowResponse,
  ReadIndexResponse
)
/** Every response a node sends. */
export type Response = typeof Response.Type
