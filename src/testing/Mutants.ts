/**
 * The mutant catalogue: classic Raft bugs, each injected by a switch of the engine (`Bugs`, off unless a run sets
 * it), with the rule it breaks and, when the default faults rarely reach it, the scenario that hunts it. The
 * simulator must catch every one: `npm run sim:mutants` reports how many seeds each takes, and
 * `test/testing/Mutants.test.ts` fails when one is no longer caught within its budget.
 *
 * Adding a mutant: add its switch to `Bugs` (src/internal/bugs.ts) where the engine reads it, then one entry
 * here. Test-only: never set these switches in a real deployment.
 */
import type { Bugs } from "../internal/bugs.js"
import type { FaultOptions, Options, Violation } from "../internal/simulator/types.js"
import * as Simulator from "./Simulator.js"

/** The options of the runs that hunt a mutant, besides the seed, the cluster size and the bug. Plain data. */
export type Scenario = Partial<Omit<Options, "seed" | "nodes" | "bugs" | "workload">>

/** One classic bug. */
export interface Mutant {
  /** Its name on the command line (`npm run sim:mutants -- --only <name>`, `npm run sim -- --mutant <name>`). */
  readonly name: string
  /** What the broken engine does. */
  readonly description: string
  /** The rule of Raft it breaks, with the paper's section. */
  readonly rule: string
  /** The switches that inject it. */
  readonly bugs: Bugs
  /** Where it is hunted, over 2 s of the default faults; the default faults alone when absent. */
  readonly scenario?: Scenario | undefined
  /** Violations the scenario also produces without the bug (so they do not count as catching it). */
  readonly ignore?: ReadonlyArray<Violation["property"]> | undefined
  /** `npm test` requires a catch within `seeds` seeds (from seed 1) of `nodes` nodes: the cheaper size for it. */
  readonly budget: { readonly nodes: number; readonly seeds: number }
}

/**
 * Crashes during slow disk writes: a node that crashes while a write is under way loses it, so an entry counted
 * before its write was durable can vanish.
 */
const crashesDuringSlowWrites: Scenario = {
  faults: {
    ...Simulator.defaultFaults,
    intervalMillis: [10, 60],
    weights: { partition: 0, isolateLeader: 0, oneWay: 1, cutLink: 4, crash: 4, restart: 5, reboot: 4, heal: 1, lossyLinks: 0 }
  },
  diskLatencyMillis: [10, 60]
}

/**
 * Competing candidates of one term and voters that reboot right after granting a vote: two candidates that
 * cannot see each other (single links cut, slow links) both ask the same voter, which forgets its vote in
 * between unless it stored it. Links this slow (up to 120 ms round trip against a 50 ms lease) keep leaders from
 * holding on, so liveness is not expected. PreVote off: it keeps nodes that would lose from campaigning.
 */
const rebootsAfterVotes: Scenario = {
  durationMillis: 3000,
  config: { preVote: false },
  faults: {
    intervalMillis: [5, 60],
    rebootAfterVote: 1,
    weights: { partition: 0, isolateLeader: 1, oneWay: 0, cutLink: 6, crash: 1, restart: 2, reboot: 2, heal: 1, lossyLinks: 0 },
    lossy: { minDelayMillis: 0, maxDelayMillis: 20, dropRate: 0.2, duplicateRate: 0 },
    baseline: { minDelayMillis: 5, maxDelayMillis: 60, dropRate: 0, duplicateRate: 0 }
  } satisfies FaultOptions
}

/** Every mutant the engine can be built with. */
export const catalogue: ReadonlyArray<Mutant> = [
  {
    name: "commitWithoutQuorum",
    description: "the leader commits what it alone stored, without waiting for a quorum",
    rule: "an entry is committed once a majority stores it (Raft §5.3)",
    bugs: { commitWithoutQuorum: true },
    budget: { nodes: 3, seeds: 10 }
  },
  {
    name: "commitPreviousTermsByCounting",
    description: "the leader commits entries of earlier terms by counting their replicas",
    rule: "only entries of the leader's own term are committed by counting (Raft §5.4.2, Figure 8)",
    bugs: { commitPreviousTermsByCounting: true },
    budget: { nodes: 3, seeds: 10 }
  },
  {
    name: "keepConflictingSuffix",
    description: "a follower overwrites conflicting entries but keeps the rest of its old suffix",
    rule: "a follower deletes a conflicting entry and all that follow it (Raft §5.3, AppendEntries step 3)",
    bugs: { keepConflictingSuffix: true },
    budget: { nodes: 3, seeds: 10 }
  },
  {
    name: "leaderCountsUnwritten",
    description: "the leader counts itself toward commitment before its own write of the entries is durable",
    rule: "a server acknowledges (and a leader counts itself for) only what it has made durable (Raft §5.3, thesis §10.2.1)",
    bugs: { leaderCountsUnwritten: true },
    scenario: crashesDuringSlowWrites,
    ignore: ["liveness"],
    budget: { nodes: 3, seeds: 20 }
  },
  {
    name: "voteWithoutPersist",
    description: "a vote is granted but never written to the StableStore, so a restart forgets it",
    rule: "a server stores its vote before granting it, and votes once per term (Raft §5.2, Figure 2)",
    bugs: { voteWithoutPersist: true },
    scenario: rebootsAfterVotes,
    ignore: ["liveness"],
    budget: { nodes: 5, seeds: 20 }
  }
]

/** The options of a run that hunts `mutant` on `nodes` nodes (without the seed). */
export const huntOptions = (mutant: Mutant, nodes: number, withBug = true): Omit<Options, "seed"> => ({
  nodes,
  durationMillis: 2000,
  ...mutant.scenario,
  bugs: withBug ? mutant.bugs : undefined
})

/** Whether `result` catches `mutant`: a violation its scenario does not produce without the bug. */
export const catches = (mutant: Mutant, result: Simulator.Result): boolean =>
  !result.ok && !(mutant.ignore ?? []).includes(result.violation!.property)
