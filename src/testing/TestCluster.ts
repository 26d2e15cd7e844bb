/**
 * A whole cluster in one process, for testing a state machine or an
 * application on effect-raft: N nodes with memory stores on one
 * `MemoryNetwork`, bootstrapped together, running in the caller's scope (in
 * the shape of hashicorp/raft's testing.go: `Leader`, `Followers`,
 * `Partition`).
 *
 * It works on the live clock and under `TestClock` (`it.effect` in
 * `@effect/vitest`): the helpers that wait (`awaitLeader`, `awaitApplied`,
 * `advance`) move a `TestClock` forward in small steps, where on the live
 * clock they sleep. Under `TestClock` nothing happens between two steps unless
 * the test moves the clock, so a test that waits in another way (a plain
 * `raft.apply` while no leader is known, say) must move the clock itself:
 * fork the wait, then `advance`.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Configuration from "../Configuration.js"
import * as Fsm from "../Fsm.js"
import * as LogStore from "../LogStore.js"
import * as Raft from "../Raft.js"
import type * as RaftConfig from "../RaftConfig.js"
import type { IdentityMismatch, NotVoter, RaftConfigError, StorageError } from "../RaftError.js"
import * as SnapshotStore from "../SnapshotStore.js"
import * as StableStore from "../StableStore.js"
import * as MemoryNetwork from "../transport/MemoryNetwork.js"

/** Timers a tenth of hashicorp's defaults (as its testing.go shortens them): elections in about 100–300 ms. */
export const fastTimers: Omit<RaftConfig.Input, "localId"> = {
  heartbeatTimeout: "100 millis",
  electionTimeout: "100 millis",
  leaderLeaseTimeout: "50 millis",
  commitTimeout: "5 millis"
}

/** How to build a test cluster. */
export interface Options {
  /** How many nodes: ids `node1`…`nodeN` at addresses `mem://node1`…. Default 3. */
  readonly nodes?: number | undefined
  /** Each node's state machine: a function called once per node, or a typed machine (`Fsm.typed`), made per node. */
  readonly fsm: ((id: string) => Fsm.Fsm) | { readonly make: () => { readonly fsm: Fsm.Fsm } }
  /** Raft settings of every node. Default `fastTimers`. */
  readonly config?: Omit<RaftConfig.Input, "localId"> | undefined
  /** The memory network's settings. */
  readonly network?: MemoryNetwork.Options | undefined
  /** The waiting helpers' step: how far they move a `TestClock`, or how long they sleep between looks. Default 10 ms. */
  readonly step?: Duration.DurationInput | undefined
}

/** One node of the cluster. */
export interface TestNode {
  readonly id: string
  readonly address: string
  readonly raft: Raft.Raft
}

/** No single leader emerged in time. */
export class NoLeader extends Data.TaggedError("NoLeader")<{ readonly waitedMillis: number }> {
  override get message(): string {
    return `no leader known to a quorum within ${this.waitedMillis} ms`
  }
}

/** Not every node applied an index in time. */
export class NotApplied extends Data.TaggedError("NotApplied")<{
  readonly index: number
  readonly applied: ReadonlyArray<{ readonly id: string; readonly appliedIndex: number }>
}> {
  override get message(): string {
    return `not every node applied ${this.index}: ${this.applied.map((n) => `${n.id} at ${n.appliedIndex}`).join(", ")}`
  }
}

/** A running test cluster. */
export interface TestCluster {
  readonly nodes: ReadonlyArray<TestNode>
  /** The node `id`; a defect if there is none. */
  readonly node: (id: string) => Effect.Effect<TestNode>
  /** The network: `partition`, `disconnect`, `block`, lossy links, counters. */
  readonly network: MemoryNetwork.MemoryNetwork
  /**
   * Waits until one node leads with the highest term of the cluster and a quorum of all nodes (it included) name it
   * as leader and can exchange messages with it; answers it. `NoLeader` after `timeout` (default 10 s of the clock in use).
   */
  readonly awaitLeader: (options?: { readonly timeout?: Duration.DurationInput | undefined }) => Effect.Effect<
    TestNode,
    NoLeader
  >
  /** The nodes that are leader now (two while a cut-off leader has not yet stepped down). */
  readonly leaders: Effect.Effect<ReadonlyArray<TestNode>>
  /** The nodes that are followers now. */
  readonly followers: Effect.Effect<ReadonlyArray<TestNode>>
  /** Waits until each node of `nodes` (default: all) has applied `index`; `NotApplied` after `timeout` (10 s). */
  readonly awaitApplied: (index: number, options?: {
    readonly nodes?: ReadonlyArray<string> | undefined
    readonly timeout?: Duration.DurationInput | undefined
  }) => Effect.Effect<void, NotApplied>
  /** Splits the network: nodes reach only the nodes of their own group. */
  readonly partition: (...groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Cuts one node off from every other. */
  readonly isolate: (id: string) => Effect.Effect<void>
  /** Removes every partition, cut and block. */
  readonly heal: Effect.Effect<void>
  /** Lets `duration` pass: moves a `TestClock` forward (running every timer due on the way), or sleeps. */
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
}

/** Whether the clock in use is a `TestClock`, which only moves when told to. */
const usesTestClock: Effect.Effect<boolean> = Effect.clockWith((clock) => Effect.succeed("adjust" in clock))

/**
 * Starts the cluster in the current scope: every node's stores get the configuration of all of them, then every
 * node starts. Closing the scope shuts them all down.
 */
export const make = (
  options: Options
): Effect.Effect<TestCluster, RaftConfigError | StorageError | IdentityMismatch | NotVoter, Scope.Scope> =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make(options.network)
    const count = Math.max(1, options.nodes ?? 3)
    const ids = Array.from({ length: count }, (_, i) => `node${i + 1}`)
    const configuration = Configuration.voters(ids.map((id) => [id, `mem://${id}`] as const))
    const makeFsm = typeof options.fsm === "function" ? options.fsm : (() => {
      const machine = options.fsm
      return () => machine.make().fsm
    })()
    const step = Duration.decode(options.step ?? "10 millis")
    const stepMillis = Math.max(1, Duration.toMillis(step))
    const testClock = yield* usesTestClock
    const tick: Effect.Effect<void> = testClock ? TestClock.adjust(step) : Effect.sleep(step)

