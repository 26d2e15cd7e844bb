/**
 * Test clusters in the shape of hashicorp/raft's testing.go: N nodes on a
 * memory network, each with its own stores and a recording FSM, built under
 * whatever Clock the test provides (TestClock in `it.effect`). Nodes can be
 * stopped and restarted on the same stores.
 */
import { assert } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../src/Configuration.js"
import * as Fsm from "../src/Fsm.js"
import type * as Log from "../src/Log.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import { StorageError } from "../src/RaftError.js"
import type * as RaftConfig from "../src/RaftConfig.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"

export const encoder = new TextEncoder()
export const decoder = new TextDecoder()
export const bytes = (text: string): Uint8Array => encoder.encode(text)

/** Timers ten times shorter than hashicorp's defaults, as the anchor's fast-timers scenario. */
export const fastTimers = {
  heartbeatTimeout: "100 millis",
  electionTimeout: "100 millis",
  leaderLeaseTimeout: "50 millis",
  commitTimeout: "5 millis"
} as const

/**
 * An FSM that records every command it applies and answers with the count so far. Its state is the list of
 * commands; it takes snapshots (the list as JSON) and restores from them, so `commands()` is the whole state,
 * restored commands included, while `applied` holds only the entries this instance applied itself.
 */
export interface RecordingFsm extends Fsm.Fsm {
  readonly applied: Array<Log.Log>
  readonly commands: () => Array<string>
  /** How many times the state was replaced by a snapshot. */
  readonly restores: () => number
}

/** Decodes the bytes of a recording FSM's snapshot: its list of commands. */
export const decodeState = (data: Uint8Array): Array<string> => JSON.parse(decoder.decode(data)) as Array<string>

/** Encodes a list of commands as a recording FSM's snapshot. */
export const encodeState = (commands: ReadonlyArray<string>): Uint8Array => encoder.encode(JSON.stringify(commands))

export const recordingFsm = (): RecordingFsm => {
  const applied: Array<Log.Log> = []
  let state: Array<string> = []
  let restores = 0
  const fsm = Fsm.fromFunction((log) => {
    applied.push(log)
    const echo = decoder.decode(log.data)
    state.push(echo)
    return { count: state.length, echo }
  }, {
    save: () => encodeState(state),
    load: (data) => {
      state = decodeState(data)
      restores++
    }
  })
  // The object `fromFunction` made, not a copy: its synchronous apply stays registered, so committed entries are
  // applied by whoever committed them while the FSM runner waits (src/internal/fsm.ts `handToFsm`), as a user's are.
  return Object.assign(fsm, { applied, commands: () => [...state], restores: () => restores })
}

export interface TestNode {
  readonly id: string
  readonly address: string
  raft: Raft.Raft
  fsm: RecordingFsm
  readonly logs: LogStore.LogStore
  readonly stable: StableStore.StableStore
  readonly snapshots: SnapshotStore.SnapshotStore
  scope: Scope.CloseableScope
  running: boolean
}

export interface Cluster {
  readonly network: MemoryNetwork.MemoryNetwork
  readonly nodes: ReadonlyArray<TestNode>
  readonly node: (id: string) => TestNode
  /** Stops a node (its stores survive). */
  readonly stop: (id: string) => Effect.Effect<void>
  /** Starts a stopped node again on the same stores, with a fresh FSM. */
  readonly restart: (id: string) => Effect.Effect<void>
  /** Advances the clock in `step`s until exactly one running node is leader; fails after `limitMillis`. */
  readonly waitForLeader: (options?: { readonly limitMillis?: number; readonly exclude?: ReadonlyArray<string> }) => Effect.Effect<TestNode, string>
  /** The running leaders (more than one means a stale leader has not stepped down yet). */
  readonly leaders: Effect.Effect<Array<TestNode>>
  readonly followers: Effect.Effect<Array<TestNode>>
  /** Advances the clock until every running node has applied `index`. */
  readonly waitForApplied: (index: number, options?: { readonly limitMillis?: number; readonly nodes?: ReadonlyArray<string> }) => Effect.Effect<void, string>
  /** Advances the test clock by `millis`, in steps. */
  readonly advance: (millis: number) => Effect.Effect<void>
  /** Starts a fresh node `id` (address `mem://<id>`) on empty stores, not bootstrapped: one to add to the cluster. */
  readonly addNode: (id: string) => Effect.Effect<TestNode>
}

export interface ClusterOptions {
  readonly size: number
  readonly config?: Omit<RaftConfig.Input, "localId"> | undefined
  readonly network?: MemoryNetwork.Options | undefined
  readonly bootstrap?: boolean | undefined
  /** Advance step of the helpers' clock loops, ms. */
  readonly stepMillis?: number | undefined
  /** When false, time is real (`it.live`) and helpers sleep instead of adjusting the TestClock. */
  readonly testClock?: boolean | undefined
  /** The cluster id the initial members are bootstrapped with; none by default. */
  readonly clusterId?: string | undefined
  /** The FSM a node starts with (each start); a fresh `recordingFsm` by default. */
  readonly fsm?: ((id: string) => RecordingFsm) | undefined
}

