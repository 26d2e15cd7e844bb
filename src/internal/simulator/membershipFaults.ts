/**
 * The nemesis's faults that change the configuration through the leader: a follower removed or added back at random
 * (`membership`), and two targeted schedules that build, on purpose, the states in which a leader that counts the
 * wrong servers commits what a quorum of the configuration does not hold: `membershipBurst` (changes started before
 * the previous one committed) and `removedVoters` (voters removed from the configuration still counted).
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as Configuration from "../../Configuration.js"
import type { Invariants } from "./invariants.js"
import type { SimCore, SimNode } from "./state.js"
import { awaitLeader, pick, quorumOf, revive, steadyLeader } from "./steady.js"

const ids = (nodes: ReadonlyArray<SimNode>): Array<string> => nodes.map((n) => n.id)

/**
 * Asks `leader` to add `node` back as a voter (`adding`) or to remove it, without waiting: the change completes
 * when it commits, or not.
 */
const askChange = (sim: SimCore, leader: SimNode, node: SimNode, adding: boolean): Effect.Effect<void> =>
  Effect.gen(function*() {
    const raft = leader.raft!
    const verb = adding ? "add" : "remove"
    const request = adding
      ? raft.addVoter(node.id, node.address, { timeout: 500 })
      : raft.removeServer(node.id, { timeout: 500 })
    sim.note(`${verb} ${node.id} (asked of leader ${leader.id})`)
    yield* request.pipe(
      Effect.exit,
      Effect.flatMap((exit) =>
        Effect.sync(() =>
          sim.note(`${verb} ${node.id}: ${Exit.isSuccess(exit) ? `committed at ${exit.value}` : Cause.squash(exit.cause)}`)
        )
      ),
      Effect.forkIn(sim.rootScope)
    )
  })

/** `membership`: through the leader, removes a follower, or adds back one that is out. */
export const membership = (sim: SimCore): Effect.Effect<void> =>
  Effect.gen(function*() {
    const leader = sim.currentLeader()
    if (leader === undefined) return
    const raft = leader.raft!
    const { configuration: current } = yield* raft.getConfiguration
    const out = sim.nodes.filter((n) => !Configuration.isVoter(current, n.id))
    const maxOut = Math.max(1, sim.faultOptions.membershipOut ?? 1)
    const adding = out.length >= maxOut || (out.length > 0 && (yield* Random.nextBoolean))
    const node = yield* pick(adding ? out : sim.nodes.filter((n) => n !== leader))
    yield* askChange(sim, leader, node, adding)
  })

/**
 * For `membershipBurst` on `size` servers: how many removals to ask at once, and how many followers stay with the
 * leader, so that once every removal is in effect the leader and those followers are a quorum of what is left,
 * while the others are a quorum of the old configuration, and the leader's side is no quorum of the configuration
 * after the first removal alone (one change at a time, nothing commits on its side). 3 servers: remove both
 * followers, leader alone; 5: remove two, leader and one follower.
 */
const burstPlan = (size: number): { readonly removals: number; readonly near: number } | undefined => {
  for (let removals = 2; removals < size; removals++) {
    const near = quorumOf(size - removals)
    const far = size - near
    if (far >= quorumOf(size) && far >= removals && near < quorumOf(size - 1)) return { removals, near: near - 1 }
  }
  return undefined
}

/**
 * `membershipBurst`: from a steady leader L, L is cut off with the followers that would make a quorum once several
 * removals are all in effect (`burstPlan`), and is asked, at once, to remove that many of the others. Changes made
 * one at a time (Raft thesis §4.1) commit nothing on L's side: the first removal alone still needs a server of the
 * other side. Changes started before the previous one committed take effect together, and L commits with its side
 * alone while the other side, a quorum of the old configuration, elects a leader without those entries. Waits for
 * that leader (up to 600 ms), then heals.
 */
export const membershipBurst = (sim: SimCore, invariants: Invariants): Effect.Effect<void> =>
  Effect.gen(function*() {
    const plan = burstPlan(sim.size)
    const leader = yield* steadyLeader(sim, invariants, "membership-burst")
    if (plan === undefined || leader === undefined) return
    const others = Array.from(yield* Random.shuffle(sim.nodes.filter((n) => n !== leader)))
    const near = others.slice(0, plan.near)
    const far = others.slice(plan.near)
    yield* sim.network.partition([[leader.id, ...ids(near)], ids(far)])
    sim.note(`membership-burst: ${leader.id} cut off with ${JSON.stringify(ids(near))}`)
    for (const node of far.slice(0, plan.removals)) yield* askChange(sim, leader, node, false)
    const next = yield* awaitLeader(sim, 600, leader)
    yield* sim.network.heal
    sim.note(`membership-burst: ${next === undefined ? "no" : next.id} leads the other side; heal`)
  })

/**
 * For `removedVoters` on `size` servers: the voters to keep. A bare quorum of the servers when a quorum of those
 * voters can leave the leader out (3 of 5, 4 of 7); else the leader alone (3 servers).
 */
const keptVoters = (size: number): number => {
  const kept = quorumOf(size)
  return kept - 1 >= quorumOf(kept) ? kept : 1
}

/**
 * `removedVoters`: from a steady leader L, removes followers one at a time, each committed before the next, until
 * `keptVoters` are left. A leader that still counts the removed voters (their matches frozen where its replication
 * to them stopped) cannot commit the removal that leaves it alone at 3 servers: its changes stay stuck while it
 * leads, which the liveness check at the end sees (at 3 servers no entry can be lost this way: the leader itself
 * holds all it counts, and every quorum of the voters left includes it). With more servers, L then adds the removed
 * back as non-voters (started again if they shut down) and is cut off with them: counting them, it commits what
 * none of the voters it is cut off from holds, and those, a quorum of the voters, elect a leader without it. Waits
 * for that leader (up to 600 ms), then heals.
 */
export const removedVoters = (sim: SimCore, invariants: Invariants): Effect.Effect<void> =>
  Effect.gen(function*() {
    const leader = yield* steadyLeader(sim, invariants, "removed-voters")
    if (leader === undefined) return
    const raft = leader.raft!
    const others = Array.from(yield* Random.shuffle(sim.nodes.filter((n) => n !== leader)))
    const removed = others.slice(0, sim.size - keptVoters(sim.size))
    for (const node of removed) {
      const exit = yield* Effect.exit(raft.removeServer(node.id, { timeout: 300 }))
      sim.note(`removed-voters: remove ${node.id}: ${Exit.isSuccess(exit) ? "committed" : Cause.squash(exit.cause)}`)
      if (Exit.isFailure(exit)) return
    }
    const voters = others.filter((n) => !removed.includes(n))
    if (voters.length === 0) return
    for (const node of removed) {
      yield* revive(sim, invariants, node, "removed-voters")
      const exit = yield* Effect.exit(raft.addNonvoter(node.id, node.address, { timeout: 300 }))
      sim.note(`removed-voters: add ${node.id} as a non-voter: ${Exit.isSuccess(exit) ? "committed" : Cause.squash(exit.cause)}`)
      if (Exit.isFailure(exit)) return
    }
    yield* sim.network.partition([[leader.id, ...ids(removed)], ids(voters)])
    sim.note(`removed-voters: ${leader.id} cut off with the removed ${JSON.stringify(ids(removed))}`)
    const next = yield* awaitLeader(sim, 600, leader)
    yield* sim.network.heal
    sim.note(`removed-voters: ${next === undefined ? "no" : next.id} leads the voters; heal`)
  })
