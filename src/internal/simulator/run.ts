/**
 * One simulated run from start to verdict: the program (bootstrap and start every node, the clients, the nemesis
 * for the faulty phase, then heal, settle, a calm phase and the final comparison of the state machines) and the
 * driver loop that runs it on virtual time, checking the invariants after every timer event.
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Configuration from "../../Configuration.js"
import type * as Fsm from "../../Fsm.js"
import * as LogStore from "../../LogStore.js"
import * as Raft from "../../Raft.js"
import * as SnapshotStore from "../../SnapshotStore.js"
import * as StableStore from "../../StableStore.js"
import * as Linearizability from "../../testing/Linearizability.js"
import * as MemoryNetwork from "../../transport/MemoryNetwork.js"
import { InjectedBugs } from "../bugs.js"
import { deploymentOf, randomizes } from "./deployment.js"
import { digestBytes, FNV_OFFSET, Invariants } from "./invariants.js"
import { nemesis, pick } from "./nemesis.js"
import { startNode, stopNode } from "./nodes.js"
import { Sim, type SimCore, type SimNode, sync } from "./state.js"
import { makeNode } from "./stores.js"
import type { FaultOptions, Options, Result, Workload } from "./types.js"

/**
 * Whether `node` (still running as `raft`) has applied all the current leader has committed. A follower's read that
 * times out in the calm phase is a liveness violation only then: until then it may wait for the leader's
 * replication to it, which can still be backing off after the faults.
 */
const caughtUp = (sim: SimCore, node: SimNode, raft: Raft.Raft): boolean => {
  const leader = sim.currentLeader()
  return node.raft === raft && leader !== undefined &&
    sync(raft.stats).appliedIndex >= sync(leader.raft!.stats).commitIndex
}

/**
 * A read through `raft.readIndex` on a running node drawn at random (leader or follower), in a mode drawn per read,
 * answered by `read` from that node's state machine once it has applied the read index. A read that fails had no
 * effect: it stays out of the history.
 */
const readThroughIndex = <State, Input, Output>(
  sim: Sim<State, Input, Output>,
  clientId: number,
  input: Input,
  read: (fsm: Fsm.Fsm) => Output
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const target = yield* pick(sim.running())
    const lease = yield* Random.nextBoolean
    const raft = target.raft!
    const fsm = target.fsm!
    const role = sync(raft.state) === "Leader" ? "leader" : "follower"
    const call = sim.nextSeq()
    const timeout = sim.clientTimeoutMillis
    const exit = yield* Effect.exit(raft.readIndex({ mode: lease ? "lease" : "readIndex", timeout }))
    const counts = sim.readCounts
    if (Exit.isSuccess(exit)) {
      counts[role]++
      counts[lease ? "lease" : "readIndex"]++
      sim.history.push({ clientId, input, call, return: sim.nextSeq(), output: read(fsm) })
      return
    }
    counts.failed++
    const error = Option.getOrUndefined(Cause.failureOption(exit.cause))
    if (call > sim.calmFrom && error?._tag !== "NotLeader" && (role === "leader" || caughtUp(sim, target, raft))) {
      sim.violate(
        "liveness",
        `client ${clientId}'s read on ${target.id} did not complete in the calm phase (${String(error?._tag ?? "timeout")})`
      )
    }
  })

/**
 * A client that only reads (`Options.readers`): until the run stops, at random intervals, it draws the workload's
 * next input and runs it if it is a read. Reads do not wait behind a write stuck on a cut-off leader, as the
 * other clients' do.
 */
const reader = <State, Input, Output>(sim: Sim<State, Input, Output>, clientId: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    let step = 0
    while (!sim.stopping) {
      yield* Effect.sleep(yield* Random.nextIntBetween(1, 30))
      if (sim.running().length === 0) continue
      const input = yield* sim.workload.next({ client: clientId, step: ++step, history: sim.history })
      const read = sim.workload.query?.(input)
      if (read !== undefined) yield* readThroughIndex(sim, clientId, input, read)
    }
  })

