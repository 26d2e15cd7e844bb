/**
 * Elections, both sides. A follower that hears from no leader within its
 * heartbeat timeout campaigns: with PreVote (Raft thesis §9.6) it first asks
 * whether the voters would vote for it, changing no term; then, as a
 * candidate, it stores a new term and its own vote and asks for the others'.
 * A quorum of votes makes it leader (leader.ts). The voter's side answers
 * RequestVote and RequestPreVote by Raft's rules (§5.2, §5.4.1) plus
 * hashicorp's: while a live leader is heard, other candidates are refused.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Configuration from "../Configuration.js"
import type { StorageError } from "../RaftError.js"
import type {
  RequestPreVoteRequest,
  RequestPreVoteResponse,
  RequestVoteRequest,
  RequestVoteResponse
} from "../Rpc.js"
import { persistVote, setCurrentTerm } from "./hardState.js"
import { becomeLeader } from "./leader.js"
import { contactWindowMillis } from "./leaderLost.js"
import { metrics } from "./metrics.js"
import { changeState, followTerm, resetRoleScope, setLeader } from "./role.js"
import { logEvent, logTrouble } from "./logs.js"
import { emit, forkRole, type NodeState, publish, quorumOf, reloadable, timerOnce } from "./state.js"
import { endSpan, PEER, spanned, startSpan, TERM, traceparent } from "./tracing.js"

/**
 * A candidate's election timer: a new election if nobody wins within one to two election timeouts (counted again
 * from a reload of the configuration, with the new timeout).
 */
const electionTimer = (node: NodeState, myEpoch: number) =>
  forkRole(
    node,
    reloadable(node, () =>
      Effect.gen(function*() {
        const timeout = node.config.electionTimeoutMillis
        yield* Effect.sleep(yield* Random.nextIntBetween(timeout, 2 * timeout))
        emit(node, { _tag: "Timer", epoch: myEpoch })
      })
    )
  )

/**
 * The election's span (tracing nodes only): a campaign opens one, a pre-vote that succeeds carries on in it as a
 * candidacy, a campaign started over ends the last one ("timeout"); the outcome ends it (role.ts `changeState`).
 */
const openElectionSpan = (node: NodeState, phase: "pre-vote" | "vote") => {
  const tracing = node.tracing
  if (tracing === undefined) return
  const open = node.electionSpan
  if (open !== undefined && phase === "vote" && node.preVoting) {
    open.event("candidate", node.clock.unsafeCurrentTimeNanos(), { [TERM]: node.currentTerm + 1 })
    open.attribute(TERM, node.currentTerm + 1)
    return
  }
  if (open !== undefined) {
    open.attribute("raft.outcome", "timeout")
    endSpan(node, open)
  }
  node.electionSpan = startSpan(node, tracing, "raft.election", undefined, {
    [TERM]: node.currentTerm + 1,
    "raft.pre_vote": phase === "pre-vote"
  })
}

/** A vote request to one voter, traced as a child of the election's span with the trace context in the request. */
const askVoter = <Req extends { readonly traceparent?: string }, A, E>(
  node: NodeState,
  name: string,
  peer: string,
  request: Req,
  send: (request: Req) => Effect.Effect<A & { readonly granted: boolean }, E>
): Effect.Effect<A & { readonly granted: boolean }, E> =>
  node.electionSpan === undefined ? send(request) : spanned(node, name, { [PEER]: peer }, (span) =>
    Effect.tap(
      send(span === undefined ? request : { ...request, traceparent: traceparent(span) }),
      (response) => span?.attribute("raft.granted", response.granted)
    ), { parent: node.electionSpan, kind: "client" })

/** An election: PreVote first when configured (and not asked to campaign by a leadership transfer). Run loop. */
const campaign = (node: NodeState, transfer: boolean) =>
  node.config.preVote && !transfer ? becomePreCandidate(node) : becomeCandidate(node, transfer)

/**
 * PreVote (Raft thesis §9.6): ask the voters whether they would vote for us at the next term, changing
 * nothing, neither our term nor anyone's vote; campaign only when a quorum would.
 */
