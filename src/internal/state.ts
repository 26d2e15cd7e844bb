/**
 * The state of one Raft node: one plain mutable record, `NodeState`, that
 * every engine module takes as its first parameter (as hashicorp/raft's
 * methods take `r *Raft`, and etcd's step functions the `raft` struct).
 *
 * Who may write what. One fiber, the run loop (loop.ts), owns the record; the
 * comment on each group of fields names the module that writes it and any
 * other fiber allowed to. JavaScript runs one fiber at a time and a
 * synchronous section is never interleaved, so the rule that keeps the record
 * consistent is: outside the run loop, no `yield*` between a read and a write
 * of a shared field. Four fast paths write from other fibers, all only while
 * the run loop waits with nothing queued (`loopWaiting`): a client's `enqueue`
 * appends (leaderLog.ts `appendNow`), the fiber that saw a quorum commits
 * (commit.ts `onCommit`), a read or `verifyLeader` joins the leader's
 * heartbeat round (read.ts `handleRead`, verify.ts `verifyNow`), and the
 * transport stores and answers a follower's usual AppendEntries when its log
 * store writes synchronously (follower.ts `appendNow`). The FSM runner's
 * fields have one of the same kind, while the runner waits with nothing
 * queued: whoever commits applies a synchronous state machine's batch itself
 * (fsm.ts `handToFsm`).
 *
 * No `Ref`, no `Context` lookup: a field is read and written as a property,
 * as fast as the closure variables it replaces, and every field is assigned in
 * the constructor so the record keeps one shape.
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Clock from "effect/Clock"
import * as Fiber from "effect/Fiber"
import type * as MetricLabel from "effect/MetricLabel"
import * as PubSub from "effect/PubSub"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import type * as Tracer from "effect/Tracer"
import * as Configuration from "../Configuration.js"
import type { Fsm } from "../Fsm.js"
import type * as Log from "../Log.js"
import type { LogStore } from "../LogStore.js"
import type { RaftConfig } from "../RaftConfig.js"
import { ClusterMismatch, type LogNotFound, NotLeader, RaftShutdown, StorageError } from "../RaftError.js"
import type { SnapshotStore } from "../SnapshotStore.js"
import type { StableStore } from "../StableStore.js"
import type { Transport } from "../Transport.js"
import type { Bugs } from "./bugs.js"
import { Deadlines } from "./deadlines.js"
import type { Event, FsmItem } from "./events.js"
import { Future } from "./future.js"
import type { ApplyFuture, LeaderState, LeaderWrite, ReadBatch } from "./leaderState.js"
import type { Inbox } from "./inbox.js"
import type { Tracing } from "./traceState.js"
import type { Observation, RaftState } from "./types.js"

/** The dependencies of a node. */
export interface NodeServices {
  readonly config: RaftConfig
  readonly fsm: Fsm
  readonly logs: LogStore
  readonly stable: StableStore
  readonly snapshots: SnapshotStore
  readonly transport: Transport
}

/** What node.ts creates before the record: the node's scopes, channels and the hard state read from the stores. */
export interface NodeResources {
  readonly parentScope: Scope.Scope
  readonly nodeScope: Scope.CloseableScope
  readonly roleScope: Scope.CloseableScope
  readonly clock: Clock.Clock
  readonly bugs: Bugs
  readonly mailbox: Inbox<Event>
  readonly fsmMailbox: Inbox<FsmItem>
  readonly writes: Inbox<LeaderWrite>
  readonly observations: PubSub.PubSub<Observation>
  readonly snapshotLock: Effect.Semaphore
  readonly nodeLabels: ReadonlyArray<MetricLabel.MetricLabel>
  readonly currentTerm: number
  readonly lastVoteTerm: number
  readonly lastVoteCandidate: string
  readonly tracing: Tracing | undefined
  readonly clusterId: string | undefined
}

export class NodeState {
  // ---- the configuration: replaced as a whole by reload.ts (run loop), the one place it changes. Read
  //      `node.config` where a value is needed, never a copy kept across a wait; a fiber that sleeps on a
  //      reloadable timer sleeps with `sleepOrReload`, which ends early when `configChanged` completes.
  config: RaftConfig
  configChanged = new Future<void, never>()

