/**
 * The shapes a running node shows its users: its role, what `apply` answers,
 * what `observe` streams and what `stats` reports. `src/Raft.ts` re-exports
 * them under the same names.
 * @internal
 */
import type * as Configuration from "../Configuration.js"
import type { RequestVoteRequest } from "../Rpc.js"

/** The role a node plays. */
export type RaftState = "Follower" | "Candidate" | "Leader" | "Shutdown"

/** What `apply` returns: the entry's index and the FSM's response. */
export interface ApplyResult {
  readonly index: number
  readonly response: unknown
}

/** Something that happened to a node, for `observe`. */
export type Observation =
  | { readonly _tag: "StateChange"; readonly from: RaftState; readonly to: RaftState; readonly term: number }
  | { readonly _tag: "LeaderChange"; readonly leaderId: string | undefined; readonly term: number }
  | { readonly _tag: "FailedHeartbeat"; readonly peerId: string; readonly lastContactMillis: number }
  | { readonly _tag: "RequestVote"; readonly request: RequestVoteRequest; readonly granted: boolean }

/** A snapshot of a node's counters, as hashicorp's `Stats()`. */
export interface RaftStats {
  readonly id: string
  readonly state: RaftState
  readonly term: number
  readonly lastLogIndex: number
  readonly lastLogTerm: number
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly fsmPending: number
  readonly lastSnapshotIndex: number
  readonly lastSnapshotTerm: number
  readonly leaderId: string | undefined
  readonly lastContactMillis: number | undefined
  readonly latestConfiguration: Configuration.Configuration
  readonly latestConfigurationIndex: number
  readonly numPeers: number
  /** On a leader, its replication to each other server of the latest configuration; empty on any other node. */
  readonly replication: ReadonlyArray<PeerReplication>
}

/** How a leader replicates to one other server: read from the replication fibers' own fields, not tracked apart. */
export interface PeerReplication {
  readonly id: string
  readonly address: string
  readonly suffrage: Configuration.Suffrage
  /** The highest index the server is known to hold. */
  readonly matchIndex: number
  /** The index the leader sends it next. */
  readonly nextIndex: number
  /** When it last answered an AppendEntries, heartbeat or InstallSnapshot (`Clock` ms); undefined if not yet this term. */
  readonly lastContactMillis: number | undefined
  /**
   * Failed exchanges with it since its last successful answer (errors, and refusals that back off), as hashicorp's
   * `failures`: above 0, replication to it is failing and retries with backoff.
   */
  readonly failures: number
}
