/**
 * Deterministic simulation of a whole cluster in one runtime.
 *
 * Time is virtual: a `Clock` whose `sleep` files a timer in a heap, and a
 * driver loop that runs every ready fiber (Effect's `ControlledScheduler`)
 * and then jumps straight to the next due timer. Everything random — election
 * timeouts, message delays and losses, the fault schedule, the client
 * workload — comes from one seeded `Random`, so a seed replays event for
 * event. Nodes run on the memory stores and the memory network.
 *
 * After every timer event the Raft safety properties are checked: at most one
 * leader per term, log matching, leader completeness, state-machine safety,
 * and commit/applied indexes that never go backwards. At the end the faults
 * heal, a leader must appear and a last write must commit within a stated
 * bound, and the client history of the key-value workload is checked for
 * linearizability.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Scheduler from "effect/Scheduler"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../Configuration.js"
import * as Fsm from "../Fsm.js"
import { type Bugs, InjectedBugs } from "../internal/bugs.js"
import type * as Log from "../Log.js"
import * as LogStore from "../LogStore.js"
import * as Raft from "../Raft.js"
import type * as RaftConfig from "../RaftConfig.js"
import { FsmError, StorageError } from "../RaftError.js"
import * as SnapshotStore from "../SnapshotStore.js"
import * as StableStore from "../StableStore.js"
import * as MemoryNetwork from "../transport/MemoryNetwork.js"
import * as Linearizability from "./Linearizability.js"

// ---------------------------------------------------------------------------
// Virtual time

interface Timer {
  readonly at: number
  readonly seq: number
  readonly resume: () => void
  alive: boolean
}

/** A `Clock` over virtual milliseconds; `sleep` files a timer that the driver fires. */
class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  now = 0
  private seq = 0
  private readonly heap: Array<Timer> = []

  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }
  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.now)
  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const millis = Duration.toMillis(duration)
    return Effect.async<void>((resume) => {
      const timer: Timer = { at: this.now + Math.max(0, millis), seq: this.seq++, resume: () => resume(Effect.void), alive: true }
      this.push(timer)
      return Effect.sync(() => {
        timer.alive = false
      })
    })
  }

  /** The earliest live timer, removed from the heap. */
  next(): Timer | undefined {
    while (this.heap.length > 0) {
      const top = this.pop()
      if (top.alive) return top
    }
    return undefined
  }

  private less(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  private push(timer: Timer): void {
    const heap = this.heap
    heap.push(timer)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(heap[i]!, heap[parent]!)) break
      ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
      i = parent
    }
  }
  private pop(): Timer {
    const heap = this.heap
    const top = heap[0]!
    const last = heap.pop()!
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < heap.length && this.less(heap[l]!, heap[m]!)) m = l
        if (r < heap.length && this.less(heap[r]!, heap[m]!)) m = r
        if (m === i) break
        ;[heap[i], heap[m]] = [heap[m]!, heap[i]!]
        i = m
      }
    }
    return top
  }
}

// ---------------------------------------------------------------------------
// Options and results

/** How often and which faults the nemesis injects. */
export interface FaultOptions {
  /** Virtual time between two faults, drawn in [min, max] ms. */
  readonly intervalMillis: readonly [min: number, max: number]
  /** Relative weights of each fault; 0 disables it. */
  readonly weights: {
    readonly partition: number
    readonly isolateLeader: number
    readonly oneWay: number
    /** Cuts the link between two nodes both ways (the rest still reach both: a bridge). */
    readonly cutLink: number
    readonly crash: number
    readonly restart: number
    /** A crash followed at once by a restart on the same stores. */
    readonly reboot: number
    readonly heal: number
    readonly lossyLinks: number
    /**
     * Through the leader, removes a follower from the configuration (`removeServer`), or, when one is out, adds
     * it back (`addVoter`). Off (absent) in `defaultFaults`; after healing, every node is added back.
     */
    readonly membership?: number | undefined
  }
  /** The link conditions `lossyLinks` switches on (off again on heal). */
  readonly lossy: MemoryNetwork.LinkConditions
  /** Probability that a node reboots right after granting a vote (a targeted crash); 0 by default. */
  readonly rebootAfterVote?: number | undefined
  /** Conditions of every link from the start (delays and reordering); none by default. */
  readonly baseline?: MemoryNetwork.LinkConditions | undefined
}