const becomePreCandidate = (node: NodeState): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* resetRoleScope(node)
    openElectionSpan(node, "pre-vote")
    yield* changeState(node, "Candidate")
    yield* setLeader(node, undefined, undefined)
    node.preVoting = true
    yield* logEvent(node, `pre-vote: asking the voters whether they would elect this node at term ${node.currentTerm + 1}`)
    const myEpoch = node.epoch
    const configuration = node.latestConfiguration
    const request: RequestPreVoteRequest = {
      _tag: "RequestPreVoteRequest",
      term: node.currentTerm + 1,
      candidateId: node.localId,
      candidateAddress: node.localAddress,
      lastLogIndex: node.lastLogIndex,
      lastLogTerm: node.lastLogTerm,
      clusterId: node.clusterId
    }
    yield* electionTimer(node, myEpoch)
    node.preVotes = Configuration.isVoter(configuration, node.localId) ? 1 : 0
    for (const server of Configuration.votersOf(configuration)) {
      if (server.id === node.localId) continue
      yield* forkRole(
        node,
        askVoter(node, "raft.request_pre_vote", server.id, request, (sent) =>
          node.transport.requestPreVote(server.id, server.address, sent)).pipe(
            Effect.tap((response) => emit(node, { _tag: "PreVote", epoch: myEpoch, from: server.id, response })),
            Effect.catchAll((error) => Effect.logDebug("pre-vote request failed", error))
          )
      )
    }
    if (node.preVotes > 0 && node.preVotes >= quorumOf(configuration)) yield* becomeCandidate(node, false)
  })

/** Becomes a candidate of the next term: its own vote stored first, then everyone asked. Run loop. */
export const becomeCandidate = (node: NodeState, transfer: boolean): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* resetRoleScope(node)
    openElectionSpan(node, "vote")
    node.preVoting = false
    yield* changeState(node, "Candidate")
    metrics.elections.unsafeUpdate(1, node.nodeLabels)
    yield* setLeader(node, undefined, undefined)
    yield* setCurrentTerm(node, node.currentTerm + 1)
    const term = node.currentTerm
    yield* logEvent(node, transfer ? `election for term ${term} (leadership transfer)` : `election for term ${term}`)
    const myEpoch = node.epoch
    node.candidateVotes = 0
    node.candidateNoes = 0
    node.candidateRefused = false
    const configuration = node.latestConfiguration
    const request: RequestVoteRequest = {
      _tag: "RequestVoteRequest",
      term,
      candidateId: node.localId,
      candidateAddress: node.localAddress,
      lastLogIndex: node.lastLogIndex,
      lastLogTerm: node.lastLogTerm,
      leadershipTransfer: transfer,
      clusterId: node.clusterId
    }
    // Election timer: a new election if nobody wins in time.
    yield* electionTimer(node, myEpoch)
    // Our own vote, stored before it counts and before anyone is asked.
    const selfVoter = Configuration.isVoter(configuration, node.localId)
    if (selfVoter) {
      yield* persistVote(node, term, node.localId)
      node.candidateVotes = 1
    }
    for (const server of Configuration.votersOf(configuration)) {
      if (server.id === node.localId) continue
      yield* forkRole(
        node,
        askVoter(node, "raft.request_vote", server.id, request, (sent) =>
          node.transport.requestVote(server.id, server.address, sent)).pipe(
            Effect.tap((response) => emit(node, { _tag: "Vote", epoch: myEpoch, from: server.id, response })),
            Effect.catchAll((error) =>
              Effect.andThen(
                Effect.logDebug("vote request failed", error),
                Effect.sync(() => emit(node, { _tag: "Vote", epoch: myEpoch, from: server.id, response: undefined }))
              )
            )
          )
      )
    }
    if (selfVoter && node.candidateVotes >= quorumOf(configuration)) yield* becomeLeader(node)
  })

