/**
 * What a leader keeps for its term, as plain records: the futures of the
 * entries it appended, its replication to each other server, pending
 * verifications and membership changes. A `LeaderState` lives from
 * `becomeLeader` (leader.ts) to the end of the term (`tearDownLeader` in
 * role.ts); its fields say which module and fibers write them.
 * @internal
 */
import type * as Fiber from "effect/Fiber"
import type * as MetricLabel from "effect/MetricLabel"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import type * as Configuration from "../Configuration.js"
import type * as Log from "../Log.js"
import type {
  ApplyError,
  LeadershipLost,
  MembershipError,
  NotLeader,
  RaftShutdown,
  ReadError,
  StorageError,
  TransferError
} from "../RaftError.js"
import type { Commitment } from "./commitment.js"
import type { Future } from "./future.js"
import type { Gate } from "./gate.js"
import type { ApplyTrace } from "./traceState.js"
import type { ApplyResult } from "./types.js"

/** An apply waits in the run loop's mailbox. */
export const QUEUED = 0
/** An apply was taken by the leader (appended, or about to be). */
export const DISPATCHED = 1
/** An apply's caller gave up before it was taken: it is never appended. */
export const CANCELLED = 2

/** One entry a client (or the leader itself) asked to append, and who waits for its outcome. */
export interface ApplyFuture {
  readonly type: Log.LogType
  readonly data: Uint8Array
  readonly deferred: Future<ApplyResult, ApplyError>
  status: number
  /**
   * The fiber whose interruptible wait began while the entry was queued (api.ts), `null` once two have waited, or
   * `undefined`: the run loop drops the entry unsent when that fiber has ended (`abandoned`).
   */
  waiter: Fiber.RuntimeFiber<unknown, unknown> | null | undefined
  /** Its spans when it is traced (tracing.ts): the batches that carry it make theirs children of it. */
  readonly trace: ApplyTrace | undefined
}

/**
 * Whether nobody waits for a queued apply any more: its caller gave up (`CANCELLED`: a timeout), or the one fiber
 * that waited for it has ended (interrupted). Checked when the run loop takes it off the queue, instead of a
 * canceler on every wait: Effect runs an `Effect.async` canceler through `onInterrupt`, which cost a fifth of an
 * apply's CPU at 64 clients in memory.
 */
export const abandoned = (future: ApplyFuture): boolean =>
  future.status === CANCELLED ||
  (future.waiter !== undefined && future.waiter !== null && future.waiter.unsafePoll() !== null)

/** A `verifyLeader` waiting for a quorum of heartbeat answers (verify.ts). */
export interface VerifyFuture {
  readonly deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown>
  readonly quorum: number
  /** The leader's set of pending verifications, left when this one settles. */
  readonly pending: Set<VerifyFuture>
  votes: number
  done: boolean
  /** Runs once it settles (verify.ts: the next round's heartbeats go out then). */
  onSettle: (() => void) | undefined
}

/** A heartbeat round's outcome, shared by the verifications and reads that joined it (verify.ts). */
export type RoundFuture = Future<void, NotLeader | LeadershipLost | RaftShutdown>

/** Reads on a follower that share the next ReadIndex request to the leader (read.ts). */
export interface ReadBatch {
  /** Whether the leader may answer from its lease: only if every read of the batch asked for that. */
  lease: boolean
  readonly future: Future<number, ReadError>
}

/** A membership change waiting for the leader to be able to append it (membership.ts). */
export interface MembershipRequest {
  readonly change: Configuration.Change
  readonly prevIndex: number
  readonly deferred: Future<number, MembershipError>
  /** Set for the second step of an automatic promotion: never converted to a non-voter again. */
  readonly promotion: boolean
  cancelled: boolean
  /** The change's span when traced: its configuration entry is traced as its child. */
  readonly span: Tracer.Span | undefined
}

