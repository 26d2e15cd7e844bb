/**
 * Every typed failure effect-raft can produce. Errors that reach a client or
 * cross the wire are `Schema.TaggedError`s (they serialise); errors that stay
 * inside a process are `Data.TaggedError`s. `RaftError` is the union of all of
 * them, for users who want one type to match on.
 */
import * as Data from "effect/Data"
import * as Schema from "effect/Schema"

/** The node is not the leader; `leaderId`/`leaderAddress` say who is, when known, so a client can redirect. */
export class NotLeader extends Schema.TaggedError<NotLeader>()("NotLeader", {
  leaderId: Schema.optional(Schema.String),
  leaderAddress: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return this.leaderId === undefined ? "not the leader, leader unknown" : `not the leader, leader is ${this.leaderId}`
  }
}

/** The node was leader when the operation was accepted but lost leadership before it committed: its outcome is unknown. */
export class LeadershipLost extends Schema.TaggedError<LeadershipLost>()("LeadershipLost", {}) {
  override get message(): string {
    return "leadership lost while the operation was in flight"
  }
}

/**
 * The caller's timeout ran out before the operation's outcome was known. If the entry was already appended it may
 * still commit later: the outcome is unknown, as with `LeadershipLost`. The node has dropped the caller's waiter.
 */
export class ApplyTimeout extends Schema.TaggedError<ApplyTimeout>()("ApplyTimeout", {
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `no outcome within ${this.timeoutMillis} ms (the entry may still commit)`
  }
}

/**
 * A linearizable read (`readIndex`) did not complete within the caller's timeout. Nothing changed: a read has no
 * side effect, so it may simply be retried.
 */
export class ReadTimeout extends Schema.TaggedError<ReadTimeout>()("ReadTimeout", {
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `no read index within ${this.timeoutMillis} ms`
  }
}

/** The leader is handing leadership to another server and accepts no new entries until that ends. */
export class LeadershipTransferInProgress extends Schema.TaggedError<LeadershipTransferInProgress>()(
  "LeadershipTransferInProgress",
  {}
) {
  override get message(): string {
    return "leadership transfer in progress"
  }
}

/** A leadership transfer did not produce a new leader (`reason` says why); this node may still be leader. */
export class LeadershipTransferFailed extends Schema.TaggedError<LeadershipTransferFailed>()(
  "LeadershipTransferFailed",
  { reason: Schema.String }
) {
  override get message(): string {
    return `leadership transfer failed: ${this.reason}`
  }
}

/** A user snapshot was asked for, but nothing was applied since the last one. */
export class NothingNewToSnapshot extends Schema.TaggedError<NothingNewToSnapshot>()("NothingNewToSnapshot", {}) {
  override get message(): string {
    return "nothing new to snapshot"
  }
}

/** A membership change named `prevIndex`, but the latest configuration is at `latestIndex`: it moved on. */
export class ConfigurationChanged extends Schema.TaggedError<ConfigurationChanged>()("ConfigurationChanged", {
  prevIndex: Schema.Number,
  latestIndex: Schema.Number
}) {
  override get message(): string {
    return `configuration changed since ${this.prevIndex} (latest is ${this.latestIndex})`
  }
}

/** The state machine could not take or restore a snapshot. */
export class FsmError extends Data.TaggedError("FsmError")<{
  readonly operation: "snapshot" | "restore"
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `state machine ${this.operation} failed: ${this.reason}`
  }
}

/**
 * A command is larger than `RaftConfig.maxEntryBytes` (`size` and `limit` in bytes): `apply` refuses it before
 * anything is appended, so one oversized write can never produce a frame that peers refuse.
 */
export class EntryTooLarge extends Schema.TaggedError<EntryTooLarge>()("EntryTooLarge", {
  size: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `entry of ${this.size} bytes exceeds the limit of ${this.limit} bytes`
  }
}

/** The node has been shut down (explicitly or because its layer was closed). */
export class RaftShutdown extends Schema.TaggedError<RaftShutdown>()("RaftShutdown", {}) {
  override get message(): string {
    return "raft is shut down"
  }
}

/** `bootstrapCluster` found existing state (a term, a log or a snapshot), or the configuration given is unusable. */
export class CantBootstrap extends Schema.TaggedError<CantBootstrap>()("CantBootstrap", {
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot bootstrap: ${this.reason}`
  }
}

/**
 * `recoverCluster` refused to rewrite a node's stores: the configuration given is unusable, or the stores hold
 * nothing to recover (`reason` says which).
 */
export class CantRecover extends Schema.TaggedError<CantRecover>()("CantRecover", {
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot recover: ${this.reason}`
  }
}