  // ---- services, scopes and channels: set once
  readonly fsm: Fsm
  readonly logs: LogStore
  readonly stable: StableStore
  readonly snapshots: SnapshotStore
  readonly transport: Transport
  readonly localId: string
  readonly localAddress: string
  readonly nodeLabels: ReadonlyArray<MetricLabel.MetricLabel>
  readonly clock: Clock.Clock
  readonly bugs: Bugs
  /** How this node traces (tracing.ts); undefined when nobody listens, decided once at start. */
  readonly tracing: Tracing | undefined
  /** The scope the node was started in: a removed node's shutdown is forked here. */
  readonly parentScope: Scope.Scope
  /** Holds every fiber of the node; closed by shutdown. */
  readonly nodeScope: Scope.CloseableScope
  /** The run loop's events: every fiber offers (`emit`), the run loop drains. */
  readonly mailbox: Inbox<Event>
  /** The FSM runner's work: commit.ts offers batches, snapshot.ts restores and captures; fsm.ts drains. */
  readonly fsmMailbox: Inbox<FsmItem>
  /** The leader's entries for its writer: `appendNow` offers, the writer drains (leaderLog.ts). */
  readonly writes: Inbox<LeaderWrite>
  readonly observations: PubSub.PubSub<Observation>
  /** Held while a snapshot is taken, installed or restored: they never overlap, so the newest is the latest. */
  readonly snapshotLock: Effect.Semaphore
  /** Entries the leader may have handed to its writer and not yet written before it waits for the writer. */
  readonly maxUnwritten: number
  /** How many of its latest entries a leader keeps in memory for replication (`LeaderState.recent`), at most. */
  readonly recentMax: number

  // ---- hard state (hardState.ts; run loop)
  /** The cluster's id: sent with every request, checked on every request received; taken from the leader once. */
  clusterId: string | undefined
  currentTerm: number
  lastVoteTerm: number
  lastVoteCandidate: string

  // ---- role (role.ts; run loop, and shutdown)
  role: RaftState = "Follower"
  /** Moves with every change of role: events and fibers of an older role carry an older epoch and are ignored. */
  epoch = 0
  /** Holds the current role's fibers; closed and replaced on every change of role. */
  roleScope: Scope.CloseableScope
  leaderId: string | undefined = undefined
  leaderAddress: string | undefined = undefined
  /** This term's leadership, on a leader (leader.ts creates it, role.ts ends it). */
  leader: LeaderState | undefined = undefined

  // ---- the end of the log: leaderLog.ts on a leader (run loop, or a client's fiber through `enqueue`'s fast
  //      path), follower.ts on a follower (run loop, or the transport through `appendNow`'s fast path),
  //      snapshot.ts on install and restore, bootstrap.ts at start
  lastLogIndex = 0
  lastLogTerm = 0

  // ---- the leader's writer (leaderLog.ts): entries handed to it and not yet written (or failed), and who
  //      waits for that to reach 0
  writesPending = 0
  writesDrained: Future<void, never> | undefined = undefined
  writerStopped = false

  // ---- snapshots (snapshot.ts; run loop)
  lastSnapshotIndex = 0
  lastSnapshotTerm = 0

  // ---- commit (commit.ts; run loop, or the writer or a decoder through `onCommit`'s fast path; follower.ts, in
  //      the run loop or the transport through `appendNow`'s fast path)
  commitIndex = 0
  /** The last entry handed to the FSM runner. */
  dispatchedToFsm = 0
  /** Entries handed to the FSM and not yet applied: fsm.ts adds (`handToFsm`) and subtracts. */
  fsmPending = 0

  // ---- applied (fsm.ts; the FSM runner once it runs, or whoever commits through `handToFsm`'s fast path while
  //      the runner waits): the configuration in force at the applied index
  //      is what a snapshot taken there records
  appliedIndex = 0
  appliedTerm = 0
  appliedConfiguration: Configuration.Configuration = Configuration.empty
  appliedConfigurationIndex = 0
  /** Waiters for the FSM to reach an index, resolved by the FSM runner. */
  appliedWaiters: Array<{ readonly index: number; readonly future: Future<void, never> }> = []
  /** The futures of the batch the FSM is applying now, failed by shutdown if it never finishes. */
  fsmInHand: ReadonlyArray<ApplyFuture | undefined> = []

  // ---- the log's age (logAge.ts): the first index appended in each second and when, oldest first; written by
  //      whoever stores entries (the leader's writer, follower.ts) and by compaction (run loop)
  appendMarks: Array<{ readonly index: number; readonly at: number }> = []

