/**
 * Replication from a leader to one follower: the seed's `replication.go`.
 * Per follower and term, `startReplication` forks four fibers into the
 * follower's scope:
 * - `replicate`: woken by new entries (`trigger`) or the commit ticker, sends
 *   AppendEntries until the follower holds the leader's last entry, backing
 *   off on errors and refusals, and sends the newest snapshot when the entries
 *   it needs are compacted away (`sendLatestSnapshot`); once the follower is in
 *   sync it switches to pipeline mode: many AppendEntries in flight, their
 *   answers decoded in order in the transport's callback;
 * - the commit ticker, which wakes `replicate` every commit timeout so a
 *   follower learns the commit index without new entries;
 * - `heartbeat` and its ticker: an empty AppendEntries every tenth of the
 *   heartbeat timeout, independent of replication, which also answers
 *   `verifyLeader` (verify.ts).
 * Each fiber writes only its follower's `Replication` record and the leader's
 * commitment; a higher term seen in an answer becomes a `StepDown` event.
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as MetricLabel from "effect/MetricLabel"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import * as Configuration from "../Configuration.js"
import type * as Log from "../Log.js"
import {
  LeadershipLost,
  type LogNotFound,
  SnapshotNotFound,
  type StorageError,
  type TransportError
} from "../RaftError.js"
import type { AppendEntriesRequest, AppendEntriesResponse } from "../Rpc.js"
import type { PipelineResult } from "../Transport.js"
import { failureBackoff, retrying } from "./backoff.js"
import { Gate } from "./gate.js"
import type { LeaderState, Replication } from "./leaderState.js"
import { readLeaderLog, readLeaderLogs } from "./leaderLog.js"
import { sendLatestSnapshotTo, type SnapshotRejected } from "./sendSnapshot.js"
import { metrics } from "./metrics.js"
import { emit, type NodeState, publish, reloadable } from "./state.js"
import type { PeerReplication } from "./types.js"
import {
  COMMIT_INDEX,
  endSpan,
  FIRST_INDEX,
  LAST_INDEX,
  linksTo,
  PEER,
  startSpan,
  TERM,
  traceparent
} from "./tracing.js"
import { notifyVerifiers, settleVerify, takeVerifiers, voteVerifiers } from "./verify.js"

/** A follower refused the entries and asked for backoff; `nextIndex` is where replication resumes. */
class AppendRejected extends Data.TaggedError("AppendRejected")<{ readonly nextIndex: number }> {}

/** Starts replicating to `server`, in a scope of its own inside the leader's term. Run loop. */
export const addReplication = (node: NodeState, ls: LeaderState, server: Configuration.Server, myEpoch: number) =>
  Effect.gen(function*() {
    const replication: Replication = {
      peer: server,
      labels: [...node.nodeLabels, MetricLabel.make("peer", server.id)],
      scope: yield* Scope.fork(node.roleScope, ExecutionStrategy.sequential),
      nextIndex: node.lastLogIndex + 1,
      matchIndex: 0,
      lastContact: node.now(),
      answered: false,
      ackedSentAt: -Infinity,
      failures: 0,
      allowPipeline: false,
      trigger: new Gate(true),
      heartbeatNow: new Gate(true),
      verifiers: new Set(),
      heartbeating: false,
      sendNow: undefined
    }
    ls.replications.set(server.id, replication)
    yield* startReplication(node, ls, replication, ls.term, myEpoch)
  })

/**
 * Follows a configuration that was just appended (it takes effect at once, as in hashicorp/raft): the voters
 * that count toward commitment, and a replication per other member, stopped for members that left (hashicorp's
 * startStopReplication). Run loop.
 */
