/**
 * The nemesis: during the faulty phase of a run, at random intervals, one fault drawn by weight (partitions,
 * cut links, crashes, restarts, lossy links, membership changes...). Each fault is one entry of `faults`, drawn
 * from the run's seeded `Random`, so a seed replays the same faults at the same virtual times. The faults that change
 * the configuration live in `membershipFaults.ts`; what the targeted schedules share, in `steady.ts`.
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as Configuration from "../../Configuration.js"
import * as RaftConfig from "../../RaftConfig.js"
import type { RequestVoteRequest } from "../../Rpc.js"
import type { Invariants } from "./invariants.js"
import { copyEverything } from "./lateCopies.js"
import { fastTimers, startNode, stopNode } from "./nodes.js"
import { membership, membershipBurst, removedVoters } from "./membershipFaults.js"
import { type SimCore, type SimNode, sync } from "./state.js"
import { awaitLeader, pick, quorumOf, restartIfDown, steadyLeader } from "./steady.js"

export { pick } from "./steady.js"

/** A fault: what it does to the cluster, noted in the trace. */
type Fault = (sim: SimCore, invariants: Invariants) => Effect.Effect<void>

/** The faults by name, as `FaultOptions.weights` names them. */
const faults: Readonly<Record<string, Fault>> = {
  partition: (sim) =>
    Effect.gen(function*() {
      const shuffled = yield* Random.shuffle(sim.nodes.map((n) => n.id))
      const cut = 1 + (yield* Random.nextIntBetween(0, Math.max(1, sim.size - 1)))
      const groups = [Array.from(shuffled).slice(0, cut), Array.from(shuffled).slice(cut)]
      yield* sim.network.partition(groups)
      sim.note(`partition ${JSON.stringify(groups)}`)
    }),
  isolateLeader: (sim) =>
    Effect.gen(function*() {
      const leader = sim.currentLeader()
      if (leader !== undefined) {
        yield* sim.network.disconnect(leader.id)
        sim.note(`isolate leader ${leader.id}`)
      }
    }),
  oneWay: (sim) =>
    Effect.gen(function*() {
      const from = yield* pick(sim.nodes)
      const to = yield* pick(sim.nodes.filter((n) => n !== from))
      if (to !== undefined) {
        yield* sim.network.block(from.id, to.id)
        sim.note(`block ${from.id} -> ${to.id}`)
      }
    }),
  cutLink: (sim) =>
    Effect.gen(function*() {
      const [a, b] = Array.from(yield* Random.shuffle(sim.nodes.map((n) => n.id)))
      if (a !== undefined && b !== undefined) {
        yield* sim.network.block(a, b)
        yield* sim.network.block(b, a)
        sim.note(`cut ${a} <-> ${b}`)
      }
    }),
  closeConnections: (sim) =>
    Effect.gen(function*() {
      const leader = sim.currentLeader()
      if (leader !== undefined) {
        yield* sim.network.closeConnections(leader.id)
        // Half the time its links then fail too (the reset came before a partition): it lives on, cut off, with
        // whatever lease it holds, while its followers were told it may be gone.
        const cut = (yield* Random.nextIntBetween(0, 2)) === 0
        if (cut) yield* sim.network.disconnect(leader.id)
        sim.note(`close the connections of leader ${leader.id}${cut ? ", then cut it off" : ""}`)
      }
    }),
  crash: (sim) =>
    Effect.gen(function*() {
      const alive = sim.running()
      if (alive.length > 0) {
        const victim = yield* pick(alive)
        yield* stopNode(sim, victim)
        sim.note(`crash ${victim.id}`)
      }
    }),
  restart: (sim, invariants) =>
    Effect.gen(function*() {
      const down = sim.nodes.filter((n) => n.raft === undefined)
      if (down.length > 0) {
        const node = yield* pick(down)
        yield* startNode(sim, invariants, node)
        sim.note(`restart ${node.id}`)
      }
    }),
  reboot: (sim, invariants) =>
    Effect.gen(function*() {
      const alive = sim.running()
      if (alive.length > 0) {
        const victim = yield* pick(alive)
        yield* stopNode(sim, victim)
        yield* startNode(sim, invariants, victim)
        sim.note(`reboot ${victim.id}`)
      }
    }),
  heal: (sim) =>
    Effect.gen(function*() {
      yield* sim.network.heal
      yield* sim.network.setConditions(sim.faultOptions.baseline)
      sim.note("heal")
    }),
  membership,
  membershipBurst,
  removedVoters,
  nonVoterQuorum: (sim, invariants) =>
    Effect.gen(function*() {
      const leader = sim.currentLeader()
      if (leader === undefined) return
      const raft = leader.raft!
      // The fewest voters that still make a majority of the servers minus one: 3 of 5, 4 of 7 (2 of 3 cannot
      // lose an entry this way: the leader's own vote would be needed to elect another).
      const voters = Math.floor(sim.size / 2) + 1
      let current = (yield* raft.getConfiguration).configuration
      const followers = Array.from(yield* Random.shuffle(sim.nodes.filter((n) => n !== leader)))
      for (const node of followers) {
        if (Configuration.votersOf(current).length <= voters) break
        if (!Configuration.isVoter(current, node.id)) continue
        const exit = yield* Effect.exit(raft.demoteVoter(node.id, { timeout: 200 }))
        sim.note(`non-voter quorum: demote ${node.id}: ${Exit.isSuccess(exit) ? "committed" : Cause.squash(exit.cause)}`)
        if (Exit.isFailure(exit) || leader.raft !== raft) return
        current = (yield* raft.getConfiguration).configuration
      }
      const nonVoters = sim.nodes.filter((n) => n !== leader && !Configuration.isVoter(current, n.id)).map((n) => n.id)
      if (nonVoters.length === 0) return
      const rest = sim.nodes.filter((n) => n !== leader && !nonVoters.includes(n.id)).map((n) => n.id)
      yield* sim.network.partition([[leader.id, ...nonVoters], rest])
      sim.note(`non-voter quorum: cut ${leader.id} off with the non-voters ${JSON.stringify(nonVoters)}`)
      yield* Effect.sleep(yield* Random.nextIntBetween(10, 61))
      yield* stopNode(sim, leader)
      yield* sim.network.heal
      sim.note(`non-voter quorum: crash ${leader.id}, heal`)
      yield* Effect.sleep(yield* Random.nextIntBetween(100, 301))
      yield* restartIfDown(sim, invariants, leader, "non-voter quorum")
    }),
  crashUnwritten: (sim, invariants) =>
    Effect.gen(function*() {
      const leader = yield* steadyLeader(sim, invariants, "crash-unwritten")
      if (leader === undefined) return
      const raft = leader.raft!
      // The leader with a quorum less one of the others (those that acknowledge), the rest cut off: it commits only
      // once its own write is durable, unless it counts itself before.
      const quorum = quorumOf(sim.size)
      const others = Array.from(yield* Random.shuffle(sim.nodes.filter((n) => n !== leader)))
      const acks = others.slice(0, quorum - 1)
      const away = others.slice(quorum - 1)
      // Even sizes: the leader and those cut off would be no quorum.
      if (1 + away.length < quorum) return
      yield* sim.network.partition([[leader.id, ...acks.map((n) => n.id)], away.map((n) => n.id)])
      sim.note(`crash-unwritten: ${leader.id} cut off with ${JSON.stringify(acks.map((n) => n.id))}`)
      // Up to 500 ms for the state: its state machine applied (and answered) a command its disk does not hold yet.
      let found = false
      for (let waited = 0; waited < 500 && !found; waited++) {
        yield* Effect.sleep(1)
        if (leader.raft !== raft || sync(raft.state) !== "Leader") break
        found = leader.appliedThrough > leader.view.last
      }
      if (!found) {
        yield* sim.network.heal
        sim.note(`crash-unwritten: ${leader.id} never applied past its disk; heal`)
        return
      }
      const applied = leader.appliedThrough
      const disk = leader.view.last
      // A power cut: its write under way is lost. Those that acknowledged are cut off; the leader, restarted, and
      // the others are a quorum, and (unless one of them acknowledged it before it was cut off) none holds the command.
      yield* stopNode(sim, leader)
      yield* sim.network.partition([[leader.id, ...away.map((n) => n.id)], ...acks.map((n) => [n.id])])
      sim.note(
        `crash-unwritten: ${leader.id} crashes, having applied command ${applied} past its disk's ${disk};` +
          ` cut off ${JSON.stringify(acks.map((n) => n.id))}`
      )
      yield* Effect.sleep(yield* Random.nextIntBetween(0, 21))
      yield* restartIfDown(sim, invariants, leader, "crash-unwritten")
      const next = yield* awaitLeader(sim, 600)
      yield* sim.network.heal
      sim.note(`crash-unwritten: ${next === undefined ? "no" : next.id} leads; heal`)
    }),
  lossyLinks: (sim) =>
    Effect.gen(function*() {
      yield* sim.network.setConditions(sim.faultOptions.lossy)
      sim.note(`lossy links ${JSON.stringify(sim.faultOptions.lossy)}`)
    }),
  transfer: (sim) =>
    Effect.gen(function*() {
      const leader = sim.currentLeader()
      if (leader === undefined) return
      const raft = leader.raft!
      const others = sim.nodes.filter((n) => n !== leader)
      const target = others.length > 0 && (yield* Random.nextBoolean) ? yield* pick(others) : undefined
      const request = target === undefined
        ? raft.leadershipTransfer
        : raft.leadershipTransferToServer(target.id, target.address)
      const what = `transfer leadership from ${leader.id}${target === undefined ? "" : ` to ${target.id}`}`
      sim.note(what)
      // The transfer completes when a new leader takes over, or not: the nemesis does not wait for it.
      yield* request.pipe(
        Effect.exit,
        Effect.flatMap((exit) =>
          Effect.sync(() => sim.note(`${what}: ${Exit.isSuccess(exit) ? "done" : Cause.squash(exit.cause)}`))
        ),
        Effect.forkIn(sim.rootScope)
      )
    }),
  transferToLagging: (sim) =>
    Effect.gen(function*() {
      const leader = sim.currentLeader()
      if (leader === undefined) return
      const raft = leader.raft!
      const { configuration } = yield* raft.getConfiguration
      const voters = sim.nodes.filter((n) => n !== leader && n.raft !== undefined && Configuration.isVoter(configuration, n.id))
      if (voters.length === 0) return
      const target = yield* pick(voters)
      // A healed network, with the target just back from being cut off while the clients wrote: it lags.
      yield* sim.network.heal
      yield* sim.network.setConditions(sim.faultOptions.baseline)
      yield* sim.network.disconnect(target.id)
      yield* Effect.sleep(yield* Random.nextIntBetween(20, 61))
      yield* sim.network.reconnect(target.id)
      const term = sync(raft.stats).term
      if (leader.raft !== raft || sync(raft.state) !== "Leader") return
      sim.note(`transfer-to-lagging: transfer leadership from ${leader.id} (term ${term}) to ${target.id}, back from a cut`)
      const exit = yield* Effect.exit(raft.leadershipTransferToServer(target.id, target.address))
      sim.note(`transfer-to-lagging: ${Exit.isSuccess(exit) ? "done" : Cause.squash(exit.cause)}`)
      if (Exit.isFailure(exit)) return
      // Done: the leader was deposed. The first leader of a newer term must be the target (Raft thesis §3.10).
      for (let waited = 0; waited <= 500; waited += 5) {
        const next = sim.running().find((n) => {
          const stats = sync(n.raft!.stats)
          return stats.state === "Leader" && stats.term > term
        })
        if (next !== undefined) {
          if (next !== target) {
            sim.violate("leadership transfer", `${leader.id} handed leadership to ${target.id}, but ${next.id} took it`)
          }
          return
        }
        yield* Effect.sleep(5)
      }
    }),
  staleLeader: (sim) =>
    Effect.gen(function*() {
      const stale = sim.currentLeader()
      if (stale === undefined) return
      // What it sends in its last 30 ms as leader arrives again 150–400 ms later, once the others (it cut off)
      // have elected a leader of a newer term, and it is back.
      copyEverything(sim, stale.id, 30, [150, 400])
      yield* Effect.sleep(yield* Random.nextIntBetween(10, 31))
      yield* sim.network.disconnect(stale.id)
      sim.note(`stale-leader: ${stale.id} cut off; what it sent lately arrives again later`)
      yield* awaitLeader(sim, 400, stale)
      yield* sim.network.reconnect(stale.id)
      sim.note(`stale-leader: ${stale.id} is back`)
    }),
  appendCrash: (sim, invariants) =>
    Effect.gen(function*() {
      // Figure 8 of the Raft paper, by rounds: each round's leader appends with fewer than a quorum around it and
      // crashes; the previous round's leader comes back meanwhile, with its own unreplicated entries of an older
      // term, and may be elected again (a leader must then not commit them by counting).
      const rounds = 2 + (yield* Random.nextIntBetween(0, 2))
      let previous: SimNode | undefined
      for (let round = 0; round < rounds; round++) {
        const leader = yield* awaitLeader(sim, 300)
        if (leader === undefined) break
        yield* cutOffWithMinority(sim, leader)
        yield* Effect.sleep(yield* Random.nextIntBetween(5, 41))
        yield* stopNode(sim, leader)
        yield* sim.network.heal
        sim.note(`append-crash: ${leader.id} crashes before replicating`)
        yield* Effect.sleep(yield* Random.nextIntBetween(10, 101))
        if (previous !== undefined) yield* restartIfDown(sim, invariants, previous, "append-crash")
        previous = leader
      }
      if (previous !== undefined) {
        yield* Effect.sleep(yield* Random.nextIntBetween(10, 151))
        yield* restartIfDown(sim, invariants, previous, "append-crash")
      }
    }),
  staleCandidate: (sim) =>
    Effect.gen(function*() {
      const stale = sim.currentLeader()
      if (stale === undefined) return
      // Cut off alone, it appends what its clients still send until its lease runs out; the others elect a
      // leader of a newer term, which has written little yet when it is cut off in turn.
      yield* sim.network.disconnect(stale.id)
      sim.note(`stale-candidate: cut ${stale.id} off alone`)
      const next = yield* awaitLeader(sim, 400, stale)
      if (next !== undefined) {
        yield* Effect.sleep(yield* Random.nextIntBetween(0, 21))
        // Silence the new leader, so that its followers time out and hear the stale node's requests for votes.
        yield* sim.network.disconnect(next.id)
        sim.note(`stale-candidate: cut ${next.id}, the newer leader, off`)
      }
      yield* sim.network.reconnect(stale.id)
      sim.note(`stale-candidate: ${stale.id} is back with its longer log of an older term`)
      yield* Effect.sleep(yield* Random.nextIntBetween(50, 251))
      if (next !== undefined) yield* sim.network.reconnect(next.id)
    }),
  doubleVote: (sim, invariants) =>
    Effect.gen(function*() {
      // From a healed network and a leader, so that every log holds what was committed.
      yield* sim.network.heal
      yield* sim.network.setConditions(sim.faultOptions.baseline)
      const leader = yield* awaitLeader(sim, 600)
      if (leader === undefined) return
      const { configuration } = yield* leader.raft!.getConfiguration
      if (sim.nodes.some((n) => !Configuration.isVoter(configuration, n.id))) return
      // Everyone alone: each times out and campaigns, term after term, and none can win.
      yield* sim.network.partition(sim.nodes.map((n) => [n.id]))
      sim.note(`double-vote: everyone cut off alone (the leader was ${leader.id})`)
      // A voter, a candidate in its current term T, and another candidate that asked in T and in an older term
      // (after 500 ms, in T only), with a log the voter's does not make it refuse.
      let found: { voter: SimNode; candidate: SimNode; term: number; requests: Array<RequestVoteRequest> } | undefined
      for (let waited = 0; waited < 1000 && found === undefined; waited++) {
        yield* Effect.sleep(1)
        found = doubleVoteCandidates(sim, waited >= 500)
      }
      if (found === undefined) {
        sim.note("double-vote: no two candidates asked in one term")
        return
      }
      const { candidate, requests, term, voter } = found
      // Sent after it stored its own vote (a candidate votes for itself, then asks: election.ts).
      invariants.noteVote(voter.id, term, voter.id)
      yield* stopNode(sim, voter)
      yield* startNode(sim, invariants, voter)
      sim.note(`double-vote: ${voter.id} reboots, a candidate of term ${term}`)
      // A restarted server refuses votes for a heartbeat timeout (it may have heard from a leader just before).
      yield* Effect.sleep(heartbeatMillis(sim) + 1)
      yield* sim.network.partition([
        [voter.id, candidate.id],
        ...sim.nodes.filter((n) => n !== voter && n !== candidate).map((n) => [n.id])
      ])
      for (const request of requests) {
        const exit = yield* sim.network.transport(candidate.id, candidate.address)
          .requestVote(voter.id, voter.address, request)
          .pipe(Effect.timeout(50), Effect.exit)
        const granted = Exit.isSuccess(exit) && exit.value.granted
        sim.note(
          `double-vote: ${candidate.id}'s RequestVote of term ${request.term} reaches ${voter.id} again: ` +
            (granted ? "granted" : "refused")
        )
        if (granted) invariants.noteVote(voter.id, request.term, request.candidateId)
      }
    }),
  clockSkew: (sim) =>
    Effect.gen(function*() {
      // Half the time the leader's clock, slowed (its lease lasts longer than the others count); else any node's,
      // slowed or sped up. One clock off at a time: the bound is between two clocks, so skewing two in opposite
      // ways would double it.
      const leader = sim.currentLeader()
      const slowLeader = leader !== undefined && (yield* Random.nextBoolean)
      const node = slowLeader ? leader : yield* pick(sim.nodes)
      for (const other of sim.nodes) {
        if (other !== node && other.clock.currentRate !== 1) other.clock.setRate(1)
      }
      // Half the draws at the bound itself, where a lease has no margin left.
      const bound = skewBound(sim)
      const depth = (yield* Random.nextBoolean) ? 1 : yield* Random.next
      const rate = slowLeader || (yield* Random.nextBoolean) ? 1 - bound * depth : 1 / (1 - bound * depth)
      node.clock.setRate(rate)
      sim.note(`clock of ${node.id} runs at rate ${rate.toFixed(4)} (bound ${bound.toFixed(4)})`)
    })
}

