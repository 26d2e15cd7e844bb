import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { deploymentOf } from "../../../src/internal/simulator/deployment.js"
import * as RaftConfig from "../../../src/RaftConfig.js"
import { everyDimension } from "../../testing/corners.js"
import { range } from "../../testing/simulation.js"

const all = everyDimension
const millis = (input: Duration.DurationInput | undefined) => Duration.toMillis(Duration.decode(input ?? 0))

describe("the simulator's randomized deployments", () => {
  it("draw nothing unless asked: the run's own options, and the default disks", () => {
    const deployment = deploymentOf({ seed: 7, nodes: 5, config: { preVote: false } })
    assert.deepStrictEqual(deployment, {
      nodes: 5,
      config: { preVote: false },
      diskLatencyMillis: [0, 2],
      syncFsm: false
    })
  })

  it("draw the same deployment for the same seed, and every size, PreVote both ways, each batch and both snapshot modes over a few seeds", () => {
    const drawn = range(1, 60).map((seed) => deploymentOf({ seed, nodes: 3, randomize: all }))
    assert.deepStrictEqual(range(1, 60).map((seed) => deploymentOf({ seed, nodes: 3, randomize: all })), drawn)
    assert.sameMembers([...new Set(drawn.map((d) => d.nodes))], [3, 4, 5, 7])
    assert.sameMembers([...new Set(drawn.map((d) => d.config.preVote))], [true, false])
    assert.sameMembers([...new Set(drawn.map((d) => d.config.maxAppendEntries))], [1, 2, 4, 8, 64])
    assert.sameMembers([...new Set(drawn.map((d) => d.config.snapshotThreshold === undefined))], [true, false])
    assert.sameMembers([...new Set(drawn.map((d) => d.diskLatencyMillis[1]))], [0, 2, 10, 20])
    assert.sameMembers([...new Set(drawn.map((d) => d.syncFsm))], [true, false])
  })

  it("draw only valid configurations, with a lease long enough for a quorum's disk writes", () => {
    for (const seed of range(1, 200)) {
      const { config, diskLatencyMillis } = deploymentOf({ seed, nodes: 3, randomize: all })
      const made = Effect.runSyncExit(RaftConfig.make({ localId: "n1", ...config }))
      assert.isTrue(Exit.isSuccess(made), `seed ${seed}: ${JSON.stringify(config)}`)
      const lease = millis(config.leaderLeaseTimeout)
      assert.isTrue(
        lease >= Math.min(millis(config.heartbeatTimeout), 2 * diskLatencyMillis[1] + 10),
        `seed ${seed}: a lease of ${lease} ms with disk writes of up to ${diskLatencyMillis[1]} ms`
      )
    }
  })

  it("leave what the run sets explicitly alone", () => {
    const deployment = deploymentOf({
      seed: 3,
      nodes: 3,
      randomize: all,
      config: { preVote: false, maxAppendEntries: 16 },
      diskLatencyMillis: [1, 1],
      syncFsm: false
    })
    assert.strictEqual(deployment.syncFsm, false)
    assert.strictEqual(deployment.config.preVote, false)
    assert.strictEqual(deployment.config.maxAppendEntries, 16)
    assert.deepStrictEqual(deployment.diskLatencyMillis, [1, 1])
  })
})