/** The leader's replication to one other server: written by that server's replication fibers only (replication.ts). */
export interface Replication {
  readonly peer: Configuration.Server
  readonly labels: ReadonlyArray<MetricLabel.MetricLabel>
  /** Holds this follower's fibers: closed when it leaves the configuration, or with the leader's term. */
  readonly scope: Scope.CloseableScope
  nextIndex: number
  /** The highest index this follower is known to hold (voters and non-voters alike). */
  matchIndex: number
  /** Its last answer (`Clock` ms); the start of replication to it until `answered`, which gives the lease a grace period. */
  lastContact: number
  /** Whether it answered at all since this leader began replicating to it. */
  answered: boolean
  /**
   * When the newest request it answered in this term was sent (`Clock` ms; -Infinity before any): from then on,
   * it refused other candidates for a heartbeat timeout (the leader's lease, read.ts).
   */
  ackedSentAt: number
  /** Failed exchanges since its last successful answer. */
  failures: number
  allowPipeline: boolean
  readonly trigger: Gate
  readonly heartbeatNow: Gate
  readonly verifiers: Set<VerifyFuture>
  /** Whether a heartbeat to this follower is on its way (sent, or retried after a failure) and not yet answered. */
  heartbeating: boolean
  /**
   * While pipelining over a transport that can send without waiting (`AppendPipeline.trySend`): sends the entries
   * just appended from the appending fiber, true if it did; otherwise the caller opens `trigger`.
   */
  sendNow: (() => boolean) | undefined
}

/** One term of leadership. */
export interface LeaderState {
  readonly term: number
  readonly commitment: Commitment
  readonly replications: Map<string, Replication>
  /** Entries this leader appended that are not yet committed, in index order, with their futures. */
  /** `at`: when it was appended, `Clock` µs (for the commit time). */
  inflight: Array<{ readonly log: Log.Log; readonly future: ApplyFuture | undefined; readonly at: number }>
  inflightHead: number
  /**
   * The last entry of this leader's log known to be in its log store. The leader writes its own entries while it
   * replicates them (Raft thesis §10.2.1): entries after this one are in `unstored`, and the leader counts itself
   * toward commitment only up to here. Written by the leader's writer (leaderLog.ts).
   */
  storedIndex: number
  storedTerm: number
  /** Appended entries on their way to the log store, in index order: replication reads them from here. */
  unstored: Array<Log.Log>
  /**
   * The leader's latest entries, written or not, in index order up to the last one (between 16 and 32 ×
   * `maxAppendEntries` of them once that many were appended): AppendEntries for a follower that keeps up are
   * built from here.
   */
  recent: Array<Log.Log>
  /**
   * Traced entries not yet known to be on every follower, in index order (tracing nodes only, at most 1024): an
   * AppendEntries that carries one is traced as its child. Pruned on commit (commit.ts).
   */
  traced: Array<{ readonly index: number; readonly span: Tracer.Span }>
  /** Set when a write of this leader's entries failed: nothing after `storedIndex` is written any more. */
  writeFailure: StorageError | undefined
  readonly verifiers: Set<VerifyFuture>
  /**
   * The heartbeat round that verifications and reads join, until a heartbeat fiber sends it: one arriving later
   * waits for the next round (verify.ts).
   */
  openRound: VerifyFuture | undefined
  /** The round whose heartbeats are out, until it settles: the open round's heartbeats wait for it (verify.ts). */
  roundInFlight: VerifyFuture | undefined
  /** The index of this term's no-op: no read is served before it is applied (Raft §8). */
  readonly noopIndex: number
  /**
   * A leadership transfer began in this term: its target's voters ignore their refusal window, so no lease read is
   * served any more in this term (read.ts).
   */
  transferred: boolean
  commitPending: boolean
  /** Membership changes waiting for the previous one (and this leader's no-op) to commit. */
  readonly changes: Array<MembershipRequest>
  /**
   * Non-voters added by `addVoter` that become voters once caught up; the request completes on promotion. `round`:
   * the round of replication under way (membership.ts `promotionLoop`), what it must reach and when it began.
   */
  readonly promotions: Map<
    string,
    { readonly request: MembershipRequest; round: { readonly target: number; readonly startedAt: number } | undefined }
  >
  /** The configuration entry appended and not yet committed, and the request waiting for it. */
  changeInFlight: { readonly index: number; readonly request: MembershipRequest | undefined } | undefined
  transfer: { readonly target: string; readonly deferred: Future<void, TransferError> } | undefined
}

/** A batch of the leader's own entries for its writer. */
export interface LeaderWrite {
  readonly leader: LeaderState
  readonly entries: ReadonlyArray<Log.Log>
  /** The spans of the traced applies among them, if any: the write is traced as a child of the first. */
  readonly traces: ReadonlyArray<Tracer.Span> | undefined
}