    const nodes: Array<TestNode> = []
    for (const id of ids) {
      const stores = Layer.mergeAll(LogStore.layerMemory, StableStore.layerMemory, SnapshotStore.layerMemory)
      // Fresh stores take the first configuration (CantBootstrap cannot happen on them).
      const bootstrapped = Layer.tap(stores, (context) =>
        Raft.bootstrapCluster(configuration).pipe(Effect.catchTag("CantBootstrap", Effect.die), Effect.provide(context)))
      const node = Raft.layer({ ...fastTimers, ...options.config, localId: id }).pipe(
        Layer.provide([
          bootstrapped,
          Fsm.layer(makeFsm(id)),
          MemoryNetwork.layerTransport(id).pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network)))
        ])
      )
      const context = yield* Layer.build(node)
      nodes.push({ id, address: `mem://${id}`, raft: Context.get(context, Raft.Raft) })
    }

    const withState = (role: Raft.RaftState) =>
      Effect.filter(nodes, (node) => Effect.map(node.raft.state, (state) => state === role))

    /** The settled leader, if there is one now. */
    const settledLeader = Effect.gen(function*() {
      const views = yield* Effect.forEach(nodes, (node) =>
        Effect.all({ state: node.raft.state, term: node.raft.currentTerm, leader: node.raft.leader }))
      const highest = Math.max(...views.map((view) => view.term))
      const at = views.findIndex((view) => view.state === "Leader" && view.term === highest)
      if (at < 0) return Option.none<TestNode>()
      const leader = nodes[at]!
      // Named by nodes it can still talk to: a leader cut off from its followers is stale, whatever they remember.
      const naming = views.filter((view, i) =>
        Option.isSome(view.leader) && view.leader.value.id === leader.id &&
        network.canReach(leader.id, nodes[i]!.id) && network.canReach(nodes[i]!.id, leader.id)
      ).length
      return naming > count / 2 ? Option.some(leader) : Option.none<TestNode>()
    })

    /** Looks with `check` after every step until it answers, for at most `timeout`. */
    const waitFor = <A>(
      check: Effect.Effect<Option.Option<A>>,
      timeout: Duration.DurationInput | undefined
    ): Effect.Effect<Option.Option<A>> =>
      Effect.gen(function*() {
        const limit = Duration.toMillis(Duration.decode(timeout ?? "10 seconds"))
        for (let waited = 0;; waited += stepMillis) {
          const found = yield* check
          if (Option.isSome(found) || waited >= limit) return found
          yield* tick
        }
      })

    const cluster: TestCluster = {
      nodes,
      node: (id) => {
        const found = nodes.find((node) => node.id === id)
        return found === undefined ? Effect.dieMessage(`no node ${id} in the test cluster`) : Effect.succeed(found)
      },
      network,
      awaitLeader: (wait) =>
        Effect.flatMap(waitFor(settledLeader, wait?.timeout), (found) =>
          Option.isSome(found)
            ? Effect.succeed(found.value)
            : Effect.fail(new NoLeader({ waitedMillis: Duration.toMillis(Duration.decode(wait?.timeout ?? "10 seconds")) }))),
      leaders: withState("Leader"),
      followers: withState("Follower"),
      awaitApplied: (index, wait) => {
        const targets = wait?.nodes === undefined ? nodes : nodes.filter((node) => wait.nodes?.includes(node.id))
        const applied = Effect.forEach(targets, (node) =>
          Effect.map(node.raft.appliedIndex, (appliedIndex) => ({ id: node.id, appliedIndex })))
        const done = Effect.map(applied, (all) => all.every((n) => n.appliedIndex >= index) ? Option.some(true) : Option.none())
        return Effect.flatMap(waitFor(done, wait?.timeout), (found) =>
          Option.isSome(found)
            ? Effect.void
            : Effect.flatMap(applied, (all) => Effect.fail(new NotApplied({ index, applied: all }))))
      },
      partition: (...groups) => network.partition(groups),
      isolate: (id) => network.disconnect(id),
      heal: network.heal,
      advance: (duration) => testClock ? TestClock.adjust(duration) : Effect.sleep(duration)
    }
    return cluster
  })
