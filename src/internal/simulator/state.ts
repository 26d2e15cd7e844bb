/**
 * What one simulated run shares between its modules: one plain mutable record, `Sim`, handed to every function
 * as its first argument (the clock, the trace, the first violation, the nodes, the network, the client history
 * and the run's phase flags). It is written only from the run's own fibers and from the driver loop between
 * steps, never concurrently: the run is single-threaded.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import type * as Configuration from "../../Configuration.js"
import type * as Fsm from "../../Fsm.js"
import type * as LogStore from "../../LogStore.js"
import type * as Raft from "../../Raft.js"
import type * as RaftConfig from "../../RaftConfig.js"
import type { RequestVoteRequest } from "../../Rpc.js"
import type * as SnapshotStore from "../../SnapshotStore.js"
import type * as StableStore from "../../StableStore.js"
import type * as Linearizability from "../../testing/Linearizability.js"
import type * as MemoryNetwork from "../../transport/MemoryNetwork.js"
import { type SkewedClock, VirtualClock } from "./clock.js"
import type { LogView } from "./logView.js"
import type { FaultOptions, Violation, Workload } from "./types.js"

/** One server of the simulated cluster: its stores outlive its incarnations (crashes and restarts). */
export interface SimNode {
  readonly id: string
  readonly address: string
  readonly logs: LogStore.LogStore
  /** What `logs` holds, readable without an effect. */
  readonly view: LogView
  readonly stable: StableStore.StableStore
  readonly snapshots: SnapshotStore.SnapshotStore
  raft: Raft.Raft | undefined
  /** The workload's state machine of the current incarnation (the one its reads look at). */
  fsm: Fsm.Fsm | undefined
  /** The server's own clock: the run's virtual time, at a rate the `clockSkew` fault may change. */
  readonly clock: SkewedClock
  scope: Scope.CloseableScope | undefined
  incarnation: number
  /** The last command index the current state machine's state includes (applied, or restored from a snapshot). */
  appliedThrough: number
  /** Captures the current state machine's state (undefined if it takes no snapshots). */
  capture: Effect.Effect<{ readonly through: number; readonly bytes: Uint8Array } | undefined>
  /** True while the node's layer is being built (a restore then is the one from its own snapshot store). */
  starting: boolean
  // per incarnation, for the monotonic checks
  lastCommit: number
  lastApplied: number
  checkedCommit: number
  lastState: Raft.RaftState
}

/**
 * Runs an effect that needs nothing asynchronous (a memory store's read, a node's stats) to its value. The checks
 * read every node's stats after every timer event, and `Effect.runSync` costs a fiber each time (a third of a
 * run's fibers): an `Effect.sync` (what `stats`, `state` and the memory stores' reads are) has its function called
 * directly instead. That reads a field of Effect 3's primitive, which is not public API; any other effect, or
 * a primitive of another shape, still goes through `Effect.runSync`, so the result is the same either way.
 */
export const sync = <A>(effect: Effect.Effect<A, unknown>): A => {
  const primitive = effect as unknown as { readonly _op?: unknown; readonly effect_instruction_i0?: unknown }
  return primitive._op === "Sync" && typeof primitive.effect_instruction_i0 === "function"
    ? (primitive.effect_instruction_i0 as () => A)()
    : Effect.runSync(effect)
}

/** What a run is built from. */
export interface Setup {
  readonly faultOptions: FaultOptions
  readonly size: number
  readonly diskLatency: readonly [min: number, max: number]
  readonly syncFsm: boolean
  readonly config: Omit<RaftConfig.Input, "localId">
  readonly network: MemoryNetwork.MemoryNetwork
  readonly configuration: Configuration.Configuration
  readonly fsm: () => Fsm.Fsm
  /** How the workload's reads run. */
  readonly reads?: "log" | "readIndex" | undefined
  /** How long a client waits for an operation. */
  readonly clientTimeoutMillis?: number | undefined
}

