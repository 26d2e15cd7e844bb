/**
 * A follower's side of AppendEntries (hashicorp's appendEntries, Raft figure
 * 2): check the request's term and the entry before the new ones, drop a
 * conflicting suffix, store what is new, then commit what the leader
 * committed over entries known to match it, and answer. The usual cases, a
 * follower hearing from the leader it knows with entries that extend its log
 * where it ends, or with a heartbeat, are taken without a generator: one
 * store (none for a heartbeat), then the commit; into a store that writes
 * synchronously, by whoever received the request while the run loop waits
 * (`appendNow`), without a hand-off.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Configuration from "../Configuration.js"
import type * as Log from "../Log.js"
import type { StorageError } from "../RaftError.js"
import type { AppendEntriesRequest, AppendEntriesResponse } from "../Rpc.js"
import { noteCommittedConfiguration, sendStoredToFsm, toFsm } from "./commit.js"
import { markAppended } from "./logAge.js"
import { forgetRecent, keepRecent, takeCommitted } from "./recentEntries.js"
import { followLeader } from "./role.js"
import { emit, type NodeState, storageNotFound } from "./state.js"
import { syncWriteOf } from "./syncForms.js"

/** Records entries just stored from the leader: configurations among them, and the new end of the log. */
const noteAppended = (node: NodeState, fresh: ReadonlyArray<Log.Log>) => {
  for (const entry of fresh) {
    if (entry.type === "Configuration") {
      const decoded = Configuration.decode(entry.data)
      if (decoded !== undefined) {
        // One change at a time: a leader appends a configuration only once the previous one committed,
        // so the latest we held is committed now (as hashicorp/raft; a later truncation falls back to it).
        if (node.latestConfigurationIndex > node.committedConfigurationIndex) {
          node.committedConfiguration = node.latestConfiguration
          node.committedConfigurationIndex = node.latestConfigurationIndex
        }
        node.latestConfiguration = decoded
        node.latestConfigurationIndex = entry.index
      }
    }
  }
  markAppended(node, fresh[0]!.index)
  const last = fresh[fresh.length - 1]!
  if (last.index >= node.lastLogIndex || !node.bugs.keepConflictingSuffix) {
    node.lastLogIndex = last.index
    node.lastLogTerm = last.term
  }
}

/** Entries just stored at the end of the log, from the usual AppendEntries: kept for the FSM, and noted. */
const storedAtEnd = (node: NodeState, entries: ReadonlyArray<Log.Log>) => {
  keepRecent(node, entries)
  noteAppended(node, entries)
}

/** The answer to an accepted AppendEntries, at the time it is given. */
const accepted = (node: NodeState): AppendEntriesResponse => {
  node.lastContact = node.now()
  return {
    _tag: "AppendEntriesResponse",
    term: node.currentTerm,
    lastLog: node.lastLogIndex,
    success: true,
    noRetryBackoff: false
  }
}

/**
 * Commits what the leader committed (Raft figure 2), only over entries known to match the leader, and hands what
 * the commit covers to the FSM runner from the entries kept since they were stored: false when they do not hold it
 * all (or an earlier read of the store failed to hand it over), and the store must be read.
 */
const commitFromLeader = (node: NodeState, request: AppendEntriesRequest): boolean => {
  const verifiedUpTo = request.prevLogIndex + request.entries.length
  if (request.leaderCommitIndex > node.commitIndex && verifiedUpTo > node.commitIndex) {
    node.commitIndex = Math.min(request.leaderCommitIndex, verifiedUpTo)
    noteCommittedConfiguration(node)
  }
  if (node.dispatchedToFsm >= node.commitIndex) return true
  const committed = takeCommitted(node)
  if (committed === undefined) return false
  toFsm(node, committed, node.commitIndex)
  return true
}

/** The rest of an accepted AppendEntries: commit what the leader committed, then answer. */
const acceptAppend = (
  node: NodeState,
  request: AppendEntriesRequest
): Effect.Effect<AppendEntriesResponse, StorageError> =>
  commitFromLeader(node, request)
    ? Effect.sync(() => accepted(node))
    : Effect.map(sendStoredToFsm(node, node.commitIndex), () => accepted(node))

/**
 * The usual AppendEntries: from the leader this follower follows, in its term, with entries that extend the log
 * where it ends, or a heartbeat (nothing to check: it carries no entry). `checkPrevTerm` is false only for an
 * injected bug.
 */
const extendsLog = (node: NodeState, request: AppendEntriesRequest, checkPrevTerm = true): boolean =>
  request.term === node.currentTerm && node.role === "Follower" && request.leaderId === node.leaderId &&
  (request.clusterId === undefined || request.clusterId === node.clusterId) &&
  request.leaderAddress === node.leaderAddress &&
  ((request.prevLogIndex === node.lastLogIndex &&
    (request.prevLogIndex === 0 || !checkPrevTerm || request.prevLogTerm === node.lastLogTerm)) ||
    (request.prevLogIndex === 0 && request.entries.length === 0)) &&
  (request.entries.length === 0 || request.entries[0]!.index === request.prevLogIndex + 1)