/** A configuration value is invalid; `field` names it. */
export class RaftConfigError extends Schema.TaggedError<RaftConfigError>()("RaftConfigError", {
  field: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid raft configuration: ${this.field} ${this.reason}`
  }
}

/** The log store does not hold the entry at `index` (compacted, or never written). */
export class LogNotFound extends Data.TaggedError("LogNotFound")<{ readonly index: number }> {
  override get message(): string {
    return `log entry ${this.index} not found`
  }
}

/** A storage operation failed; `operation` names it. The node stops acknowledging what it could not store. */
export class StorageError extends Data.TaggedError("StorageError")<{
  readonly operation: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `storage ${this.operation} failed: ${this.reason}`
  }
}

/** The transport cannot pipeline AppendEntries to this peer; replication silently uses plain RPCs instead. */
export class PipelineNotSupported extends Data.TaggedError("PipelineNotSupported")<{}> {
  override get message(): string {
    return "pipeline replication not supported"
  }
}

/**
 * An RPC could not be delivered or answered: `reason` is `unreachable`, `timeout`, `closed`, `remote`, `identity`
 * (TLS: the peer's certificate does not name the server id that was dialled; `detail` says both), or `oversize` (the
 * request's frame would exceed the transport's `maxFrameBytes`: it was not sent, and sending it again cannot succeed).
 */
export class TransportError extends Data.TaggedError("TransportError")<{
  readonly target: string
  readonly reason: "unreachable" | "timeout" | "closed" | "remote" | "identity" | "oversize"
  readonly detail?: string
}> {
  override get message(): string {
    return `rpc to ${this.target} failed: ${this.reason}${this.detail === undefined ? "" : ` (${this.detail})`}`
  }
}

/**
 * Bytes from a peer could not be decoded: a malformed or oversize frame, a frame the receive budget has no room for
 * (`budget`), an unknown frame type or protocol version, a message that fails its Schema, or a peer that stalls. The
 * transport closes that connection and logs this with the peer's address.
 */
export class CodecError extends Data.TaggedError("CodecError")<{
  readonly peer: string
  readonly reason: "malformed" | "oversize" | "budget" | "version" | "frame-type" | "schema" | "stalled"
  readonly detail: string
}> {
  override get message(): string {
    return `bad input from ${this.peer}: ${this.reason} (${this.detail})`
  }
}

/** A transport could not listen on its address (in use, not permitted, no such interface, bad TLS material, options that cannot work together). */
export class BindError extends Data.TaggedError("BindError")<{
  readonly address: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `cannot listen on ${this.address}: ${this.reason}`
  }
}

/** No snapshot is available to send to a follower whose next entry was compacted away. */
export class SnapshotNotFound extends Data.TaggedError("SnapshotNotFound")<{ readonly reason: string }> {
  override get message(): string {
    return `no snapshot available: ${this.reason}`
  }
}

/** A bootstrap configuration in which the local server is not a voter (hashicorp's ErrNotVoter). */
export class NotVoter extends Schema.TaggedError<NotVoter>()("NotVoter", {
  id: Schema.String
}) {
  override get message(): string {
    return `cannot bootstrap: ${this.id} is not a voter of the configuration`
  }
}

/**
 * A request from a node of another cluster (its cluster id differs from this node's): refused unserved, and the
 * sender's transport reports it as a `TransportError` of reason `identity`.
 */
export class ClusterMismatch extends Data.TaggedError("ClusterMismatch")<{
  readonly expected: string
  readonly got: string
}> {
  override get message(): string {
    return `request from cluster ${this.got} refused by a node of cluster ${this.expected}`
  }
}

/**
 * A node's stores belong to another node (or cluster): it refuses to start rather than act on them. `reason` says
 * what was found and what to do.
 */
export class IdentityMismatch extends Data.TaggedError("IdentityMismatch")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** The operation is not valid in the node's current situation (e.g. a voter that is not in the configuration). */
export class InvalidOperation extends Schema.TaggedError<InvalidOperation>()("InvalidOperation", {
  reason: Schema.String
}) {
  override get message(): string {
    return this.reason
  }
}

/** Errors `apply` and `barrier` can fail with. */
export type ApplyError =
  | NotLeader
  | LeadershipLost
  | LeadershipTransferInProgress
  | ApplyTimeout
  | RaftShutdown
  | StorageError

/** Errors of the membership changes. */
export type MembershipError =
  | NotLeader
  | LeadershipLost
  | LeadershipTransferInProgress
  | ApplyTimeout
  | ConfigurationChanged
  | InvalidOperation
  | RaftShutdown
  | StorageError

/** Errors of a user snapshot (`InvalidOperation` while a configuration change is uncommitted). */
export type SnapshotError = NothingNewToSnapshot | InvalidOperation | FsmError | StorageError | RaftShutdown

/** Errors of a user restore. */
export type RestoreError =
  | NotLeader
  | LeadershipLost
  | LeadershipTransferInProgress
  | ApplyTimeout
  | FsmError
  | StorageError
  | RaftShutdown

/**
 * Errors of a linearizable read (`readIndex`). `NotLeader`: this node knows no leader to ask (or its transport cannot
 * ask one); `LeadershipLost`: the leader was deposed before it confirmed the read; `TransportError`: the leader could
 * not be reached. None of them has a side effect: retry.
 */
export type ReadError = NotLeader | LeadershipLost | ReadTimeout | TransportError | RaftShutdown

/** Errors of a leadership transfer. */
export type TransferError = NotLeader | LeadershipTransferInProgress | LeadershipTransferFailed | RaftShutdown

/**
 * The state machine of `Fsm.typed` could not decode a committed command's bytes (written by something other than
 * its typed client): it answered this instead of applying the command, on every node alike.
 */
export class CommandRejected extends Schema.TaggedError<CommandRejected>()("CommandRejected", {
  reason: Schema.String
}) {
  override get message(): string {
    return `command rejected by the state machine: ${this.reason}`
  }
}

/** Every error effect-raft can produce. */
export type RaftError =
  | NotLeader
  | LeadershipLost
  | ApplyTimeout
  | ReadTimeout
  | EntryTooLarge
  | LeadershipTransferInProgress
  | LeadershipTransferFailed
  | NothingNewToSnapshot
  | ConfigurationChanged
  | FsmError
  | RaftShutdown
  | CantBootstrap
  | CantRecover
  | RaftConfigError
  | LogNotFound
  | StorageError
  | PipelineNotSupported
  | TransportError
  | CodecError
  | BindError
  | SnapshotNotFound
  | InvalidOperation
  | NotVoter
  | IdentityMismatch
  | ClusterMismatch
  | CommandRejected
