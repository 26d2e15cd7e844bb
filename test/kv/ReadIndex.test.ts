/**
 * The ReadIndex fence against a scripted node: each test sets what the node
 * reports (role, term, commit and applied index) and how its barrier and
 * heartbeat round behave, and checks the order of the fence's steps.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Raft from "../../src/Raft.js"
import { LeadershipLost, type NotLeader } from "../../src/RaftError.js"
import * as ReadIndex from "../../src/kv/ReadIndex.js"

interface Script {
  state: Raft.RaftState
  term: number
  commitIndex: number
  appliedIndex: number
  barriers: number
  verifies: number
  /** What the next heartbeat round does (default: succeeds). */
  verify: Effect.Effect<void, NotLeader | LeadershipLost>
  /** Runs when a barrier is asked for, before it succeeds. */
  onBarrier: () => void
  events: Array<string>
}

const scripted = (init: Partial<Script> = {}): { script: Script; raft: Raft.Raft } => {
  const script: Script = {
    state: "Leader",
    term: 3,
    commitIndex: 10,
    appliedIndex: 10,
    barriers: 0,
    verifies: 0,
    verify: Effect.void,
    onBarrier: () => {},
    events: [],
    ...init
  }
  const stats = Effect.sync(() => ({ state: script.state, term: script.term, commitIndex: script.commitIndex }))
  const raft = {
    id: "n1",
    stats,
    leader: Effect.sync(() =>
      script.state === "Leader" ? Option.some({ id: "n1", address: "a1" }) : Option.some({ id: "n2", address: "a2" })
    ),
    appliedIndex: Effect.sync(() => script.appliedIndex),
    barrier: () =>
      Effect.sync(() => {
        script.barriers++
        script.events.push(`barrier@${script.commitIndex}`)
        script.onBarrier()
        return script.commitIndex
      }),
    verifyLeader: Effect.suspend(() => {
      script.verifies++
      script.events.push(`verify@${script.commitIndex}`)
      return script.verify
    })
  } as unknown as Raft.Raft
  return { script, raft }
}

describe("ReadIndex", () => {
  it.effect("a follower's fence fails with NotLeader naming the leader, without a heartbeat round", () =>
    Effect.gen(function*() {
      const { raft, script } = scripted({ state: "Follower" })
      const error = yield* Effect.flip(ReadIndex.make(raft).fence)
      assert.strictEqual(error._tag, "NotLeader")
      assert.strictEqual(error._tag === "NotLeader" ? error.leaderId : undefined, "n2")
      assert.strictEqual(script.verifies, 0)
    }))

  it.effect("the first fence of a term commits a barrier; later fences of that term only verify", () =>
    Effect.gen(function*() {
      const { raft, script } = scripted()
      const reads = ReadIndex.make(raft)
      yield* reads.fence
      yield* reads.fence
      assert.strictEqual(script.barriers, 1)
      assert.strictEqual(script.verifies, 2)
      script.term = 4
      yield* reads.fence
      assert.strictEqual(script.barriers, 2, "a new term needs its own barrier")
    }))

  it.effect("the read index is the commit index after the barrier, recorded before the heartbeat round", () =>
    Effect.gen(function*() {
      // A new leader whose commit index lags: its barrier commits up to 15.
      const { raft, script } = scripted({ commitIndex: 7, appliedIndex: 15 })
      script.onBarrier = () => {
        script.commitIndex = 15
      }
      script.verify = Effect.sync(() => {
        script.commitIndex = 20 // writes committed during the round need not be waited for
      })
      const index = yield* ReadIndex.make(raft).fence
      assert.strictEqual(index, 15)
      assert.deepStrictEqual(script.events, ["barrier@7", "verify@15"])
    }))

  it.live("a fence waits until the state machine has applied the read index", () =>
    Effect.gen(function*() {
      const { raft, script } = scripted({ commitIndex: 12, appliedIndex: 9 })
      const reads = ReadIndex.make(raft)
      const fiber = yield* Effect.fork(reads.fence)
      yield* Effect.sleep("20 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "not before applied ≥ 12")
      script.appliedIndex = 12
      assert.strictEqual(yield* Fiber.join(fiber), 12)
    }))

  it.effect("a leader that fails its heartbeat round serves no read", () =>
    Effect.gen(function*() {
      const { raft, script } = scripted()
      script.verify = Effect.fail(new LeadershipLost())
      const error = yield* Effect.flip(ReadIndex.make(raft).fence)
      assert.strictEqual(error._tag, "LeadershipLost")
    }))

  it.effect("a term change during the heartbeat round fails the fence", () =>
    Effect.gen(function*() {
      const { raft, script } = scripted()
      script.verify = Effect.sync(() => {
        script.term = 4 // deposed and re-elected meanwhile: the recorded index may be stale
      })
      const error = yield* Effect.flip(ReadIndex.make(raft).fence)
      assert.strictEqual(error._tag, "LeadershipLost")
    }))

  it.live("the fence gives up after its timeout when the state machine does not catch up", () =>
    Effect.gen(function*() {
      const { raft } = scripted({ commitIndex: 12, appliedIndex: 9 })
      const error = yield* Effect.flip(ReadIndex.make(raft, { timeout: "50 millis" }).fence)
      assert.strictEqual(error._tag, "ApplyTimeout")
    }))
})