/** The state of one run that does not depend on the workload's types. */
export class SimCore {
  readonly clock = new VirtualClock()
  readonly scheduler = new Scheduler.ControlledScheduler()
  /** The last lines of the run's trace. */
  readonly trace: Array<string> = []
  readonly faults: Record<string, number> = {}
  readonly counts = { ok: 0, unknown: 0, refused: 0 }
  readonly snapshotCounts = { taken: 0, restoredAtStart: 0, installed: 0 }
  readonly readCounts = { leader: 0, follower: 0, lease: 0, readIndex: 0, failed: 0 }
  /** The first broken property; the run stops at it. */
  violation: Violation | undefined = undefined
  /** Crashes per node so far: a write under way when the count moves is lost. */
  readonly crashes = new Map<string, number>()
  /** Senders all of whose requests are copied late until a virtual time, and how late (`lateCopies.ts`). */
  readonly lateCopyBursts = new Map<string, { readonly until: number; readonly delay: readonly [number, number] }>()
  /** The RequestVote each node sent, by term (with the `doubleVote` fault only; `lateCopies.ts`). */
  readonly sentVotes = new Map<string, Map<number, RequestVoteRequest>>()
  /** Set once `nodes` is built. */
  nodes: ReadonlyArray<SimNode> = []
  /** The scope of the whole run, for fibers that outlive the one that starts them. */
  rootScope: Scope.Scope = undefined as unknown as Scope.Scope
  /** The clients stop at their next turn. */
  stopping = false
  /** The faulty phase is over: no more targeted reboots. */
  chaosOver = false
  /** Sequence number from which every operation must complete (the calm phase after healing). */
  calmFrom = Infinity
  readonly faultOptions: FaultOptions
  readonly size: number
  /** Virtual time a disk write takes, drawn in [min, max] ms. */
  readonly diskLatency: readonly [min: number, max: number]
  /** Whether the nodes' state machines apply synchronously, when the workload's can (`Options.syncFsm`). */
  readonly syncFsm: boolean
  /** Raft tunables over the simulator's fast timers. */
  readonly config: Omit<RaftConfig.Input, "localId">
  readonly network: MemoryNetwork.MemoryNetwork
  readonly configuration: Configuration.Configuration
  /** A fresh state machine, for every start of a node. */
  readonly fsm: () => Fsm.Fsm
  readonly reads: "log" | "readIndex"
  readonly clientTimeoutMillis: number
  private sequence = 0

  constructor(setup: Setup) {
    this.faultOptions = setup.faultOptions
    this.size = setup.size
    this.diskLatency = setup.diskLatency
    this.syncFsm = setup.syncFsm
    this.config = setup.config
    this.network = setup.network
    this.configuration = setup.configuration
    this.fsm = setup.fsm
    this.reads = setup.reads ?? "log"
    this.clientTimeoutMillis = setup.clientTimeoutMillis ?? 500
  }

  /** Adds a line to the trace, which keeps the last 60. */
  note(line: string): void {
    this.trace.push(`t=${this.clock.now} ${line}`)
    if (this.trace.length > 60) this.trace.shift()
  }

  /** Records the first violation (later ones are consequences). */
  violate(property: Violation["property"], detail: string): void {
    if (this.violation === undefined) {
      this.violation = { property, atMillis: this.clock.now, detail }
      this.note(`VIOLATION ${property}: ${detail}`)
    }
  }

  /** The next point of the clients' logical time (calls and returns of operations). */
  nextSeq(): number {
    return ++this.sequence
  }

  /** The nodes that run now. */
  running(): Array<SimNode> {
    return this.nodes.filter((n) => n.raft !== undefined)
  }

  /** The running leader of the highest term, if any. */
  currentLeader(): SimNode | undefined {
    let best: { node: SimNode; term: number } | undefined
    for (const node of this.running()) {
      if (sync(node.raft!.state) !== "Leader") continue
      const term = sync(node.raft!.currentTerm)
      if (best === undefined || term > best.term) best = { node, term }
    }
    return best?.node
  }
}

/** The state of one run, with its workload. */
export class Sim<State, Input, Output> extends SimCore {
  readonly history: Array<Linearizability.Operation<Input, Output>> = []
  readonly workload: Workload<State, Input, Output>

  constructor(setup: Omit<Setup, "fsm">, workload: Workload<State, Input, Output>) {
    super({ ...setup, fsm: workload.fsm })
    this.workload = workload
  }
}
