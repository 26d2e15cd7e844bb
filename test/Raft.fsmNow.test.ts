/**
 * A state machine whose apply is synchronous (`Fsm.fromFunction`, `Fsm.typed`) has committed entries applied by
 * whoever committed them while the FSM runner waits with nothing queued (src/internal/fsm.ts `handToFsm`): the
 * decoder that saw the quorum, a follower's run loop, or the transport's callback; not the runner's fiber. These
 * tests tell the two apart by the fiber the user's function runs on: the runner's fiber carries the log annotation
 * `module: FsmRunner`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Fsm from "../src/Fsm.js"
import type * as Log from "../src/Log.js"
import { bytes, decoder, decodeState, encodeState, makeCluster, type RecordingFsm, seeded } from "./cluster.js"

/** Whether the code calling this runs on the FSM runner's fiber. */
const onRunner = (): boolean =>
  Option.match(Fiber.getCurrentFiber(), {
    onNone: () => false,
    onSome: (fiber) =>
      Option.getOrUndefined(HashMap.get(fiber.getFiberRef(FiberRef.currentLogAnnotations), "module")) === "FsmRunner"
  })

/**
 * A recording state machine that also notes, per command, whether it was applied on the runner's fiber; built by
 * `make` from the function it is given (`Fsm.fromFunction`, or an effectful `Fsm.make` for the control). A command
 * `boom` throws.
 */
const placedFsm = (
  make: (apply: (log: Log.Log) => unknown, save: () => Uint8Array, load: (data: Uint8Array) => void) => Fsm.Fsm
) => {
  const applied: Array<Log.Log> = []
  const onRunnerFiber: Array<boolean> = []
  let state: Array<string> = []
  const fsm = make((log) => {
    const echo = decoder.decode(log.data)
    if (echo === "boom") throw new Error("the state machine cannot take boom")
    applied.push(log)
    onRunnerFiber.push(onRunner())
    state.push(echo)
    return { count: state.length, echo }
  }, () => encodeState(state), (data) => {
    state = decodeState(data)
  })
  const recording: RecordingFsm = Object.assign(fsm, {
    applied,
    commands: () => [...state],
    restores: () => 0
  })
  return { fsm: recording, onRunnerFiber }
}

const synchronous = () => placedFsm((apply, save, load) => Fsm.fromFunction(apply, { save, load }))
const effectful = () => placedFsm((apply) => Fsm.make({ apply: (log) => Effect.sync(() => apply(log)) }))

/** A cluster of three whose nodes run `made()`'s state machines; `placed` gives each node's record of fibers. */
const placedCluster = (made: () => ReturnType<typeof placedFsm>) =>
  Effect.gen(function*() {
    const placed = new Map<string, ReturnType<typeof placedFsm>>()
    const cluster = yield* makeCluster({
      size: 3,
      fsm: (id) => {
        const fsm = made()
        placed.set(id, fsm)
        return fsm.fsm
      }
    })
    return { cluster, onRunnerFiber: (id: string) => placed.get(id)!.onRunnerFiber }
  })

describe("Raft: a synchronous state machine applied without the FSM runner", () => {
  it.scoped("the commands of Fsm.fromFunction are applied off the runner's fiber, on every node, and reach each one identically", () =>
    Effect.gen(function*() {
      const { cluster, onRunnerFiber: onRunnerFiberOf } = yield* placedCluster(synchronous)
      const leader = yield* cluster.waitForLeader()
      let last = 0
      for (let i = 0; i < 20; i++) {
        const result = yield* leader.raft.apply(bytes(`c${i}`))
        assert.deepStrictEqual(result.response, { count: i + 1, echo: `c${i}` })
        last = result.index
      }
      yield* cluster.waitForApplied(last)
      const expected = Array.from({ length: 20 }, (_, i) => `c${i}`)
      for (const node of cluster.nodes) {
        assert.deepStrictEqual(node.fsm.commands(), expected)
        const onRunnerFiber = onRunnerFiberOf(node.id)
        assert.strictEqual(onRunnerFiber.length, 20)
        assert.isFalse(onRunnerFiber.some((runner) => runner), `${node.id} applied on the runner: ${onRunnerFiber}`)
      }
    }).pipe(seeded("fsmNow")))

  it.scoped("the control: an effectful state machine's commands are applied on the runner's fiber", () =>
    Effect.gen(function*() {
      const { cluster, onRunnerFiber: onRunnerFiberOf } = yield* placedCluster(effectful)
      const leader = yield* cluster.waitForLeader()
      let last = 0
      for (let i = 0; i < 5; i++) last = (yield* leader.raft.apply(bytes(`c${i}`))).index
      yield* cluster.waitForApplied(last)
      for (const node of cluster.nodes) {
        const onRunnerFiber = onRunnerFiberOf(node.id)
        assert.strictEqual(onRunnerFiber.length, 5)
        assert.isTrue(onRunnerFiber.every((runner) => runner), `${node.id}: ${onRunnerFiber}`)
      }
    }).pipe(seeded("fsmNow")))

  it.scoped("a function that throws stops the node, as a defect of the runner does: its apply fails with RaftShutdown, and nothing after it is applied, on any node", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster({ size: 3, fsm: () => synchronous().fsm })
      const leader = yield* cluster.waitForLeader()
      yield* leader.raft.apply(bytes("before"))
      const failed = yield* Effect.flip(leader.raft.apply(bytes("boom")))
      assert.strictEqual(failed._tag, "RaftShutdown")
      yield* cluster.advance(100)
      assert.strictEqual(yield* leader.raft.state, "Shutdown")
      const after = yield* Effect.flip(leader.raft.apply(bytes("after")))
      assert.strictEqual(after._tag, "RaftShutdown")
      // No node applies anything after `before`. The followers stop too once they learn `boom` is committed: the one
      // elected next commits it, applies it and stops, before the last one learns it (that one campaigns alone).
      yield* cluster.advance(3000)
      let stopped = 0
      for (const node of cluster.nodes) {
        if ((yield* node.raft.state) === "Shutdown") stopped++
        assert.deepStrictEqual(node.fsm.commands(), ["before"], node.id)
      }
      assert.strictEqual(stopped, 2)
    }).pipe(seeded("fsmNow")))
})
