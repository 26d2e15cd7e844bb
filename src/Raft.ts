/**
 * The Raft service. `Raft.layer(config)` starts a node over the `Fsm`,
 * `LogStore`, `StableStore`, `SnapshotStore` and `Transport` in context; the
 * node runs until the layer's scope closes or `shutdown` is called. Every
 * operation's error channel lists what can go wrong: `NotLeader` (with the
 * leader's id and address when known, to redirect), `LeadershipLost` (the
 * outcome is unknown), `ApplyTimeout` (likewise), `LeadershipTransferInProgress`, `RaftShutdown`,
 * `StorageError`; membership changes add `ConfigurationChanged` and `InvalidOperation`.
 *
 * ```ts
 * const node = Raft.layer({ localId: "a" }).pipe(
 *   Layer.provide([Fsm.layer(myFsm), LogStore.layerMemory, StableStore.layerMemory,
 *     SnapshotStore.layerMemory, MemoryNetwork.layerTransport("a")])
 * )
 * ```
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Configuration from "./Configuration.js"
import { Fsm, type Typed } from "./Fsm.js"
import { attachDirectRead } from "./internal/directRead.js"
import { bootstrapStores, hasExistingState as storesHoldState } from "./internal/bootstrap.js"
import * as node from "./internal/node.js"
import { recoverCluster as recoverStores } from "./internal/recoverCluster.js"
import { fairScheduler } from "./internal/scheduler.js"
import type * as types from "./internal/types.js"
import { LogStore } from "./LogStore.js"
import * as RaftConfig from "./RaftConfig.js"
import type {
  CantBootstrap,
  CantRecover,
  CommandRejected,
  FsmError,
  IdentityMismatch,
  LeadershipLost,
  NotLeader,
  NotVoter,
  RaftConfigError,
  RaftShutdown,
  StorageError
} from "./RaftError.js"
import * as RaftError from "./RaftError.js"
import { type SnapshotMeta, SnapshotStore } from "./SnapshotStore.js"
import { StableStore } from "./StableStore.js"
import { Transport } from "./Transport.js"

/** The role a node plays. */
export type RaftState = types.RaftState
/** What `apply` returns. */
export type ApplyResult = types.ApplyResult
/** Something that happened to a node. */
export type Observation = types.Observation
/** A snapshot of a node's counters. */
export type RaftStats = types.RaftStats
/** A leader's replication to one other server (`RaftStats.replication`): match and next index, last answer, failures. */
export type PeerReplication = types.PeerReplication
/** Errors of `apply` and `barrier` (`EntryTooLarge`: a command over `RaftConfig.maxEntryBytes`, refused unsent). */
export type ApplyError = RaftError.ApplyError | RaftError.EntryTooLarge

/** Options of `apply` and `barrier`. */
export interface ApplyOptions {
  /**
   * How long to wait for the outcome, queueing and commit included; then the call fails with `ApplyTimeout` (an
   * entry already appended may still commit). No limit by default: the effect stays interruptible.
   */
  readonly timeout?: Duration.DurationInput | undefined
}

/** Options of `readIndex`. */
export interface ReadOptions {
  /**
   * How the leader confirms the read: `"readIndex"`, by a heartbeat round that concurrent reads share, or `"lease"`,
   * without one while its lease holds (safe under the clock assumption of `RaftConfig.maxClockDrift`). Default: the
   * node's `readMode`.
   */
  readonly mode?: RaftConfig.ReadMode | undefined
  /** How long to wait in all (confirmation, then this node's FSM catching up); then `ReadTimeout`. No limit by default. */
  readonly timeout?: Duration.DurationInput | undefined
}

/** Errors of `readIndex`: none of them has a side effect. */
export type ReadError = RaftError.ReadError

/** Options of a membership change. */
export interface MembershipOptions {
  /** Only change if the latest configuration is still the one at this index (else `ConfigurationChanged`); 0 = any. */
  readonly prevIndex?: number | undefined
  /** How long to wait for the change to commit (`ApplyTimeout`). No limit by default. */
  readonly timeout?: Duration.DurationInput | undefined
}

