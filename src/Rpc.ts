/**
 * The messages Raft nodes exchange. Each is a Schema so a transport can decode
 * untrusted bytes at its boundary; inside a process they are plain objects.
 * Field meanings follow the Raft paper (§5) and hashicorp/raft's `commands.go`.
 */
import * as Schema from "effect/Schema"
import { Log } from "./Log.js"

/** Leader → follower: append `entries` after `prevLogIndex`/`prevLogTerm`; also the heartbeat (no entries). */
export const AppendEntriesRequest = Schema.TaggedStruct("AppendEntriesRequest", {
  term: Schema.NonNegativeInt,
  leaderId: Schema.String,
  leaderAddress: Schema.String,
  prevLogIndex: Schema.NonNegativeInt,
  prevLogTerm: Schema.NonNegativeInt,
  entries: Schema.Array(Log),
  leaderCommitIndex: Schema.NonNegativeInt
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
  leadershipTransfer: Schema.Boolean
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

/** Every request a node serves. */
export const Request = Schema.Union(AppendEntriesRequest, RequestVoteRequest)
/** Every request a node serves. */
export type Request = typeof Request.Type

/** Every response a node sends. */
export const Response = Schema.Union(AppendEntriesResponse, RequestVoteResponse)
/** Every response a node sends. */
export type Response = typeof Response.Type
