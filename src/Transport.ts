/**
 * How nodes reach each other. A transport delivers the requests of `Rpc` to a
 * peer's `RpcHandler` and returns its answer, or fails with a typed
 * `TransportError`. For replication it may offer an `AppendPipeline`: many
 * AppendEntries in flight on one channel, answered in order; a transport that
 * cannot fails with `PipelineNotSupported` and the leader silently uses plain
 * RPCs (as hashicorp/raft does).
 *
 * InstallSnapshot is streamed both ways: the sender passes the snapshot's bytes
 * as a `Stream` (read from its snapshot store), and the receiving handler gets
 * them as a `Stream` that fails with `TransportError` if the sender goes away
 * mid-transfer. A transport must not hold a whole snapshot in one buffer.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { ClusterMismatch, PipelineNotSupported, RaftShutdown, StorageError, TransportError } from "./RaftError.js"
import type {
  AppendEntriesRequest,
  AppendEntriesResponse,
  InstallSnapshotRequest,
  InstallSnapshotResponse,
  ReadIndexRequest,
  ReadIndexResponse,
  RequestPreVoteRequest,
  RequestPreVoteResponse,
  RequestVoteRequest,
  RequestVoteResponse,
  TimeoutNowRequest,
  TimeoutNowResponse
} from "./Rpc.js"

/** Why a node does not serve a request: it is shut down, or the request comes from another cluster. */
export type Refusal = RaftShutdown | ClusterMismatch

/** What a node serves: the transport calls it for every request that arrives. */
export interface RpcHandler {
  readonly appendEntries: (request: AppendEntriesRequest) => Effect.Effect<AppendEntriesResponse, Refusal>
  readonly requestVote: (request: RequestVoteRequest) => Effect.Effect<RequestVoteResponse, Refusal>
  readonly requestPreVote: (request: RequestPreVoteRequest) => Effect.Effect<RequestPreVoteResponse, Refusal>
  /** Consumes `data` (the snapshot's bytes) to its end before answering; fails only when the node is shut down. */
  readonly installSnapshot: (
    request: InstallSnapshotRequest,
    data: Stream.Stream<Uint8Array, TransportError>
  ) => Effect.Effect<InstallSnapshotResponse, Refusal>
  readonly timeoutNow: (request: TimeoutNowRequest) => Effect.Effect<TimeoutNowResponse, Refusal>
  /** A follower's ReadIndex; answered once the read is confirmed (a node always serves it; optional for older handlers). */
  readonly readIndex?: ((request: ReadIndexRequest) => Effect.Effect<ReadIndexResponse, Refusal>) | undefined
  /**
   * Optional: a transport that sees a connection of server `serverId` close (its process ended, or it closed the
   * connection) says so. A hint that `serverId` may be gone, which lets a follower campaign a lease after its
   * leader's last word instead of a heartbeat timeout; never required, and never called for a cut link.
   */
  readonly peerLost?: ((serverId: string) => void) | undefined
  /**
   * Optional fast path for `appendEntries`, for transports that receive in a callback: submits the request without
   * a fiber of the caller's and calls `onDone` once with the outcome. Requests submitted one after another (and
   * after any request whose effect has already started) are handled, and answered, in that order.
   */
  readonly submitAppendEntries?: (
    request: AppendEntriesRequest,
    onDone: (exit: Exit.Exit<AppendEntriesResponse, Refusal>) => void
  ) => void
}

/** One answered pipelined request. */
export interface PipelineResult {
  readonly request: AppendEntriesRequest
  readonly response: AppendEntriesResponse
  /** When the request was sent, in `Clock` milliseconds. */
  readonly sentAtMillis: number
}

