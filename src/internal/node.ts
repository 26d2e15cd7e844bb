/**
 * The machine of one Raft node.
 *
 * One fiber, the run loop, owns the node's Raft state. Everything that can
 * change it arrives as an event in one `Mailbox`: client applies, incoming
 * RPCs (the transport's handler offers them and waits for the answer), timer
 * ticks, vote answers, and notices from replication fibers (commit advanced, a
 * higher term seen). The loop drains the mailbox with `takeAll`, so a burst of
 * applies becomes one `storeLogs` of up to `maxAppendEntries` entries.
 *
 * Each role has a scope: the follower's heartbeat timer, the candidate's vote
 * requests and election timer, and the leader's replication, heartbeat,
 * pipeline-decoder and lease fibers are forked into it, and a change of role
 * closes it, interrupting every one of them (hashicorp/raft's stopCh, done by
 * interruption). Replication follows the seed (`replication.go`): a
 * `replicate` fiber per follower woken by new entries or the commit-timeout
 * tick, an independent `heartbeat` fiber, and pipeline mode with a decoder
 * fiber once the follower is in sync.
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../Configuration.js"
import type { Fsm } from "../Fsm.js"
import * as Log from "../Log.js"
import type { LogStore } from "../LogStore.js"
import type { RaftConfig } from "../RaftConfig.js"
import {
  type ApplyError,
  ApplyTimeout,
  CantBootstrap,
  ConfigurationChanged,
  type FsmError,
  InvalidOperation,
  LeadershipLost,
  LeadershipTransferFailed,
  LeadershipTransferInProgress,
  LogNotFound,
  type MembershipError,
  NothingNewToSnapshot,
  NotLeader,
  RaftShutdown,
  type RestoreError,
  type SnapshotError,
  SnapshotNotFound,
  StorageError,
  type TransferError,
  type TransportError
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
  TimeoutNowRequest
} from "../Rpc.js"
import type { SnapshotMeta, SnapshotStore } from "../SnapshotStore.js"
import type { StableStore } from "../StableStore.js"
import type { RpcHandler, Transport } from "../Transport.js"
import { failureBackoff } from "./backoff.js"
import { InjectedBugs } from "./bugs.js"
import { Commitment } from "./commitment.js"
import type { Captured, Event, FsmItem, InstallVerdict } from "./events.js"
import { Future } from "./future.js"
import {
  type ApplyFuture,
  CANCELLED,
  DISPATCHED,
  type LeaderState,
  type LeaderWrite,
  type MembershipRequest,
  QUEUED,
  type Replication,
  type VerifyFuture
} from "./leaderState.js"
import { metrics } from "./metrics.js"
import type { ApplyResult, Observation, PeerReplication, RaftState, RaftStats } from "./types.js"

export type { ApplyResult, Observation, PeerReplication, RaftState, RaftStats } from "./types.js"

const settleVerify = (
  verifier: VerifyFuture,
  exit: Exit.Exit<void, NotLeader | LeadershipLost | RaftShutdown>
): void => {
  if (verifier.done) return
  verifier.done = true
  verifier.pending.delete(verifier)
  verifier.deferred.done(exit)
}

const KEY_CURRENT_TERM = "CurrentTerm"
const KEY_LAST_VOTE = "LastVote"
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/** The dependencies of a node. */
export interface NodeServices {
  readonly config: RaftConfig
  readonly fsm: Fsm
  readonly logs: LogStore
  readonly stable: StableStore
  readonly snapshots: SnapshotStore
  readonly transport: Transport
}

/** Whether the stores hold any Raft state: a term, a log entry or a snapshot. */
export const hasExistingState = (
  logs: LogStore,
  stable: StableStore,
  snapshots: SnapshotStore
): Effect.Effect<boolean, StorageError> =>
  Effect.gen(function*() {
    if ((yield* stable.getUint64(KEY_CURRENT_TERM)) > 0) return true
    if ((yield* logs.lastIndex) > 0) return true
    return (yield* snapshots.list).length > 0
  })

/** Writes the first configuration straight to the stores of a node that has no state. */
export const bootstrapStores = (
  logs: LogStore,
  stable: StableStore,
  snapshots: SnapshotStore,
  configuration: Configuration.Configuration
): Effect.Effect<Log.Log, CantBootstrap | StorageError> =>
  Effect.gen(function*() {
    const problem = Configuration.check(configuration)
    if (problem !== undefined) return yield* new CantBootstrap({ reason: problem })
    if (yield* hasExistingState(logs, stable, snapshots)) {
      return yield* new CantBootstrap({ reason: "the node already has state" })
    }
    const entry = Log.make(1, 1, "Configuration", Configuration.encode(configuration))
    yield* stable.setUint64(KEY_CURRENT_TERM, 1)
    yield* logs.storeLogs([entry])
    return entry
  })

/** The running node, as the `Raft` service exposes it. */
export interface Node {
  readonly enqueue: (
    type: Log.LogType,
    data: Uint8Array,
    timeoutMillis: number | undefined
  ) => Effect.Effect<Effect.Effect<ApplyResult, ApplyError>>
  readonly verifyLeader: Effect.Effect<void, NotLeader | LeadershipLost | RaftShutdown>
  readonly bootstrap: (
    configuration: Configuration.Configuration
  ) => Effect.Effect<void, CantBootstrap | StorageError | RaftShutdown>
  readonly stats: Effect.Effect<RaftStats>
  readonly state: Effect.Effect<RaftState>
  readonly leader: Effect.Effect<Option.Option<{ readonly id: string; readonly address: string }>>
  readonly lastContact: Effect.Effect<Option.Option<number>>
  readonly appliedIndex: Effect.Effect<number>
  readonly lastIndex: Effect.Effect<number>
  readonly commitIndex: Effect.Effect<number>
  readonly currentTerm: Effect.Effect<number>
  readonly configuration: Effect.Effect<{ readonly configuration: Configuration.Configuration; readonly index: number }>
  readonly observe: Stream.Stream<Observation>
  readonly shutdown: Effect.Effect<void>
  readonly changeMembership: (
    change: Configuration.Change,
    prevIndex: number,
    timeoutMillis: number | undefined
  ) => Effect.Effect<number, MembershipError>
  readonly userSnapshot: Effect.Effect<SnapshotMeta, SnapshotError>
  readonly userRestore: (
    meta: SnapshotMeta,
    data: Stream.Stream<Uint8Array, StorageError>,
    timeoutMillis: number | undefined
  ) => Effect.Effect<void, RestoreError>
  readonly leadershipTransfer: (
    target: { readonly id: string; readonly address: string } | undefined
  ) => Effect.Effect<void, TransferError>
}

// ---------------------------------------------------------------------------

