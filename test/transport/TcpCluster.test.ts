/**
 * Three Raft nodes as three Node processes on loopback TCP (test/fixtures/tcp-node.ts, run with tsx), with memory
 * stores: they elect a leader and replicate; the leader's process is killed with SIGKILL, the other two elect a new
 * leader and go on; the old leader's process is started again and catches up from the new leader, by an
 * InstallSnapshot streamed over TCP (the nodes compact their logs every 16 entries) and then entries.
 */
import { afterAll, assert, describe, it } from "vitest"
import { agreedLeader, apply, children, converged, killAll, start, startCluster, until } from "./tcpProcesses.js"

afterAll(killAll)

describe("TCP cluster of three processes", () => {
  it("elects a leader, replicates, survives SIGKILL of the leader's process, and the restarted old leader catches up by InstallSnapshot over TCP", async () => {
    const { ports, peers } = await startCluster()
    await until("a first leader", () => agreedLeader(children), 60_000)
    await apply(children, 40, "one")
    await converged(children, 40)
    const first = await until("the leader", () => agreedLeader(children)) // its process is killed

    const firstTerm = first.status!.term
    first.process.kill("SIGKILL")
    const survivors = children.filter((c) => c !== first)
    await until("a new leader among the survivors", () => {
      const leader = agreedLeader(survivors)
      return leader !== undefined && leader.status!.term > firstTerm ? leader : undefined
    })
    await apply(survivors, 40, "two")
    await converged(survivors, 80)

    start(first, ports[children.indexOf(first)]!, peers)
    await converged(children, 80)
    // The new leader compacted its log meanwhile: the empty node was brought up by a snapshot sent over TCP.
    assert.isAtLeast(first.status!.restores, 1)
    await until("the old leader to follow the leader", () => agreedLeader(children) !== undefined ? true : undefined)
    await apply(children, 20, "three")
    await converged(children, 100)
  }, 120_000)
})