/** Errors of the membership changes. */
export type MembershipError = RaftError.MembershipError

/** Errors of a user snapshot (`InvalidOperation` while a configuration change is uncommitted). */
export type SnapshotError = RaftError.SnapshotError

/** Errors of a user restore. */
export type RestoreError = RaftError.RestoreError

/** Errors of a leadership transfer. */
export type TransferError = RaftError.TransferError

/** A running Raft node. */
export interface Raft {
  /** This node's id. */
  readonly id: string
  /** Replicates `data` as a command; succeeds once it is committed and applied to this leader's FSM. */
  readonly apply: (data: Uint8Array, options?: ApplyOptions) => Effect.Effect<ApplyResult, ApplyError>
  /**
   * Enqueues `data` now and returns the effect that waits for its outcome (hashicorp's ApplyFuture):
   * one fiber can have many commands in flight, in order.
   */
  readonly applyFuture: (
    data: Uint8Array,
    options?: ApplyOptions
  ) => Effect.Effect<Effect.Effect<ApplyResult, ApplyError>>
  /** Succeeds once every entry before it is applied to this leader's FSM; returns its index. */
  readonly barrier: (options?: ApplyOptions) => Effect.Effect<number, ApplyError>
  /** Succeeds if a quorum of voters still follows this node (heartbeat round), else fails. */
  readonly verifyLeader: Effect.Effect<void, NotLeader | LeadershipLost | RaftShutdown>
  /**
   * A linearizable read, on any node (Raft thesis §6.4): succeeds with a read index once this node's FSM has
   * applied it, and so every write acknowledged anywhere before the call; then read the FSM. A leader confirms it
   * still leads (a heartbeat round shared by concurrent reads, or its lease); a follower asks its leader, in one
   * request for the reads that arrive together. Fails with `NotLeader` when no leader is known, `LeadershipLost`,
   * `ReadTimeout`, `TransportError` (the leader unreachable) or `RaftShutdown`; retrying is always safe.
   */
  readonly readIndex: (options?: ReadOptions) => Effect.Effect<number, ReadError>
  /**
   * Changes the settings of `RaftConfig.Reloadable` on this running node, at once: a timer waiting with the old
   * value starts over with the new one. Validated as `Raft.layer` validates: an invalid change fails with
   * `RaftConfigError` and changes nothing.
   */
  readonly reloadConfig: (changes: RaftConfig.Reloadable) => Effect.Effect<void, RaftConfigError | RaftShutdown>
  /** The configuration in force: what the layer was given, with what `reloadConfig` changed since. */
  readonly currentConfig: Effect.Effect<RaftConfig.RaftConfig>
  /** The current role. */
  readonly state: Effect.Effect<RaftState>
  /** The leader this node knows of. */
  readonly leader: Effect.Effect<Option.Option<{ readonly id: string; readonly address: string }>>
  /**
   * Waits until this node knows a leader (itself included) and answers it. It polls every 10 ms of `Clock` time:
   * under `TestClock`, advance the clock meanwhile (as `TestCluster.awaitLeader` does).
   */
  readonly awaitLeader: Effect.Effect<{ readonly id: string; readonly address: string }, RaftShutdown>
  /** When this node last heard from a leader (`Clock` ms); none if never. */
  readonly lastContact: Effect.Effect<Option.Option<number>>
  /** Index of the last entry applied to the FSM. */
  readonly appliedIndex: Effect.Effect<number>
  /** Index of the last entry in the log. */
  readonly lastIndex: Effect.Effect<number>
  /** Index of the last entry known committed. */
  readonly commitIndex: Effect.Effect<number>
  /** The current term. */
  readonly currentTerm: Effect.Effect<number>
  /** The latest configuration and the index it was appended at. */
  readonly getConfiguration: Effect.Effect<
    { readonly configuration: Configuration.Configuration; readonly index: number }
  >
  /** A snapshot of the node's counters; on a leader, with its replication to each other server. */
  readonly stats: Effect.Effect<RaftStats>
  /**
   * Adds a voter (or updates its address). A server that is not yet caught up joins as a non-voter and is
   * promoted once its log is within `maxAppendEntries` of the leader's for a full round; the effect completes
   * when the change that makes it a voter commits, with that entry's index.
   */
  readonly addVoter: (id: string, address: string, options?: MembershipOptions) => Effect.Effect<number, MembershipError>
  /** Adds a server that receives the log but never votes nor counts toward a quorum; returns the change's index. */
  readonly addNonvoter: (
    id: string,
    address: string,
    options?: MembershipOptions
  ) => Effect.Effect<number, MembershipError>
  /** Makes a voter a non-voter; returns the change's index. */
  readonly demoteVoter: (id: string, options?: MembershipOptions) => Effect.Effect<number, MembershipError>
  /** Removes a server; returns the change's index. A leader that removes itself steps down once it commits. */
  readonly removeServer: (id: string, options?: MembershipOptions) => Effect.Effect<number, MembershipError>
  /** Takes a snapshot now and compacts the log; `NothingNewToSnapshot` when nothing was applied since the last. */
  readonly snapshot: Effect.Effect<SnapshotMeta, SnapshotError>
  /**
   * Installs `data` (a snapshot of this FSM, e.g. opened from another store) into the running cluster: the
   * leader's FSM is replaced, its log moves past the snapshot, and followers follow by InstallSnapshot.
   */
  readonly restore: (
    meta: SnapshotMeta,
    data: Stream.Stream<Uint8Array, StorageError>,
    options?: ApplyOptions
  ) => Effect.Effect<void, RestoreError>
  /** Hands leadership to the most up-to-date voter; completes once another server leads. */
  readonly leadershipTransfer: Effect.Effect<void, TransferError>
  /** Hands leadership to the server `id` at `address`. */
  readonly leadershipTransferToServer: (id: string, address: string) => Effect.Effect<void, TransferError>
  /** Writes the first configuration of a node without state (its own and its peers'). */
  readonly bootstrapCluster: (
    configuration: Configuration.Configuration
  ) => Effect.Effect<void, CantBootstrap | NotVoter | StorageError | RaftShutdown>
  /** State changes, leader changes, failed heartbeats and vote requests, from the moment of subscription. */
  readonly observe: Stream.Stream<Observation>
  /** Stops the node; idempotent. Afterwards every operation fails with `RaftShutdown`. */
  readonly shutdown: Effect.Effect<void>
}

