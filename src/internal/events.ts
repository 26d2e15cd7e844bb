/**
 * What reaches the run loop (`Event`, drained by loop.ts) and the FSM runner
 * (`FsmItem`, drained by fsm.ts). Everything that may change a node's Raft
 * state arrives as an `Event`: client applies, incoming RPCs with the future
 * their answer goes to, timer ticks, vote answers, and notices from the
 * leader's fibers (commit advanced, a higher term seen, a write failed).
 * Events of a role carry the `epoch` they were sent in: one that arrives
 * after the role changed is dropped.
 * @internal
 */
import type * as Stream from "effect/Stream"
import type * as Configuration from "../Configuration.js"
import type { FsmSnapshot } from "../Fsm.js"
import type * as Log from "../Log.js"
import type {
  CantBootstrap,
  FsmError,
  LeadershipLost,
  NothingNewToSnapshot,
  NotLeader,
  NotVoter,
  RaftConfigError,
  RaftShutdown,
  RestoreError,
  SnapshotNotFound,
  StorageError,
  TransferError
} from "../RaftError.js"
import type {
  AppendEntriesRequest,
  AppendEntriesResponse,
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  RequestPreVoteRequest,
  RequestPreVoteResponse,
  RequestVoteRequest,
  RequestVoteResponse,
  TimeoutNowRequest,
  TimeoutNowResponse
} from "../Rpc.js"
import type { Reloadable } from "../RaftConfig.js"
import type { SnapshotMeta } from "../SnapshotStore.js"
import type { Future } from "./future.js"
import type { ApplyFuture, LeaderState, MembershipRequest } from "./leaderState.js"

/** An event for the run loop. */
export type Event =
  | { readonly _tag: "Apply"; readonly future: ApplyFuture }
  | {
    readonly _tag: "AppendEntries"
    readonly request: AppendEntriesRequest
    readonly deferred: Future<AppendEntriesResponse, RaftShutdown>
  }
  | {
    readonly _tag: "RequestVote"
    readonly request: RequestVoteRequest
    readonly deferred: Future<RequestVoteResponse, RaftShutdown>
  }
  | {
    readonly _tag: "RequestPreVote"
    readonly request: RequestPreVoteRequest
    readonly deferred: Future<RequestPreVoteResponse, RaftShutdown>
  }
  | {
    readonly _tag: "TimeoutNow"
    readonly request: TimeoutNowRequest
    readonly deferred: Future<TimeoutNowResponse, RaftShutdown>
  }
  | {
    /** First half of an incoming InstallSnapshot: is it from a current leader, and is it news to us? */
    readonly _tag: "InstallCheck"
    readonly request: InstallSnapshotRequest
    readonly deferred: Future<InstallVerdict, RaftShutdown>
  }
  | {
    /** Second half: the snapshot is stored; install it. */
    readonly _tag: "InstallStored"
    readonly request: InstallSnapshotRequest
    readonly meta: SnapshotMeta
    readonly deferred: Future<InstallSnapshotResponse, RaftShutdown>
  }
  | { readonly _tag: "Timer"; readonly epoch: number }
  /** The transport saw the connection of server `from` close: a hint that it is gone (leaderLost.ts). */
  | { readonly _tag: "LeaderLost"; readonly from: string }
  | {
    readonly _tag: "Vote"
    readonly epoch: number
    readonly from: string
    /** Undefined: the request failed (no answer, no vote). */
    readonly response: RequestVoteResponse | undefined
  }
  | {
    readonly _tag: "PreVote"
    readonly epoch: number
    readonly from: string
    readonly response: RequestPreVoteResponse
  }
  | { readonly _tag: "StepDown"; readonly epoch: number; readonly term: number }
  | { readonly _tag: "Commit"; readonly epoch: number }
  /** A follower's fast path committed entries it could not hand to the FSM runner (follower.ts `appendNow`). */
  | { readonly _tag: "FsmBehind" }
  | { readonly _tag: "Verify"; readonly deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown> }
  | {
    /** A linearizable read asks this leader for its read index (read.ts). */
    readonly _tag: "Read"
    readonly lease: boolean
    readonly deferred: Future<number, NotLeader | LeadershipLost | RaftShutdown>
  }
  | {
    /** `reloadConfig`: new values for the reloadable settings (reload.ts). */
    readonly _tag: "Reload"
    readonly changes: Reloadable
    readonly deferred: Future<void, RaftConfigError | RaftShutdown>
  }
  | {
    readonly _tag: "Bootstrap"
    readonly configuration: Configuration.Configuration
    readonly deferred: Future<void, CantBootstrap | NotVoter | StorageError | RaftShutdown>
  }
  | { readonly _tag: "Membership"; readonly request: MembershipRequest }
  | { readonly _tag: "Promote"; readonly epoch: number; readonly id: string }
  | {
    readonly _tag: "Transfer"
    readonly target: { readonly id: string; readonly address: string } | undefined
    readonly deferred: Future<void, TransferError>
  }
  | { readonly _tag: "TransferTimeout"; readonly epoch: number }
  | {
    /** The leader's own write of its entries failed (see `leaderWriter`). */
    readonly _tag: "WriteFailed"
    readonly leader: LeaderState
    readonly error: StorageError
  }
  | {
    /** A snapshot was persisted: record it and compact the log. */
    readonly _tag: "Compact"
    readonly meta: SnapshotMeta
    readonly deferred: Future<void, never>
  }
  | {
    readonly _tag: "UserRestore"
    readonly meta: SnapshotMeta
    readonly data: Stream.Stream<Uint8Array, StorageError>
    readonly deferred: Future<void, RestoreError>
  }

/** The run loop's answer to `InstallCheck`. */
export interface InstallVerdict {
  /** Whether to store the snapshot; when not, `response` is the answer. */
  readonly accept: boolean
  readonly response: InstallSnapshotResponse
}

/** What the FSM runner is asked to do, in log order. */
export type FsmItem =
  | {
    readonly _tag: "Batch"
    readonly logs: ReadonlyArray<Log.Log>
    readonly futures: ReadonlyArray<ApplyFuture | undefined> | undefined
  }
  | { readonly _tag: "Capture"; readonly deferred: Future<Captured, FsmError | NothingNewToSnapshot | RaftShutdown> }
  | {
    readonly _tag: "Restore"
    readonly meta: SnapshotMeta
    readonly deferred: Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>
  }
  /** A synchronous apply made outside the runner threw (fsm.ts `handToFsm`): the runner dies of it, as of its own. */
  | { readonly _tag: "Failed"; readonly cause: unknown }

/** A state captured by the FSM for a snapshot, and where in the log it stands. */
export interface Captured {
  readonly snapshot: FsmSnapshot
  readonly index: number
  readonly term: number
  readonly configuration: Configuration.Configuration
  readonly configurationIndex: number
}