/** A client of the workload: until the run stops, call the cluster at random intervals and record the history. */
const client = <State, Input, Output>(sim: Sim<State, Input, Output>, clientId: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { counts, history, workload } = sim
    let hint: string | undefined
    let step = 0
    while (!sim.stopping) {
      yield* Effect.sleep(yield* Random.nextIntBetween(1, 30))
      const alive = sim.running()
      if (alive.length === 0) continue
      const input = yield* workload.next({ client: clientId, step: ++step, history })
      const read = sim.reads === "readIndex" ? workload.query?.(input) : undefined
      if (read !== undefined) {
        yield* readThroughIndex(sim, clientId, input, read)
        continue
      }
      const target = alive.find((n) => n.id === hint) ?? (yield* pick(alive))
      const raft = target.raft!
      const call = sim.nextSeq()
      const exit = yield* Effect.exit(raft.apply(workload.encode(input), { timeout: sim.clientTimeoutMillis }))
      if (Exit.isSuccess(exit)) {
        counts.ok++
        history.push({ clientId, input, call, return: sim.nextSeq(), output: workload.output(exit.value.response) })
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
      if (call > sim.calmFrom) {
        sim.violate(
          "liveness",
          `client ${clientId}'s operation did not complete in the calm phase (${String(error?._tag ?? "timeout")})`
        )
      }
      hint = undefined
    }
  })

/** The whole run as one program: start, clients and nemesis, heal, settle, calm, compare. */
const program = <State, Input, Output>(
  sim: Sim<State, Input, Output>,
  invariants: Invariants,
  options: Options<State, Input, Output>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { network, faultOptions, nodes, clock } = sim
    sim.rootScope = yield* Effect.scope
    for (const node of nodes) {
      yield* Raft.bootstrapCluster(sim.configuration).pipe(
        Effect.provideService(LogStore.LogStore, node.logs),
        Effect.provideService(StableStore.StableStore, node.stable),
        Effect.provideService(SnapshotStore.SnapshotStore, node.snapshots),
        Effect.orDie
      )
      yield* startNode(sim, invariants, node)
    }
    yield* network.setConditions(faultOptions.baseline)
    const writers = options.clients ?? 3
    const readers = sim.reads === "readIndex" ? options.readers ?? 0 : 0
    const clients = yield* Effect.forEach(
      Array.from({ length: writers + readers }, (_, i) => i + 1),
      (id) => Effect.fork(id <= writers ? client(sim, id) : reader(sim, id))
    )
    const chaos = yield* Effect.fork(nemesis(sim, invariants))
    yield* Effect.sleep(options.durationMillis)
    sim.chaosOver = true
    yield* Fiber.interrupt(chaos)

    // Heal everything, then a leader must commit within the bound.
    const livenessBound = options.livenessBoundMillis ?? 5_000
    yield* network.heal
    yield* network.setConditions(faultOptions.baseline)
    for (const node of nodes) {
      if (node.clock.currentRate !== 1) node.clock.setRate(1)
    }
    for (const node of nodes) {
      // A node removed from the configuration may have shut itself down (`shutdownOnRemove`): restart it too.
      if (node.raft !== undefined && sync(node.raft.state) === "Shutdown") yield* stopNode(sim, node)
      if (node.raft === undefined) yield* startNode(sim, invariants, node)
    }
    sim.note("heal all, restart all")
    const healedAt = clock.now
    // Settled: every node on the leader's term and following it, and the leader has committed in that term.
    // Until then a node that campaigned while cut off may still depose the leader (with PreVote off, or a term raised before it).
    const settled = (leader: SimNode) => {
      const stats = sync(leader.raft!.stats)
      return sim.running().every((node) => {
        const other = sync(node.raft!.stats)
        return other.term === stats.term && other.leaderId === leader.id
      })
    }
    let committedAfterHeal = false
    while (clock.now - healedAt < livenessBound && !committedAfterHeal) {
      const leader = sim.currentLeader()
      const out = leader === undefined
        ? []
        : nodes.filter((node) => !Configuration.isVoter(sync(leader.raft!.getConfiguration).configuration, node.id))
      if (leader !== undefined && out.length > 0) {
        // Membership faults left servers out: add each back before the cluster can settle.
        for (const node of out) {
          const exit = yield* leader.raft!.addVoter(node.id, node.address, { timeout: 500 }).pipe(Effect.exit)
          sim.note(`add ${node.id} back after healing: ${Exit.isSuccess(exit) ? "committed" : Cause.squash(exit.cause)}`)
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
      sim.violate("liveness", `no leader settled and committed within ${livenessBound} ms of healing`)
    }
    // Calm phase: healed, with a leader; every client operation must now complete.
    sim.calmFrom = sim.nextSeq()
    yield* Effect.sleep(options.calmMillis ?? 1000)
    sim.stopping = true
    // A client stops after its operation under way, which the engine's own timeout bounds (`apply` and `readIndex`
    // take `clientTimeoutMillis`). One bound over all of them here, instead of a second timeout on every operation
    // (two fibers each): an operation that never returns is a broken timeout, a liveness violation.
    const stopped = yield* Fiber.joinAll(clients).pipe(Effect.timeout(sim.clientTimeoutMillis + 200), Effect.option)
    if (Option.isNone(stopped)) sim.violate("liveness", `a client's operation did not return within its timeout`)
    // Let every node apply what was committed, then compare the state machines (equal commands, equal states).
    for (let waited = 0; waited < 200; waited += 10) {
      const applied = new Set(sim.running().map((node) => node.appliedThrough))
      if (applied.size <= 1) break
      yield* Effect.sleep(10)
    }
    for (const node of sim.running()) {
      const captured = yield* node.capture
      if (captured !== undefined) invariants.noteState(node.id, captured.through, digestBytes(FNV_OFFSET, captured.bytes))
    }
    for (const node of nodes) yield* stopNode(sim, node)
  })

/**
 * Runs one seed to the end (or to its first violation), synchronously, in virtual time. Errors made during the run
 * capture no stack trace: the engine makes thousands a run (a `TransportError` for every message to a cut link),
 * each `new Error` walks the stack, and no check reads one (a crash's detail keeps its messages).
 */
export const run = <State, Input, Output>(
  options: Options<State, Input, Output>,
  workload: Workload<State, Input, Output>,
  defaultFaults: FaultOptions
): Result => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return runSeed(options, workload, defaultFaults)
  } finally {
    Error.stackTraceLimit = limit
  }
}