/**
 * How far `clockSkew` may move a clock's rate: `clockSkewBound`, or what lease reads assume, the drift margin over
 * the lease (a `leaderLeaseTimeout` may last that fraction less on one clock than on another).
 */
const skewBound = (sim: SimCore): number => {
  const set = sim.faultOptions.clockSkewBound
  if (set !== undefined) return Math.min(0.95, Math.max(0, set))
  const config = Effect.runSync(Effect.orDie(RaftConfig.make({ localId: "n1", ...fastTimers, ...sim.config })))
  return RaftConfig.clockDriftMillis(config) / config.leaderLeaseTimeoutMillis
}

/**
 * For `doubleVote`: a running voter, a candidate in its current term T, and another node that asked for votes in T
 * (and, unless `inTermOnly`, in an older term before it) with a log at least as up to date as the voter's, and
 * those requests, oldest first.
 */
const doubleVoteCandidates = (sim: SimCore, inTermOnly: boolean) => {
  const sent = (node: SimNode) => sim.sentVotes.get(node.id)
  for (const voter of sim.running()) {
    const stats = sync(voter.raft!.stats)
    if (stats.state !== "Candidate" || sent(voter)?.has(stats.term) !== true) continue
    const view = voter.view
    const lastTerm = view.last === 0 ? 0 : view.get(view.last)?.term ?? 0
    const granted = (request: RequestVoteRequest) =>
      request.lastLogTerm > lastTerm || (request.lastLogTerm === lastTerm && request.lastLogIndex >= view.last)
    for (const candidate of sim.running()) {
      const requests = sent(candidate)
      const inTerm = requests?.get(stats.term)
      if (candidate === voter || inTerm === undefined || !granted(inTerm)) continue
      const older = Array.from(requests!.values()).filter((r) => r.term < stats.term && granted(r))
        .sort((a, b) => b.term - a.term)[0]
      if (older !== undefined) return { voter, candidate, term: stats.term, requests: [older, inTerm] }
      if (inTermOnly) return { voter, candidate, term: stats.term, requests: [inTerm] }
    }
  }
  return undefined
}