/** Starts a node in `parentScope`; closing that scope (or `shutdown`) stops every fiber it started. */
export const make = (services: NodeServices, parentScope: Scope.Scope): Effect.Effect<Node, StorageError> =>
  Effect.gen(function*() {
    const { config, fsm, logs, snapshots, stable, transport } = services
    const localId = config.localId
    const localAddress = transport.localAddress
    const nodeLabels = [MetricLabel.make("node", localId)]
    const clock = yield* Effect.clock
    const bugs = yield* InjectedBugs
    const now = () => clock.unsafeCurrentTimeMillis()

    const nodeScope = yield* Scope.fork(parentScope, ExecutionStrategy.sequential)
    const mailbox = yield* Mailbox.make<Event>()
    const fsmMailbox = yield* Mailbox.make<FsmItem>()
    const writes = yield* Mailbox.make<LeaderWrite>()
    const observations = yield* PubSub.unbounded<Observation>()

    // ---- persistent and volatile state, owned by the run loop (read by others)
    let state: RaftState = "Follower"
    let currentTerm = yield* stable.getUint64(KEY_CURRENT_TERM)
    let lastVoteTerm = 0
    let lastVoteCandidate = ""
    {
      const vote = yield* stable.get(KEY_LAST_VOTE)
      if (Option.isSome(vote)) {
        const parsed = JSON.parse(textDecoder.decode(vote.value)) as { term?: unknown; candidate?: unknown }
        if (typeof parsed.term === "number" && typeof parsed.candidate === "string") {
          lastVoteTerm = parsed.term
          lastVoteCandidate = parsed.candidate
        } else {
          return yield* new StorageError({ operation: "open", reason: "malformed LastVote record" })
        }
      }
    }
    let lastLogIndex = 0
    let lastLogTerm = 0
    /** Entries handed to the leader's writer and not yet written (or failed), and who waits for that to reach 0. */
    let writesPending = 0
    let writesDrained: Future<void, never> | undefined = undefined
    let writerStopped = false
    /** Entries the leader may have handed to its writer and not yet written before it waits for the writer. */
    const maxUnwritten = 64 * config.maxAppendEntries
    /** How many of its latest entries a leader keeps in memory for replication (`LeaderState.recent`), at most. */
    const recentMax = 32 * config.maxAppendEntries
    let lastSnapshotIndex = 0
    let lastSnapshotTerm = 0
    let commitIndex = 0
    let dispatchedToFsm = 0
    let appliedIndex = 0
    let fsmPending = 0
    let leaderId: string | undefined
    let leaderAddress: string | undefined
    let lastContact: number | undefined
    let latestConfiguration: Configuration.Configuration = Configuration.empty
    let latestConfigurationIndex = 0
    let committedConfiguration: Configuration.Configuration = Configuration.empty
    let committedConfigurationIndex = 0
    let epoch = 0
    let roleScope: Scope.CloseableScope = yield* Scope.fork(nodeScope, ExecutionStrategy.sequential)
    let leader: LeaderState | undefined
    let candidateVotes = 0
    /** Waiters for the FSM to reach an index, resolved by the FSM runner. */
    let appliedWaiters: Array<{ readonly index: number; readonly future: Future<void, never> }> = []
    let preVoting = false
    let preVotes = 0
    /** Held while a snapshot is taken, installed or restored: they never overlap, so the newest is the latest. */
    const snapshotLock = yield* Effect.makeSemaphore(1)
    let isShutdown = false
    const shutdownDone = new Future<void, never>()

    // What the FSM has applied (owned by the FSM runner once it starts): the configuration in force at the
    // applied index is what a snapshot taken there records.
    let appliedTerm = 0
    let appliedConfiguration: Configuration.Configuration = Configuration.empty
    let appliedConfigurationIndex = 0

    // ---- restore from the stores: the newest snapshot into the FSM, then the log after it
    {
      const snapshotList = yield* snapshots.list
      const newest = snapshotList[0]
      if (newest !== undefined) {
        const opened = yield* snapshots.open(newest.id).pipe(
          Effect.catchTag("SnapshotNotFound", (error) =>
            Effect.fail(new StorageError({ operation: "open", reason: error.reason, cause: error })))
        )
        yield* fsm.restore(opened.data).pipe(
          Effect.mapError((error) =>
            error._tag === "StorageError"
              ? error
              : new StorageError({ operation: "restore", reason: error.reason, cause: error })
          )
        )
        lastSnapshotIndex = newest.index
        lastSnapshotTerm = newest.term
        latestConfiguration = newest.configuration
        latestConfigurationIndex = newest.configurationIndex
        committedConfiguration = newest.configuration
        committedConfigurationIndex = newest.configurationIndex
        appliedConfiguration = newest.configuration
        appliedConfigurationIndex = newest.configurationIndex
        commitIndex = newest.index
        dispatchedToFsm = newest.index
        appliedIndex = newest.index
        appliedTerm = newest.term
      }
      lastLogIndex = yield* logs.lastIndex
      const first = yield* logs.firstIndex
      if (newest !== undefined && lastLogIndex > 0) {
        // A log that ends before the snapshot, or disagrees with it at its index (a crash in the middle of
        // installing one), is superseded by it as a whole.
        const at = lastLogIndex >= newest.index && first <= newest.index
          ? yield* Effect.option(logs.getLog(newest.index))
          : Option.none()
        const superseded = lastLogIndex < newest.index ||
          (Option.isSome(at) && at.value.term !== newest.term)
        if (superseded) {
          yield* logs.deleteRange(first, lastLogIndex)
          lastLogIndex = 0
        }
      }
      if (lastLogIndex > 0 && lastLogIndex > lastSnapshotIndex) {
        const last = yield* logs.getLog(lastLogIndex).pipe(Effect.catchTag("LogNotFound", storageNotFound("open")))
        lastLogTerm = last.term
        const from = Math.max(yield* logs.firstIndex, lastSnapshotIndex + 1)
        for (let index = from; index <= lastLogIndex; index++) {
          const entry = yield* logs.getLog(index).pipe(Effect.catchTag("LogNotFound", storageNotFound("open")))
          if (entry.type === "Configuration") {
            const decoded = Configuration.decode(entry.data)
            if (decoded === undefined) {
              return yield* new StorageError({ operation: "open", reason: `malformed configuration at ${index}` })
            }
            latestConfiguration = decoded
            latestConfigurationIndex = index
          }
        }
      } else {
        lastLogIndex = lastSnapshotIndex
        lastLogTerm = lastSnapshotTerm
      }
    }

    const publish = (observation: Observation) => PubSub.publish(observations, observation)
    const forkRole = <A, E>(effect: Effect.Effect<A, E>) =>
      effect.pipe(Effect.interruptible, Effect.forkIn(roleScope), Effect.asVoid)
    const emit = (event: Event): boolean => mailbox.unsafeOffer(event)

    // ---- persistence helpers: persist before answering
    const setCurrentTerm = (term: number) =>
      Effect.suspend(() => {
        if (term === currentTerm) return Effect.void
        return Effect.map(stable.setUint64(KEY_CURRENT_TERM, term), () => {
          currentTerm = term
        })
      })
    const persistVote = (term: number, candidate: string) =>
      Effect.map(
        bugs.voteWithoutPersist
          ? Effect.void
          : stable.set(KEY_LAST_VOTE, textEncoder.encode(JSON.stringify({ term, candidate }))),
        () => {
          lastVoteTerm = term
          lastVoteCandidate = candidate
        }
      )

    const setLeader = (id: string | undefined, address: string | undefined) =>
      Effect.suspend(() => {
        if (id === leaderId && address === leaderAddress) return Effect.void
        leaderId = id
        leaderAddress = address
        return publish({ _tag: "LeaderChange", leaderId: id, term: currentTerm })
      })

    const quorumOf = (configuration: Configuration.Configuration) => Configuration.quorumSize(configuration)

    // ---- role transitions

    const resetRoleScope = Effect.gen(function*() {
      epoch++
      const old = roleScope
      roleScope = yield* Scope.fork(nodeScope, ExecutionStrategy.sequential)
      yield* Scope.close(old, Exit.void)
    })

    const changeState = (to: RaftState) =>
      Effect.suspend(() => {
        const from = state
        state = to
        if (from === to) return Effect.void
        metrics.stateChanges.unsafeUpdate(1, [...nodeLabels, MetricLabel.make("state", to)])
        return publish({ _tag: "StateChange", from, to, term: currentTerm })
      })

    /** Leaves the leader role: fails what it had in flight. */
    const tearDownLeader = Effect.suspend(() => {
      const old = leader
      leader = undefined
      if (old === undefined) return Effect.void
      for (let i = old.inflightHead; i < old.inflight.length; i++) {
        const future = old.inflight[i]!.future
        if (future !== undefined) future.deferred.done(Exit.fail(new LeadershipLost()))
      }
      const lost = Exit.fail(new LeadershipLost())
      for (const verifier of [...old.verifiers]) settleVerify(verifier, lost)
      for (const request of old.changes) request.deferred.done(lost)
      for (const { request } of old.promotions.values()) request.deferred.done(lost)
      if (old.changeInFlight?.request !== undefined) old.changeInFlight.request.deferred.done(lost)
      if (old.transfer !== undefined) {
        // Deposed by a higher term: another server is taking over, which is what the transfer asked for.
        old.transfer.deferred.done(
          currentTerm > old.term
            ? Exit.void
            : Exit.fail(new LeadershipTransferFailed({ reason: "leadership lost without a successor" }))
        )
      }
      return Effect.void
    })

    const followerTimer = (myEpoch: number) =>
      Effect.gen(function*() {
        while (true) {
          const wait = yield* Random.nextIntBetween(config.heartbeatTimeoutMillis, 2 * config.heartbeatTimeoutMillis)
          yield* Effect.sleep(wait)
          emit({ _tag: "Timer", epoch: myEpoch })
        }
      })

    const becomeFollower = Effect.gen(function*() {
      const wasLeader = state === "Leader"
      const old = leader
      if (old !== undefined) {
        // A write of ours landing later could overwrite what the next leader sends: let every one finish first.
        yield* awaitLeaderWrites
        // After a failed write, the log ends where the store's does.
        if (lastLogIndex !== old.storedIndex) {
          lastLogIndex = old.storedIndex
          lastLogTerm = old.storedTerm
          if (latestConfigurationIndex > lastLogIndex) {
            latestConfiguration = committedConfiguration
            latestConfigurationIndex = committedConfigurationIndex
          }
        }
      }
      yield* resetRoleScope
      preVoting = false
      if (wasLeader) {
        yield* tearDownLeader
        yield* setLeader(undefined, undefined)
      }
      yield* changeState("Follower")
      yield* forkRole(followerTimer(epoch))
    })

    const electionTimer = (myEpoch: number) =>
      forkRole(
        Random.nextIntBetween(config.electionTimeoutMillis, 2 * config.electionTimeoutMillis).pipe(
          Effect.flatMap((wait) => Effect.sleep(wait)),
          Effect.andThen(Effect.sync(() => emit({ _tag: "Timer", epoch: myEpoch })))
        )
      )

    /** An election: PreVote first when configured (and not asked to campaign by a leadership transfer). */
    const campaign = (transfer: boolean) => config.preVote && !transfer ? becomePreCandidate : becomeCandidate(transfer)

    /**
     * PreVote (Raft thesis §9.6): ask the voters whether they would vote for us at the next term, changing
     * nothing, neither our term nor anyone's vote; campaign only when a quorum would.
     */
    const becomePreCandidate: Effect.Effect<void, StorageError> = Effect.gen(function*() {
      yield* resetRoleScope
      yield* changeState("Candidate")
      yield* setLeader(undefined, undefined)
      preVoting = true
      const myEpoch = epoch
      const configuration = latestConfiguration
      const request: RequestPreVoteRequest = {
        _tag: "RequestPreVoteRequest",
        term: currentTerm + 1,
        candidateId: localId,
        candidateAddress: localAddress,
        lastLogIndex,
        lastLogTerm
      }
      yield* electionTimer(myEpoch)
      preVotes = Configuration.isVoter(configuration, localId) ? 1 : 0
      for (const server of Configuration.votersOf(configuration)) {
        if (server.id === localId) continue
        yield* forkRole(
          transport.requestPreVote(server.id, server.address, request).pipe(
            Effect.tap((response) => emit({ _tag: "PreVote", epoch: myEpoch, from: server.id, response })),
            Effect.catchAll((error) => Effect.logDebug("pre-vote request failed", error))
          )
        )
      }
      if (preVotes > 0 && preVotes >= quorumOf(configuration)) yield* becomeCandidate(false)
    })

    const becomeCandidate = (transfer: boolean): Effect.Effect<void, StorageError> =>
      Effect.gen(function*() {
        yield* resetRoleScope
        preVoting = false
        yield* changeState("Candidate")
        metrics.elections.unsafeUpdate(1, nodeLabels)
        yield* setLeader(undefined, undefined)
        yield* setCurrentTerm(currentTerm + 1)
        const term = currentTerm
        const myEpoch = epoch
        candidateVotes = 0
        const configuration = latestConfiguration
        const request: RequestVoteRequest = {
          _tag: "RequestVoteRequest",
          term,
          candidateId: localId,
          candidateAddress: localAddress,
          lastLogIndex,
          lastLogTerm,
          leadershipTransfer: transfer
        }
        // Election timer: a new election if nobody wins in time.
        yield* electionTimer(myEpoch)
        // Our own vote, stored before it counts and before anyone is asked.
        const selfVoter = Configuration.isVoter(configuration, localId)
        if (selfVoter) {
          yield* persistVote(term, localId)
          candidateVotes = 1
        }
        for (const server of Configuration.votersOf(configuration)) {
          if (server.id === localId) continue
          yield* forkRole(
            transport.requestVote(server.id, server.address, request).pipe(
              Effect.tap((response) => emit({ _tag: "Vote", epoch: myEpoch, from: server.id, response })),
              Effect.catchAll((error) => Effect.logDebug("vote request failed", error))
            )
          )
        }
        if (selfVoter && candidateVotes >= quorumOf(configuration)) yield* becomeLeader
      })

    // ---- leader

    /** Starts replicating to `server`, in a scope of its own inside the leader's term. */
    const addReplication = (ls: LeaderState, server: Configuration.Server, myEpoch: number) =>
      Effect.gen(function*() {
        const replication: Replication = {
          peer: server,
          labels: [...nodeLabels, MetricLabel.make("peer", server.id)],
          scope: yield* Scope.fork(roleScope, ExecutionStrategy.sequential),
          nextIndex: lastLogIndex + 1,
          matchIndex: 0,
          lastContact: now(),
          answered: false,
          failures: 0,
          allowPipeline: false,
          trigger: yield* Effect.makeLatch(true),
          heartbeatNow: yield* Effect.makeLatch(true),
          verifiers: new Set()
        }
        ls.replications.set(server.id, replication)
        yield* startReplication(ls, replication, ls.term, myEpoch)
      })

    /**
     * Follows a configuration that was just appended (it takes effect at once, as in hashicorp/raft): the voters
     * that count toward commitment, and a replication per other member, stopped for members that left.
     */
    const reconfigureLeader = (ls: LeaderState, configuration: Configuration.Configuration) =>
      Effect.gen(function*() {
        ls.commitment.setVoters(
          Configuration.votersOf(configuration).map((server) => server.id),
          (id) => id === localId ? lastLogIndex : ls.replications.get(id)?.matchIndex ?? 0
        )
        for (const server of configuration.servers) {
          if (server.id === localId) continue
          const existing = ls.replications.get(server.id)
          if (existing !== undefined && existing.peer.address === server.address) continue
          if (existing !== undefined) {
            ls.replications.delete(server.id)
            yield* Scope.close(existing.scope, Exit.void)
          }
          yield* addReplication(ls, server, epoch)
        }
        for (const [id, replication] of ls.replications) {
          if (Configuration.find(configuration, id) !== undefined) continue
          ls.replications.delete(id)
          for (const verifier of [...replication.verifiers]) settleVerify(verifier, Exit.fail(new LeadershipLost()))
          yield* Scope.close(replication.scope, Exit.void)
        }
      })

    const becomeLeader: Effect.Effect<void, StorageError> = Effect.gen(function*() {
      yield* resetRoleScope
      preVoting = false
      yield* changeState("Leader")
      yield* setLeader(localId, localAddress)
      const configuration = latestConfiguration
      const voters = Configuration.votersOf(configuration).map((server) => server.id)
      const myEpoch = epoch
      const term = currentTerm
      const ls: LeaderState = {
        term,
        commitment: new Commitment(
          voters,
          bugs.commitPreviousTermsByCounting ? 0 : lastLogIndex + 1,
          commitIndex,
          () => onCommit(ls, myEpoch),
          bugs.commitWithoutQuorum === true
        ),
        replications: new Map(),
        inflight: [],
        inflightHead: 0,
        verifiers: new Set(),
        commitPending: false,
        changes: [],
        promotions: new Map(),
        // A configuration appended by an earlier leader and not yet committed counts as in flight.
        changeInFlight: latestConfigurationIndex > commitIndex
          ? { index: latestConfigurationIndex, request: undefined }
          : undefined,
        transfer: undefined,
        storedIndex: lastLogIndex,
        storedTerm: lastLogTerm,
        unstored: [],
        recent: [],
        writeFailure: undefined
      }
      leader = ls
      for (const server of configuration.servers) {
        if (server.id === localId) continue
        yield* addReplication(ls, server, myEpoch)
      }
      yield* forkRole(leaseLoop(ls, myEpoch))
      yield* forkRole(promotionLoop(ls, myEpoch))
      // Raft §8: a new leader commits an entry of its own term, which commits everything before it.
      yield* dispatch([{
        type: "Noop",
        data: Log.empty,
        deferred: new Future<ApplyResult, ApplyError>(),
        status: DISPATCHED
      }])
    })

    /** Checks the lease every leaderLeaseTimeout: without contact with a quorum of voters, step down. */
    const leaseLoop = (state: LeaderState, myEpoch: number) =>
      Effect.gen(function*() {
        while (true) {
          yield* Effect.sleep(config.leaderLeaseTimeoutMillis)
          if (leader !== state) return
          const configuration = latestConfiguration
          const time = now()
          let contacted = Configuration.isVoter(configuration, localId) ? 1 : 0
          for (const replication of state.replications.values()) {
            if (!Configuration.isVoter(configuration, replication.peer.id)) continue
            if (time - replication.lastContact <= config.leaderLeaseTimeoutMillis) contacted++
          }
          if (contacted < quorumOf(configuration)) {
            metrics.leaseStepDowns.unsafeUpdate(1, nodeLabels)
            yield* Effect.logWarning("failed to contact a quorum of voters within the lease, stepping down")
            emit({ _tag: "StepDown", epoch: myEpoch, term: 0 })
            return
          }
        }
      })

    /**
     * Promotes non-voters added by `addVoter` once caught up: within `maxAppendEntries` of the leader's last
     * index continuously for a round of one heartbeat timeout.
     */
    const promotionLoop = (ls: LeaderState, myEpoch: number) =>
      Effect.gen(function*() {
        const tick = Math.max(1, Math.floor(config.heartbeatTimeoutMillis / 10))
        while (true) {
          yield* Effect.sleep(tick)
          if (leader !== ls) return
          if (ls.promotions.size === 0) continue
          const time = now()
          for (const [id, promotion] of ls.promotions) {
            const replication = ls.replications.get(id)
            if (replication === undefined) continue
            if (lastLogIndex - replication.matchIndex <= config.maxAppendEntries) {
              promotion.caughtUpSince ??= time
              if (time - promotion.caughtUpSince >= config.heartbeatTimeoutMillis) {
                emit({ _tag: "Promote", epoch: myEpoch, id })
              }
            } else {
              promotion.caughtUpSince = undefined
            }
          }
        }
      })

    /**
     * Appends applies (and the leader's no-op) to the log: hands them to the leader's writer and wakes replication
     * at once, so the leader's own write overlaps the followers' (Raft thesis §10.2.1). The leader counts itself
     * toward commitment when its write has succeeded (`leaderWriter`).
     */
    const dispatch = (futures: ReadonlyArray<ApplyFuture>) =>
      Effect.suspend(() =>
        // Backpressure: a leader whose disk falls behind its followers stops taking entries once
        // `maxUnwritten` wait for its writer, so they cannot pile up in memory without bound.
        writesPending >= maxUnwritten ? Effect.zipRight(awaitLeaderWrites, dispatchNow(futures)) : dispatchNow(futures)
      )

    const dispatchNow = (futures: ReadonlyArray<ApplyFuture>) => Effect.sync(() => appendNow(futures))

    /** `dispatch`'s work, synchronous: the caller checked there is room for the writer. */
    const appendNow = (futures: ReadonlyArray<ApplyFuture>): void => {
      const state = leader
      if (state === undefined) return
      if (state.writeFailure !== undefined) {
        // The leader is stepping down (its WriteFailed event is queued): nothing more is appended.
        for (const future of futures) future.deferred.done(Exit.fail(state.writeFailure))
        return
      }
      const term = currentTerm
      const first = lastLogIndex + 1
      const entries = new Array<Log.Log>(futures.length)
      const at = now()
      for (let i = 0; i < futures.length; i++) {
        const future = futures[i]!
        future.status = DISPATCHED
        const entry = Log.make(first + i, term, future.type, future.data)
        entries[i] = entry
        state.inflight.push({ log: entry, future, at })
        state.unstored.push(entry)
        state.recent.push(entry)
      }
      lastLogIndex = first + entries.length - 1
      lastLogTerm = term
      if (state.recent.length > recentMax) state.recent = state.recent.slice(-recentMax / 2)
      writesPending += entries.length
      writes.unsafeOffer({ leader: state, entries })
      if (bugs.leaderCountsUnwritten === true) state.commitment.match(localId, lastLogIndex)
      metrics.applies.unsafeUpdate(entries.length, nodeLabels)
      for (const replication of state.replications.values()) replication.trigger.unsafeOpen()
    }

    /**
     * The leader's writes of its own entries, in order: batches queued while a write is in flight share the next
     * `storeLogs` (one synced commit). Once a write fails, the leader's later entries are never written, so its
     * log keeps no gap; the run loop steps down on the `WriteFailed` event.
     */
    const leaderWriter = Effect.gen(function*() {
      while (true) {
        const [jobs, done] = yield* writes.takeAll
        const list = Chunk.toReadonlyArray(jobs)
        let i = 0
        while (i < list.length) {
          const ls = list[i]!.leader
          const batch: Array<Log.Log> = []
          for (; i < list.length && list[i]!.leader === ls; i++) {
            for (const entry of list[i]!.entries) batch.push(entry)
          }
          if (ls.writeFailure === undefined) {
            const stored = yield* Effect.either(Effect.uninterruptible(logs.storeLogs(batch)))
            if (stored._tag === "Left") {
              ls.writeFailure = stored.left
              emit({ _tag: "WriteFailed", leader: ls, error: stored.left })
            } else {
              const last = batch[batch.length - 1]!
              ls.storedIndex = last.index
              ls.storedTerm = last.term
              let k = 0
              while (k < ls.unstored.length && ls.unstored[k]!.index <= last.index) k++
              ls.unstored = k === ls.unstored.length ? [] : ls.unstored.slice(k)
              if (leader === ls) ls.commitment.match(localId, last.index)
            }
          }
          writesPending -= batch.length
        }
        if (writesPending === 0 && writesDrained !== undefined) {
          const drained = writesDrained
          writesDrained = undefined
          drained.done(Exit.void)
        }
        if (done) return
      }
    })

    /** Waits until every entry handed to the leader's writer is written (or its write failed). Run loop only. */
    const awaitLeaderWrites: Effect.Effect<void> = Effect.suspend(() => {
      if (writesPending === 0 || writerStopped) return Effect.void
      writesDrained ??= new Future<void, never>()
      return writesDrained.await
    })

    /** Entry `index` of the leader's log, from the store or from `unstored`. */
    const readLeaderLog = (ls: LeaderState, index: number): Effect.Effect<Log.Log, LogNotFound | StorageError> => {
      if (index <= ls.storedIndex) return logs.getLog(index)
      const entry = ls.unstored[index - (ls.unstored[0]?.index ?? 0)]
      return entry?.index === index ? Effect.succeed(entry) : Effect.fail(new LogNotFound({ index }))
    }

    /** Entries `from..to` of the leader's log: from the store up to what it holds, the rest from `unstored`. */
    const readLeaderLogs = (
      ls: LeaderState,
      from: number,
      to: number
    ): Effect.Effect<ReadonlyArray<Log.Log>, LogNotFound | StorageError> => {
      const stored = ls.storedIndex
      if (to <= stored) return logs.getLogs(from, to)
      // Taken now: the writer moves entries from `unstored` to the store (never the other way).
      const base = ls.unstored[0]?.index ?? stored + 1
      const tail = ls.unstored.slice(Math.max(from, stored + 1) - base, to - base + 1)
      if (from > stored) return Effect.succeed(tail)
      return Effect.map(logs.getLogs(from, stored), (head) => head.concat(tail))
    }

    /** Appends a configuration entry; it takes effect at once (hashicorp/raft), and commits like any entry. */
    const appendConfiguration = (
      ls: LeaderState,
      configuration: Configuration.Configuration,
      request: MembershipRequest | undefined
    ) =>
      Effect.gen(function*() {
        const future: ApplyFuture = {
          type: "Configuration",
          data: Configuration.encode(configuration),
          deferred: new Future<ApplyResult, ApplyError>(),
          status: DISPATCHED
        }
        yield* dispatch([future])
        if (leader !== ls || future.deferred.isDone) {
          // The store failed (the leader stepped down and failed the future): tell the requester.
          future.deferred.listen((exit) => {
            if (request !== undefined && Exit.isFailure(exit)) request.deferred.done(Exit.failCause(exit.cause))
          })
          return
        }
        latestConfiguration = configuration
        latestConfigurationIndex = lastLogIndex
        ls.changeInFlight = { index: lastLogIndex, request }
        // The requester hears when the entry is applied (committed), or why it never will be.
        future.deferred.listen((exit) => {
          if (request === undefined) return
          request.deferred.done(
            Exit.isSuccess(exit) ? Exit.succeed(exit.value.index) : Exit.failCause(exit.cause)
          )
        })
        yield* reconfigureLeader(ls, configuration)
      })

    /**
     * Starts the next membership change once the leader is stable: its no-op and the previous change committed
     * (one change at a time, as hashicorp/raft). Changes that leave the configuration as it is append nothing.
     */
    const processMembership = Effect.gen(function*() {
      while (true) {
        const ls = leader
        if (ls === undefined || ls.transfer !== undefined || ls.changes.length === 0) return
        if (ls.changeInFlight !== undefined && ls.changeInFlight.index > commitIndex) return
        ls.changeInFlight = undefined
        if (commitIndex < ls.commitment.startIndex) return
        const request = ls.changes.shift()!
        if (request.cancelled || request.deferred.isDone) continue
        if (request.prevIndex !== 0 && request.prevIndex !== latestConfigurationIndex) {
          request.deferred.done(
            Exit.fail(new ConfigurationChanged({ prevIndex: request.prevIndex, latestIndex: latestConfigurationIndex }))
          )
          continue
        }
        let change = request.change
        if (change._tag === "AddVoter" && !request.promotion && !Configuration.isVoter(latestConfiguration, change.id)) {
          // Not caught up: join as a non-voter first; promoted once it is (the request completes then).
          const match = ls.replications.get(change.id)?.matchIndex ?? 0
          if (lastLogIndex - match > config.maxAppendEntries) {
            ls.promotions.set(change.id, { request, caughtUpSince: undefined })
            change = { _tag: "AddNonvoter", id: change.id, address: change.address }
          }
        }
        const next = Configuration.applyChange(latestConfiguration, change)
        if (typeof next === "string") {
          ls.promotions.delete(change.id)
          request.deferred.done(Exit.fail(new InvalidOperation({ reason: next })))
          continue
        }
        const awaited = ls.promotions.get(change.id)?.request === request ? undefined : request
        if (Configuration.equals(next, latestConfiguration)) {
          awaited?.deferred.done(Exit.succeed(latestConfigurationIndex))
          continue
        }
        if (change._tag === "RemoveServer" || change._tag === "DemoteVoter") {
          const waiting = ls.promotions.get(change.id)
          if (waiting !== undefined) {
            ls.promotions.delete(change.id)
            waiting.request.deferred.done(
              Exit.fail(new InvalidOperation({ reason: `${change.id} was removed or demoted before its promotion` }))
            )
          }
        }
        yield* appendConfiguration(ls, next, awaited)
        return
      }
    })

    /** Hands newly committed entries to the FSM runner. */
    const processCommit = Effect.gen(function*() {
      const state = leader
      if (state === undefined) return
      state.commitPending = false
      const newCommit = state.commitment.commitIndex
      if (newCommit <= commitIndex) return
      commitIndex = newCommit
      // Entries before this leader's first (committed by its no-op) come from the store.
      if (dispatchedToFsm < state.commitment.startIndex - 1) {
        yield* sendStoredToFsm(Math.min(newCommit, state.commitment.startIndex - 1))
      }
      sendInflightToFsm(state, newCommit)
      noteCommittedConfiguration()
      // A leader that is no longer a voter of the committed configuration steps down (hashicorp/raft); removed
      // altogether, it shuts down once the change is applied, when configured to.
      if (committedConfigurationIndex >= state.commitment.startIndex && !Configuration.isVoter(committedConfiguration, localId)) {
        const removed = Configuration.find(committedConfiguration, localId) === undefined
        yield* Effect.logInfo(removed ? "removed from the configuration, stepping down" : "no longer a voter, stepping down")
        const appliedAt = committedConfigurationIndex
        yield* becomeFollower
        if (removed && config.shutdownOnRemove) {
          yield* waitApplied(appliedAt).pipe(Effect.andThen(shutdown), Effect.forkIn(parentScope))
        }
        return
      }
      yield* processMembership
    })

    /**
     * The commit of `ls` moved. When the run loop is idle with nothing queued and the commit cannot touch the
     * configuration or a backlog from the store, what `processCommit` does is synchronous and is done here, in the
     * fiber that saw the quorum (the leader's writer or a replication decoder): this saves the hop through the run
     * loop on every commit. Otherwise the run loop is told (one `Commit` event at a time).
     */
    const onCommit = (ls: LeaderState, myEpoch: number) => {
      if (leader !== ls || ls.commitPending) return
      if (
        loopWaiting() &&
        dispatchedToFsm >= ls.commitment.startIndex - 1 && latestConfigurationIndex <= commitIndex &&
        ls.changes.length === 0
      ) {
        const newCommit = ls.commitment.commitIndex
        if (newCommit <= commitIndex) return
        commitIndex = newCommit
        sendInflightToFsm(ls, newCommit)
        return
      }
      ls.commitPending = true
      emit({ _tag: "Commit", epoch: myEpoch })
    }

    /** The run loop waits for events with none queued: what it would do next at once may be done by the caller. */
    const loopWaiting = (): boolean => {
      if (!loopIdle) return false
      const size = mailbox.unsafeSize()
      return size._tag === "Some" && size.value === 0
    }

    /** Hands this leader's entries up to `newCommit` (and their futures) to the FSM runner. */
    const sendInflightToFsm = (state: LeaderState, newCommit: number) => {
      const batchLogs: Array<Log.Log> = []
      const batchFutures: Array<ApplyFuture | undefined> = []
      let oldest = Infinity
      while (state.inflightHead < state.inflight.length && state.inflight[state.inflightHead]!.log.index <= newCommit) {
        const item = state.inflight[state.inflightHead++]!
        if (item.log.index <= dispatchedToFsm) continue
        batchLogs.push(item.log)
        batchFutures.push(item.future)
        if (item.at < oldest) oldest = item.at
      }
      if (state.inflightHead > 4096) {
        state.inflight = state.inflight.slice(state.inflightHead)
        state.inflightHead = 0
      }
      if (batchLogs.length > 0) {
        metrics.commitTime.unsafeUpdate((now() - oldest) * 1000, nodeLabels)
        dispatchedToFsm = batchLogs[batchLogs.length - 1]!.index
        fsmPending += batchLogs.length
        fsmMailbox.unsafeOffer({ _tag: "Batch", logs: batchLogs, futures: batchFutures })
      }
    }

    /** Waits until the FSM has applied `index`. */
    const waitApplied = (index: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (appliedIndex >= index) return Effect.void
        const future = new Future<void, never>()
        appliedWaiters.push({ index, future })
        return future.await
      })

    const noteCommittedConfiguration = () => {
      if (latestConfigurationIndex <= commitIndex && committedConfigurationIndex !== latestConfigurationIndex) {
        committedConfiguration = latestConfiguration
        committedConfigurationIndex = latestConfigurationIndex
      }
    }

    /** Reads committed entries from the log store and hands them to the FSM (followers, and a new leader's backlog). */
    const sendStoredToFsm = (upTo: number): Effect.Effect<void, StorageError> => {
      const from = Math.max(dispatchedToFsm + 1, lastSnapshotIndex + 1)
      if (dispatchedToFsm >= upTo || from > upTo || upTo - from >= 1024) return sendStoredToFsmInBatches(upTo)
      // The usual case (a follower's commit moved by one AppendEntries): one read, no loop.
      return Effect.map(readCommitted(from, upTo), (entries) => toFsm(entries, upTo))
    }

    const readCommitted = (from: number, to: number) =>
      logs.getLogs(from, to).pipe(Effect.catchTag("LogNotFound", storageNotFound("read")))

    /** Hands stored entries up to `to` to the FSM runner. */
    const toFsm = (entries: ReadonlyArray<Log.Log>, to: number): void => {
      dispatchedToFsm = to
      fsmPending += entries.length
      fsmMailbox.unsafeOffer({ _tag: "Batch", logs: entries, futures: undefined })
    }

    const sendStoredToFsmInBatches = (upTo: number) =>
      Effect.gen(function*() {
        while (dispatchedToFsm < upTo) {
          const from = Math.max(dispatchedToFsm + 1, lastSnapshotIndex + 1)
          const to = Math.min(upTo, from + 1023)
          if (from > to) {
            dispatchedToFsm = upTo
            break
          }
          toFsm(yield* readCommitted(from, to), to)
        }
      })

    // ---- replication (the seed's replicate / heartbeat / pipeline fibers)

    const startReplication = (state: LeaderState, replication: Replication, term: number, myEpoch: number) =>
      Effect.gen(function*() {
        const annotate = Effect.annotateLogs({ module: "Replication", node: localId, peer: replication.peer.id })
        const stepDown = (newTerm: number) => {
          notifyVerifiers(replication, false)
          emit({ _tag: "StepDown", epoch: myEpoch, term: newTerm })
        }

        /**
         * The AppendEntries carrying `from..to` when everything it needs is in memory (the previous entry's term is
         * known and the entries are among the leader's recent ones, as while the follower keeps up), else undefined.
         */
        const requestFromMemory = (from: number, to: number): AppendEntriesRequest | undefined => {
          const prevLogIndex = from - 1
          // Entries a snapshot covers may be compacted: whether to send them or the snapshot is the store's answer.
          if (prevLogIndex < lastSnapshotIndex) return undefined
          const recent = state.recent
          const base = recent.length > 0 ? recent[0]!.index : lastLogIndex + 1
          let prevLogTerm: number
          if (prevLogIndex === 0) prevLogTerm = 0
          else if (prevLogIndex === lastLogIndex) prevLogTerm = lastLogTerm
          else if (prevLogIndex === lastSnapshotIndex) prevLogTerm = lastSnapshotTerm
          else if (prevLogIndex >= base && prevLogIndex - base < recent.length) prevLogTerm = recent[prevLogIndex - base]!.term
          else return undefined
          const last = Math.min(to, from + config.maxAppendEntries - 1)
          if (last >= from && from < base) return undefined
          return request(prevLogIndex, prevLogTerm, last >= from ? recent.slice(from - base, last - base + 1) : [])
        }

        const request = (prevLogIndex: number, prevLogTerm: number, entries: ReadonlyArray<Log.Log>): AppendEntriesRequest => ({
          _tag: "AppendEntriesRequest",
          term,
          leaderId: localId,
          leaderAddress: localAddress,
          prevLogIndex,
          prevLogTerm,
          entries,
          leaderCommitIndex: commitIndex
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
            else if (prevLogIndex === lastSnapshotIndex) prevLogTerm = lastSnapshotTerm
            else prevLogTerm = (yield* readLeaderLog(state, prevLogIndex)).term
            const last = Math.min(to, from + config.maxAppendEntries - 1)
            const entries = last >= from ? yield* readLeaderLogs(state, from, last) : []
            return request(prevLogIndex, prevLogTerm, entries)
          })

        const updateLastAppended = (request: AppendEntriesRequest) => {
          const count = request.entries.length
          const last = count > 0 ? request.entries[count - 1]!.index : request.prevLogIndex
          if (last + 1 > replication.nextIndex) replication.nextIndex = last + 1
          if (last > replication.matchIndex) replication.matchIndex = last
          replication.failures = 0
          if (count > 0) state.commitment.match(replication.peer.id, last)
        }

        /** The InstallSnapshot path (the seed's sendLatestSnapshot): the newest snapshot, streamed. */
        const sendLatestSnapshot = Effect.gen(function*() {
          const newest = (yield* snapshots.list)[0]
          if (newest === undefined) {
            return yield* new SnapshotNotFound({ reason: "a follower needs compacted entries and no snapshot exists" })
          }
          const opened = yield* snapshots.open(newest.id)
          const request: InstallSnapshotRequest = {
            _tag: "InstallSnapshotRequest",
            term,
            leaderId: localId,
            leaderAddress: localAddress,
            lastLogIndex: opened.meta.index,
            lastLogTerm: opened.meta.term,
            configuration: opened.meta.configuration,
            configurationIndex: opened.meta.configurationIndex
          }
          yield* Effect.logInfo(`sending snapshot ${opened.meta.id} (index ${opened.meta.index})`)
          const start = now()
          const response = yield* transport.installSnapshot(
            replication.peer.id,
            replication.peer.address,
            request,
            opened.data
          )
          metrics.installSnapshot.unsafeUpdate((now() - start) * 1000, replication.labels)
          if (response.term > term) {
            stepDown(response.term)
            return "stop" as const
          }
          replication.lastContact = now()
          replication.answered = true
          if (!response.success) {
            return yield* new SnapshotRejected({ index: opened.meta.index })
          }
          replication.failures = 0
          replication.nextIndex = opened.meta.index + 1
          if (opened.meta.index > replication.matchIndex) replication.matchIndex = opened.meta.index
          state.commitment.match(replication.peer.id, opened.meta.index)
          return "continue" as const
        })

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
            const start = now()
            const response = yield* transport.appendEntries(replication.peer.id, replication.peer.address, request)
            metrics.appendEntriesRpc.unsafeUpdate((now() - start) * 1000, replication.labels)
            metrics.appendEntriesLogs.unsafeUpdate(request.entries.length, replication.labels)
            if (response.term > term) {
              stepDown(response.term)
              return "stop" as const
            }
            replication.lastContact = now()
            replication.answered = true
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
                    : Effect.logWarning("failed to appendEntries", error)
                }),
                Effect.retry(failureBackoff)
              )
              if (outcome === "stop") return "stop" as const
            } while (replication.nextIndex <= lastIndex)
            return "continue" as const
          })

        /** Pipeline mode: many AppendEntries in flight, a decoder fiber consuming answers in order. */
        const pipelineReplicate = Effect.scoped(
          Effect.gen(function*() {
            const pipeline = yield* transport.appendEntriesPipeline(replication.peer.id, replication.peer.address)
            yield* Effect.logDebug("pipelining replication")
            let finished = false
            let stop = false
            yield* Effect.gen(function*() {
              while (true) {
                const [results, done] = yield* pipeline.results.takeAll
                for (const result of results) {
                  metrics.appendEntriesRpc.unsafeUpdate((now() - result.sentAtMillis) * 1000, replication.labels)
                  metrics.appendEntriesLogs.unsafeUpdate(result.request.entries.length, replication.labels)
                  if (result.response.term > term) {
                    stepDown(result.response.term)
                    stop = true
                    return
                  }
                  replication.lastContact = now()
                  replication.answered = true
                  if (!result.response.success) return
                  updateLastAppended(result.request)
                }
                if (done) return
              }
            }).pipe(
              Effect.catchAll((error) => Effect.logDebug("pipeline broke", error)),
              Effect.ensuring(Effect.sync(() => {
                finished = true
                replication.trigger.unsafeOpen()
              })),
              Effect.interruptible,
              Effect.forkScoped
            )
            let nextIndex = replication.nextIndex
            let sentCommit = -1
            while (true) {
              yield* replication.trigger.await
              replication.trigger.unsafeClose()
              if (finished) break
              const lastIndex = lastLogIndex
              if (nextIndex > lastIndex && sentCommit === commitIndex) continue
              do {
                const request = yield* setupAppendEntries(nextIndex, lastIndex)
                sentCommit = request.leaderCommitIndex
                // A broken pipeline fails the send (even one waiting for room): back to plain mode.
                const sent = yield* Effect.either(pipeline.send(request))
                if (sent._tag === "Left") {
                  finished = true
                  break
                }
                if (request.entries.length > 0) nextIndex = request.entries[request.entries.length - 1]!.index + 1
              } while (nextIndex <= lastIndex && !finished)
            }
            yield* Effect.logDebug("aborting pipeline replication")
            return stop ? "stop" as const : "ran" as const
          })
        )

        const commitTicker = Effect.gen(function*() {
          while (true) {
            const wait = yield* Random.nextIntBetween(config.commitTimeoutMillis, 2 * config.commitTimeoutMillis)
            yield* Effect.sleep(wait)
            replication.trigger.unsafeOpen()
          }
        })

        let pipelineUnsupported = false
        const replicate = Effect.gen(function*() {
          while (true) {
            yield* replication.trigger.await
            replication.trigger.unsafeClose()
            const outcome = yield* replicateTo(lastLogIndex)
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

        const heartbeatTicker = Effect.gen(function*() {
          while (true) {
            const tenth = Math.max(1, Math.floor(config.heartbeatTimeoutMillis / 10))
            const wait = yield* Random.nextIntBetween(tenth, 2 * tenth)
            yield* Effect.sleep(wait)
            replication.heartbeatNow.unsafeOpen()
          }
        })

        const heartbeatRequest: AppendEntriesRequest = {
          _tag: "AppendEntriesRequest",
          term,
          leaderId: localId,
          leaderAddress: localAddress,
          prevLogIndex: 0,
          prevLogTerm: 0,
          entries: [],
          leaderCommitIndex: 0
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
            const verifying = replication.verifiers.size === 0 ? undefined : [...replication.verifiers]
            replication.verifiers.clear()
            const start = now()
            const response = yield* transport.appendEntries(
              replication.peer.id,
              replication.peer.address,
              heartbeatRequest
            ).pipe(
              Effect.tapError(() =>
                Effect.suspend(() => {
                  replication.failures++
                  metrics.heartbeatFailures.unsafeUpdate(1, replication.labels)
                  return publish({
                    _tag: "FailedHeartbeat",
                    peerId: replication.peer.id,
                    lastContactMillis: replication.lastContact
                  })
                })
              ),
              Effect.retry(heartbeatBackoff)
            )
            metrics.heartbeat.unsafeUpdate((now() - start) * 1000, replication.labels)
            if (response.term > term) {
              if (verifying !== undefined) voteVerifiers(verifying, false)
              stepDown(response.term)
              return
            }
            replication.lastContact = now()
            replication.answered = true
            replication.failures = 0
            if (verifying !== undefined) voteVerifiers(verifying, response.success)
          }
        })

        for (const fiber of [replicate, commitTicker, heartbeat, heartbeatTicker]) {
          yield* annotate(fiber).pipe(Effect.interruptible, Effect.forkIn(replication.scope))
        }
      })

    /** The leader's view of each other server of the latest configuration, for `stats`. */
    const peerReplication = (ls: LeaderState): Array<PeerReplication> => {
      const out: Array<PeerReplication> = []
      for (const server of latestConfiguration.servers) {
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

    /** Fails every verification waiting on `replication` (its leader stepped down). */
    const notifyVerifiers = (replication: Replication, stillLeader: boolean) => {
      if (replication.verifiers.size === 0) return
      const waiting = [...replication.verifiers]
      replication.verifiers.clear()
      voteVerifiers(waiting, stillLeader)
    }

    const voteVerifiers = (waiting: ReadonlyArray<VerifyFuture>, stillLeader: boolean) => {
      for (const verifier of waiting) {
        if (verifier.done) continue
        if (!stillLeader) {
          settleVerify(verifier, Exit.fail(new LeadershipLost()))
        } else if (++verifier.votes >= verifier.quorum) {
          settleVerify(verifier, Exit.void)
        }
      }
    }

    // ---- handling of events by the run loop

    const notLeaderError = () => new NotLeader({ leaderId, leaderAddress })

    /** Records entries just stored from the leader: configurations among them, and the new end of the log. */
    const noteAppended = (fresh: ReadonlyArray<Log.Log>) => {
      for (const entry of fresh) {
        if (entry.type === "Configuration") {
          const decoded = Configuration.decode(entry.data)
          if (decoded !== undefined) {
            // One change at a time: a leader appends a configuration only once the previous one committed,
            // so the latest we held is committed now (as hashicorp/raft; a later truncation falls back to it).
            if (latestConfigurationIndex > committedConfigurationIndex) {
              committedConfiguration = latestConfiguration
              committedConfigurationIndex = latestConfigurationIndex
            }
            latestConfiguration = decoded
            latestConfigurationIndex = entry.index
          }
        }
      }
      const last = fresh[fresh.length - 1]!
      if (last.index >= lastLogIndex || !bugs.keepConflictingSuffix) {
        lastLogIndex = last.index
        lastLogTerm = last.term
      }
    }

    /** The rest of an accepted AppendEntries: commit what the leader committed (Raft figure 2), then answer. */
    const acceptAppend = (request: AppendEntriesRequest): Effect.Effect<AppendEntriesResponse, StorageError> => {
      const answer = (): AppendEntriesResponse => {
        lastContact = now()
        return { _tag: "AppendEntriesResponse", term: currentTerm, lastLog: lastLogIndex, success: true, noRetryBackoff: false }
      }
      // Only over entries known to match the leader.
      const verifiedUpTo = request.prevLogIndex + request.entries.length
      if (request.leaderCommitIndex > commitIndex && verifiedUpTo > commitIndex) {
        commitIndex = Math.min(request.leaderCommitIndex, verifiedUpTo)
        noteCommittedConfiguration()
        return Effect.map(sendStoredToFsm(commitIndex), answer)
      }
      return Effect.sync(answer)
    }

    /**
     * AppendEntries. The usual case, a follower hearing from the leader it knows with entries that extend its log
     * where it ends, is taken without a generator: one store, then the commit.
     */
    const handleAppendEntries = (request: AppendEntriesRequest): Effect.Effect<AppendEntriesResponse, StorageError> => {
      if (
        request.term === currentTerm && state === "Follower" && request.leaderId === leaderId &&
        request.leaderAddress === leaderAddress && request.prevLogIndex === lastLogIndex &&
        (request.prevLogIndex === 0 || request.prevLogTerm === lastLogTerm) &&
        (request.entries.length === 0 || request.entries[0]!.index === request.prevLogIndex + 1)
      ) {
        lastContact = now()
        const entries = request.entries
        if (entries.length === 0) return acceptAppend(request)
        return Effect.flatMap(logs.storeLogs(entries), () => {
          noteAppended(entries)
          return acceptAppend(request)
        })
      }
      return handleAppendEntriesInFull(request)
    }

    const handleAppendEntriesInFull = (request: AppendEntriesRequest) =>
      Effect.gen(function*() {
        const response = {
          _tag: "AppendEntriesResponse" as const,
          term: currentTerm,
          lastLog: lastLogIndex,
          success: false,
          noRetryBackoff: false
        }
        if (request.term < currentTerm) return response
        if (request.term > currentTerm || state !== "Follower") {
          yield* setCurrentTerm(request.term)
          response.term = request.term
          if (state !== "Follower") yield* becomeFollower
        }
        yield* setLeader(request.leaderId, request.leaderAddress)
        lastContact = now()

        if (request.prevLogIndex > 0) {
          let prevTerm: number
          if (request.prevLogIndex === lastLogIndex) prevTerm = lastLogTerm
          else if (request.prevLogIndex === lastSnapshotIndex) prevTerm = lastSnapshotTerm
          // Inside our snapshot: committed, so it matches any current leader's log (Raft §5.4).
          else if (request.prevLogIndex < lastSnapshotIndex) prevTerm = request.prevLogTerm
          else if (request.prevLogIndex > lastLogIndex) {
            response.noRetryBackoff = true
            return response
          } else {
            const prev = yield* Effect.either(logs.getLog(request.prevLogIndex))
            if (prev._tag === "Left") {
              response.noRetryBackoff = true
              return response
            }
            prevTerm = prev.right.term
          }
          if (prevTerm !== request.prevLogTerm) {
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
            if (entry.index > lastLogIndex) {
              firstNew = i
              break
            }
            const held = entry.index <= lastSnapshotIndex
              ? undefined
              : yield* logs.getLog(entry.index).pipe(Effect.catchTag("LogNotFound", storageNotFound("read")))
            if (held !== undefined && held.term !== entry.term) {
              if (bugs.keepConflictingSuffix) {
                firstNew = i
                break
              }
              yield* Effect.logWarning(`clearing log suffix from ${entry.index} to ${lastLogIndex}`)
              yield* logs.deleteRange(entry.index, lastLogIndex)
              if (entry.index <= latestConfigurationIndex) {
                latestConfiguration = committedConfiguration
                latestConfigurationIndex = committedConfigurationIndex
              }
              lastLogIndex = entry.index - 1
              firstNew = i
              break
            }
          }
          if (firstNew < entries.length) {
            const fresh = firstNew === 0 ? entries : entries.slice(firstNew)
            yield* logs.storeLogs(fresh)
            noteAppended(fresh)
          }
        }
        return yield* acceptAppend(request)
      })

    const handleRequestVote = (request: RequestVoteRequest) =>
      Effect.gen(function*() {
        const response = { _tag: "RequestVoteResponse" as const, term: currentTerm, granted: false }
        const observe = () => publish({ _tag: "RequestVote", request, granted: response.granted })
        // hashicorp's rule: while we hear from a live leader, refuse other candidates (unless a transfer asks).
        if (
          leaderId !== undefined && leaderId !== request.candidateId && !request.leadershipTransfer &&
          (state === "Leader" ||
            (lastContact !== undefined && now() - lastContact < config.heartbeatTimeoutMillis))
        ) {
          yield* observe()
          return response
        }
        if (request.term < currentTerm) {
          yield* observe()
          return response
        }
        // Only a voter of our configuration may be elected (a removed server or a non-voter never is).
        if (latestConfiguration.servers.length > 0 && !Configuration.isVoter(latestConfiguration, request.candidateId)) {
          yield* observe()
          return response
        }
        if (request.term > currentTerm) {
          yield* setCurrentTerm(request.term)
          response.term = request.term
          if (state !== "Follower") yield* becomeFollower
          yield* setLeader(undefined, undefined)
        }
        if (lastVoteTerm === request.term && lastVoteCandidate !== "") {
          response.granted = lastVoteCandidate === request.candidateId
          yield* observe()
          return response
        }
        if (
          lastLogTerm > request.lastLogTerm ||
          (lastLogTerm === request.lastLogTerm && lastLogIndex > request.lastLogIndex)
        ) {
          yield* observe()
          return response
        }
        yield* persistVote(request.term, request.candidateId)
        response.granted = true
        lastContact = now()
        yield* observe()
        return response
      })

    const handleTimer = Effect.gen(function*() {
      if (state === "Follower") {
        if (lastContact !== undefined && now() - lastContact < config.heartbeatTimeoutMillis) return
        if (leaderId !== undefined) {
          yield* Effect.logWarning("heartbeat timeout reached, starting election", leaderId)
          yield* setLeader(undefined, undefined)
        }
        if (latestConfigurationIndex === 0 && latestConfiguration.servers.length === 0) return
        if (!Configuration.isVoter(latestConfiguration, localId)) return
        yield* campaign(false)
      } else if (state === "Candidate") {
        yield* Effect.logDebug("election timeout reached, restarting election")
        yield* campaign(false)
      }
    })

    /** A pre-vote changes nothing here: it answers whether a vote at `request.term` would be granted now. */
    const handleRequestPreVote = (request: RequestPreVoteRequest): RequestPreVoteResponse => {
      const refuse = { _tag: "RequestPreVoteResponse" as const, term: currentTerm, granted: false }
      if (latestConfiguration.servers.length > 0 && !Configuration.isVoter(latestConfiguration, request.candidateId)) {
        return refuse
      }
      if (
        leaderId !== undefined && leaderId !== request.candidateId &&
        (state === "Leader" || (lastContact !== undefined && now() - lastContact < config.heartbeatTimeoutMillis))
      ) return refuse
      if (request.term < currentTerm) return refuse
      if (lastVoteTerm === request.term && lastVoteCandidate !== "" && lastVoteCandidate !== request.candidateId) {
        return refuse
      }
      if (
        lastLogTerm > request.lastLogTerm ||
        (lastLogTerm === request.lastLogTerm && lastLogIndex > request.lastLogIndex)
      ) return refuse
      return { ...refuse, granted: true }
    }

    const handlePreVote = (from: string, response: RequestPreVoteResponse) =>
      Effect.gen(function*() {
        if (state !== "Candidate" || !preVoting) return
        if (response.term > currentTerm) {
          yield* setCurrentTerm(response.term)
          yield* becomeFollower
          return
        }
        if (!response.granted) return
        preVotes++
        yield* Effect.logDebug(`pre-vote granted by ${from}, tally ${preVotes}`)
        if (preVotes >= quorumOf(latestConfiguration)) yield* becomeCandidate(false)
      })

    /** Leadership transfer, target side: campaign at once; voters grant despite a live leader. */
    const handleTimeoutNow = (request: TimeoutNowRequest) =>
      Effect.gen(function*() {
        const response = { _tag: "TimeoutNowResponse" as const, term: currentTerm, success: false }
        if (request.term < currentTerm) return response
        if (!Configuration.isVoter(latestConfiguration, localId)) return response
        if (request.term > currentTerm) yield* setCurrentTerm(request.term)
        yield* Effect.logInfo(`asked by ${request.leaderId} to take over leadership, campaigning`)
        // A (stale) leader asked to campaign leaves its leadership properly first: its writes end, its futures fail.
        if (state === "Leader") yield* becomeFollower
        yield* becomeCandidate(true)
        return { ...response, success: true }
      })

    // ---- snapshots: taken, installed, compacted

    /** Deletes log entries a snapshot at `index` covers, keeping `trailingLogs` behind the last (hashicorp's compactLogs). */
    const compactLogs = (index: number) =>
      Effect.gen(function*() {
        if (lastLogIndex <= config.trailingLogs) return
        const first = yield* logs.firstIndex
        const max = Math.min(index, lastLogIndex - config.trailingLogs)
        if (first === 0 || first > max) return
        yield* logs.deleteRange(first, max)
      })

    const handleCompact = (meta: SnapshotMeta) =>
      Effect.gen(function*() {
        if (meta.index < lastSnapshotIndex) return
        lastSnapshotIndex = meta.index
        lastSnapshotTerm = meta.term
        yield* compactLogs(meta.index).pipe(
          Effect.catchAll((error) => Effect.logWarning("failed to compact the log", error))
        )
      })

    /** Is the incoming snapshot from a current leader, and news to us? (Decided before its bytes are stored.) */
    const handleInstallCheck = (request: InstallSnapshotRequest) =>
      Effect.gen(function*() {
        const response = { _tag: "InstallSnapshotResponse" as const, term: currentTerm, success: false }
        if (request.term < currentTerm) return { accept: false, response } satisfies InstallVerdict
        if (request.term > currentTerm || state !== "Follower") {
          yield* setCurrentTerm(request.term)
          response.term = request.term
          if (state !== "Follower") yield* becomeFollower
        }
        yield* setLeader(request.leaderId, request.leaderAddress)
        lastContact = now()
        // Everything it holds is already applied here: nothing to install, and the leader may go on from it.
        if (request.lastLogIndex <= dispatchedToFsm || request.lastLogIndex <= lastSnapshotIndex) {
          return { accept: false, response: { ...response, success: true } }
        }
        return { accept: true, response }
      })

    /**
     * Installs a stored snapshot (Raft figure 13): the FSM is replaced, and the log is kept only if it holds the
     * snapshot's last entry with its term; otherwise it is discarded whole, conflicting suffix included (the bug
     * of hashicorp/raft #697 was to keep it).
     */
    const handleInstallStored = (request: InstallSnapshotRequest, meta: SnapshotMeta) =>
      Effect.gen(function*() {
        const response = { _tag: "InstallSnapshotResponse" as const, term: currentTerm, success: true }
        // The term moved on while the bytes arrived: the snapshot stays stored (it is committed state, and the
        // start-up check reconciles it with the log), but this node's role is no longer the sender's follower.
        if (request.term !== currentTerm || state !== "Follower") return { ...response, success: false }
        lastContact = now()
        if (meta.index <= dispatchedToFsm) {
          if (meta.index > lastSnapshotIndex) {
            lastSnapshotIndex = meta.index
            lastSnapshotTerm = meta.term
          }
          return response
        }
        const first = yield* logs.firstIndex
        let keep = false
        if (meta.index < lastLogIndex && first > 0 && first <= meta.index) {
          const held = yield* Effect.option(logs.getLog(meta.index))
          keep = Option.isSome(held) && held.value.term === meta.term
        }
        if (keep) {
          yield* compactLogs(meta.index)
        } else {
          if (first > 0) {
            yield* Effect.logInfo(`discarding the log ${first}..${lastLogIndex}, superseded by snapshot ${meta.id}`)
            yield* logs.deleteRange(first, Math.max(lastLogIndex, first))
          }
          lastLogIndex = meta.index
          lastLogTerm = meta.term
        }
        if (!keep || latestConfigurationIndex < meta.configurationIndex) {
          latestConfiguration = meta.configuration
          latestConfigurationIndex = meta.configurationIndex
        }
        if (committedConfigurationIndex < meta.configurationIndex) {
          committedConfiguration = meta.configuration
          committedConfigurationIndex = meta.configurationIndex
        }
        lastSnapshotIndex = meta.index
        lastSnapshotTerm = meta.term
        if (commitIndex < meta.index) commitIndex = meta.index
        dispatchedToFsm = meta.index
        fsmMailbox.unsafeOffer({
          _tag: "Restore",
          meta,
          deferred: new Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>()
        })
        yield* Effect.logInfo(`installed snapshot ${meta.id} (index ${meta.index}, term ${meta.term})`)
        return response
      })

    const handleVote = (from: string, response: RequestVoteResponse) =>
      Effect.gen(function*() {
        if (state !== "Candidate") return
        if (response.term > currentTerm) {
          yield* setCurrentTerm(response.term)
          yield* becomeFollower
          return
        }
        if (response.granted && response.term === currentTerm) {
          candidateVotes++
          yield* Effect.logDebug(`vote granted by ${from}, tally ${candidateVotes}`)
          if (candidateVotes >= quorumOf(latestConfiguration)) yield* becomeLeader
        }
      })

    const handleVerify = (deferred: Future<void, NotLeader | LeadershipLost | RaftShutdown>) =>
      Effect.sync(() => {
        const state = leader
        if (state === undefined) {
          deferred.done(Exit.fail(notLeaderError()))
          return
        }
        const configuration = latestConfiguration
        const verifier: VerifyFuture = {
          deferred,
          quorum: quorumOf(configuration),
          pending: state.verifiers,
          votes: Configuration.isVoter(configuration, localId) ? 1 : 0,
          done: false
        }
        if (verifier.votes >= verifier.quorum) {
          deferred.done(Exit.void)
          return
        }
        state.verifiers.add(verifier)
        for (const replication of state.replications.values()) {
          if (!Configuration.isVoter(configuration, replication.peer.id)) continue
          replication.verifiers.add(verifier)
          replication.heartbeatNow.unsafeOpen()
        }
      })

    const handleMembership = (request: MembershipRequest) =>
      Effect.gen(function*() {
        const ls = leader
        if (ls === undefined) return request.deferred.done(Exit.fail(notLeaderError()))
        if (ls.transfer !== undefined) return request.deferred.done(Exit.fail(new LeadershipTransferInProgress()))
        ls.changes.push(request)
        yield* processMembership
      })

    const handlePromote = (id: string) =>
      Effect.gen(function*() {
        const ls = leader
        const promotion = ls?.promotions.get(id)
        if (ls === undefined || promotion === undefined) return
        ls.promotions.delete(id)
        const server = Configuration.find(latestConfiguration, id)
        if (server === undefined) {
          promotion.request.deferred.done(Exit.fail(new InvalidOperation({ reason: `${id} left before its promotion` })))
          return
        }
        yield* Effect.logInfo(`${id} caught up, promoting it to voter`)
        ls.changes.unshift({
          change: { _tag: "AddVoter", id, address: server.address },
          prevIndex: 0,
          deferred: promotion.request.deferred,
          promotion: true,
          cancelled: false
        })
        yield* processMembership
      })

    /**
     * Leadership transfer (hashicorp's leadershipTransfer): stop taking entries, bring the target up to date,
     * send it TimeoutNow; the transfer ends when this leader is deposed, or fails after an election timeout.
     */
    const handleTransfer = (
      target: { readonly id: string; readonly address: string } | undefined,
      deferred: Future<void, TransferError>
    ) =>
      Effect.gen(function*() {
        const ls = leader
        if (ls === undefined) return deferred.done(Exit.fail(notLeaderError()))
        if (ls.transfer !== undefined) return deferred.done(Exit.fail(new LeadershipTransferInProgress()))
        let replication: Replication | undefined
        if (target !== undefined) {
          if (target.id === localId) {
            return deferred.done(Exit.fail(new LeadershipTransferFailed({ reason: "the target is this leader" })))
          }
          replication = ls.replications.get(target.id)
          if (replication === undefined || !Configuration.isVoter(latestConfiguration, target.id)) {
            return deferred.done(
              Exit.fail(new LeadershipTransferFailed({ reason: `${target.id} is not a voter of the configuration` }))
            )
          }
        } else {
          for (const candidate of ls.replications.values()) {
            if (!Configuration.isVoter(latestConfiguration, candidate.peer.id)) continue
            if (replication === undefined || candidate.matchIndex > replication.matchIndex) replication = candidate
          }
          if (replication === undefined) {
            return deferred.done(Exit.fail(new LeadershipTransferFailed({ reason: "no other voter to transfer to" })))
          }
        }
        const chosen = replication
        ls.transfer = { target: chosen.peer.id, deferred }
        const myEpoch = epoch
        const term = currentTerm
        yield* Effect.logInfo(`transferring leadership to ${chosen.peer.id}`)
        const tick = Math.max(1, Math.floor(config.commitTimeoutMillis / 5))
        yield* forkRole(
          Effect.gen(function*() {
            while (chosen.matchIndex < lastLogIndex) {
              chosen.trigger.unsafeOpen()
              yield* Effect.sleep(tick)
            }
            const response = yield* transport.timeoutNow(chosen.peer.id, chosen.peer.address, {
              _tag: "TimeoutNowRequest",
              term,
              leaderId: localId,
              leaderAddress: localAddress
            })
            if (!response.success) yield* Effect.logWarning(`${chosen.peer.id} refused to take over`)
            if (response.term > term) emit({ _tag: "StepDown", epoch: myEpoch, term: response.term })
            yield* Effect.never
          }).pipe(
            Effect.catchAll((error) => Effect.logWarning("leadership transfer failed", error)),
            Effect.timeout(config.electionTimeoutMillis),
            Effect.ignore,
            Effect.andThen(Effect.sync(() => emit({ _tag: "TransferTimeout", epoch: myEpoch })))
          )
        )
      })

    const handleTransferTimeout = Effect.gen(function*() {
      const ls = leader
      if (ls === undefined || ls.transfer === undefined) return
      const transfer = ls.transfer
      ls.transfer = undefined
      yield* Effect.logWarning(`no new leader within the election timeout, leadership stays here`)
      transfer.deferred.done(
        Exit.fail(new LeadershipTransferFailed({ reason: `${transfer.target} did not take over in time` }))
      )
      yield* processMembership
    })

    /**
     * A user restore (hashicorp's Restore): the snapshot is stored at an index past the whole log, so every
     * follower needs it; the FSM takes it, the log is dropped, and what was in flight is failed.
     */
    const handleUserRestore = (
      data: Stream.Stream<Uint8Array, StorageError>,
      deferred: Future<Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>, RestoreError>
    ) =>
      Effect.gen(function*() {
        const ls = leader
        if (ls === undefined) return deferred.done(Exit.fail(notLeaderError()))
        if (ls.transfer !== undefined) return deferred.done(Exit.fail(new LeadershipTransferInProgress()))
        if (latestConfigurationIndex > commitIndex) {
          return deferred.done(Exit.fail(
            new StorageError({ operation: "restore", reason: "a configuration change is not yet committed; retry" })
          ))
        }
        const index = lastLogIndex + 1
        const term = currentTerm
        const stored = yield* Effect.either(Stream.run(
          data,
          snapshots.create({
            index,
            term,
            configuration: latestConfiguration,
            configurationIndex: latestConfigurationIndex
          })
        ))
        if (stored._tag === "Left") return deferred.done(Exit.fail(stored.left))
        if (leader !== ls) return deferred.done(Exit.fail(new LeadershipLost()))
        // The log is about to be replaced: no write of ours may land after that.
        yield* awaitLeaderWrites
        if (ls.writeFailure !== undefined) return deferred.done(Exit.fail(ls.writeFailure))
        const meta = stored.right
        // Entries not yet committed never will be: the snapshot supersedes them.
        const lost = Exit.fail(new LeadershipLost())
        for (let i = ls.inflightHead; i < ls.inflight.length; i++) ls.inflight[i]!.future?.deferred.done(lost)
        ls.inflight = []
        ls.inflightHead = 0
        const first = yield* logs.firstIndex
        if (first > 0) yield* logs.deleteRange(first, lastLogIndex)
        lastLogIndex = index
        lastLogTerm = term
        ls.storedIndex = index
        ls.storedTerm = term
        ls.unstored = []
        ls.recent = []
        lastSnapshotIndex = index
        lastSnapshotTerm = term
        commitIndex = index
        dispatchedToFsm = index
        ls.commitment.commitIndex = index
        ls.commitment.match(localId, index)
        const restored = new Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>()
        fsmMailbox.unsafeOffer({ _tag: "Restore", meta, deferred: restored })
        for (const replication of ls.replications.values()) replication.trigger.unsafeOpen()
        yield* Effect.logInfo(`restored user snapshot ${meta.id} at index ${index}`)
        deferred.done(Exit.succeed(restored))
      })

    const handleBootstrap = (
      configuration: Configuration.Configuration,
      deferred: Future<void, CantBootstrap | StorageError | RaftShutdown>
    ) =>
      Effect.gen(function*() {
        if (state !== "Follower" || lastLogIndex > 0 || currentTerm > 0) {
          deferred.done(Exit.fail(new CantBootstrap({ reason: "the node already has state" })))
          return
        }
        const result = yield* Effect.either(bootstrapStores(logs, stable, snapshots, configuration))
        if (result._tag === "Left") {
          deferred.done(Exit.fail(result.left))
          return
        }
        currentTerm = 1
        lastLogIndex = 1
        lastLogTerm = 1
        latestConfiguration = configuration
        latestConfigurationIndex = 1
        deferred.done(Exit.void)
      })

    /** Handles one drained chunk of events; consecutive applies on a leader are stored together. */
    const handleEvents = (events: Iterable<Event>) =>
      Effect.gen(function*() {
        let pending: Array<ApplyFuture> = []
        const flush = Effect.suspend(() => {
          if (pending.length === 0) return Effect.void
          const batch = pending
          pending = []
          return dispatch(batch)
        })
        for (const event of events) {
          if (event._tag === "Apply") {
            const future = event.future
            if (future.status === CANCELLED) continue
            if (state !== "Leader") {
              future.deferred.done(Exit.fail(notLeaderError()))
              continue
            }
            if (leader?.transfer !== undefined) {
              future.deferred.done(Exit.fail(new LeadershipTransferInProgress()))
              continue
            }
            future.status = DISPATCHED
            pending.push(future)
            if (pending.length >= config.maxAppendEntries) yield* flush
            continue
          }
          yield* flush
          switch (event._tag) {
            case "AppendEntries": {
              yield* handleOneAppend(event)
              break
            }
            case "RequestVote": {
              const response = yield* handleRequestVote(event.request)
              event.deferred.done(Exit.succeed(response))
              break
            }
            case "Timer": {
              if (event.epoch === epoch) yield* handleTimer
              break
            }
            case "Vote": {
              if (event.epoch === epoch) yield* handleVote(event.from, event.response)
              break
            }
            case "StepDown": {
              if (event.epoch !== epoch || state !== "Leader") break
              if (event.term > currentTerm) yield* setCurrentTerm(event.term)
              yield* setLeader(undefined, undefined)
              yield* becomeFollower
              break
            }
            case "Commit": {
              if (event.epoch === epoch) yield* processCommit
              break
            }
            case "Verify": {
              yield* handleVerify(event.deferred)
              break
            }
            case "Bootstrap": {
              yield* handleBootstrap(event.configuration, event.deferred)
              break
            }
            case "RequestPreVote": {
              event.deferred.done(Exit.succeed(handleRequestPreVote(event.request)))
              break
            }
            case "PreVote": {
              if (event.epoch === epoch) yield* handlePreVote(event.from, event.response)
              break
            }
            case "TimeoutNow": {
              event.deferred.done(Exit.succeed(yield* handleTimeoutNow(event.request)))
              break
            }
            case "InstallCheck": {
              event.deferred.done(Exit.succeed(yield* handleInstallCheck(event.request)))
              break
            }
            case "InstallStored": {
              event.deferred.done(Exit.succeed(yield* handleInstallStored(event.request, event.meta)))
              break
            }
            case "Compact": {
              yield* handleCompact(event.meta)
              event.deferred.done(Exit.void)
              break
            }
            case "Membership": {
              yield* handleMembership(event.request)
              break
            }
            case "Promote": {
              if (event.epoch === epoch) yield* handlePromote(event.id)
              break
            }
            case "Transfer": {
              yield* handleTransfer(event.target, event.deferred)
              break
            }
            case "TransferTimeout": {
              if (event.epoch === epoch) yield* handleTransferTimeout
              break
            }
            case "WriteFailed": {
              const ls = event.leader
              if (leader !== ls) break
              yield* Effect.logError("failed to store logs on the leader, stepping down", event.error)
              // Entries never written answer the store's error (followers may hold them: a later leader may commit
              // them, as after LeadershipLost), once this node has stepped down; the rest answer as any deposed
              // leader's do.
              let cut = ls.inflight.length
              while (cut > ls.inflightHead && ls.inflight[cut - 1]!.log.index > ls.storedIndex) cut--
              const unwritten = ls.inflight.splice(cut)
              yield* becomeFollower
              const failed = Exit.fail(event.error)
              for (const item of unwritten) item.future?.deferred.done(failed)
              break
            }
            case "UserRestore": {
              yield* handleUserRestore(event.data, event.deferred)
              break
            }
          }
        }
        yield* flush
      })

    let current: Iterable<Event> = []
    const handleOneAppend = (event: Extract<Event, { readonly _tag: "AppendEntries" }>) =>
      Effect.map(handleAppendEntries(event.request), (response) => void event.deferred.done(Exit.succeed(response)))
    /** True while the run loop waits for events: no handler is part-way through (see `onCommit`). */
    let loopIdle = false
    const runLoop = Effect.gen(function*() {
      yield* becomeFollower
      while (true) {
        loopIdle = true
        const [events, done] = yield* mailbox.takeAll
        loopIdle = false
        current = events
        // A follower's usual batch, one AppendEntries, skips the general handler's generator.
        const only = events.length === 1 ? Chunk.unsafeHead(events) : undefined
        yield* Effect.uninterruptible(only?._tag === "AppendEntries" ? handleOneAppend(only) : handleEvents(current))
        current = []
        if (done) return
      }
    })

    // ---- the FSM runner: applies committed entries in order, in batches, in its own fiber

    /** The futures of the batch the FSM is applying now, failed by shutdown if it never finishes. */
    let inHand: ReadonlyArray<ApplyFuture | undefined> = []

    // The batch being gathered by the FSM runner.
    let all: Array<Log.Log> = []
    let futures: Array<ApplyFuture | undefined> = []
    let commands: Array<Log.Log> = []
    const noResponses: ReadonlyArray<unknown> = []
    const applyPending: Effect.Effect<void> = Effect.suspend(() => {
      if (all.length === 0) return Effect.void
      inHand = futures
      return commands.length === 0 ? Effect.sync(() => applied(noResponses)) : Effect.map(fsm.applyBatch(commands), applied)
    })
    /** Answers the applied batch's futures and moves `appliedIndex`. */
    const applied = (responses: ReadonlyArray<unknown>): void => {
      inHand = []
      let k = 0
      for (let i = 0; i < all.length; i++) {
        const entry = all[i]!
        const response = entry.type === "Command" ? responses[k++] : undefined
        const future = futures[i]
        if (future !== undefined) future.deferred.done(Exit.succeed({ index: entry.index, response }))
      }
      const last = all[all.length - 1]!
      appliedIndex = last.index
      appliedTerm = last.term
      fsmPending -= all.length
      all = []
      futures = []
      commands = []
      if (appliedWaiters.length > 0) {
        const waiting = appliedWaiters
        appliedWaiters = []
        for (const waiter of waiting) {
          if (waiter.index <= appliedIndex) waiter.future.done(Exit.void)
          else appliedWaiters.push(waiter)
        }
      }
    }

    const fsmRunner = Effect.gen(function*() {
      while (true) {
        const [items, done] = yield* fsmMailbox.takeAll
        for (const item of items) {
          if (item._tag === "Batch") {
            for (let i = 0; i < item.logs.length; i++) {
              const entry = item.logs[i]!
              all.push(entry)
              futures.push(item.futures === undefined ? undefined : item.futures[i])
              if (entry.type === "Command") commands.push(entry)
              else if (entry.type === "Configuration") {
                const decoded = Configuration.decode(entry.data)
                if (decoded !== undefined) {
                  appliedConfiguration = decoded
                  appliedConfigurationIndex = entry.index
                }
              }
            }
            continue
          }
          yield* applyPending
          if (item._tag === "Capture") {
            // Taken between two batches, so it is exactly the state at `appliedIndex`.
            if (appliedIndex <= lastSnapshotIndex) {
              item.deferred.done(Exit.fail(new NothingNewToSnapshot()))
              continue
            }
            const captured = yield* Effect.either(fsm.snapshot)
            item.deferred.done(
              captured._tag === "Left" ? Exit.fail(captured.left) : Exit.succeed({
                snapshot: captured.right,
                index: appliedIndex,
                term: appliedTerm,
                configuration: appliedConfiguration,
                configurationIndex: appliedConfigurationIndex
              })
            )
          } else {
            // A replica whose state could not be replaced cannot go on: the failure stops the node.
            const restored = yield* Effect.either(
              Effect.flatMap(snapshots.open(item.meta.id), (opened) => fsm.restore(opened.data))
            )
            if (restored._tag === "Left") {
              item.deferred.done(Exit.fail(restored.left))
              return yield* Effect.fail(restored.left)
            }
            appliedIndex = item.meta.index
            appliedTerm = item.meta.term
            appliedConfiguration = item.meta.configuration
            appliedConfigurationIndex = item.meta.configurationIndex
            item.deferred.done(Exit.void)
          }
        }
        yield* applyPending
        if (done) return
      }
    })

    // ---- snapshots taken by this node

    /**
     * Takes a snapshot (hashicorp's takeSnapshot): the FSM captures its state between two batches, the capture
     * is streamed into the snapshot store while applies go on, and the run loop then compacts the log.
     */
    const takeSnapshot: Effect.Effect<SnapshotMeta, SnapshotError | InvalidOperation> = snapshotLock.withPermits(1)(
      Effect.gen(function*() {
        if (isShutdown) return yield* new RaftShutdown()
        if (latestConfigurationIndex > commitIndex) {
          return yield* new InvalidOperation({
            reason: `a configuration change (at ${latestConfigurationIndex}) is not yet committed`
          })
        }
        const capture = new Future<Captured, FsmError | NothingNewToSnapshot | RaftShutdown>()
        if (!fsmMailbox.unsafeOffer({ _tag: "Capture", deferred: capture })) return yield* new RaftShutdown()
        const captured = yield* capture.await
        const meta = yield* Stream.run(
          captured.snapshot.data,
          snapshots.create({
            index: captured.index,
            term: captured.term,
            configuration: captured.configuration,
            configurationIndex: captured.configurationIndex
          })
        ).pipe(Effect.ensuring(captured.snapshot.release))
        metrics.snapshots.unsafeUpdate(1, nodeLabels)
        const compacted = new Future<void, never>()
        if (emit({ _tag: "Compact", meta, deferred: compacted })) yield* compacted.await
        yield* Effect.logInfo(`snapshot ${meta.id} taken at index ${meta.index}`)
        return meta
      })
    )

    /** Checks every snapshotInterval (jittered) whether `snapshotThreshold` entries were applied since the last. */
    const snapshotLoop = Effect.gen(function*() {
      while (true) {
        const wait = yield* Random.nextIntBetween(config.snapshotIntervalMillis, 2 * config.snapshotIntervalMillis)
        yield* Effect.sleep(wait)
        if (appliedIndex - lastSnapshotIndex < config.snapshotThreshold) continue
        yield* takeSnapshot.pipe(
          Effect.catchAll((error) =>
            error._tag === "NothingNewToSnapshot" || error._tag === "RaftShutdown"
              ? Effect.void
              : Effect.logWarning("failed to take a snapshot", error)
          )
        )
      }
    })

    // ---- shutdown

    const failEvent = (event: Event) => {
      const shutdownExit = Exit.fail(new RaftShutdown())
      switch (event._tag) {
        case "Apply":
          event.future.deferred.done(shutdownExit)
          break
        case "AppendEntries":
        case "RequestVote":
        case "RequestPreVote":
        case "TimeoutNow":
        case "InstallCheck":
        case "InstallStored":
        case "Verify":
        case "Bootstrap":
        case "Transfer":
        case "UserRestore":
          ;(event.deferred as Future<unknown, RaftShutdown>).done(shutdownExit)
          break
        case "Membership":
          event.request.deferred.done(shutdownExit)
          break
        case "Compact":
          event.deferred.done(Exit.void)
          break
        default:
          break
      }
    }

    const shutdown: Effect.Effect<void> = Effect.suspend(() => {
      if (isShutdown) return shutdownDone.await
      isShutdown = true
      return Effect.gen(function*() {
        yield* Scope.close(nodeScope, Exit.void)
        const previous = state
        state = "Shutdown"
        yield* publish({ _tag: "StateChange", from: previous, to: "Shutdown", term: currentTerm })
        // Fail whatever was left waiting.
        for (const event of current) failEvent(event)
        current = []
        yield* mailbox.end
        const left = yield* mailbox.clear
        for (const event of left) failEvent(event)
        for (const future of inHand) future?.deferred.done(Exit.fail(new RaftShutdown()))
        inHand = []
        yield* fsmMailbox.end
        const pendingFsm = yield* fsmMailbox.clear
        for (const item of pendingFsm) {
          if (item._tag === "Batch") {
            for (const future of item.futures ?? []) future?.deferred.done(Exit.fail(new RaftShutdown()))
          } else {
            item.deferred.done(Exit.fail(new RaftShutdown()))
          }
        }
        for (const waiter of appliedWaiters) waiter.future.done(Exit.void)
        appliedWaiters = []
        yield* tearDownLeader.pipe(Effect.ignore)
        yield* PubSub.shutdown(observations)
        shutdownDone.done(Exit.void)
      }).pipe(Effect.uninterruptible)
    })

    // ---- start: serve RPCs, run the loop and the FSM runner

    /** Hands a request to the run loop and waits for its answer. */
    const ask = <A>(event: (deferred: Future<A, RaftShutdown>) => Event): Effect.Effect<A, RaftShutdown> =>
      Effect.suspend(() => {
        const deferred = new Future<A, RaftShutdown>()
        if (isShutdown || !emit(event(deferred))) return Effect.fail(new RaftShutdown())
        return deferred.await
      })

    const handler: RpcHandler = {
      appendEntries: (request) =>
        Effect.suspend(() => {
          const deferred = new Future<AppendEntriesResponse, RaftShutdown>()
          if (isShutdown || !emit({ _tag: "AppendEntries", request, deferred })) {
            return Effect.fail(new RaftShutdown())
          }
          return deferred.await
        }),
      submitAppendEntries: (request, onDone) => {
        const deferred = new Future<AppendEntriesResponse, RaftShutdown>()
        if (isShutdown || !emit({ _tag: "AppendEntries", request, deferred })) return onDone(Exit.fail(new RaftShutdown()))
        deferred.listen(onDone)
      },
      requestVote: (request) =>
        Effect.suspend(() => {
          const deferred = new Future<RequestVoteResponse, RaftShutdown>()
          if (isShutdown || !emit({ _tag: "RequestVote", request, deferred })) {
            return Effect.fail(new RaftShutdown())
          }
          return deferred.await
        }),
      requestPreVote: (request) => ask((deferred) => ({ _tag: "RequestPreVote", request, deferred })),
      timeoutNow: (request) => ask((deferred) => ({ _tag: "TimeoutNow", request, deferred })),
      installSnapshot: (request, data) =>
        Effect.gen(function*() {
          // The snapshot lock keeps this from overlapping a snapshot of our own (see takeSnapshot).
          const verdict = yield* ask<InstallVerdict>((deferred) => ({ _tag: "InstallCheck", request, deferred }))
          if (!verdict.accept) {
            yield* Stream.runDrain(data).pipe(Effect.ignore)
            return verdict.response
          }
          const stored = yield* Effect.either(Stream.run(
            data,
            snapshots.create({
              index: request.lastLogIndex,
              term: request.lastLogTerm,
              configuration: request.configuration,
              configurationIndex: request.configurationIndex
            })
          ))
          if (stored._tag === "Left") {
            yield* Effect.logWarning("failed to receive a snapshot", stored.left)
            return { ...verdict.response, success: false }
          }
          return yield* ask<InstallSnapshotResponse>((deferred) => ({
            _tag: "InstallStored",
            request,
            meta: stored.right,
            deferred
          }))
        }).pipe(snapshotLock.withPermits(1))
    }
    yield* Scope.extend(transport.serve(handler), nodeScope)

    const fatal = (what: string) => (cause: Cause.Cause<unknown>) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.void
        : Effect.logError(`${what} failed, shutting the node down`, cause).pipe(
          Effect.andThen(Effect.forkIn(shutdown, parentScope)),
          Effect.asVoid
        )
    yield* runLoop.pipe(
      Effect.catchAllCause(fatal("raft run loop")),
      Effect.annotateLogs({ module: "Raft", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* fsmRunner.pipe(
      Effect.catchAllCause(fatal("FSM")),
      Effect.annotateLogs({ module: "FsmRunner", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* leaderWriter.pipe(
      // Stopped (shutdown): whoever waits for the writes waits no more; nothing will be written now.
      Effect.ensuring(Effect.sync(() => {
        writerStopped = true
        writesDrained?.done(Exit.void)
        writesDrained = undefined
      })),
      Effect.catchAllCause(fatal("leader log writer")),
      Effect.annotateLogs({ module: "LeaderWriter", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* snapshotLoop.pipe(
      Effect.annotateLogs({ module: "Snapshots", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* Scope.addFinalizer(parentScope, shutdown)

    // ---- the node's interface

    /**
     * Waits for `future` within the caller's timeout, covering the whole wait (hashicorp #145, #498): on expiry
     * the caller gets `ApplyTimeout` and its waiter is dropped; `onAbandon` releases what the caller held (an
     * entry not yet taken off the queue is never appended). Without a timeout the wait is interruptible, with
     * the same release.
     */
    const awaitWithin = <A, E>(
      future: Future<A, E>,
      timeoutMillis: number | undefined,
      onAbandon: () => void
    ): Effect.Effect<A, E | ApplyTimeout> => {
      const wait = future.awaitOr(onAbandon)
      if (timeoutMillis === undefined) return wait
      // The deadline is fixed now: an ApplyFuture awaited later, or twice, keeps the caller's budget.
      const deadline = now() + timeoutMillis
      return Effect.suspend(() =>
        wait.pipe(
          Effect.timeoutFail({
            duration: Math.max(0, deadline - now()),
            onTimeout: () => {
              onAbandon()
              return new ApplyTimeout({ timeoutMillis })
            }
          })
        )
      )
    }

    /** Enqueues an entry; the effect returned waits for its outcome (hashicorp's ApplyFuture). */
    const enqueue = (type: Log.LogType, data: Uint8Array, timeoutMillis: number | undefined) =>
      Effect.sync((): Effect.Effect<ApplyResult, ApplyError> => {
        if (isShutdown) return Effect.fail(new RaftShutdown())
        if (state !== "Leader") return Effect.fail(notLeaderError())
        if (leader?.transfer !== undefined) return Effect.fail(new LeadershipTransferInProgress())
        const future: ApplyFuture = {
          type,
          data,
          deferred: new Future<ApplyResult, ApplyError>(),
          status: QUEUED
        }
        // The run loop idle with nothing queued would append it at once: done here instead, saving the hop.
        if (loopWaiting() && writesPending < maxUnwritten) appendNow([future])
        else if (!emit({ _tag: "Apply", future })) return Effect.fail(new RaftShutdown())
        return awaitWithin(future.deferred, timeoutMillis, () => {
          if (future.status === QUEUED) future.status = CANCELLED
        })
      })

    const changeMembership = (
      change: Configuration.Change,
      prevIndex: number,
      timeoutMillis: number | undefined
    ): Effect.Effect<number, MembershipError> =>
      Effect.suspend(() => {
        if (isShutdown) return Effect.fail(new RaftShutdown())
        const request: MembershipRequest = {
          change,
          prevIndex,
          deferred: new Future<number, MembershipError>(),
          promotion: false,
          cancelled: false
        }
        if (!emit({ _tag: "Membership", request })) return Effect.fail(new RaftShutdown())
        return awaitWithin(request.deferred, timeoutMillis, () => {
          request.cancelled = true
        })
      })

    const userSnapshot: Effect.Effect<SnapshotMeta, SnapshotError> = takeSnapshot

    const userRestore = (
      meta: SnapshotMeta,
      data: Stream.Stream<Uint8Array, StorageError>,
      timeoutMillis: number | undefined
    ): Effect.Effect<void, RestoreError> =>
      Effect.gen(function*() {
        const started = now()
        const remaining = () => timeoutMillis === undefined ? undefined : Math.max(0, timeoutMillis - (now() - started))
        const restored = yield* snapshotLock.withPermits(1)(
          Effect.gen(function*() {
            const deferred = new Future<Future<void, FsmError | StorageError | SnapshotNotFound | RaftShutdown>, RestoreError>()
            if (isShutdown || !emit({ _tag: "UserRestore", meta, data, deferred })) {
              return yield* new RaftShutdown()
            }
            // The run loop streams the data into the store; it cannot be abandoned half-way.
            return yield* deferred.await
          })
        )
        yield* awaitWithin(restored, remaining(), () => {}).pipe(
          Effect.catchTag("SnapshotNotFound", (error) =>
            Effect.fail(new StorageError({ operation: "restore", reason: error.reason })))
        )
        // Done once a quorum holds it: a barrier after the snapshot commits only when followers installed it.
        yield* Effect.flatten(enqueue("Barrier", Log.empty, remaining()))
      })

    const leadershipTransfer = (
      target: { readonly id: string; readonly address: string } | undefined
    ): Effect.Effect<void, TransferError> =>
      Effect.suspend(() => {
        if (isShutdown) return Effect.fail(new RaftShutdown())
        const deferred = new Future<void, TransferError>()
        if (!emit({ _tag: "Transfer", target, deferred })) return Effect.fail(new RaftShutdown())
        return deferred.await
      })

    const node: Node = {
      enqueue,
      verifyLeader: Effect.suspend(() => {
        if (isShutdown) return Effect.fail(new RaftShutdown())
        const deferred = new Future<void, NotLeader | LeadershipLost | RaftShutdown>()
        if (!emit({ _tag: "Verify", deferred })) return Effect.fail(new RaftShutdown())
        return deferred.await
      }),
      bootstrap: (configuration) =>
        Effect.suspend(() => {
          if (isShutdown) return Effect.fail(new RaftShutdown())
          const deferred = new Future<void, CantBootstrap | StorageError | RaftShutdown>()
          if (!emit({ _tag: "Bootstrap", configuration, deferred })) return Effect.fail(new RaftShutdown())
          return deferred.await
        }),
      stats: Effect.sync(() => ({
        id: localId,
        state,
        term: currentTerm,
        lastLogIndex,
        lastLogTerm,
        commitIndex,
        appliedIndex,
        fsmPending,
        lastSnapshotIndex,
        lastSnapshotTerm,
        leaderId,
        lastContactMillis: lastContact,
        latestConfiguration,
        latestConfigurationIndex,
        numPeers: latestConfiguration.servers.filter((server) => server.id !== localId).length,
        replication: leader === undefined ? [] : peerReplication(leader)
      })),
      state: Effect.sync(() => state),
      leader: Effect.sync(() =>
        leaderId === undefined || leaderAddress === undefined
          ? Option.none()
          : Option.some({ id: leaderId, address: leaderAddress })
      ),
      lastContact: Effect.sync(() => Option.fromNullable(lastContact)),
      appliedIndex: Effect.sync(() => appliedIndex),
      lastIndex: Effect.sync(() => lastLogIndex),
      commitIndex: Effect.sync(() => commitIndex),
      currentTerm: Effect.sync(() => currentTerm),
      configuration: Effect.sync(() => ({ configuration: latestConfiguration, index: latestConfigurationIndex })),
      observe: Stream.fromPubSub(observations),
      shutdown,
      changeMembership,
      userSnapshot,
      userRestore,
      leadershipTransfer
    }
    return node
  })

/** A follower refused the entries and asked for backoff; `nextIndex` is where replication resumes. */
class AppendRejected extends Data.TaggedError("AppendRejected")<{ readonly nextIndex: number }> {}

/** A follower could not install the snapshot sent to it; sending is retried with backoff. */
class SnapshotRejected extends Data.TaggedError("SnapshotRejected")<{ readonly index: number }> {}

const storageNotFound = (operation: string) => (error: LogNotFound) =>
  Effect.fail(new StorageError({ operation, reason: `entry ${error.index} missing from the log`, cause: error }))