/** The tag of a running node. */
export const Raft: Context.Tag<Raft, Raft> = Context.GenericTag<Raft>("effect-raft/Raft")

const toMillis = (timeout: Duration.DurationInput | undefined): number | undefined =>
  timeout === undefined ? undefined : Duration.toMillis(Duration.decode(timeout))

/** How often `awaitLeader` looks. */
const leaderPoll = Duration.millis(10)

const awaitLeader = (
  leader: Effect.Effect<Option.Option<{ readonly id: string; readonly address: string }>>,
  state: Effect.Effect<RaftState>
): Effect.Effect<{ readonly id: string; readonly address: string }, RaftShutdown> => {
  const look: Effect.Effect<{ readonly id: string; readonly address: string }, RaftShutdown> = Effect.flatMap(
    leader,
    (known) =>
      Option.isSome(known)
        ? Effect.succeed(known.value)
        : Effect.flatMap(state, (role) =>
          role === "Shutdown"
            ? Effect.fail(new RaftError.RaftShutdown())
            : Effect.zipRight(Effect.sleep(leaderPoll), Effect.suspend(() => look)))
  )
  return look
}

/** Starts a node over the services in context; closing the layer shuts it down. */
export const make: Effect.Effect<
  Raft,
  StorageError | IdentityMismatch | RaftConfigError,
  RaftConfig.RaftConfigTag | Fsm | LogStore | StableStore | SnapshotStore | Transport | Scope.Scope