/**
 * Whether this node hears from a live leader other than `candidateId` (hashicorp's rule against disruption): it did
 * within a heartbeat timeout, or within a lease once told that leader's connection closed (leaderLost.ts); or it
 * restarted less than a heartbeat timeout ago (it may have heard from one just before). A leader's lease, never
 * longer than either window, counts on this (read.ts).
 */
const hearsOtherLeader = (node: NodeState, candidateId: string): boolean =>
  (node.leaderId !== undefined && node.leaderId !== candidateId &&
    (node.role === "Leader" ||
      (node.lastContact !== undefined && node.now() - node.lastContact < contactWindowMillis(node)))) ||
  (node.restartedAt !== undefined && node.now() - node.restartedAt < node.config.heartbeatTimeoutMillis)

/** A candidate names a cluster this node has not yet heard from a leader of (it has no cluster id). */
const uninitialised = (node: NodeState, clusterId: string | undefined): boolean =>
  node.clusterId === undefined && clusterId !== undefined

/** Whether our log is more up to date than a candidate's (Raft §5.4.1): then it gets no vote. */
const logAhead = (node: NodeState, lastLogIndex: number, lastLogTerm: number): boolean =>
  node.bugs.voteUpToDateByIndexOnly === true
    ? node.lastLogIndex > lastLogIndex
    : node.bugs.voteUpToDateByTermOnly === true
    ? node.lastLogTerm > lastLogTerm
    : node.lastLogTerm > lastLogTerm || (node.lastLogTerm === lastLogTerm && node.lastLogIndex > lastLogIndex)

/** The `RequestVote` event: grants at most one vote per term, stored before it is granted. Run loop. */
export const handleRequestVote = (node: NodeState, request: RequestVoteRequest) =>
  Effect.gen(function*() {
    const response = { _tag: "RequestVoteResponse" as const, term: node.currentTerm, granted: false }
    const observe = () => publish(node, { _tag: "RequestVote", request, granted: response.granted })
    // While we hear from a live leader, refuse other candidates (unless a transfer asks). A node that has not yet
    // heard from its cluster (no cluster id: fresh, or re-initialised) votes for none of its candidates.
    if (
      (!request.leadershipTransfer && hearsOtherLeader(node, request.candidateId)) ||
      uninitialised(node, request.clusterId)
    ) {
      yield* observe()
      return response
    }
    if (request.term < node.currentTerm && node.bugs.voteInStaleTerm !== true) {
      yield* observe()
      return response
    }
    // Only a voter of our configuration may be elected (a removed server or a non-voter never is).
    if (
      node.latestConfiguration.servers.length > 0 && !Configuration.isVoter(node.latestConfiguration, request.candidateId)
    ) {
      yield* observe()
      return response
    }
    if (request.term > node.currentTerm) {
      yield* followTerm(node, request.term)
      response.term = request.term
      yield* setLeader(node, undefined, undefined)
    }
    if (node.lastVoteTerm === request.term && node.lastVoteCandidate !== "") {
      response.granted = node.lastVoteCandidate === request.candidateId
      yield* observe()
      return response
    }
    if (logAhead(node, request.lastLogIndex, request.lastLogTerm)) {
      yield* observe()
      return response
    }
    yield* persistVote(node, request.term, request.candidateId)
    response.granted = true
    node.lastContact = node.now()
    yield* observe()
    return response
  })

/** A pre-vote changes nothing here: it answers whether a vote at `request.term` would be granted now. Run loop. */
export const handleRequestPreVote = (node: NodeState, request: RequestPreVoteRequest): RequestPreVoteResponse => {
  const refuse = { _tag: "RequestPreVoteResponse" as const, term: node.currentTerm, granted: false }
  if (
    node.latestConfiguration.servers.length > 0 && !Configuration.isVoter(node.latestConfiguration, request.candidateId)
  ) {
    return refuse
  }
  if (hearsOtherLeader(node, request.candidateId) || uninitialised(node, request.clusterId)) return refuse
  if (request.term < node.currentTerm) return refuse
  if (
    node.lastVoteTerm === request.term && node.lastVoteCandidate !== "" &&
    node.lastVoteCandidate !== request.candidateId
  ) {
    return refuse
  }
  if (logAhead(node, request.lastLogIndex, request.lastLogTerm)) return refuse
  return { ...refuse, granted: true }
}

