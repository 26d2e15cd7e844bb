import { assert, describe, it } from "@effect/vitest"
import * as Configuration from "../../src/Configuration.js"
import { checkedLate, quorumInLease } from "../../src/internal/leader.js"
import type { LeaderState } from "../../src/internal/leaderState.js"
import type { NodeState } from "../../src/internal/state.js"

const LEASE = 50

/** The fields of a leader the lease check reads: three voters, `a` leading, its clock at `now`. */
const leaderAt = (now: number, lastContact: { readonly b: number; readonly c: number }) => {
  const configuration = Configuration.voters([["a", "a"], ["b", "b"], ["c", "c"]])
  const replication = (id: "b" | "c") => ({
    peer: configuration.servers.find((server) => server.id === id)!,
    labels: [],
    lastContact: lastContact[id]
  })
  const ls = { replications: new Map([["b", replication("b")], ["c", replication("c")]]) } as unknown as LeaderState
  const node = {
    localId: "a",
    latestConfiguration: configuration,
    config: { leaderLeaseTimeoutMillis: LEASE },
    now: () => now
  } as unknown as NodeState
  return { node, ls }
}

describe("the leader's lease check", () => {
  it("holds while one follower of two answered within the lease, and not once none did", () => {
    assert.isTrue(quorumInLease(leaderAt(1000, { b: 960, c: 0 }).node, leaderAt(1000, { b: 960, c: 0 }).ls, false))
    const stale = leaderAt(1000, { b: 940, c: 900 })
    assert.isFalse(quorumInLease(stale.node, stale.ls, false))
  })

  it("a check that woke more than half a lease late knows the node stood still, and looks again before it judges", () => {
    // Slept at 1000 for a lease of 50: on time at 1050, a little late at 1070, stalled at 1080 and beyond.
    assert.isFalse(checkedLate(leaderAt(1050, { b: 0, c: 0 }).node, 1000))
    assert.isFalse(checkedLate(leaderAt(1070, { b: 0, c: 0 }).node, 1000))
    assert.isTrue(checkedLate(leaderAt(1080, { b: 0, c: 0 }).node, 1000))
    assert.isTrue(checkedLate(leaderAt(1400, { b: 0, c: 0 }).node, 1000))
  })
})