export const makeCluster = (options: ClusterOptions): Effect.Effect<Cluster, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make(options.network)
    const ids = Array.from({ length: options.size }, (_, i) => `node${i + 1}`)
    const configuration = Configuration.voters(ids.map((id) => [id, `mem://${id}`] as const))
    const step = options.stepMillis ?? 10
    const useTestClock = options.testClock ?? true
    const advance = (millis: number): Effect.Effect<void> =>
      useTestClock ? TestClock.adjust(millis) : Effect.sleep(millis)
    const outer = yield* Effect.scope

    const start = (node: TestNode) =>
      Effect.gen(function*() {
        node.fsm = options.fsm?.(node.id) ?? recordingFsm()
        node.scope = yield* Scope.fork(outer, { _tag: "Sequential" } as never)
        const layer = Raft.layer({ localId: node.id, ...fastTimers, ...options.config }).pipe(
          Layer.provide([
            Fsm.layer(node.fsm),
            Layer.succeed(LogStore.LogStore, node.logs),
            Layer.succeed(StableStore.StableStore, node.stable),
            Layer.succeed(SnapshotStore.SnapshotStore, node.snapshots),
            Layer.succeed(MemoryNetwork.MemoryNetwork, network).pipe(
              Layer.provide(Layer.empty),
              (net) => MemoryNetwork.layerTransport(node.id).pipe(Layer.provide(net))
            )
          ])
        )
        const context = yield* Layer.buildWithScope(layer, node.scope)
        node.raft = context.unsafeMap.get(Raft.Raft.key) as Raft.Raft
        node.running = true
      })

    const fresh = (id: string): TestNode => ({
      id,
      address: `mem://${id}`,
      raft: undefined as never,
      fsm: recordingFsm(),
      logs: LogStore.makeMemory(),
      stable: StableStore.makeMemory(),
      snapshots: SnapshotStore.makeMemory(),
      scope: undefined as never,
      running: false
    })
    const nodes: Array<TestNode> = []
    for (const id of ids) {
      const node = fresh(id)
      if (options.bootstrap ?? true) {
        yield* Raft.bootstrapCluster(configuration, { clusterId: options.clusterId }).pipe(
          Effect.provideService(LogStore.LogStore, node.logs),
          Effect.provideService(StableStore.StableStore, node.stable),
          Effect.provideService(SnapshotStore.SnapshotStore, node.snapshots)
        )
      }
      nodes.push(node)
    }
    for (const node of nodes) yield* start(node)

    const node = (id: string) => nodes.find((n) => n.id === id)!
    const running = () => nodes.filter((n) => n.running)
    const leaders = Effect.gen(function*() {
      const out: Array<TestNode> = []
      for (const n of running()) if ((yield* n.raft.state) === "Leader") out.push(n)
      return out
    })
    const followers = Effect.gen(function*() {
      const out: Array<TestNode> = []
      for (const n of running()) if ((yield* n.raft.state) === "Follower") out.push(n)
      return out
    })

    const cluster: Cluster = {
      network,
      nodes,
      node,
      stop: (id) =>
        Effect.gen(function*() {
          const n = node(id)
          if (!n.running) return
          n.running = false
          yield* Scope.close(n.scope, Exit.void)
        }),
      restart: (id) =>
        Effect.gen(function*() {
          const n = node(id)
          if (n.running) yield* Scope.close(n.scope, Exit.void)
          n.running = false
          yield* start(n)
        }).pipe(Effect.orDie),
      leaders,
      followers,
      waitForLeader: (opts) =>
        Effect.gen(function*() {
          const limit = opts?.limitMillis ?? 5_000
          for (let waited = 0; waited <= limit; waited += step) {
            const found = (yield* leaders).filter((n) => !(opts?.exclude ?? []).includes(n.id))
            if (found.length === 1) {
              // Make sure the leader is settled (its no-op committed) before handing it out.
              const stats = yield* found[0]!.raft.stats
              if (stats.commitIndex >= stats.lastLogIndex || stats.commitIndex > 0) return found[0]!
            }
            yield* advance(step)
          }
          return yield* Effect.fail(`no single leader within ${limit} ms`)
        }),
      waitForApplied: (index, opts) =>
        Effect.gen(function*() {
          const limit = opts?.limitMillis ?? 5_000
          const targets = opts?.nodes === undefined ? running() : opts.nodes.map(node)
          for (let waited = 0; waited <= limit; waited += step) {
            let all = true
            for (const n of targets) if ((yield* n.raft.appliedIndex) < index) all = false
            if (all) return
            yield* advance(step)
          }
          const applied = yield* Effect.forEach(targets, (n) => Effect.map(n.raft.appliedIndex, (i) => `${n.id}=${i}`))
          return yield* Effect.fail(`not every node applied ${index} within ${limit} ms: ${applied.join(", ")}`)
        }),
      advance: (millis) =>
        Effect.gen(function*() {
          for (let t = 0; t < millis; t += step) yield* advance(Math.min(step, millis - t))
        }),
      addNode: (id) =>
        Effect.gen(function*() {
          const n = fresh(id)
          nodes.push(n)
          yield* start(n)
          return n
        }).pipe(Effect.orDie)
    }
    return cluster
  })