  // ---- follower (follower.ts, election.ts, snapshot.ts; run loop, and follower.ts `appendNow`'s fast path): when
  //      this node last heard from a leader
  lastContact: number | undefined = undefined
  /** When this follower was told that its leader's connection closed (leaderLost.ts); undefined if never. */
  leaderLostAt: number | undefined = undefined
  /**
   * When this node started, if it may have acknowledged a leader in an earlier life (its term was 2 or more): it
   * refuses votes for a heartbeat timeout after it starts, as if it had just heard from that leader, so a quick
   * restart cannot cut a leader's lease short (election.ts). Undefined otherwise.
   */
  readonly restartedAt: number | undefined
  /**
   * Entries this follower stored from its leader at the end of its log and has not yet handed to its FSM, in
   * order, with no gap, and their data's bytes (recentEntries.ts): a commit hands them over without reading the store.
   */
  recentEntries: Array<Log.Log> = []
  recentBytes = 0

  // ---- a follower's linearizable reads (read.ts; any fiber, in synchronous sections): the reads waiting for the
  //      next ReadIndex request to the leader, and whether the fiber that sends them runs
  readBatch: ReadBatch | undefined = undefined
  readSending = false

  // ---- configurations: the latest (membership.ts on a leader, follower.ts, snapshot.ts) and the committed
  //      one (commit.ts); run loop, and follower.ts `appendNow`'s fast path
  latestConfiguration: Configuration.Configuration = Configuration.empty
  latestConfigurationIndex = 0
  committedConfiguration: Configuration.Configuration = Configuration.empty
  committedConfigurationIndex = 0

  // ---- elections (election.ts; run loop)
  /** The span of the election under way (tracing nodes only): from the campaign to its outcome (role.ts ends it). */
  electionSpan: Tracer.Span | undefined = undefined
  candidateVotes = 0
  /** Voters of this election that refused their vote or could not be asked (the request failed). */
  candidateNoes = 0
  /** Whether a voter of this election answered with a refusal (not only failed requests). */
  candidateRefused = false
  /** Elections lost in a row since this node last stopped campaigning (election.ts `campaignAgainSoon`). */
  lostElections = 0
  preVoting = false
  preVotes = 0

  // ---- the run loop (loop.ts): the chunk it is handling (whether it waits: `loopWaiting`)
  current: Iterable<Event> = []

  // ---- lifetime (node.ts)
  isShutdown = false
  readonly shutdownDone = new Future<void, never>()
  /** Stops the node; set once by node.ts, before any fiber starts. */
  shutdown: Effect.Effect<void> = Effect.void
  /** The callers' timeouts (deadlines.ts), on the node's clock; its fiber runs in the node's scope (node.ts). */
  readonly deadlines: Deadlines

  constructor(services: NodeServices, resources: NodeResources) {
    this.config = services.config
    this.fsm = services.fsm
    this.logs = services.logs
    this.stable = services.stable
    this.snapshots = services.snapshots
    this.transport = services.transport
    this.localId = services.config.localId
    this.localAddress = services.transport.localAddress
    this.nodeLabels = resources.nodeLabels
    this.clock = resources.clock
    this.deadlines = new Deadlines(resources.clock)
    this.bugs = resources.bugs
    this.tracing = resources.tracing
    this.parentScope = resources.parentScope
    this.nodeScope = resources.nodeScope
    this.roleScope = resources.roleScope
    this.mailbox = resources.mailbox
    this.fsmMailbox = resources.fsmMailbox
    this.writes = resources.writes
    this.observations = resources.observations
    this.snapshotLock = resources.snapshotLock
    this.maxUnwritten = 64 * services.config.maxAppendEntries
    this.recentMax = 32 * services.config.maxAppendEntries
    this.currentTerm = resources.currentTerm
    this.lastVoteTerm = resources.lastVoteTerm
    this.lastVoteCandidate = resources.lastVoteCandidate
    this.restartedAt = resources.currentTerm >= 2 ? resources.clock.unsafeCurrentTimeMillis() : undefined
    this.clusterId = resources.clusterId
  }

  /** The node's `Clock`, in milliseconds. */
  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
  }

  /** The node's `Clock`, in microseconds (from its nanosecond time): what the `*_micros` histograms measure with. */
  nowMicros(): number {
    return Number(this.clock.unsafeCurrentTimeNanos() / 1000n)
  }
}

/** Tells `observe` subscribers. */
export const publish = (node: NodeState, observation: Observation) => PubSub.publish(node.observations, observation)