export const reconfigureLeader = (node: NodeState, ls: LeaderState, configuration: Configuration.Configuration) =>
  Effect.gen(function*() {
    const voters = countedVoters(node, configuration)
    ls.commitment.setVoters(
      node.bugs.countRemovedVoters === true ? [...new Set([...ls.commitment.voters(), ...voters])] : voters,
      (id) => id === node.localId ? node.lastLogIndex : ls.replications.get(id)?.matchIndex ?? 0
    )
    for (const server of configuration.servers) {
      if (server.id === node.localId) continue
      const existing = ls.replications.get(server.id)
      if (existing !== undefined && existing.peer.address === server.address) continue
      if (existing !== undefined) {
        ls.replications.delete(server.id)
        yield* Scope.close(existing.scope, Exit.void)
      }
      yield* addReplication(node, ls, server, node.epoch)
    }
    for (const [id, replication] of ls.replications) {
      if (Configuration.find(configuration, id) !== undefined) continue
      ls.replications.delete(id)
      for (const verifier of [...replication.verifiers]) settleVerify(verifier, Exit.fail(new LeadershipLost()))
      yield* Scope.close(replication.scope, Exit.void)
    }
  })

/** The servers whose matches count toward commitment: the voters. */
export const countedVoters = (node: NodeState, configuration: Configuration.Configuration): Array<string> =>
  (node.bugs.countNonVoters === true ? configuration.servers : Configuration.votersOf(configuration)).map((server) =>
    server.id
  )