/** The `AppendEntries` event. Run loop. */
export const handleAppendEntries = (
  node: NodeState,
  request: AppendEntriesRequest
): Effect.Effect<AppendEntriesResponse, StorageError> => {
  if (!extendsLog(node, request)) return handleAppendEntriesInFull(node, request)
  node.lastContact = node.now()
  const entries = request.entries
  if (entries.length === 0) return acceptAppend(node, request)
  return Effect.flatMap(node.logs.storeLogs(entries), () => {
    storedAtEnd(node, entries)
    return acceptAppend(node, request)
  })
}

/**
 * The usual AppendEntries handled at once by the fiber or socket callback that received it, as
 * `handleAppendEntries` would handle it: when the run loop waits with nothing queued (the caller checks
 * `loopWaiting`, the rule of the fast paths in state.ts) and the log store writes synchronously (syncForms.ts). The
 * answer, or undefined when this path does not apply (nothing changed: the run loop is to handle it). What the
 * commit covers and the recent entries do not hold is left to the run loop (a `FsmBehind` event), which reads it
 * from the store.
 */
export const appendNow = (node: NodeState, request: AppendEntriesRequest): AppendEntriesResponse | undefined => {
  const write = syncWriteOf(node.logs)
  const checkPrevTerm = node.bugs.appendNowSkipsPrevTermCheck !== true
  if (write === undefined || !extendsLog(node, request, checkPrevTerm)) return undefined
  // No step below waits: the contact is noted once, by `accepted`.
  const entries = request.entries
  if (entries.length > 0) {
    write(entries)
    storedAtEnd(node, entries)
  }
  if (!commitFromLeader(node, request)) emit(node, { _tag: "FsmBehind" })
  return accepted(node)
}

/**
 * The `FsmBehind` event: hands what is committed and not yet handed to the FSM runner over, from the store. The
 * request that committed it was answered already, with success: its entries are stored. If this read fails, the
 * run loop logs it, and every later AppendEntries that finds the FSM behind tries again (the run loop's own path
 * would have refused that request instead, and the leader would have sent it again).
 */
export const handleFsmBehind = (node: NodeState): Effect.Effect<void, StorageError> =>
  node.dispatchedToFsm < node.commitIndex ? sendStoredToFsm(node, node.commitIndex) : Effect.void

const handleAppendEntriesInFull = (node: NodeState, request: AppendEntriesRequest) =>
  Effect.gen(function*() {
    // This path may truncate the log; the fast path starts the recent entries again after it.
    forgetRecent(node)
    const { logs } = node
    const response = {
      _tag: "AppendEntriesResponse" as const,
      term: node.currentTerm,
      lastLog: node.lastLogIndex,
      success: false,
      noRetryBackoff: false
    }
    if (request.term < node.currentTerm && node.bugs.acceptStaleAppend !== true) return response
    yield* followLeader(node, request)
    response.term = node.currentTerm
    if (node.bugs.commitBeforeLogCheck === true) {
      node.commitIndex = Math.max(node.commitIndex, Math.min(request.leaderCommitIndex, node.lastLogIndex))
    }

    if (request.prevLogIndex > 0) {
      let prevTerm: number
      if (request.prevLogIndex === node.lastLogIndex) prevTerm = node.lastLogTerm
      else if (request.prevLogIndex === node.lastSnapshotIndex) prevTerm = node.lastSnapshotTerm
      // Inside our snapshot: committed, so it matches any current leader's log (Raft §5.4).
      else if (request.prevLogIndex < node.lastSnapshotIndex) prevTerm = request.prevLogTerm
      else if (request.prevLogIndex > node.lastLogIndex && node.bugs.acceptPastLogEnd !== true) {
        response.noRetryBackoff = true
        return response
      } else if (request.prevLogIndex > node.lastLogIndex) prevTerm = request.prevLogTerm
      else {
        const prev = yield* Effect.either(logs.getLog(request.prevLogIndex))
        if (prev._tag === "Left") {
          response.noRetryBackoff = true
          return response
        }
        prevTerm = prev.right.term
      }
      if (prevTerm !== request.prevLogTerm && node.bugs.skipPrevTermCheck !== true) {
        response.noRetryBackoff = true
        return response
      }
    }

    const entries = request.entries
    if (entries.length > 0) {
      // Skip what we already hold; truncate at the first conflict (Raft §5.3).
      let firstNew = entries.length
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!
        if (entry.index > node.lastLogIndex) {
          firstNew = i
          break
        }
        const held = entry.index <= node.lastSnapshotIndex
          ? undefined
          : yield* logs.getLog(entry.index).pipe(Effect.catchTag("LogNotFound", storageNotFound("read")))
        if (held !== undefined && held.term !== entry.term) {
          if (node.bugs.keepConflictingSuffix) {
            firstNew = i
            break
          }
          yield* Effect.logWarning(`clearing log suffix from ${entry.index} to ${node.lastLogIndex}`)
          yield* logs.deleteRange(entry.index, node.lastLogIndex)
          if (entry.index <= node.latestConfigurationIndex) {
            node.latestConfiguration = node.committedConfiguration
            node.latestConfigurationIndex = node.committedConfigurationIndex
          }
          node.lastLogIndex = entry.index - 1
          firstNew = i
          break
        }
      }
      if (firstNew < entries.length) {
        const fresh = firstNew === 0 ? entries : entries.slice(firstNew)
        yield* logs.storeLogs(fresh)
        noteAppended(node, fresh)
      }
    }
    return yield* acceptAppend(node, request)
  })
