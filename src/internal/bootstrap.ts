/**
 * A node's beginning: bootstrapping the first configuration into empty stores
 * (hashicorp's BootstrapCluster), and at every start, recovering from the
 * stores what the node knew: the newest snapshot into the FSM, then the log
 * after it, reconciled with the snapshot, and the latest configuration in it.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Configuration from "../Configuration.js"
import * as Log from "../Log.js"
import type { LogStore } from "../LogStore.js"
import { CantBootstrap, NotVoter, type RaftShutdown, StorageError } from "../RaftError.js"
import type { SnapshotStore } from "../SnapshotStore.js"
import type { StableStore } from "../StableStore.js"
import type { Future } from "./future.js"
import { KEY_CLUSTER_ID, KEY_CURRENT_TERM, KEY_NODE_ID } from "./hardState.js"
import { type NodeState, storageNotFound } from "./state.js"

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

/**
 * Writes the first configuration straight to the stores of a node that has no state. With `localId`, that node
 * must be a voter of it (hashicorp's ErrNotVoter), and the stores are marked as its own.
 */
export const bootstrapStores = (
  logs: LogStore,
  stable: StableStore,
  snapshots: SnapshotStore,
  configuration: Configuration.Configuration,
  localId?: string | undefined,
  clusterId?: string | undefined
): Effect.Effect<Log.Log, CantBootstrap | NotVoter | StorageError> =>
  Effect.gen(function*() {
    const problem = Configuration.check(configuration)
    if (problem !== undefined) return yield* new CantBootstrap({ reason: problem })
    if (localId !== undefined && !Configuration.isVoter(configuration, localId)) {
      return yield* new NotVoter({ id: localId })
    }
    if (yield* hasExistingState(logs, stable, snapshots)) {
      return yield* new CantBootstrap({ reason: "the node already has state" })
    }
    const entry = Log.make(1, 1, "Configuration", Configuration.encode(configuration))
    if (localId !== undefined) yield* stable.set(KEY_NODE_ID, new TextEncoder().encode(localId))
    if (clusterId !== undefined) yield* stable.set(KEY_CLUSTER_ID, new TextEncoder().encode(clusterId))
    yield* stable.setUint64(KEY_CURRENT_TERM, 1)
    yield* logs.storeLogs([entry])
    return entry
  })

/**
 * Restores the node from its stores at start, before any fiber runs: the newest snapshot into the FSM, then the
 * log after it (a generator for node.ts's `make` to delegate to, so start-up runs the same steps as when this
 * was inline).
 */
export function* recover(node: NodeState) {
  const { fsm, logs, snapshots } = node
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
    node.lastSnapshotIndex = newest.index
    node.lastSnapshotTerm = newest.term
    node.latestConfiguration = newest.configuration
    node.latestConfigurationIndex = newest.configurationIndex
    node.committedConfiguration = newest.configuration
    node.committedConfigurationIndex = newest.configurationIndex
    node.appliedConfiguration = newest.configuration
    node.appliedConfigurationIndex = newest.configurationIndex
    node.commitIndex = newest.index
    node.dispatchedToFsm = newest.index
    node.appliedIndex = newest.index
    node.appliedTerm = newest.term
  }
  node.lastLogIndex = yield* logs.lastIndex
  const first = yield* logs.firstIndex
  if (newest !== undefined && node.lastLogIndex > 0) {
    // A log that ends before the snapshot, or disagrees with it at its index (a crash in the middle of
    // installing one), is superseded by it as a whole.
    const at = node.lastLogIndex >= newest.index && first <= newest.index
      ? yield* Effect.option(logs.getLog(newest.index))
      : Option.none()
    const superseded = node.lastLogIndex < newest.index ||
      (Option.isSome(at) && at.value.term !== newest.term)
    if (superseded) {
      yield* logs.deleteRange(first, node.lastLogIndex)
      node.lastLogIndex = 0
    }
  }
  if (node.lastLogIndex > 0 && node.lastLogIndex > node.lastSnapshotIndex) {
    const last = yield* logs.getLog(node.lastLogIndex).pipe(Effect.catchTag("LogNotFound", storageNotFound("open")))
    node.lastLogTerm = last.term
    const firstHeld = yield* logs.firstIndex
    if (firstHeld > node.lastSnapshotIndex + 1) {
      // Compacted entries are gone and no snapshot holds them (a snapshot lost or unreadable): starting would
      // serve a state machine missing committed entries. Refuse, and say what is missing.
      return yield* new StorageError({
        operation: "open",
        reason: `the log starts at ${firstHeld} but ${
          newest === undefined ? "there is no snapshot" : `the newest snapshot ends at ${newest.index}`
        }: entries ${node.lastSnapshotIndex + 1}..${firstHeld - 1} are in neither. ` +
          "Restore the missing snapshot, or treat this node as one that lost its data (rejoin it)"
      })
    }
    const from = Math.max(firstHeld, node.lastSnapshotIndex + 1)
    for (let index = from; index <= node.lastLogIndex; index++) {
      const entry = yield* logs.getLog(index).pipe(Effect.catchTag("LogNotFound", storageNotFound("open")))
      if (entry.type === "Configuration") {
        const decoded = Configuration.decode(entry.data)
        if (decoded === undefined) {
          return yield* new StorageError({ operation: "open", reason: `malformed configuration at ${index}` })
        }
        node.latestConfiguration = decoded
        node.latestConfigurationIndex = index
      }
    }
  } else {
    node.lastLogIndex = node.lastSnapshotIndex
    node.lastLogTerm = node.lastSnapshotTerm
  }
}

/** The `Bootstrap` event: `bootstrapCluster` on a running node that has no state yet. Run loop. */
export const handleBootstrap = (
  node: NodeState,
  configuration: Configuration.Configuration,
  deferred: Future<void, CantBootstrap | NotVoter | StorageError | RaftShutdown>
) =>
  Effect.gen(function*() {
    if (node.role !== "Follower" || node.lastLogIndex > 0 || node.currentTerm > 0) {
      deferred.done(Exit.fail(new CantBootstrap({ reason: "the node already has state" })))
      return
    }
    const result = yield* Effect.either(
      bootstrapStores(node.logs, node.stable, node.snapshots, configuration, node.localId, node.clusterId)
    )
    if (result._tag === "Left") {
      deferred.done(Exit.fail(result.left))
      return
    }
    node.currentTerm = 1
    node.lastLogIndex = 1
    node.lastLogTerm = 1
    node.latestConfiguration = configuration
    node.latestConfigurationIndex = 1
    deferred.done(Exit.void)
  })