> = Effect.gen(function*() {
  const config = yield* RaftConfig.RaftConfigTag
  yield* RaftConfig.checkFrameLimit(config, (yield* Transport).maxFrameBytes)
  const scope = yield* Effect.scope
  // The node's fibers share one budget of microtask turns, so timers and I/O keep their turn under load;
  // a scheduler the application chose (e.g. the simulator's) is kept.
  const ambient = yield* FiberRef.get(FiberRef.currentScheduler)
  const scheduler = ambient === Scheduler.defaultScheduler ? fairScheduler : ambient
  const running = yield* node.make({
    config,
    fsm: yield* Fsm,
    logs: yield* LogStore,
    stable: yield* StableStore,
    snapshots: yield* SnapshotStore,
    transport: yield* Transport
  }, scope).pipe(Effect.withScheduler(scheduler))
  const tooLarge = (data: Uint8Array) =>
    data.length > config.maxEntryBytes ? new RaftError.EntryTooLarge({ size: data.length, limit: config.maxEntryBytes }) : undefined
  const service: Raft = {
    id: config.localId,
    apply: (data, options) => {
      const refused = tooLarge(data)
      return refused ?? Effect.flatten(running.enqueue("Command", data, toMillis(options?.timeout)))
    },
    applyFuture: (data, options) => {
      const refused = tooLarge(data)
      return refused === undefined ? running.enqueue("Command", data, toMillis(options?.timeout)) : Effect.succeed(refused)
    },
    barrier: (options) =>
      Effect.flatten(running.enqueue("Barrier", new Uint8Array(0), toMillis(options?.timeout))).pipe(
        Effect.map((result) => result.index)
      ),
    verifyLeader: running.verifyLeader,
    readIndex: (options) => running.readIndex(options?.mode, toMillis(options?.timeout)),
    reloadConfig: running.reloadConfig,
    currentConfig: running.config,
    state: running.state,
    leader: running.leader,
    awaitLeader: awaitLeader(running.leader, running.state),
    lastContact: running.lastContact,
    appliedIndex: running.appliedIndex,
    lastIndex: running.lastIndex,
    commitIndex: running.commitIndex,
    currentTerm: running.currentTerm,
    getConfiguration: running.configuration,
    stats: running.stats,
    addVoter: (id, address, options) =>
      running.changeMembership({ _tag: "AddVoter", id, address }, options?.prevIndex ?? 0, toMillis(options?.timeout)),
    addNonvoter: (id, address, options) =>
      running.changeMembership(
        { _tag: "AddNonvoter", id, address },
        options?.prevIndex ?? 0,
        toMillis(options?.timeout)
      ),
    demoteVoter: (id, options) =>
      running.changeMembership({ _tag: "DemoteVoter", id }, options?.prevIndex ?? 0, toMillis(options?.timeout)),
    removeServer: (id, options) =>
      running.changeMembership({ _tag: "RemoveServer", id }, options?.prevIndex ?? 0, toMillis(options?.timeout)),
    snapshot: running.userSnapshot,
    restore: (meta, data, options) => running.userRestore(meta, data, toMillis(options?.timeout)),
    leadershipTransfer: running.leadershipTransfer(undefined),
    leadershipTransferToServer: (id, address) => running.leadershipTransfer({ id, address }),
    bootstrapCluster: running.bootstrap,
    observe: running.observe,
    shutdown: running.shutdown
  }
  return attachDirectRead(service, running.direct)
})

/** A node with configuration `input`; fails with `RaftConfigError` naming a bad field. */
export const layer = (
  input: RaftConfig.Input
): Layer.Layer<
  Raft,
  RaftConfigError | StorageError | IdentityMismatch,
  Fsm | LogStore | StableStore | SnapshotStore | Transport
> =>
  Layer.scoped(Raft, make).pipe(Layer.provide(RaftConfig.layer(input)))

/**
 * Writes the first configuration into the stores of a node that has none, as
 * hashicorp's `BootstrapCluster`: run it on every initial member with the same
 * configuration before starting them. Fails with `CantBootstrap` when the node
 * already has state (a term, a log entry or a snapshot). With `localId`, the
 * stores are marked as that node's, and it must be a voter (else `NotVoter`);
 * with `clusterId`, as the cluster's (give every initial member the same).
 */