/** Forks `effect` into the current role's scope: it ends with the role. */
export const forkRole = <A, E>(node: NodeState, effect: Effect.Effect<A, E>) =>
  effect.pipe(Effect.interruptible, Effect.forkIn(node.roleScope), Effect.asVoid)

/**
 * One `Timer` event of `epoch`, `afterMillis` plus a random 1 to `spreadMillis` - 1 ms from now (at least 1), from a
 * fiber of the role's scope: an early campaign (leaderLost.ts, election.ts).
 */
export const timerOnce = (node: NodeState, epoch: number, afterMillis: number, spreadMillis: number) =>
  forkRole(
    node,
    Effect.flatMap(Random.nextIntBetween(1, Math.max(2, spreadMillis)), (jitter) =>
      Effect.andThen(Effect.sleep(afterMillis + jitter), Effect.sync(() => emit(node, { _tag: "Timer", epoch }))))
  )

/**
 * Sleeps `millis`, or less if the configuration is reloaded meanwhile: true when it slept the whole time. A timer
 * that sleeps on a reloadable setting uses it, so a new value takes effect at once (reload.ts).
 */
export const sleepOrReload = (node: NodeState, millis: number): Effect.Effect<boolean> =>
  Effect.suspend(() => Effect.race(Effect.as(Effect.sleep(millis), true), Effect.as(node.configChanged.await, false)))

/**
 * Runs `body(false)`; when the configuration is reloaded meanwhile, interrupts it and runs `body(true)`, and so on.
 * For a timer loop that sleeps often on reloadable settings and whose rounds may be cut anywhere (they only open
 * triggers or offer events): one race per reload instead of one per sleep (`sleepOrReload`), which at a heartbeat a
 * tenth of a heartbeat timeout apart per follower was most of the fibers a node forks.
 */
export const reloadable = <A>(node: NodeState, body: (reloaded: boolean) => Effect.Effect<A>): Effect.Effect<A> => {
  const round = (reloaded: boolean): Effect.Effect<A> =>
    Effect.raceWith(body(reloaded), node.configChanged.await, {
      onSelfDone: (exit, reload) => Effect.zipRight(Fiber.interrupt(reload), exit),
      onOtherDone: (_, self) => Effect.zipRight(Fiber.interrupt(self), Effect.suspend(() => round(true)))
    })
  return Effect.suspend(() => round(false))
}

/** Offers an event to the run loop; false once the node is shut down. Any fiber. */
export const emit = (node: NodeState, event: Event): boolean => node.mailbox.unsafeOffer(event)

/**
 * The run loop waits for events with none queued: what it would do next at once may be done by the caller
 * (the fast paths, see the module comment). The mailbox's one taker is the run loop, parked in its `takeAll`: once
 * it has taken a chunk it is not waiting, even if it yields to other fibers before it handles it.
 */
export const loopWaiting = (node: NodeState): boolean => node.mailbox.waiting

/** `NotLeader` naming the leader this node knows of. */
export const notLeaderError = (node: NodeState) =>
  // Built unvalidated: its fields are the node's own strings, and Schema's check was about 1% of a simulated seed.
  new NotLeader({ leaderId: node.leaderId, leaderAddress: node.leaderAddress }, true)

/** Votes needed for a majority of `configuration`'s voters. */
export const quorumOf = (configuration: Configuration.Configuration) => Configuration.quorumSize(configuration)

/** A log entry that must exist is missing: the store is inconsistent. */
export const storageNotFound = (operation: string) => (error: LogNotFound) =>
  Effect.fail(new StorageError({ operation, reason: `entry ${error.index} missing from the log`, cause: error }))

/** A request's cluster id, when it names one other than this node's: the request is refused. */
export const foreignCluster = (node: NodeState, clusterId: string | undefined): ClusterMismatch | undefined =>
  clusterId !== undefined && node.clusterId !== undefined && clusterId !== node.clusterId
    ? new ClusterMismatch({ expected: node.clusterId, got: clusterId })
    : undefined

/** Hands a request to the run loop and waits for its answer. Any fiber. */
export const ask = <A>(
  node: NodeState,
  event: (deferred: Future<A, RaftShutdown>) => Event
): Effect.Effect<A, RaftShutdown> =>
  Effect.suspend(() => {
    const deferred = new Future<A, RaftShutdown>()
    if (node.isShutdown || !emit(node, event(deferred))) return Effect.fail(new RaftShutdown())
    return deferred.awaitSole
  })