/** Forks the fibers that replicate to one follower for this term (see the module comment). */
const startReplication = (
  node: NodeState,
  ls: LeaderState,
  replication: Replication,
  term: number,
  myEpoch: number
) =>
  Effect.gen(function*() {
    // The batch limits are not reloadable: this term keeps the configuration it started with for them (and for
    // the heartbeat's backoff cap); the timers read `node.config`.
    const { config, localAddress, localId, transport } = node
    const annotate = Effect.annotateLogs({ module: "Replication", node: localId, peer: replication.peer.id })
    const stepDown = (newTerm: number) => {
      notifyVerifiers(replication, false)
      emit(node, { _tag: "StepDown", epoch: myEpoch, term: newTerm })
    }
    /** The follower answered, in this term, a request sent at `sentAt`. */
    const acknowledged = (sentAt: number) => {
      replication.lastContact = node.now()
      replication.answered = true
      if (sentAt > replication.ackedSentAt) replication.ackedSentAt = sentAt
    }

    /**
     * The AppendEntries carrying `from..to` when everything it needs is in memory (the previous entry's term is
     * known and the entries are among the leader's recent ones, as while the follower keeps up), else undefined.
     */
    const requestFromMemory = (from: number, to: number): AppendEntriesRequest | undefined => {
      const prevLogIndex = from - 1
      // Entries a snapshot covers may be compacted: whether to send them or the snapshot is the store's answer.
      if (prevLogIndex < node.lastSnapshotIndex) return undefined
      const recent = ls.recent
      const base = recent.length > 0 ? recent[0]!.index : node.lastLogIndex + 1
      let prevLogTerm: number
      if (prevLogIndex === 0) prevLogTerm = 0
      else if (prevLogIndex === node.lastLogIndex) prevLogTerm = node.lastLogTerm
      else if (prevLogIndex === node.lastSnapshotIndex) prevLogTerm = node.lastSnapshotTerm
      else if (prevLogIndex >= base && prevLogIndex - base < recent.length) prevLogTerm = recent[prevLogIndex - base]!.term
      else return undefined
      const last = Math.min(to, from + config.maxAppendEntries - 1)
      if (last >= from && from < base) return undefined
      if (last < from) return request(prevLogIndex, prevLogTerm, [])
      const start = from - base
      return request(prevLogIndex, prevLogTerm, recent.slice(start, start + fitting(recent, start, last - from + 1)))
    }

    /** How many of the `count` entries from `entries[start]` fit in one AppendEntries' byte budget (at least one). */
    const fitting = (entries: ReadonlyArray<Log.Log>, start: number, count: number): number => {
      let bytes = entries[start]!.data.length
      let n = 1
      while (n < count) {
        bytes += entries[start + n]!.data.length
        if (bytes > config.maxAppendEntriesBytes) break
        n++
      }
      return n
    }

    const request = (prevLogIndex: number, prevLogTerm: number, entries: ReadonlyArray<Log.Log>): AppendEntriesRequest => ({
      _tag: "AppendEntriesRequest",
      term,
      leaderId: localId,
      leaderAddress: localAddress,
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommitIndex: node.commitIndex,
      clusterId: node.clusterId
    })

    /** Builds the AppendEntries carrying `from..to` (empty when from > to). */
    const setupAppendEntries = (from: number, to: number): Effect.Effect<AppendEntriesRequest, LogNotFound | StorageError> => {
      const fast = requestFromMemory(from, to)
      return fast !== undefined ? Effect.succeed(fast) : setupFromStore(from, to)
    }

    const setupFromStore = (from: number, to: number) =>
      Effect.gen(function*() {
        let prevLogTerm = 0
        const prevLogIndex = from - 1
        if (prevLogIndex === 0) prevLogTerm = 0
        else if (prevLogIndex === node.lastSnapshotIndex) prevLogTerm = node.lastSnapshotTerm
        else prevLogTerm = (yield* readLeaderLog(node, ls, prevLogIndex)).term
        const last = Math.min(to, from + config.maxAppendEntries - 1)
        if (last < from) return request(prevLogIndex, prevLogTerm, [])
        const entries = yield* readLeaderLogs(node, ls, from, last)
        const n = entries.length === 0 ? 0 : fitting(entries, 0, entries.length)
        return request(prevLogIndex, prevLogTerm, n === entries.length ? entries : entries.slice(0, n))
      })

    const updateLastAppended = (request: AppendEntriesRequest) => {
      const count = request.entries.length
      const last = node.bugs.matchBeyondAcknowledged === true
        ? node.lastLogIndex
        : count > 0
        ? request.entries[count - 1]!.index
        : request.prevLogIndex
      if (last + 1 > replication.nextIndex) replication.nextIndex = last + 1
      if (last > replication.matchIndex) replication.matchIndex = last
      replication.failures = 0
      if (count > 0) ls.commitment.match(replication.peer.id, last)
    }

    const sendLatestSnapshot = sendLatestSnapshotTo(node, ls, replication, term, stepDown, acknowledged)

    /** An AppendEntries carrying traced entries, with its span (a child of the first) and trace context; else undefined. */
    const traceRequest = (
      request: AppendEntriesRequest
    ): { readonly request: AppendEntriesRequest; readonly span: Tracer.Span } | undefined => {
      const tracing = node.tracing
      const count = request.entries.length
      if (tracing === undefined || ls.traced.length === 0 || count === 0) return undefined
      const first = request.entries[0]!.index
      const last = request.entries[count - 1]!.index
      let spans: Array<Tracer.Span> | undefined
      for (const traced of ls.traced) {
        if (traced.index > last) break
        if (traced.index >= first) (spans ??= []).push(traced.span)
      }
      if (spans === undefined) return undefined
      const span = startSpan(node, tracing, "raft.append_entries", spans[0], {
        [PEER]: replication.peer.id,
        [TERM]: term,
        [FIRST_INDEX]: first,
        [LAST_INDEX]: last,
        "raft.entries": count,
        [COMMIT_INDEX]: request.leaderCommitIndex
      }, "client", linksTo(spans))
      return { request: { ...request, traceparent: traceparent(span) }, span }
    }

    /** Ends an AppendEntries span with the follower's answer. */
    const endRequestSpan = (span: Tracer.Span, exit: Exit.Exit<AppendEntriesResponse, unknown>) => {
      if (Exit.isSuccess(exit)) span.attribute("raft.success", exit.value.success)
      endSpan(node, span, exit)
    }

    /** One AppendEntries exchange; fails (and is retried with backoff) on errors and on rejections. */
    const replicateOnce = (lastIndex: number): Effect.Effect<
      "continue" | "stop",
      TransportError | SnapshotNotFound | StorageError | AppendRejected | SnapshotRejected
    > =>
      Effect.gen(function*() {
        const request = yield* setupAppendEntries(replication.nextIndex, lastIndex).pipe(
          Effect.catchTag("LogNotFound", () => Effect.succeed(undefined))
        )
        // The entries the follower needs are compacted away: it gets the newest snapshot instead.
        if (request === undefined) return yield* sendLatestSnapshot
        const traced = traceRequest(request)
        const start = node.nowMicros()
        const sentAt = node.now()
        const response = yield* (traced === undefined
          ? transport.appendEntries(replication.peer.id, replication.peer.address, request)
          : Effect.onExit(
            transport.appendEntries(replication.peer.id, replication.peer.address, traced.request),
            (exit) => Effect.sync(() => endRequestSpan(traced.span, exit))
          ))
        metrics.appendEntriesRpc.unsafeUpdate(node.nowMicros() - start, replication.labels)
        metrics.appendEntriesLogs.unsafeUpdate(request.entries.length, replication.labels)
        if (response.term > term) {
          stepDown(response.term)
          return "stop" as const
        }
        acknowledged(sentAt)
        if (response.success) {
          updateLastAppended(request)
          replication.allowPipeline = true
          return "continue" as const
        }
        replication.nextIndex = Math.max(Math.min(replication.nextIndex - 1, response.lastLog + 1), 1)
        if (response.noRetryBackoff) return "continue" as const
        return yield* new AppendRejected({ nextIndex: replication.nextIndex })
      })

    /** Replicates until the follower holds everything up to `lastIndex` (the seed's replicateTo). */
    const replicateTo = (lastIndex: number) =>
      Effect.gen(function*() {
        do {
          const outcome = yield* replicateOnce(lastIndex).pipe(
            Effect.tapError((error) => {
              replication.failures++
              return error._tag === "AppendRejected"
                ? Effect.logDebug("appendEntries rejected, sending older logs", error.nextIndex)
                : error._tag === "SnapshotNotFound"
                ? Effect.logDebug("no snapshot to send yet", error)
                : error._tag === "TransportError" && error.reason === "oversize"
                ? Effect.logError("an entry is too large for the transport's frames; raise maxFrameBytes", error)
                : Effect.logWarning("failed to appendEntries", error)
            }),
            (attempt) => retrying(attempt, failureBackoff)
          )
          if (outcome === "stop") return "stop" as const
        } while (replication.nextIndex <= lastIndex)
        return "continue" as const
      })

    /**
     * Pipeline mode: many AppendEntries in flight, their answers decoded in order (the seed's pipelineDecode) in
     * the transport's callback (`listen`), or by a decoder fiber for a transport that only offers `results`.
     */
    const pipelineReplicate = Effect.scoped(
      Effect.gen(function*() {
        const pipeline = yield* transport.appendEntriesPipeline(replication.peer.id, replication.peer.address)
        yield* Effect.logDebug("pipelining replication")
        let finished = false
        let stop = false
        let decoding = true
        let brokeWith: TransportError | undefined
        // When each request in flight was handed to the pipeline (µs), oldest first: answers come in order. The
        // transport's own `sentAtMillis` is whole milliseconds.
        let sentAt: Array<number> = []
        let sentHead = 0
        // The spans of traced requests in flight.
        const spans = new Map<AppendEntriesRequest, Tracer.Span>()
        const endSpans = () => {
          for (const span of spans.values()) endSpan(node, span, Exit.fail("pipeline closed"))
          spans.clear()
        }
        /** Decoding ends (a higher term, a refusal, or the pipeline's end): the sender stops, plain mode resends. */
        const endDecoding = () => {
          if (!decoding) return
          decoding = false
          finished = true
          endSpans()
          replication.trigger.unsafeOpen()
        }
        // The decoder: plain code, since it may run in the transport's callback, and even within this sender's own
        // `send` or `trySend` (the memory network, to a follower whose store writes synchronously, answers in the
        // call): what it reads of a send (`sentAt`, the request's span) is recorded before the call.
        const decode = (result: PipelineResult): void => {
          if (!decoding) return
          if (spans.size > 0) {
            const span = spans.get(result.request)
            if (span !== undefined) {
              spans.delete(result.request)
              endRequestSpan(span, Exit.succeed(result.response))
            }
          }
          const sent = sentAt[sentHead++]
          if (sentHead >= 1024) {
            sentAt = sentAt.slice(sentHead)
            sentHead = 0
          }
          const micros = node.nowMicros() - (sent ?? result.sentAtMillis * 1000)
          metrics.appendEntriesRpc.unsafeUpdate(micros, replication.labels)
          metrics.appendEntriesLogs.unsafeUpdate(result.request.entries.length, replication.labels)
          if (result.response.term > term) {
            stepDown(result.response.term)
            stop = true
            return endDecoding()
          }
          acknowledged(result.sentAtMillis)
          if (!result.response.success) return endDecoding()
          updateLastAppended(result.request)
        }
        const broke = (error: TransportError | undefined) => (brokeWith = error, endDecoding())
        if (pipeline.listen !== undefined) pipeline.listen(decode, broke)
        else {
          yield* Effect.gen(function*() {
            while (decoding) {
              const [results, done] = yield* pipeline.results.takeAll
              for (const result of results) decode(result)
              if (done) return
            }
          }).pipe(
            Effect.catchAll((error) => Effect.sync(() => broke(error))),
            Effect.ensuring(Effect.sync(endDecoding)),
            Effect.interruptible,
            Effect.forkScoped
          )
        }
        // The sender (the seed's pipelineSend).
        let nextIndex = replication.nextIndex
        let sentCommit = -1
        let parked = false
        // Whether appends come one at a time: none found a request in flight since the sender last sent a batch.
        let oneAtATime = true
        const trySend = pipeline.trySend
        if (trySend !== undefined) {
          // New entries go out from the fiber that appended them while the sender waits: the appending fiber does
          // not wake the sender. Once an append finds requests in flight with entries not committed yet (appends
          // overlap), the sender batches what is appended until it runs, until it sends one entry alone again; a
          // request in flight whose entries the other followers committed already (one client, this follower the
          // slower) does not count. Untraced entries held in memory only; otherwise the sender sends them.
          replication.sendNow = () => {
            if (!parked || finished || node.tracing !== undefined) return false
            if (sentHead < sentAt.length && nextIndex - 1 > node.commitIndex) oneAtATime = false
            if (!oneAtATime) return false
            const request = requestFromMemory(nextIndex, node.lastLogIndex)
            if (request === undefined || request.entries.length === 0) return false
            sentAt.push(node.nowMicros())
            if (!trySend(request)) return (sentAt.pop(), false)
            sentCommit = request.leaderCommitIndex
            nextIndex = request.entries[request.entries.length - 1]!.index + 1
            return nextIndex > node.lastLogIndex
          }
          yield* Effect.addFinalizer(() => Effect.sync(() => (replication.sendNow = undefined)))
        }
        while (true) {
          parked = true
          yield* replication.trigger.await
          parked = false
          replication.trigger.unsafeClose()
          if (finished) break
          const lastIndex = node.lastLogIndex
          if (nextIndex > lastIndex && sentCommit === node.commitIndex) continue
          do {
            const request = yield* setupAppendEntries(nextIndex, lastIndex)
            if (request.entries.length > 0) oneAtATime = request.entries.length === 1
            sentCommit = request.leaderCommitIndex
            const traced = traceRequest(request)
            if (traced !== undefined) spans.set(traced.request, traced.span)
            sentAt.push(node.nowMicros())
            // A broken pipeline fails the send (even one waiting for room): back to plain mode.
            const sent = yield* Effect.either(pipeline.send(traced === undefined ? request : traced.request))
            if (sent._tag === "Left") {
              finished = true
              break
            }
            if (request.entries.length > 0) nextIndex = request.entries[request.entries.length - 1]!.index + 1
          } while (nextIndex <= lastIndex && !finished)
        }
        endSpans() // what is still in flight is not decoded now
        if (brokeWith !== undefined) yield* Effect.logDebug("pipeline broke", brokeWith)
        yield* Effect.logDebug("aborting pipeline replication")
        return stop ? "stop" as const : "ran" as const
      })
    )

    // Both tickers start again at once, with the new values, when the configuration is reloaded.
    const commitTicker = reloadable(node, (reloaded) =>
      Effect.gen(function*() {
        if (reloaded) replication.trigger.unsafeOpen()
        while (true) {
          const timeout = node.config.commitTimeoutMillis
          yield* Effect.sleep(yield* Random.nextIntBetween(timeout, 2 * timeout))
          replication.trigger.unsafeOpen()
        }
      })
    )

    let pipelineUnsupported = false
    const replicate = Effect.gen(function*() {
      while (true) {
        yield* replication.trigger.await
        replication.trigger.unsafeClose()
        const outcome = yield* replicateTo(node.lastLogIndex)
        if (outcome === "stop") return
        if (replication.allowPipeline && !pipelineUnsupported) {
          replication.allowPipeline = false
          const ended = yield* pipelineReplicate.pipe(
            Effect.catchTags({
              // As the seed: no pipeline is not an error; plain replication goes on, silently.
              PipelineNotSupported: () => Effect.sync(() => (pipelineUnsupported = true, "not started" as const)),
              LogNotFound: () => Effect.succeed("ran" as const)
            }),
            Effect.catchAll((error) =>
              Effect.as(Effect.logError("failed to start pipeline replication", error), "not started" as const)
            )
          )
          if (ended === "stop") return
          // Entries may have been left unacknowledged in the broken pipeline: resend them in plain mode now.
          if (ended === "ran") replication.trigger.unsafeOpen()
        }
      }
    })

    const heartbeatTicker = reloadable(node, (reloaded) =>
      Effect.gen(function*() {
        if (reloaded) replication.heartbeatNow.unsafeOpen()
        while (true) {
          const tenth = Math.max(1, Math.floor(node.config.heartbeatTimeoutMillis / 10))
          yield* Effect.sleep(yield* Random.nextIntBetween(tenth, 2 * tenth))
          replication.heartbeatNow.unsafeOpen()
        }
      })
    )

    const heartbeatRequest: AppendEntriesRequest = {
      _tag: "AppendEntriesRequest",
      term,
      leaderId: localId,
      leaderAddress: localAddress,
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: [],
      leaderCommitIndex: 0,
      clusterId: node.clusterId
    }
    // hashicorp's backoff, but never longer than half a heartbeat timeout: a follower that comes back
    // after a partition must hear from the leader before its own timer fires, or it campaigns and
    // deposes a healthy leader (found by the simulator, seed 5055).
    const heartbeatBackoff = failureBackoff.pipe(
      Schedule.union(Schedule.spaced(Math.max(1, Math.floor(config.heartbeatTimeoutMillis / 2))))
    )
    const heartbeat = Effect.gen(function*() {
      while (true) {
        yield* replication.heartbeatNow.await
        replication.heartbeatNow.unsafeClose()
        // Only an answer to a heartbeat sent after a verification began may confirm it: an answer already
        // in flight could come from before a newer leader was elected.
        const verifying = takeVerifiers(ls, replication)
        const start = node.nowMicros()
        const sentAt = node.now()
        replication.heartbeating = true
        const response = yield* transport.appendEntries(
          replication.peer.id,
          replication.peer.address,
          heartbeatRequest
        ).pipe(
          Effect.tapError(() =>
            Effect.suspend(() => {
              replication.failures++
              metrics.heartbeatFailures.unsafeUpdate(1, replication.labels)
              return publish(node, {
                _tag: "FailedHeartbeat",
                peerId: replication.peer.id,
                lastContactMillis: replication.lastContact
              })
            })
          ),
          (attempt) => retrying(attempt, heartbeatBackoff)
        )
        replication.heartbeating = false
        metrics.heartbeat.unsafeUpdate(node.nowMicros() - start, replication.labels)
        if (response.term > term) {
          if (verifying !== undefined) voteVerifiers(verifying, false)
          stepDown(response.term)
          return
        }
        acknowledged(sentAt)
        replication.failures = 0
        if (verifying !== undefined) voteVerifiers(verifying, response.success)
      }
    })

    for (const fiber of [replicate, commitTicker, heartbeat, heartbeatTicker]) {
      yield* annotate(fiber).pipe(Effect.interruptible, Effect.forkIn(replication.scope))
    }
  })

/** The leader's view of each other server of the latest configuration, for `stats`. */
export const peerReplication = (node: NodeState, ls: LeaderState): Array<PeerReplication> => {
  const out: Array<PeerReplication> = []
  for (const server of node.latestConfiguration.servers) {
    const replication = ls.replications.get(server.id)
    if (replication === undefined) continue
    out.push({
      id: server.id,
      address: server.address,
      suffrage: server.suffrage,
      matchIndex: replication.matchIndex,
      nextIndex: replication.nextIndex,
      lastContactMillis: replication.answered ? replication.lastContact : undefined,
      failures: replication.failures
    })
  }
  return out
}
