/**
 * Recovering a cluster from a lost quorum (hashicorp's RecoverCluster), on
 * the stores of a stopped node: everything the node holds — its newest
 * snapshot, then every log entry after it, committed or not — is applied to
 * a state machine, captured as a new snapshot that records the configuration
 * given, and the log is deleted. Started on those stores, the node knows only
 * that configuration: alone in it, it elects itself, and new servers join it
 * as usual. The term and vote stay as they were, so the node never votes
 * twice in a term it already voted in.
 *
 * The entries not yet committed when the cluster was lost become committed:
 * once a quorum is gone, which of them were is not known, so this is the best
 * the survivor can do.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Configuration from "../Configuration.js"
import type { Fsm } from "../Fsm.js"
import type * as Log from "../Log.js"
import type { LogStore } from "../LogStore.js"
import { CantRecover, type FsmError, StorageError } from "../RaftError.js"
import type { SnapshotMeta, SnapshotStore } from "../SnapshotStore.js"
import type { StableStore } from "../StableStore.js"
import { hasExistingState } from "./bootstrap.js"
import { storageNotFound } from "./state.js"

/** Entries read and applied at a time. */
const BATCH = 1024

/** Rewrites the stores of a stopped node so that it starts as a member of `configuration` only; see the module comment. */
export const recoverCluster = (
  stores: {
    readonly fsm: Fsm
    readonly logs: LogStore
    readonly stable: StableStore
    readonly snapshots: SnapshotStore
  },
  configuration: Configuration.Configuration
): Effect.Effect<SnapshotMeta, CantRecover | FsmError | StorageError> =>
  Effect.gen(function*() {
    const { fsm, logs, snapshots, stable } = stores
    const problem = Configuration.check(configuration)
    if (problem !== undefined) return yield* new CantRecover({ reason: problem })
    if (Configuration.votersOf(configuration).length === 0) {
      return yield* new CantRecover({ reason: "the configuration has no voter" })
    }
    // No state is most likely the wrong directory: a new cluster is bootstrapped, not recovered.
    if (!(yield* hasExistingState(logs, stable, snapshots))) {
      return yield* new CantRecover({ reason: "the stores hold no state (a new cluster is bootstrapped instead)" })
    }
    let lastIndex = 0
    let lastTerm = 0
    const newest = (yield* snapshots.list)[0]
    if (newest !== undefined) {
      const opened = yield* snapshots.open(newest.id).pipe(
        Effect.catchTag("SnapshotNotFound", (error) =>
          Effect.fail(new StorageError({ operation: "open", reason: error.reason, cause: error })))
      )
      yield* fsm.restore(opened.data)
      lastIndex = newest.index
      lastTerm = newest.term
    }
    const first = yield* logs.firstIndex
    const last = yield* logs.lastIndex
    // A log that disagrees with the snapshot at its index (a crash while installing it) is superseded by it, as
    // at a node's start (bootstrap.ts).
    const superseded = newest !== undefined && first > 0 && first <= newest.index && last >= newest.index &&
      Option.exists(yield* Effect.option(logs.getLog(newest.index)), (entry) => entry.term !== newest.term)
    if (last > lastIndex && !superseded) {
      if (first > lastIndex + 1) {
        return yield* new CantRecover({
          reason: `the log starts at ${first} but ${
            newest === undefined ? "there is no snapshot" : `the newest snapshot ends at ${lastIndex}`
          }: entries ${lastIndex + 1}..${first - 1} are in neither`
        })
      }
      for (let from = lastIndex + 1; from <= last; from += BATCH) {
        const entries = yield* logs.getLogs(from, Math.min(last, from + BATCH - 1)).pipe(
          Effect.catchTag("LogNotFound", storageNotFound("read"))
        )
        const commands: Array<Log.Log> = []
        for (const entry of entries) if (entry.type === "Command") commands.push(entry)
        if (commands.length > 0) yield* fsm.applyBatch(commands)
        const end = entries[entries.length - 1]
        if (end !== undefined) {
          lastIndex = end.index
          lastTerm = end.term
        }
      }
    }
    if (lastIndex === 0) {
      return yield* new CantRecover({ reason: "the stores hold a term but no log entry or snapshot to recover" })
    }
    // The configuration is in force from the snapshot's index: nothing in the log before it counts any more.
    const captured = yield* fsm.snapshot
    const meta = yield* Stream.run(
      captured.data,
      snapshots.create({ index: lastIndex, term: lastTerm, configuration, configurationIndex: lastIndex })
    ).pipe(Effect.ensuring(captured.release))
    if (last > 0 && first > 0) yield* logs.deleteRange(first, last)
    return meta
  })
