/**
 * Starting and stopping the simulated servers. A start builds a Raft node over the server's stores, its
 * transport on the memory network and a fresh state machine wrapped in a recorder: the recorder reports every
 * applied entry and every state it snapshots or restores to the invariants, and tags each snapshot with the
 * last command it includes. A stop closes the node's scope, as a crash: writes under way are lost.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Fsm from "../../Fsm.js"
import type * as Log from "../../Log.js"
import * as LogStore from "../../LogStore.js"
import * as Raft from "../../Raft.js"
import * as RaftConfig from "../../RaftConfig.js"
import { FsmError } from "../../RaftError.js"
import * as SnapshotStore from "../../SnapshotStore.js"
import * as StableStore from "../../StableStore.js"
import { Transport } from "../../Transport.js"
import { registerSyncApply, syncApplyOf } from "../syncForms.js"
import { digestBytes, FNV_OFFSET, type Invariants } from "./invariants.js"
import { withLateCopies } from "./lateCopies.js"
import type { SimCore, SimNode } from "./state.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The anchor's fast timers (÷10 of hashicorp's), under any tunables a run sets. */
export const fastTimers = {
  heartbeatTimeout: "100 millis",
  electionTimeout: "100 millis",
  leaderLeaseTimeout: "50 millis",
  commitTimeout: "5 millis"
} as const

/** Starts `node` on its stores, with a fresh state machine. */
export const startNode = (sim: SimCore, invariants: Invariants, node: SimNode): Effect.Effect<void> =>
  Effect.gen(function*() {
    node.incarnation++
    node.lastCommit = 0
    node.lastApplied = 0
    node.checkedCommit = 0
    const fsm = sim.fsm()
    node.fsm = fsm
    // `node.appliedThrough` is the last command index this state machine's state includes, applied or
    // restored. Each snapshot's bytes are prefixed with it (`<index>\n`), so it travels with the snapshot through
    // the store and InstallSnapshot, and a restore tells exactly which commands the state holds: entries a
    // snapshot covers must not be applied again, and none after it may be skipped.
    node.appliedThrough = 0
    const applyBatch = (logs: ReadonlyArray<Log.Log>) =>
      Effect.suspend(() => {
        invariants.noteApplied(node, logs)
        return fsm.applyBatch(logs)
      })
    const innerApply = sim.syncFsm ? syncApplyOf(fsm) : undefined
    const recording: Fsm.Fsm = {
      apply: (log) => Effect.map(applyBatch([log]), (responses) => responses[0]),
      applyBatch,
      snapshot: Effect.suspend(() => {
        const through = node.appliedThrough
        return Effect.map(fsm.snapshot, (snapshot): Fsm.FsmSnapshot => {
          sim.snapshotCounts.taken++
          // Digest the state's bytes as the node reads them: equal command indexes must hold equal states.
          let digest = FNV_OFFSET
          const state = Stream.mapChunks(snapshot.data, (chunks) => {
            for (const bytes of chunks) digest = digestBytes(digest, bytes)
            return chunks
          })
          return {
            data: Stream.succeed(encoder.encode(`${through}\n`)).pipe(
              Stream.concat(state),
              Stream.concat(
                Stream.drain(Stream.fromEffect(Effect.sync(() => invariants.noteState(node.id, through, digest))))
              )
            ),
            release: snapshot.release
          }
        })
      }),
      restore: (data) =>
        Effect.gen(function*() {
          const bytes = yield* Fsm.collect(data)
          const newline = bytes.indexOf(10)
          const through = newline < 0 ? Number.NaN : Number(decoder.decode(bytes.subarray(0, newline)))
          if (!Number.isInteger(through)) {
            return yield* new FsmError({ operation: "restore", reason: "snapshot bytes lack the simulator's header" })
          }
          yield* fsm.restore(Stream.succeed(bytes.subarray(newline + 1)))
          node.appliedThrough = through
          if (node.starting) sim.snapshotCounts.restoredAtStart++
          else sim.snapshotCounts.installed++
          sim.note(`${node.id} restores a snapshot through command ${through}${node.starting ? " at start" : ""}`)
        })
    }
    // A synchronous state machine applies without the runner when it waits (fsm.ts `handToFsm`), recorded alike.
    if (innerApply !== undefined) {
      registerSyncApply(recording, (logs) => {
        invariants.noteApplied(node, logs)
        return innerApply(logs)
      })
    }
    node.capture = Effect.gen(function*() {
      const through = node.appliedThrough
      const snapshot = yield* fsm.snapshot
      const bytes = yield* Effect.ensuring(Fsm.collect(snapshot.data), snapshot.release)
      return { through, bytes }
    }).pipe(Effect.orElseSucceed(() => undefined))
    const scope = yield* Scope.make()
    node.starting = true
    // Built on the server's own clock: the node reads its time from it, and its fibers sleep on it. `Raft.make`
    // over its services, not `Raft.layer`: a run starts a node several times, and building six layers (each memoized
    // and scoped) cost about a thousand runtime steps a start.
    const config = yield* RaftConfig.make({ localId: node.id, ...fastTimers, ...sim.config }).pipe(Effect.orDie)
    const raft = yield* Raft.make.pipe(
      Effect.provideService(RaftConfig.RaftConfigTag, config),
      Effect.provideService(Fsm.Fsm, recording),
      Effect.provideService(LogStore.LogStore, node.logs),
      Effect.provideService(StableStore.StableStore, node.stable),
      Effect.provideService(SnapshotStore.SnapshotStore, node.snapshots),
      Effect.provideService(Transport, withLateCopies(sim, node.id, sim.network.transport(node.id, node.address))),
      Scope.extend(scope),
      Effect.withClock(node.clock),
      Effect.ensuring(Effect.sync(() => {
        node.starting = false
      }))
    )
    node.raft = raft
    node.scope = scope
    const rebootAfterVote = sim.faultOptions.rebootAfterVote ?? 0
    if (rebootAfterVote > 0) {
      // Targeted crash: right after a granted vote, sometimes, reboot the voter on its stores.
      yield* raft.observe.pipe(
        Stream.filter((o) => o._tag === "RequestVote" && o.granted),
        Stream.runForEach(() =>
          Effect.gen(function*() {
            if (sim.chaosOver || node.raft !== raft || (yield* Random.next) >= rebootAfterVote) return
            sim.faults.rebootAfterVote = (sim.faults.rebootAfterVote ?? 0) + 1
            sim.note(`reboot ${node.id} after it granted a vote`)
            yield* Effect.zipRight(stopNode(sim, node), startNode(sim, invariants, node)).pipe(
              Effect.forkIn(sim.rootScope)
            )
          })
        ),
        Effect.forkIn(scope)
      )
    }
  }).pipe(Effect.orDie)

/** Stops `node` as a crash: its scope closes, and a write under way on its disk is lost. */
export const stopNode = (sim: SimCore, node: SimNode): Effect.Effect<void> =>
  Effect.gen(function*() {
    const scope = node.scope
    if (scope === undefined) return
    node.scope = undefined
    node.raft = undefined
    node.fsm = undefined
    sim.crashes.set(node.id, (sim.crashes.get(node.id) ?? 0) + 1)
    yield* Scope.close(scope, Exit.void)
  })