const runSeed = <State, Input, Output>(
  options: Options<State, Input, Output>,
  workload: Workload<State, Input, Output>,
  defaultFaults: FaultOptions
): Result => {
  const deployment = deploymentOf(options)
  const size = deployment.nodes
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`)
  const sim = new Sim({
    faultOptions: options.faults ?? defaultFaults,
    size,
    diskLatency: deployment.diskLatencyMillis,
    syncFsm: deployment.syncFsm,
    config: deployment.config,
    // No deadline per request: every handler answers (a node that stops fails what it was handling with
    // RaftShutdown, and a stopped node's address is unreachable), and a deadline costs two fibers per message, raced
    // against a sleep. Before it went, the 200 ms one never fired in 96 seeds of every digest set.
    network: MemoryNetwork.make(),
    configuration: Configuration.voters(ids.map((id) => [id, `mem://${id}`] as const)),
    reads: options.reads ?? "log",
    clientTimeoutMillis: options.clientTimeoutMillis ?? 500
  }, workload)
  const invariants = new Invariants(sim)
  sim.nodes = ids.map((_, i) => makeNode(sim, invariants, i))
  const { clock, scheduler } = sim

  const root = Effect.runFork(
    program(sim, invariants, options).pipe(
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
  drive: while (sim.violation === undefined) {
    let rounds = 0
    while (scheduler.tasks.buckets.length > 0) {
      scheduler.step()
      if (++rounds > 1_000_000) {
        sim.violate("deadlock", "fibers keep running without time passing (livelock)")
        break drive
      }
    }
    const exit = root.unsafePoll()
    if (exit !== null) {
      if (Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)) {
        sim.violate("crash", Cause.pretty(exit.cause).split("\n").slice(0, 6).join(" / "))
      }
      break
    }
    invariants.checkStep()
    if (events % fullEvery === 0) invariants.checkLogMatching()
    if (sim.violation !== undefined) break
    const timer = clock.next()
    if (timer === undefined) {
      sim.violate("deadlock", "no fiber can run and no timer is set")
      break
    }
    if (++events > maxEvents) {
      sim.violate("deadlock", `more than ${maxEvents} timer events`)
      break
    }
    clock.now = timer.at
    timer.resume()
  }
  if (sim.violation === undefined) invariants.checkLogMatching()

  let linearizability: Result["linearizability"] = "skipped"
  if (sim.violation === undefined) {
    const outcome = Linearizability.check(workload.model, sim.history)
    linearizability = outcome._tag
    if (outcome._tag === "NotLinearizable") {
      sim.violate("linearizability", `history of ${sim.history.length} operations is not linearizable: ${
        JSON.stringify(outcome).slice(0, 300)
      }`)
    }
  }
  return {
    seed: options.seed,
    ok: sim.violation === undefined,
    violation: sim.violation,
    trace: sim.trace,
    events,
    virtualMillis: clock.now,
    faults: sim.faults,
    operations: sim.counts,
    reads: sim.reads === "readIndex" ? sim.readCounts : undefined,
    leadersElected: invariants.leadersElected,
    snapshots: sim.snapshotCounts,
    linearizability,
    deployment: randomizes(options.randomize) ? deployment : undefined
  }
}
