import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Stream from "effect/Stream"
import * as Fsm from "../src/Fsm.js"
import * as RaftMetrics from "../src/RaftMetrics.js"
import * as TestCluster from "../src/testing/TestCluster.js"

/** Observations of a histogram at or below `bound` (its buckets are cumulative). */
const upTo = (buckets: ReadonlyArray<readonly [number, number]>, bound: number): number =>
  buckets.find(([le]) => le === bound)?.[1] ?? 0

const labels = (node: string, peer?: string) =>
  peer === undefined
    ? [MetricLabel.make("node", node)]
    : [MetricLabel.make("node", node), MetricLabel.make("peer", peer)]

/** A counter of applied commands whose state can be saved and restored; each batch takes `spinMicros` of CPU. */
const counterFsm = (spinMicros = 0) => () => {
  let count = 0
  const fsm = Fsm.fromFunction(() => ++count, {
    save: () => new TextEncoder().encode(String(count)),
    load: (bytes) => {
      count = Number(new TextDecoder().decode(bytes))
    }
  })
  return {
    ...fsm,
    applyBatch: (logs: Parameters<typeof fsm.applyBatch>[0]) =>
      Effect.suspend(() => {
        const until = performance.now() + spinMicros / 1000
        while (performance.now() < until) {
          // busy: a batch that takes a known fraction of a millisecond
        }
        return fsm.applyBatch(logs)
      })
  }
}

describe("RaftMetrics", () => {
  // The live clock: the memory network answers in tens of microseconds, which a millisecond clock records as 0.
  it.live("microsecond histograms hold sub-millisecond round trips, and the hashicorp metrics are fed", () =>
    Effect.scoped(Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: counterFsm(200) })
      const leader = yield* cluster.awaitLeader()
      const peer = cluster.nodes.find((node) => node.id !== leader.id)!.id
      const rpc = Metric.taggedWithLabels(RaftMetrics.appendEntriesRpc, labels(leader.id, peer))
      const commits = Metric.taggedWithLabels(RaftMetrics.commitNumLogs, labels(leader.id))
      const fsmApply = Metric.taggedWithLabels(RaftMetrics.fsmApply, labels(leader.id))
      const rpcBefore = yield* Metric.value(rpc)
      const commitsBefore = (yield* Metric.value(commits)).count
      const fsmBefore = yield* Metric.value(fsmApply)
      for (let i = 0; i < 50; i++) yield* leader.raft.apply(new Uint8Array([i]))
      // Each batch spins 200 µs in the state machine: it lands between 10 and 500 µs, where a millisecond clock
      // cannot put anything (it records 0 or a multiple of 1,000).
      const fsmAfter = yield* Metric.value(fsmApply)
      const subMillis = (upTo(fsmAfter.buckets, 500) - upTo(fsmAfter.buckets, 10)) -
        (upTo(fsmBefore.buckets, 500) - upTo(fsmBefore.buckets, 10))
      assert.isAbove(subMillis, 0, `no state machine batch in (10, 500] µs: ${JSON.stringify(fsmAfter.buckets)}`)
      // The round trips are measured in microseconds too: their sum is not a whole number of milliseconds.
      const rpcAfter = yield* Metric.value(rpc)
      assert.isAbove(rpcAfter.count, rpcBefore.count)
      assert.notStrictEqual((rpcAfter.sum - rpcBefore.sum) % 1000, 0, "AppendEntries round trips in whole milliseconds")
      assert.isAbove((yield* Metric.value(commits)).count - commitsBefore, 0, "commitNumLogs")

      // The lease loop samples each follower's last contact.
      yield* Effect.sleep("120 millis")
      const contact = yield* Metric.value(Metric.taggedWithLabels(RaftMetrics.lastContact, labels(leader.id, peer)))
      assert.isAtLeast(contact.value, 0)
      assert.isBelow(contact.value, 60_000)

      // A snapshot is persisted, then restored through the state machine.
      const persist = Metric.taggedWithLabels(RaftMetrics.snapshotPersist, labels(leader.id))
      const restore = Metric.taggedWithLabels(RaftMetrics.fsmRestore, labels(leader.id))
      const persisted = (yield* Metric.value(persist)).count
      const restored = (yield* Metric.value(restore)).count
      const meta = yield* leader.raft.snapshot
      assert.strictEqual((yield* Metric.value(persist)).count - persisted, 1, "snapshot persist time")
      yield* leader.raft.restore(meta, Stream.succeed(new TextEncoder().encode("7")))
      assert.strictEqual((yield* Metric.value(restore)).count - restored, 1, "fsm restore time")
    })))

  it.live("oldestLogAge is the age of the oldest entry left in the log", () =>
    Effect.scoped(Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 1, fsm: counterFsm() })
      const leader = yield* cluster.awaitLeader()
      yield* leader.raft.apply(new Uint8Array([1]))
      yield* Effect.sleep("1100 millis")
      yield* leader.raft.apply(new Uint8Array([2]))
      // The lease loop reports it (every leaderLeaseTimeout, 50 ms here).
      yield* Effect.sleep("120 millis")
      const age = yield* Metric.value(Metric.taggedWithLabels(RaftMetrics.oldestLogAge, labels(leader.id)))
      assert.isAtLeast(age.value, 1100)
    })))
})
