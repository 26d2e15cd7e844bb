/**
 * What the nemesis's targeted schedules share: waiting for a leader, restarting a node that is down, and the steady
 * state a schedule builds its dangerous state from (a healed network, every node running, a leader whose
 * configuration holds every server as a voter). A schedule that starts from there and waits for the states it needs,
 * rather than for a moment in time, does not depend on how the engine schedules its fibers.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Random from "effect/Random"
import * as Configuration from "../../Configuration.js"
import type { Invariants } from "./invariants.js"
import { startNode, stopNode } from "./nodes.js"
import { type SimCore, type SimNode, sync } from "./state.js"

/** One of `items`, drawn with `Random`. */
export const pick = <A>(items: ReadonlyArray<A>): Effect.Effect<A> =>
  Effect.map(Random.nextIntBetween(0, items.length), (i) => items[i]!)

/** The current leader (other than `except`), waiting up to `millis` of virtual time for one. */
export const awaitLeader = (sim: SimCore, millis: number, except?: SimNode): Effect.Effect<SimNode | undefined> =>
  Effect.gen(function*() {
    for (let waited = 0; waited <= millis; waited += 5) {
      const leader = sim.currentLeader()
      if (leader !== undefined && leader !== except) return leader
      yield* Effect.sleep(5)
    }
    return undefined
  })

/** Starts `node` again if it is down, noting why. */
export const restartIfDown = (sim: SimCore, invariants: Invariants, node: SimNode, why: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (node.raft !== undefined) return
    yield* startNode(sim, invariants, node)
    sim.note(`${why}: restart ${node.id}`)
  })

/**
 * Starts `node` again if it is down or shut itself down (a server removed from the configuration does, with
 * `shutdownOnRemove`), on its stores.
 */
export const revive = (sim: SimCore, invariants: Invariants, node: SimNode, why: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (node.raft !== undefined && sync(node.raft.state) === "Shutdown") yield* stopNode(sim, node)
    yield* restartIfDown(sim, invariants, node, why)
  })

/**
 * Heals the network, restarts every node that is down and waits (up to 600 ms) for a leader whose configuration
 * holds every server as a voter and which has committed an entry of its term (a barrier, so that it takes
 * membership changes at once): the state a targeted schedule starts from. Undefined when there is none.
 */
export const steadyLeader = (sim: SimCore, invariants: Invariants, why: string): Effect.Effect<SimNode | undefined> =>
  Effect.gen(function*() {
    yield* sim.network.heal
    yield* sim.network.setConditions(sim.faultOptions.baseline)
    for (const node of sim.nodes) yield* revive(sim, invariants, node, why)
    const leader = yield* awaitLeader(sim, 600)
    if (leader === undefined) return undefined
    const raft = leader.raft!
    const { configuration } = sync(raft.getConfiguration)
    if (!sim.nodes.every((n) => Configuration.isVoter(configuration, n.id))) return undefined
    const barrier = yield* Effect.exit(raft.barrier({ timeout: 200 }))
    return Exit.isSuccess(barrier) && leader.raft === raft && sync(raft.state) === "Leader" ? leader : undefined
  })

/** The votes that make a quorum of `voters` voters. */
export const quorumOf = (voters: number): number => Math.floor(voters / 2) + 1