/** The leader's id and address as a node sees them. */
export const leaderOf = (node: TestNode) => Effect.map(node.raft.leader, Option.getOrUndefined)

/** Every entry a node's log store holds, as comparable `index/term/type/data` text. */
export const storedLog = (node: TestNode): Effect.Effect<Array<string>> =>
  Effect.gen(function*() {
    const last = yield* node.logs.lastIndex
    const first = yield* node.logs.firstIndex
    const entries: ReadonlyArray<Log.Log> = last === 0 ? [] : yield* node.logs.getLogs(first, last)
    return entries.map((e) => `${e.index}/${e.term}/${e.type}/${decoder.decode(e.data)}`)
  }).pipe(Effect.orDie)

/** The commands a node's snapshot holds. */
export const snapshotCommands = (node: TestNode, id: string): Effect.Effect<Array<string>> =>
  Effect.gen(function*() {
    const { data } = yield* node.snapshots.open(id)
    return decodeState(yield* Fsm.collect(data))
  }).pipe(Effect.orDie)

/** Runs an effect with a `Random` seeded by `seed`, so the test replays exactly. */
export const seeded = (seed: string) => Effect.withRandom(Random.make(seed))

/** Applies `count` commands named `prefix0..` one after another on `node`; returns the last index. */
export const applyAll = (node: TestNode, prefix: string, count: number) =>
  Effect.gen(function*() {
    let last = 0
    for (let i = 0; i < count; i++) last = (yield* node.raft.apply(bytes(`${prefix}${i}`))).index
    return last
  })

/** Advances the clock until `fiber` is done (at most `limitMillis`), then joins it. */
export const settle = <A, E>(cluster: Cluster, fiber: Fiber.RuntimeFiber<A, E>, limitMillis = 5000) =>
  Effect.gen(function*() {
    for (let waited = 0; waited < limitMillis && fiber.unsafePoll() === null; waited += 10) yield* cluster.advance(10)
    if (fiber.unsafePoll() === null) return assert.fail(`still waiting after ${limitMillis} ms`)
    return yield* Fiber.join(fiber)
  })

/** Advances the clock until `check` holds, up to `limitMillis`. */
export const eventually = (cluster: Cluster, limitMillis: number, check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let waited = 0; waited <= limitMillis; waited += 10) {
      if (yield* check) return true
      yield* cluster.advance(10)
    }
    return false
  })

/**
 * Makes the next `count` writes of a store fail with `StorageError` (a disk that is full, or failing, for a while);
 * returns how many are still to fail.
 */
export const failNextWrites = <S extends LogStore.LogStore | StableStore.StableStore>(
  store: S,
  methods: ReadonlyArray<keyof S & string>,
  count: number
): { readonly remaining: () => number } => {
  let remaining = count
  const target = store as unknown as Record<string, (...args: ReadonlyArray<unknown>) => Effect.Effect<unknown, unknown>>
  for (const method of methods) {
    const original = target[method]!
    target[method] = (...args) =>
      Effect.suspend(() => {
        if (remaining <= 0) return original(...args)
        remaining--
        return Effect.fail(new StorageError({ operation: method, reason: "injected: the disk is full" }))
      })
  }
  return { remaining: () => remaining }
}

/** Makes a log store's writes wait until the returned latch opens (at the latest when the test ends): a disk that hangs. */
export const stuckDisk = (logs: LogStore.LogStore) =>
  Effect.gen(function*() {
    const disk = yield* Effect.makeLatch(false)
    yield* Effect.addFinalizer(() => disk.open)
    const store = logs.storeLogs
    ;(logs as { storeLogs: LogStore.LogStore["storeLogs"] }).storeLogs = (entries) =>
      disk.await.pipe(Effect.zipRight(store(entries)))
    return disk
  })

/**
 * Holds a leader's run loop busy (inside a user restore whose data has not arrived) until `release`, so applies
 * wait in its queue. The data, when released, is the FSM's state at that moment: the restore changes nothing.
 */
export const stallRunLoop = (node: TestNode) =>
  Effect.gen(function*() {
    const gate = yield* Effect.makeLatch(false)
    yield* Effect.addFinalizer(() => gate.open)
    const meta = (yield* node.snapshots.list)[0] ?? {
      id: "stall",
      index: 0,
      term: 0,
      configuration: Configuration.empty,
      configurationIndex: 0,
      size: 0
    }
    const data = Stream.fromEffect(gate.await.pipe(Effect.map(() => encodeState(node.fsm.commands()))))
    const restoring = yield* Effect.fork(node.raft.restore(meta, data))
    yield* TestClock.adjust(1)
    return { release: gate.open.pipe(Effect.zipRight(Fiber.join(restoring))) }
  })

/** The error's tag of a failed outcome, or "success". */
export const outcomeTag = (outcome: Either.Either<unknown, { readonly _tag: string }>): string =>
  Either.isLeft(outcome) ? outcome.left._tag : "success"