/** Several AppendEntries in flight to one peer, answered in order. */
export interface AppendPipeline {
  /** Sends a request; waits while the pipeline's window is full; fails once the pipeline is broken, waiting or not. */
  readonly send: (request: AppendEntriesRequest) => Effect.Effect<void, TransportError>
  /** The answers, in the order of the requests; fails when the pipeline breaks, ends when it is closed. */
  readonly results: Mailbox.ReadonlyMailbox<PipelineResult, TransportError>
  /**
   * Optional: delivers the answers by callback instead of through `results`, so that no fiber has to be woken for
   * each one. Call it at most once, before the first `send`. From then on every answer goes to `onResult`, exactly
   * once and in the order of the requests, and none to `results`; `onEnd` is called once, with the error when the
   * pipeline breaks or `undefined` when its scope closes, and nothing is called after it (if the pipeline has
   * ended already, `onEnd` is called at once). Both run in the transport's own context (a socket's callback, or
   * whichever fiber carried the answer, possibly the one calling `send`): they must return quickly, must not block
   * and must not run effects. A transport without it is read through `results`.
   */
  readonly listen?:
    | ((onResult: (result: PipelineResult) => void, onEnd: (error: TransportError | undefined) => void) => void)
    | undefined
  /**
   * Optional: sends `request` at once if that needs no wait (the window has room and nothing sent before it is still
   * queued), returning true; otherwise sends nothing and returns false, and the caller uses `send`. Runs in the
   * caller's context and runs no effect, so a leader can hand new entries on from where it appends them.
   */
  readonly trySend?: ((request: AppendEntriesRequest) => boolean) | undefined
}

/** A node's view of the network. */
export interface Transport {
  /** The address peers use to reach this node. */
  readonly localAddress: string
  /**
   * Largest frame this transport sends or accepts, when it has one (the TCP transport's `maxFrameBytes`): a node
   * refuses to start when the largest AppendEntries its configuration allows would not fit.
   */
  readonly maxFrameBytes?: number | undefined
  /** Serves incoming requests with `handler` for the life of the scope. */
  readonly serve: (handler: RpcHandler) => Effect.Effect<void, never, Scope.Scope>
  /** Sends an AppendEntries and waits for the answer. */
  readonly appendEntries: (
    id: string,
    address: string,
    request: AppendEntriesRequest
  ) => Effect.Effect<AppendEntriesResponse, TransportError>
  /** Sends a RequestVote and waits for the answer. */
  readonly requestVote: (
    id: string,
    address: string,
    request: RequestVoteRequest
  ) => Effect.Effect<RequestVoteResponse, TransportError>
  /** Sends a RequestPreVote and waits for the answer. */
  readonly requestPreVote: (
    id: string,
    address: string,
    request: RequestPreVoteRequest
  ) => Effect.Effect<RequestPreVoteResponse, TransportError>
  /**
   * Sends an InstallSnapshot followed by `data`, streamed, and waits for the answer. A failure reading `data`
   * aborts the transfer with that `StorageError`.
   */
  readonly installSnapshot: (
    id: string,
    address: string,
    request: InstallSnapshotRequest,
    data: Stream.Stream<Uint8Array, StorageError>
  ) => Effect.Effect<InstallSnapshotResponse, TransportError | StorageError>
  /** Sends a TimeoutNow and waits for the answer. */
  readonly timeoutNow: (
    id: string,
    address: string,
    request: TimeoutNowRequest
  ) => Effect.Effect<TimeoutNowResponse, TransportError>
  /**
   * Sends a ReadIndex to the leader and waits for the answer (it may take a heartbeat round). Optional: over a
   * transport without it, `readIndex` on a follower fails with `NotLeader` naming the leader, to be asked instead.
   */
  readonly readIndex?:
    | ((id: string, address: string, request: ReadIndexRequest) => Effect.Effect<ReadIndexResponse, TransportError>)
    | undefined
  /** Opens a pipeline to a peer, closed with the scope. */
  readonly appendEntriesPipeline: (
    id: string,
    address: string
  ) => Effect.Effect<AppendPipeline, TransportError | PipelineNotSupported, Scope.Scope>
}

/** The tag of a node's transport. */
export const Transport: Context.Tag<Transport, Transport> = Context.GenericTag<Transport>("effect-raft/Transport")