/** One simulated run. */
export interface Options<State = Linearizability.KvState, Input = KvInput, Output = KvOutput> {
  readonly seed: number
  /** Nodes in the cluster, 1..7. */
  readonly nodes: number
  /** Virtual duration of the faulty phase, ms. */
  readonly durationMillis: number
  /** Concurrent clients of the workload. */
  readonly clients?: number | undefined
  /** Keys the default key-value workload touches. */
  readonly keys?: number | undefined
  /** The clients' commands, state machine and model; the key-value workload by default. */
  readonly workload?: Workload<State, Input, Output> | undefined
  /** After healing and a first commit, virtual time during which every client operation must complete. */
  readonly calmMillis?: number | undefined
  readonly faults?: FaultOptions | undefined
  /** Raft tunables; the anchor's fast timers (÷10 of hashicorp's) by default. */
  readonly config?: Omit<RaftConfig.Input, "localId"> | undefined
  /** After healing, virtual time within which a leader must commit a write. */
  readonly livenessBoundMillis?: number | undefined
  /** Full log-matching scans every this many events (cheap checks run after every event). */
  readonly fullCheckEvery?: number | undefined
  /**
   * Virtual time a disk write takes, drawn in [min, max] ms per `storeLogs` and per term or vote write ([0, 2] by
   * default; [0, 0] for none).
   * A node that crashes while a write is under way loses it: the write fails and nothing reaches the store, as
   * an unsynced write is lost to a power cut. So a leader's write overlapping its followers' is exercised, and an
   * acknowledgement of a write that never became durable shows up as a lost entry.
   */
  readonly diskLatencyMillis?: readonly [min: number, max: number] | undefined
  /** Test-only: rules to break, to show the checks catch them. */
  readonly bugs?: Bugs | undefined
  /** Safety stop: most timer events in one run. */
  readonly maxEvents?: number | undefined
}

/** A broken property. */
export interface Violation {
  readonly property:
    | "election safety"
    | "log matching"
    | "leader completeness"
    | "state-machine safety"
    | "monotonic commit"
    | "monotonic apply"
    | "liveness"
    | "linearizability"
    | "deadlock"
    | "crash"
  readonly atMillis: number
  readonly detail: string
}

/** What a run did and found. */
export interface Result {
  readonly seed: number
  readonly ok: boolean
  readonly violation: Violation | undefined
  /** The last lines of the run's trace (faults, leader changes, the violation). */
  readonly trace: ReadonlyArray<string>
  readonly events: number
  readonly virtualMillis: number
  readonly faults: Readonly<Record<string, number>>
  readonly operations: { readonly ok: number; readonly unknown: number; readonly refused: number }
  readonly leadersElected: number
  /** Snapshots the state machines took, restored when their node started, and installed from a leader while running. */
  readonly snapshots: { readonly taken: number; readonly restoredAtStart: number; readonly installed: number }
  readonly linearizability: "Linearizable" | "NotLinearizable" | "Unknown" | "skipped"
}

/** Faults of every kind, on a cluster that must survive them (defaults of `run`). */
export const defaultFaults: FaultOptions = {
  intervalMillis: [50, 400],
  weights: {
    partition: 3,
    isolateLeader: 3,
    oneWay: 1,
    cutLink: 1,
    crash: 3,
    restart: 4,
    reboot: 2,
    heal: 3,
    lossyLinks: 2
  },
  lossy: { minDelayMillis: 0, maxDelayMillis: 20, dropRate: 0.2, duplicateRate: 0.1 },
  baseline: { minDelayMillis: 0, maxDelayMillis: 3, dropRate: 0, duplicateRate: 0 }
}

/**
 * Raft tunables that make nodes snapshot and compact every few dozen entries, keeping only a few behind: with
 * them (`config: frequentSnapshots`), crashes restart from snapshots and lagging followers need InstallSnapshot.
 */
export const frequentSnapshots: Omit<RaftConfig.Input, "localId"> = {
  snapshotThreshold: 24,
  snapshotInterval: "25 millis",
  trailingLogs: 8
}

// ---------------------------------------------------------------------------
// The key-value state machine of the workload