/** The heartbeat timeout of the run's configuration. */
const heartbeatMillis = (sim: SimCore): number =>
  Effect.runSync(Effect.orDie(RaftConfig.make({ localId: "n1", ...fastTimers, ...sim.config }))).heartbeatTimeoutMillis

/** Partitions `leader` with fewer than a quorum of the others (none to quorum − 2 of them, drawn). */
const cutOffWithMinority = (sim: SimCore, leader: SimNode): Effect.Effect<void> =>
  Effect.gen(function*() {
    const quorum = Math.floor(sim.size / 2) + 1
    const others = Array.from(yield* Random.shuffle(sim.nodes.filter((n) => n !== leader).map((n) => n.id)))
    const keep = yield* Random.nextIntBetween(0, Math.max(0, quorum - 2) + 1)
    const minority = [leader.id, ...others.slice(0, keep)]
    yield* sim.network.partition([minority, others.slice(keep)])
    sim.note(`append-crash: cut ${leader.id} off with ${JSON.stringify(minority)}`)
  })

/** The nemesis fiber: forever, wait a random interval, then inject a fault drawn by weight. */
export const nemesis = (sim: SimCore, invariants: Invariants): Effect.Effect<void> =>
  Effect.gen(function*() {
    const w = sim.faultOptions.weights
    const kinds = Object.entries(w).flatMap(([name, weight]) =>
      weight !== undefined && weight > 0 ? [[name, weight] as const] : []
    )
    const total = kinds.reduce((n, [, weight]) => n + weight, 0)
    if (total === 0) return
    while (true) {
      const [min, max] = sim.faultOptions.intervalMillis
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
      sim.faults[kind] = (sim.faults[kind] ?? 0) + 1
      const fault = faults[kind]
      if (fault !== undefined) yield* fault(sim, invariants)
    }
  })
