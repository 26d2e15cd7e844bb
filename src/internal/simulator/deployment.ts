/**
 * Opt-in randomization of what a real deployment varies: the cluster size, PreVote, the timers,
 * `maxAppendEntries`, snapshotting and compaction, how slow the disks are, and whether the state machine applies
 * synchronously, drawn per seed. The draws come from
 * a generator of their own, seeded from the run's seed, so a seed always gets the same deployment; what a run
 * sets explicitly (`config`, `diskLatencyMillis`) wins over the draws. The draws stay within what a working
 * deployment could choose: a leader lease long enough for a quorum's disk writes and round trips.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type * as RaftConfig from "../../RaftConfig.js"
import type { Deployment, Options, Randomize } from "./types.js"

/** Cluster sizes a randomized run picks from: odd and even, the smallest fault-tolerant one to seven. */
const sizes = [3, 4, 5, 7] as const
const appendBatches = [1, 2, 4, 8, 64] as const
const disks: ReadonlyArray<readonly [number, number]> = [[0, 0], [0, 2], [0, 10], [2, 20]]
const commitTimeouts = [1, 2, 5, 10, 20] as const
const heartbeats = [50, 75, 100, 150, 200] as const

/** The deployment of a run: drawn where `options.randomize` asks, else what the options say (or the defaults). */
export const deploymentOf = (
  options: Pick<Options, "seed" | "nodes" | "config" | "diskLatencyMillis" | "syncFsm" | "randomize">
): Deployment => {
  const randomize = options.randomize
  if (randomize === undefined || !randomizes(randomize)) {
    return {
      nodes: Math.max(1, Math.min(7, options.nodes)),
      config: { ...options.config },
      diskLatencyMillis: options.diskLatencyMillis ?? [0, 2],
      syncFsm: options.syncFsm ?? false
    }
  }
  const random = Random.make(`deployment:${options.seed}`)
  const int = (min: number, max: number) => Effect.runSync(random.nextIntBetween(min, max + 1))
  const oneOf = <A>(items: ReadonlyArray<A>): A => items[int(0, items.length - 1)]!
  const drawn: { -readonly [K in keyof Omit<RaftConfig.Input, "localId">]: Omit<RaftConfig.Input, "localId">[K] } = {}
  // Every draw is made whether used or not, so that switching one dimension leaves the others' draws alone.
  const nodes = oneOf(sizes)
  const preVote = int(0, 1) === 1
  const drawnDisk = oneOf(disks)
  const disk = options.diskLatencyMillis ?? (randomize.diskLatency === true ? drawnDisk : [0, 2] as const)
  const heartbeat = oneOf(heartbeats)
  const election = heartbeat + int(0, heartbeat)
  // A leader holds on only if a quorum's acknowledgements (a disk write each, and the round trip) come back
  // within its lease: a lease shorter than that is a deployment that cannot work, not a corner.
  const leaseFloor = Math.min(heartbeat, Math.max(5, 2 * disk[1] + 10))
  const lease = Math.max(leaseFloor, Math.round(heartbeat * int(25, 100) / 100))
  const commit = oneOf(commitTimeouts)
  const batch = oneOf(appendBatches)
  const snapshotting = int(0, 1) === 1
  const threshold = int(4, 64)
  const interval = int(5, 50)
  const trailing = int(0, 16)
  const syncFsm = int(0, 1) === 1
  if (randomize.preVote === true) drawn.preVote = preVote
  if (randomize.timers === true) {
    drawn.heartbeatTimeout = heartbeat
    drawn.electionTimeout = election
    drawn.leaderLeaseTimeout = lease
    drawn.commitTimeout = commit
  }
  if (randomize.maxAppendEntries === true) drawn.maxAppendEntries = batch
  if (randomize.snapshots === true && snapshotting) {
    drawn.snapshotThreshold = threshold
    drawn.snapshotInterval = interval
    drawn.trailingLogs = trailing
  }
  return {
    nodes: Math.max(1, Math.min(7, randomize.nodes === true ? nodes : options.nodes)),
    config: { ...drawn, ...options.config },
    diskLatencyMillis: disk,
    syncFsm: options.syncFsm ?? (randomize.syncFsm === true && syncFsm)
  }
}

/** Whether `randomize` draws anything. */
export const randomizes = (randomize: Randomize | undefined): boolean =>
  randomize !== undefined && Object.values(randomize).some((on) => on === true)