/** A command of the key-value workload. */
export type KvInput = Linearizability.KvInput
/** What a key-value command answers. */
export type KvOutput = Linearizability.KvOutput

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A key-value map as an `Fsm`, over JSON-encoded commands, with snapshots of the whole map. */
export const kvFsm = (): Fsm.Fsm & { readonly data: Map<string, string> } => {
  const data = new Map<string, string>()
  const apply = (log: Log.Log): KvOutput => {
    const input = JSON.parse(decoder.decode(log.data)) as KvInput
    switch (input.op) {
      case "put":
        data.set(input.key, input.value)
        return { ok: true }
      case "delete":
        data.delete(input.key)
        return { ok: true }
      case "get":
        return { value: data.get(input.key) }
      case "cas": {
        if (data.get(input.key) !== input.expected) return { ok: false }
        data.set(input.key, input.value)
        return { ok: true }
      }
    }
  }
  // A snapshot is the map as JSON pairs in key order, so equal states give equal bytes.
  const save = () => encoder.encode(JSON.stringify(Array.from(data).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
  const load = (bytes: Uint8Array) => {
    data.clear()
    for (const [key, value] of JSON.parse(decoder.decode(bytes)) as Array<[string, string]>) data.set(key, value)
  }
  return { ...Fsm.fromFunction(apply, { save, load }), data }
}

/**
 * What the clients of a run do and how their history is judged: bring your
 * own state machine and a sequential model of it, and the simulator runs it
 * under the same faults and checks (safety of the log, then linearizability
 * of the history against `model`).
 */
export interface Workload<State, Input, Output> {
  /**
   * A fresh state machine, for every start and restart of a node. If it takes snapshots, equal states must give
   * equal bytes: the simulator compares the states of nodes that applied the same commands (through snapshots).
   */
  readonly fsm: () => Fsm.Fsm
  /** The sequential specification the history must be linearizable against. */
  readonly model: Linearizability.Model<State, Input, Output>
  /** A client's next command, drawn with `Random`; `history` holds what was recorded so far. */
  readonly next: (context: {
    readonly client: number
    readonly step: number
    readonly history: ReadonlyArray<Linearizability.Operation<Input, Output>>
  }) => Effect.Effect<Input>
  /** The bytes `apply` carries for a command. */
  readonly encode: (input: Input) => Uint8Array
  /** The model's output for what the FSM answered. */
  readonly output: (response: unknown) => Output
}

/** The key-value workload over `kv` keys: put, get, compare-and-set and delete, checked against `kvModel`. */
export const kvWorkload = (
  keys = 3
): Workload<Linearizability.KvState, KvInput, KvOutput> => ({
  fsm: kvFsm,
  model: Linearizability.kvModel,
  next: ({ client, history, step }) =>
    Effect.gen(function*() {
      const key = `k${yield* Random.nextIntBetween(0, Math.max(1, keys))}`
      const roll = yield* Random.nextIntBetween(0, 10)
      const value = `c${client}-${step}`
      if (roll < 4) return { op: "put", key, value } as const
      if (roll < 7) return { op: "get", key } as const
      if (roll < 9) {
        // Expect the last value written to the key, so that some compare-and-sets succeed.
        let expected: string | undefined
        for (let i = history.length - 1; i >= 0; i--) {
          const input = history[i]!.input
          if (input.key === key && input.op !== "get") {
            expected = input.op === "delete" ? undefined : input.value
            break
          }
        }
        return { op: "cas", key, expected, value } as const
      }
      return { op: "delete", key } as const
    }),
  encode: (input) => encoder.encode(JSON.stringify(input)),
  output: (response) => response as KvOutput
})

// ---------------------------------------------------------------------------
// The run

interface SimNode {
  readonly id: string
  readonly address: string
  readonly logs: LogStore.LogStore
  readonly stable: StableStore.StableStore
  readonly snapshots: SnapshotStore.SnapshotStore
  raft: Raft.Raft | undefined
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

const fastTimers = {
  heartbeatTimeout: "100 millis",
  electionTimeout: "100 millis",
  leaderLeaseTimeout: "50 millis",
  commitTimeout: "5 millis"
} as const

/** Runs one seed to the end (or to its first violation), synchronously, in virtual time. */
export const run = <State = Linearizability.KvState, Input = KvInput, Output = KvOutput>(
  options: Options<State, Input, Output>
): Result => {
  const workload = (options.workload ?? kvWorkload(options.keys ?? 3)) as unknown as Workload<State, Input, Output>
  const clock = new VirtualClock()
  const scheduler = new Scheduler.ControlledScheduler()
  const trace: Array<string> = []
  const note = (line: string) => {
    trace.push(`t=${clock.now} ${line}`)
    if (trace.length > 60) trace.shift()
  }
  const faults: Record<string, number> = {}
  const counts = { ok: 0, unknown: 0, refused: 0 }
  const history: Array<Linearizability.Operation<Input, Output>> = []
  let sequence = 0
  const nextSeq = () => ++sequence
  let violation: Violation | undefined
  const violate = (property: Violation["property"], detail: string) => {
    if (violation === undefined) {
      violation = { property, atMillis: clock.now, detail }
      note(`VIOLATION ${property}: ${detail}`)
    }
  }

  const size = Math.max(1, Math.min(7, options.nodes))
  // Log matching, checked on every write. An (index, term) pair names one entry forever (one leader per term
  // appends at an index once), so every log holding it must hold the same entry there, and the same term just
  // before it. By induction over the indices, two logs that hold the same (index, term) then agree on every
  // entry before it that both still hold: the Log Matching property. Checking neighbours only keeps the check
  // correct when a log is compacted or starts after a snapshot (whose index and term stand for the entry before).
  const entryOf = new Map<string, { readonly node: string; readonly key: string }>()
  const prevTermOf = new Map<string, { readonly node: string; readonly term: number }>()
  const noteEntry = (id: string, entry: Log.Log, prevTerm: number | undefined) => {
    const at = `${entry.index}/${entry.term}`
    const key = entryKey(entry)
    const known = entryOf.get(at)
    if (known === undefined) entryOf.set(at, { node: id, key })
    else if (known.key !== key) {
      violate("log matching", `${known.node} and ${id} hold different entries at ${at}`)
      return
    }
    if (prevTerm === undefined) return
    const before = prevTermOf.get(at)
    if (before === undefined) prevTermOf.set(at, { node: id, term: prevTerm })
    else if (before.term !== prevTerm) {
      violate(
        "log matching",
        `${before.node} and ${id} both hold ${at} but differ before it (term ${before.term} vs ${prevTerm} at ${entry.index - 1})`
      )
    }
  }
  /** The term of the entry before `index` in a log (held, or covered by a snapshot ending there), if known. */
  const termBefore = (logs: LogStore.LogStore, snapshots: SnapshotStore.SnapshotStore, index: number) =>
    Effect.gen(function*() {
      if (index <= 1) return 0
      const held = Option.getOrUndefined(yield* Effect.option(logs.getLog(index - 1)))
      if (held !== undefined) return held.term
      const covering = (yield* Effect.orDie(snapshots.list)).find((meta) => meta.index === index - 1)
      return covering?.term
    })
  const [diskMin, diskMax] = options.diskLatencyMillis ?? [0, 2]
  /** Crashes per node so far: a write under way when the count moves is lost. */
  const crashes = new Map<string, number>()
  /** A write to node `id`'s disk: it takes virtual time, and is lost (fails) if the node crashes meanwhile. */
  const durable = (id: string, operation: string, write: Effect.Effect<void, StorageError>): Effect.Effect<void, StorageError> =>
    diskMax <= 0 ? write : Effect.gen(function*() {
      const crashesBefore = crashes.get(id) ?? 0
      yield* Effect.sleep(yield* Random.nextIntBetween(diskMin, diskMax + 1))
      if ((crashes.get(id) ?? 0) !== crashesBefore) {
        return yield* new StorageError({ operation, reason: "the node crashed before the write was synced" })
      }
      yield* write
    })
  const slowStableStore = (id: string): StableStore.StableStore => {
    const inner = StableStore.makeMemory()
    return {
      ...inner,
      set: (key, value) => durable(id, "set", inner.set(key, value)),
      setUint64: (key, value) => durable(id, "setUint64", inner.setUint64(key, value))
    }
  }
  const trackedLogStore = (id: string, snapshots: SnapshotStore.SnapshotStore): LogStore.LogStore => {
    const inner = LogStore.makeMemory()
    const check = (logs: ReadonlyArray<Log.Log>) =>
      Effect.gen(function*() {
        if (logs.length === 0) return
        let prevTerm = yield* termBefore(inner, snapshots, logs[0]!.index)
        for (const entry of logs) {
          noteEntry(id, entry, prevTerm)
          prevTerm = entry.term
        }
        // An entry kept after the batch now follows the batch's last entry.
        const last = logs[logs.length - 1]!
        const next = Option.getOrUndefined(yield* Effect.option(inner.getLog(last.index + 1)))
        if (next !== undefined) noteEntry(id, next, last.term)
      })
    return {
      ...inner,
      storeLogs: (logs) => durable(id, "storeLogs", inner.storeLogs(logs)).pipe(Effect.tap(() => check(logs)))
    }
  }
  const nodes: Array<SimNode> = Array.from({ length: size }, (_, i) => {
    const id = `n${i + 1}`
    const snapshots = SnapshotStore.makeMemory()
    return {
      id,
      address: `mem://${id}`,
      logs: trackedLogStore(id, snapshots),
      stable: slowStableStore(id),
      snapshots,
      raft: undefined,
      scope: undefined,
      incarnation: 0,
      appliedThrough: 0,
      capture: Effect.succeed(undefined),
      starting: false,
      lastCommit: 0,
      lastApplied: 0,
      checkedCommit: 0,
      lastState: "Follower"
    }
  })
  const network = MemoryNetwork.make({ rpcTimeoutMillis: 200 })
  const configuration = Configuration.voters(nodes.map((n) => [n.id, n.address] as const))
  const faultOptions = options.faults ?? defaultFaults

  // ---- what the checks remember
  const leaderOfTerm = new Map<number, string>()
  const committed = new Map<number, string>() // index -> "term/type/data"
  const appliedAt = new Map<number, string>() // index -> command, across all FSMs
  let leadersElected = 0
  const snapshotCounts = { taken: 0, restoredAtStart: 0, installed: 0 }
  const entryKey = (log: Log.Log) => `${log.term}/${log.type}/${decoder.decode(log.data)}`
  const sync = <A>(effect: Effect.Effect<A, unknown>): A => Effect.runSync(effect)
  const entryAt = (node: SimNode, index: number): Log.Log | undefined =>
    Option.getOrUndefined(sync(Effect.option(node.logs.getLog(index))))
  /** A command between `from` and `to` (both exclusive) that `node`'s state machine should have applied, if any. */
  const skippedCommand = (node: SimNode, from: number, to: number): number | undefined => {
    for (let index = from + 1; index < to; index++) {
      const key = committed.get(index)
      const type = key !== undefined ? key.split("/")[1] : entryAt(node, index)?.type
      if (type === "Command") return index
    }
    return undefined
  }
  // The digest of each state machine state seen (snapshots the nodes took, and every node's state at the end),
  // by the last command index it includes: two states after the same commands must be equal.
  const stateAt = new Map<number, { readonly node: string; readonly digest: number }>()
  const noteState = (id: string, through: number, digest: number) => {
    const known = stateAt.get(through)
    if (known === undefined) stateAt.set(through, { node: id, digest })
    else if (known.digest !== digest) {
      violate("state-machine safety", `${known.node} and ${id} hold different states after command ${through}`)
    }
  }
  const newestSnapshot = (node: SimNode): SnapshotStore.SnapshotMeta | undefined => sync(node.snapshots.list)[0]
  const snapshotIndexOf = (node: SimNode): number => newestSnapshot(node)?.index ?? 0

  const checkStep = () => {
    for (const node of nodes) {
      if (node.raft === undefined) continue
      const stats = sync(node.raft.stats)
      if (stats.state !== node.lastState) {
        if (node.lastState === "Leader") note(`${node.id} steps down in term ${stats.term} (now ${stats.state})`)
        node.lastState = stats.state
      }
      if (stats.state === "Shutdown") continue
      if (stats.commitIndex < node.lastCommit) {
        violate("monotonic commit", `${node.id} commit index went from ${node.lastCommit} to ${stats.commitIndex}`)
      }
      if (stats.appliedIndex < node.lastApplied) {
        violate("monotonic apply", `${node.id} applied index went from ${node.lastApplied} to ${stats.appliedIndex}`)
      }
      node.lastCommit = stats.commitIndex
      node.lastApplied = stats.appliedIndex
      // Everything a node holds as committed must be the same everywhere.
      let checkedTo = stats.commitIndex
      for (let index = node.checkedCommit + 1; index <= stats.commitIndex; index++) {
        const entry = entryAt(node, index)
        if (entry === undefined) {
          // Compacted entries are covered by the node's snapshot; any other gap is a violation.
          if (index <= snapshotIndexOf(node)) continue
          // A leader's own write may still be under way (it commits through its followers' copies meanwhile,
          // Raft thesis §10.2.1): check this entry once it is written.
          if (stats.state === "Leader" && index > sync(node.logs.lastIndex)) {
            checkedTo = index - 1
            break
          }
          violate("leader completeness", `${node.id} committed ${index} but does not hold it`)
          break
        }
        const key = entryKey(entry)
        const known = committed.get(index)
        if (known === undefined) committed.set(index, key)
        else if (known !== key) {
          violate("state-machine safety", `index ${index} committed as ${known} and as ${key} (on ${node.id})`)
        }
      }
      node.checkedCommit = Math.max(node.checkedCommit, checkedTo)
      if (stats.state === "Leader") {
        const holder = leaderOfTerm.get(stats.term)
        if (holder === undefined) {
          leaderOfTerm.set(stats.term, node.id)
          leadersElected++
          note(`${node.id} leads term ${stats.term} (last log ${stats.lastLogIndex}, commit ${stats.commitIndex})`)
          // A new leader must hold every entry committed before it.
          const snapshot = newestSnapshot(node)
          for (const [index, key] of committed) {
            const entry = entryAt(node, index)
            if (entry === undefined && snapshot !== undefined && index <= snapshot.index) {
              // Covered by the leader's snapshot, which must at least end on the committed entry's term.
              if (index === snapshot.index && !key.startsWith(`${snapshot.term}/`)) {
                violate(
                  "leader completeness",
                  `${node.id}, leader of term ${stats.term}, has a snapshot ending at ${index} in term ` +
                    `${snapshot.term}, but ${key} was committed there`
                )
                break
              }
              continue
            }
            if (entry === undefined || entryKey(entry) !== key) {
              violate(
                "leader completeness",
                `${node.id}, leader of term ${stats.term}, lacks committed entry ${index} (${key})`
              )
              break
            }
          }
        } else if (holder !== node.id) {
          violate("election safety", `${holder} and ${node.id} both lead term ${stats.term}`)
        }
      }
    }
  }

  const checkLogMatching = () => {
    for (const node of nodes) {
      const first = sync(node.logs.firstIndex)
      const last = sync(node.logs.lastIndex)
      if (first === 0) continue
      let prevTerm = sync(termBefore(node.logs, node.snapshots, first))
      for (let index = first; index <= last; index++) {
        const entry = entryAt(node, index)
        if (entry === undefined) break
        noteEntry(node.id, entry, prevTerm)
        if (violation !== undefined) return
        prevTerm = entry.term
      }
    }
  }

  // ---- the program: nodes, clients, nemesis, healing

  const startNode = (node: SimNode): Effect.Effect<void> =>
    Effect.gen(function*() {
      node.incarnation++
      node.lastCommit = 0
      node.lastApplied = 0
      node.checkedCommit = 0
      const fsm = workload.fsm()
      // `node.appliedThrough` is the last command index this state machine's state includes, applied or
      // restored. Each snapshot's bytes are prefixed with it (`<index>\n`), so it travels with the snapshot through
      // the store and InstallSnapshot, and a restore tells exactly which commands the state holds: entries a
      // snapshot covers must not be applied again, and none after it may be skipped.
      node.appliedThrough = 0
      const applyBatch = (logs: ReadonlyArray<Log.Log>) =>
        Effect.suspend(() => {
          for (const log of logs) {
            if (log.index <= node.appliedThrough) {
              violate(
                "state-machine safety",
                `${node.id} applied ${log.index} again (its state includes up to ${node.appliedThrough})`
              )
            } else {
              const skipped = skippedCommand(node, node.appliedThrough, log.index)
              if (skipped !== undefined) {
                violate("state-machine safety", `${node.id} applied ${log.index} but never command ${skipped} before it`)
              }
            }
            node.appliedThrough = log.index
            const command = decoder.decode(log.data)
            const known = appliedAt.get(log.index)
            if (known === undefined) appliedAt.set(log.index, command)
            else if (known !== command) {
              violate("state-machine safety", `${node.id} applied ${command} at ${log.index}, another node ${known}`)
            }
          }
          return fsm.applyBatch(logs)
        })
      const recording: Fsm.Fsm = {
        apply: (log) => Effect.map(applyBatch([log]), (responses) => responses[0]),
        applyBatch,
        snapshot: Effect.suspend(() => {
          const through = node.appliedThrough
          return Effect.map(fsm.snapshot, (snapshot): Fsm.FsmSnapshot => {
            snapshotCounts.taken++
            // Digest the state's bytes as the node reads them: equal command indexes must hold equal states.
            let digest = FNV_OFFSET
            const state = Stream.mapChunks(snapshot.data, (chunks) => {
              for (const bytes of chunks) digest = digestBytes(digest, bytes)
              return chunks
            })
            return {
              data: Stream.succeed(encoder.encode(`${through}\n`)).pipe(
                Stream.concat(state),
                Stream.concat(Stream.drain(Stream.fromEffect(Effect.sync(() => noteState(node.id, through, digest)))))
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
            if (node.starting) snapshotCounts.restoredAtStart++
            else snapshotCounts.installed++
            note(`${node.id} restores a snapshot through command ${through}${node.starting ? " at start" : ""}`)
          })
      }
      node.capture = Effect.gen(function*() {
        const through = node.appliedThrough
        const snapshot = yield* fsm.snapshot
        const bytes = yield* Effect.ensuring(Fsm.collect(snapshot.data), snapshot.release)
        return { through, bytes }
      }).pipe(Effect.orElseSucceed(() => undefined))
      const scope = yield* Scope.make()
      const layer = Raft.layer({ localId: node.id, ...fastTimers, ...options.config }).pipe(
        Layer.provide([
          Fsm.layer(recording),
          Layer.succeed(LogStore.LogStore, node.logs),
          Layer.succeed(StableStore.StableStore, node.stable),
          Layer.succeed(SnapshotStore.SnapshotStore, node.snapshots),
          MemoryNetwork.layerTransport(node.id, node.address).pipe(
            Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network))
          )
        ])
      )
      node.starting = true
      const context = yield* Layer.buildWithScope(layer, scope).pipe(Effect.ensuring(Effect.sync(() => {
        node.starting = false
      })))
      const raft = Context.get(context, Raft.Raft)
      node.raft = raft
      node.scope = scope
      const rebootAfterVote = faultOptions.rebootAfterVote ?? 0
      if (rebootAfterVote > 0) {
        // Targeted crash: right after a granted vote, sometimes, reboot the voter on its stores.
        yield* raft.observe.pipe(
          Stream.filter((o) => o._tag === "RequestVote" && o.granted),
          Stream.runForEach(() =>
            Effect.gen(function*() {
              if (chaosOver || node.raft !== raft || (yield* Random.next) >= rebootAfterVote) return
              faults.rebootAfterVote = (faults.rebootAfterVote ?? 0) + 1
              note(`reboot ${node.id} after it granted a vote`)
              yield* Effect.zipRight(stopNode(node), startNode(node)).pipe(Effect.forkIn(rootScope))
            })
          ),
          Effect.forkIn(scope)
        )
      }
    }).pipe(Effect.orDie)

  const stopNode = (node: SimNode): Effect.Effect<void> =>
    Effect.gen(function*() {
      const scope = node.scope
      if (scope === undefined) return
      node.scope = undefined
      node.raft = undefined
      crashes.set(node.id, (crashes.get(node.id) ?? 0) + 1)
      yield* Scope.close(scope, Exit.void)
    })

  const running = () => nodes.filter((n) => n.raft !== undefined)
  const currentLeader = () => {
    let best: { node: SimNode; term: number } | undefined
    for (const node of running()) {
      const stats = sync(node.raft!.stats)
      if (stats.state === "Leader" && (best === undefined || stats.term > best.term)) best = { node, term: stats.term }
    }
    return best?.node
  }
  const pick = <A>(items: ReadonlyArray<A>) => Effect.map(Random.nextIntBetween(0, items.length), (i) => items[i]!)

  let stopping = false
  let chaosOver = false
  // Sequence number from which every operation must complete (the calm phase after healing).
  let calmFrom = Infinity
  const client = (clientId: number) =>
    Effect.gen(function*() {
      let hint: string | undefined
      let step = 0
      while (!stopping) {
        yield* Effect.sleep(yield* Random.nextIntBetween(1, 30))
        const alive = running()
        if (alive.length === 0) continue
        const input = yield* workload.next({ client: clientId, step: ++step, history })
        const target = alive.find((n) => n.id === hint) ?? (yield* pick(alive))
        const raft = target.raft!
        const call = nextSeq()
        const exit = yield* raft.apply(workload.encode(input), { timeout: "500 millis" }).pipe(
          Effect.timeout("600 millis"),
          Effect.exit
        )
        if (Exit.isSuccess(exit)) {
          counts.ok++
          history.push({ clientId, input, call, return: nextSeq(), output: workload.output(exit.value.response) })
          continue
        }
        const failure = Cause.failureOption(exit.cause)
        const error = Option.getOrUndefined(failure)
        if (error !== undefined && (error._tag === "NotLeader" || error._tag === "LeadershipTransferInProgress")) {
          // Definitely not appended: it did not happen (the client retries elsewhere).
          counts.refused++
          hint = error._tag === "NotLeader" ? error.leaderId : undefined
          continue
        }
        counts.unknown++
        history.push({ clientId, input, call, return: undefined, output: undefined })
        if (call > calmFrom) {
          violate("liveness", `client ${clientId}'s operation did not complete in the calm phase (${String(error?._tag ?? "timeout")})`)
        }
        hint = undefined
      }
    })

  const nemesis = Effect.gen(function*() {
    const w = faultOptions.weights
    const kinds = Object.entries(w).flatMap(([name, weight]) =>
      weight !== undefined && weight > 0 ? [[name, weight] as const] : []
    )
    const total = kinds.reduce((n, [, weight]) => n + weight, 0)
    if (total === 0) return
    while (true) {
      const [min, max] = faultOptions.intervalMillis
      yield* Effect.sleep(min + (yield* Random.nextIntBetween(0, Math.max(1, max - min + 1))))
      let roll = yield* Random.nextIntBetween(0, total)
      let kind = kinds[0]![0]
      for (const [name, weight] of kinds) {
        if (roll < weight) {
          kind = name
          break
        }
        roll -= weight
      }
      faults[kind] = (faults[kind] ?? 0) + 1
      switch (kind) {
        case "partition": {
          const shuffled = yield* Random.shuffle(nodes.map((n) => n.id))
          const cut = 1 + (yield* Random.nextIntBetween(0, Math.max(1, size - 1)))
          const groups = [Array.from(shuffled).slice(0, cut), Array.from(shuffled).slice(cut)]
          yield* network.partition(groups)
          note(`partition ${JSON.stringify(groups)}`)
          break
        }
        case "isolateLeader": {
          const leader = currentLeader()
          if (leader !== undefined) {
            yield* network.disconnect(leader.id)
            note(`isolate leader ${leader.id}`)
          }
          break
        }
        case "oneWay": {
          const from = yield* pick(nodes)
          const to = yield* pick(nodes.filter((n) => n !== from))
          if (to !== undefined) {
            yield* network.block(from.id, to.id)
            note(`block ${from.id} -> ${to.id}`)
          }
          break
        }
        case "cutLink": {
          const [a, b] = Array.from(yield* Random.shuffle(nodes.map((n) => n.id)))
          if (a !== undefined && b !== undefined) {
            yield* network.block(a, b)
            yield* network.block(b, a)
            note(`cut ${a} <-> ${b}`)
          }
          break
        }
        case "crash": {
          const alive = running()
          if (alive.length > 0) {
            const victim = yield* pick(alive)
            yield* stopNode(victim)
            note(`crash ${victim.id}`)
          }
          break
        }
        case "restart": {
          const down = nodes.filter((n) => n.raft === undefined)
          if (down.length > 0) {
            const node = yield* pick(down)
            yield* startNode(node)
            note(`restart ${node.id}`)
          }
          break
        }
        case "reboot": {
          const alive = running()
          if (alive.length > 0) {
            const victim = yield* pick(alive)
            yield* stopNode(victim)
            yield* startNode(victim)
            note(`reboot ${victim.id}`)
          }
          break
        }
        case "heal": {
          yield* network.heal
          yield* network.setConditions(faultOptions.baseline)
          note("heal")
          break
        }
        case "membership": {
          const leader = currentLeader()
          if (leader === undefined) break
          const raft = leader.raft!
          const { configuration: current } = yield* raft.getConfiguration
          const out = nodes.filter((n) => !Configuration.isVoter(current, n.id))
          const adding = out.length > 0
          const node = yield* pick(adding ? out : nodes.filter((n) => n !== leader))
          const verb = adding ? "add" : "remove"
          const request = adding
            ? raft.addVoter(node.id, node.address, { timeout: 500 })
            : raft.removeServer(node.id, { timeout: 500 })
          note(`${verb} ${node.id} (asked of leader ${leader.id})`)
          // The change completes when it commits, or not: the nemesis does not wait for it.
          yield* request.pipe(
            Effect.exit,
            Effect.flatMap((exit) =>
              Effect.sync(() =>
                note(`${verb} ${node.id}: ${Exit.isSuccess(exit) ? `committed at ${exit.value}` : Cause.squash(exit.cause)}`)
              )
            ),
            Effect.forkIn(rootScope)
          )
          break
        }
        case "lossyLinks": {
          yield* network.setConditions(faultOptions.lossy)
          note(`lossy links ${JSON.stringify(faultOptions.lossy)}`)
          break
        }
      }
    }
  })

  const livenessBound = options.livenessBoundMillis ?? 5_000
  let rootScope: Scope.Scope = undefined as unknown as Scope.Scope
  const program = Effect.gen(function*() {
    rootScope = yield* Effect.scope
    for (const node of nodes) {
      yield* Raft.bootstrapCluster(configuration).pipe(
        Effect.provideService(LogStore.LogStore, node.logs),
        Effect.provideService(StableStore.StableStore, node.stable),
        Effect.provideService(SnapshotStore.SnapshotStore, node.snapshots),
        Effect.orDie
      )
      yield* startNode(node)
    }
    yield* network.setConditions(faultOptions.baseline)
    const clients = yield* Effect.forEach(
      Array.from({ length: options.clients ?? 3 }, (_, i) => i + 1),
      (id) => Effect.fork(client(id))
    )
    const chaos = yield* Effect.fork(nemesis)
    yield* Effect.sleep(options.durationMillis)
    chaosOver = true
    yield* Fiber.interrupt(chaos)

    // Heal everything, then a leader must commit within the bound.
    yield* network.heal
    yield* network.setConditions(faultOptions.baseline)
    for (const node of nodes) {
      // A node removed from the configuration may have shut itself down (`shutdownOnRemove`): restart it too.
      if (node.raft !== undefined && sync(node.raft.state) === "Shutdown") yield* stopNode(node)
      if (node.raft === undefined) yield* startNode(node)
    }
    note("heal all, restart all")
    const healedAt = clock.now
    // Settled: every node on the leader's term and following it, and the leader has committed in that term.
    // Until then a node that campaigned while cut off may still depose the leader (with PreVote off, or a term raised before it).
    const settled = (leader: SimNode) => {
      const stats = sync(leader.raft!.stats)
      return running().every((node) => {
        const other = sync(node.raft!.stats)
        return other.term === stats.term && other.leaderId === leader.id
      })
    }
    let committedAfterHeal = false
    while (clock.now - healedAt < livenessBound && !committedAfterHeal) {
      const leader = currentLeader()
      const out = leader === undefined
        ? []
        : nodes.filter((node) => !Configuration.isVoter(sync(leader.raft!.getConfiguration).configuration, node.id))
      if (leader !== undefined && out.length > 0) {
        // Membership faults left servers out: add each back before the cluster can settle.
        for (const node of out) {
          const exit = yield* leader.raft!.addVoter(node.id, node.address, { timeout: 500 }).pipe(Effect.exit)
          note(`add ${node.id} back after healing: ${Exit.isSuccess(exit) ? "committed" : Cause.squash(exit.cause)}`)
        }
      } else if (leader !== undefined && settled(leader)) {
        // A barrier goes through the log like any write, without a command the FSM must understand.
        const probe = yield* leader.raft!.barrier({ timeout: "100 millis" }).pipe(
          Effect.timeout("1 second"),
          Effect.exit
        )
        if (Exit.isSuccess(probe) && settled(leader)) committedAfterHeal = true
      }
      if (!committedAfterHeal) yield* Effect.sleep(20)
    }
    if (!committedAfterHeal) {
      violate("liveness", `no leader settled and committed within ${livenessBound} ms of healing`)
    }
    // Calm phase: healed, with a leader; every client operation must now complete.
    calmFrom = nextSeq()
    yield* Effect.sleep(options.calmMillis ?? 1000)
    stopping = true
    yield* Fiber.joinAll(clients)
    // Let every node apply what was committed, then compare the state machines (equal commands, equal states).
    for (let waited = 0; waited < 200; waited += 10) {
      const applied = new Set(running().map((node) => node.appliedThrough))
      if (applied.size <= 1) break
      yield* Effect.sleep(10)
    }
    for (const node of running()) {
      const captured = yield* node.capture
      if (captured !== undefined) noteState(node.id, captured.through, digestBytes(FNV_OFFSET, captured.bytes))
    }
    for (const node of nodes) yield* stopNode(node)
  })

  const root = Effect.runFork(
    program.pipe(
      Effect.scoped,
      Effect.provideService(InjectedBugs, options.bugs ?? {}),
      Logger.withMinimumLogLevel(LogLevel.None),
      Effect.withRandom(Random.make(options.seed)),
      Effect.withClock(clock),
      Effect.withScheduler(scheduler)
    ),
    { scheduler }
  )

  const maxEvents = options.maxEvents ?? 2_000_000
  const fullEvery = Math.max(1, options.fullCheckEvery ?? 500)
  let events = 0
  drive: while (violation === undefined) {
    let rounds = 0
    while (scheduler.tasks.buckets.length > 0) {
      scheduler.step()
      if (++rounds > 1_000_000) {
        violate("deadlock", "fibers keep running without time passing (livelock)")
        break drive
      }
    }
    const exit = root.unsafePoll()
    if (exit !== null) {
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
        violate("crash", Cause.pretty(exit.cause).split("\n").slice(0, 6).join(" / "))
      }
      break
    }
    checkStep()
    if (events % fullEvery === 0) checkLogMatching()
    if (violation !== undefined) break
    const timer = clock.next()
    if (timer === undefined) {
      violate("deadlock", "no fiber can run and no timer is set")
      break
    }
    if (++events > maxEvents) {
      violate("deadlock", `more than ${maxEvents} timer events`)
      break
    }
    clock.now = timer.at
    timer.resume()
  }
  if (violation === undefined) checkLogMatching()

  let linearizability: Result["linearizability"] = "skipped"
  if (violation === undefined) {
    const outcome = Linearizability.check(workload.model, history)
    linearizability = outcome._tag
    if (outcome._tag === "NotLinearizable") {
      violate("linearizability", `history of ${history.length} operations is not linearizable: ${
        JSON.stringify(outcome).slice(0, 300)
      }`)
    }
  }
  return {
    seed: options.seed,
    ok: violation === undefined,
    violation,
    trace,
    events,
    virtualMillis: clock.now,
    faults,
    operations: counts,
    leadersElected,
    snapshots: snapshotCounts,
    linearizability
  }
}

const FNV_OFFSET = 0x811c9dc5
/** Continues a 32-bit FNV-1a digest over `bytes`. */
const digestBytes = (digest: number, bytes: Uint8Array): number => {
  let h = digest
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