export const bootstrapCluster = (
  configuration: Configuration.Configuration,
  options?: { readonly localId?: string | undefined; readonly clusterId?: string | undefined }
): Effect.Effect<void, CantBootstrap | NotVoter | StorageError, LogStore | StableStore | SnapshotStore> =>
  Effect.gen(function*() {
    yield* bootstrapStores(yield* LogStore, yield* StableStore, yield* SnapshotStore, configuration, options?.localId, options?.clusterId)
  })

/** Whether the stores in context hold Raft state (a term, a log entry or a snapshot): what `bootstrapCluster` refuses. */
export const hasExistingState: Effect.Effect<boolean, StorageError, LogStore | StableStore | SnapshotStore> = Effect
  .gen(function*() {
    return yield* storesHoldState(yield* LogStore, yield* StableStore, yield* SnapshotStore)
  })

/**
 * Brings a cluster back from the loss of a quorum (hashicorp's `RecoverCluster`), on the stores of a stopped node:
 * everything they hold, snapshot and log, committed or not, is applied to the `Fsm` in context and saved as a
 * snapshot whose configuration is `configuration`; the log is deleted. Start the node on them afterwards (with a
 * fresh FSM: this one is left holding the recovered state). Typically: the survivors of a cluster whose other
 * members are gone for good are each recovered with the same configuration naming them, or one survivor alone
 * as its only voter, and new servers are then added to it. Entries that were not yet committed become
 * committed. Fails with `CantRecover` when the configuration is unusable or the stores hold no state.
 */
export const recoverCluster = (
  configuration: Configuration.Configuration
): Effect.Effect<
  SnapshotMeta,
  CantRecover | FsmError | StorageError,
  Fsm | LogStore | StableStore | SnapshotStore
> =>
  Effect.gen(function*() {
    return yield* recoverStores({
      fsm: yield* Fsm,
      logs: yield* LogStore,
      stable: yield* StableStore,
      snapshots: yield* SnapshotStore
    }, configuration)
  })

/** What a typed `apply` returns: the entry's index and the state machine's typed response. */
export interface TypedApplyResult<R> {
  readonly index: number
  readonly response: R
}

/** A node's `apply` for the commands of one typed state machine (`Fsm.typed`). */
export interface Client<C, R> {
  /** The node underneath, for everything else. */
  readonly raft: Raft
  /**
   * Replicates `command`; succeeds with its typed response once it is committed and applied to this leader's FSM.
   * `ParseError` when the command does not encode; `CommandRejected` when the FSM could not decode it.
   */
  readonly apply: (
    command: C,
    options?: ApplyOptions
  ) => Effect.Effect<TypedApplyResult<R>, ApplyError | CommandRejected | ParseError>
  /** As `Raft.applyFuture`: enqueues now and returns the effect that waits for the typed outcome. */
  readonly applyFuture: (
    command: C,
    options?: ApplyOptions
  ) => Effect.Effect<Effect.Effect<TypedApplyResult<R>, ApplyError | CommandRejected>, ParseError>
}

/** The typed `apply` of `machine` on `raft`; `machine` must be the state machine the node runs. */
export const makeClient = <C, R, S>(raft: Raft, machine: Typed<C, R, S>): Client<C, R> => {
  const read = (result: ApplyResult) =>
    Effect.map(machine.readResponse(result.response), (response) => ({ index: result.index, response }))
  return {
    raft,
    apply: (command, options) =>
      Effect.flatMap(machine.encodeCommand(command), (data) => Effect.flatMap(raft.apply(data, options), read)),
    applyFuture: (command, options) =>
      Effect.flatMap(
        machine.encodeCommand(command),
        (data) => Effect.map(raft.applyFuture(data, options), (outcome) => Effect.flatMap(outcome, read))
      )
  }
}

/** The typed `apply` of `machine` on the node in context. */
export const client = <C, R, S>(machine: Typed<C, R, S>): Effect.Effect<Client<C, R>, never, Raft> =>
  Effect.map(Raft, (raft) => makeClient(raft, machine))