/** The `Timer` event of the current role: a follower without a leader, or a candidate without a winner, campaigns. */
export const handleTimer = (node: NodeState) =>
  Effect.gen(function*() {
    if (node.role === "Follower") {
      if (node.lastContact !== undefined && node.now() - node.lastContact < contactWindowMillis(node)) return
      if (node.leaderId !== undefined) {
        yield* logTrouble(node, `no heartbeat from leader ${node.leaderId} within the timeout, starting an election`)
        yield* setLeader(node, undefined, undefined)
      }
      if (node.latestConfigurationIndex === 0 && node.latestConfiguration.servers.length === 0) return
      if (!Configuration.isVoter(node.latestConfiguration, node.localId)) return
      yield* campaign(node, false)
    } else if (node.role === "Candidate") {
      yield* Effect.logDebug("election timeout reached, restarting election")
      yield* campaign(node, false)
    }
  })

/** A `PreVote` answer of the current pre-vote round. Run loop. */
export const handlePreVote = (node: NodeState, from: string, response: RequestPreVoteResponse) =>
  Effect.gen(function*() {
    if (node.role !== "Candidate" || !node.preVoting) return
    if (response.term > node.currentTerm) {
      yield* followTerm(node, response.term)
      return
    }
    if (!response.granted) return
    node.preVotes++
    yield* Effect.logDebug(`pre-vote granted by ${from}, tally ${node.preVotes}`)
    if (node.preVotes >= quorumOf(node.latestConfiguration)) yield* becomeCandidate(node, false)
  })

/**
 * A lost election campaigns again soon: once a voter refused and too few voters are left to make a quorum (a
 * split vote, typically two followers that campaigned at once), a new election starts after a random delay of up
 * to a quarter of an election timeout, instead of one to two timeouts. The range doubles with each election lost in
 * a row (up to two timeouts), so that candidates whose rounds of requests are slow stop splitting the vote. Only
 * after a refusal at the candidate's term (a failed request then counts as a no): one whose requests all failed
 * (cut off) keeps its full timer. Liveness only; a node may campaign at any time.
 */
const campaignAgainSoon = (node: NodeState, epoch: number) => {
  node.lostElections++
  const timeout = node.config.electionTimeoutMillis
  return timerOnce(
    node,
    epoch,
    0,
    Math.min(2 * timeout, Math.floor(timeout / 4) * 2 ** Math.min(node.lostElections - 1, 4))
  )
}

/** A `Vote` answer of the current election (undefined: the request failed). Run loop. */
export const handleVote = (node: NodeState, from: string, response: RequestVoteResponse | undefined) =>
  Effect.gen(function*() {
    if (node.role !== "Candidate") return
    if (response !== undefined && response.term > node.currentTerm) {
      yield* followTerm(node, response.term)
      return
    }
    if (response !== undefined && response.term !== node.currentTerm) return
    if (response !== undefined && response.granted) {
      node.candidateVotes++
      yield* Effect.logDebug(`vote granted by ${from}, tally ${node.candidateVotes}`)
      if (node.candidateVotes >= quorumOf(node.latestConfiguration)) yield* becomeLeader(node)
      return
    }
    const wasLost = node.candidateRefused && lost(node, node.candidateNoes)
    node.candidateNoes++
    if (response !== undefined) node.candidateRefused = true
    if (!wasLost && node.candidateRefused && lost(node, node.candidateNoes)) {
      yield* Effect.logDebug(`election for term ${node.currentTerm} lost (${node.candidateNoes} voters said no)`)
      yield* campaignAgainSoon(node, node.epoch)
    }
  })

/** Whether `noes` voters saying no leave too few for a quorum. */
const lost = (node: NodeState, noes: number): boolean =>
  Configuration.votersOf(node.latestConfiguration).length - noes < quorumOf(node.latestConfiguration)
