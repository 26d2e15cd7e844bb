import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { PipelineNotSupported, TransportError } from "../../src/RaftError.js"
import type { AppendEntriesRequest, RequestVoteRequest } from "../../src/Rpc.js"
import type * as Transport from "../../src/Transport.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"

const appendEntries = (n: number, from = "a"): AppendEntriesRequest => ({
  _tag: "AppendEntriesRequest",
  term: 1,
  leaderId: from,
  leaderAddress: `mem://${from}`,
  prevLogIndex: n,
  prevLogTerm: 1,
  entries: [],
  leaderCommitIndex: 0
})

const requestVote = (from: string): RequestVoteRequest => ({
  _tag: "RequestVoteRequest",
  term: 2,
  candidateId: from,
  candidateAddress: `mem://${from}`,
  lastLogIndex: 0,
  lastLogTerm: 0,
  leadershipTransfer: false
})

/** A node's handler that records what it received; AppendEntries wait on `gate` when one is set. */
interface Recorder {
  readonly received: Array<AppendEntriesRequest | RequestVoteRequest>
  gate: Deferred.Deferred<void> | undefined
  readonly handler: Transport.RpcHandler
}

const recorder = (id: string): Recorder => {
  const self: Recorder = {
    received: [],
    gate: undefined,
    handler: {
      appendEntries: (request) =>
        Effect.gen(function*() {
          self.received.push(request)
          if (self.gate !== undefined) yield* Deferred.await(self.gate)
          return {
            _tag: "AppendEntriesResponse" as const,
            term: 1,
            lastLog: request.prevLogIndex,
            success: true,
            noRetryBackoff: false
          }
        }),
      requestVote: (request) =>
        Effect.sync(() => {
          self.received.push(request)
          return { _tag: "RequestVoteResponse" as const, term: request.term, granted: id !== "never" }
        }),
      requestPreVote: (request) =>
        Effect.succeed({ _tag: "RequestPreVoteResponse" as const, term: request.term, granted: id !== "never" }),
      installSnapshot: (request, data) =>
        Stream.runDrain(data).pipe(
          Effect.as({ _tag: "InstallSnapshotResponse" as const, term: request.term, success: true }),
          Effect.orElseSucceed(() => ({ _tag: "InstallSnapshotResponse" as const, term: request.term, success: false }))
        ),
      timeoutNow: (request) => Effect.succeed({ _tag: "TimeoutNowResponse" as const, term: request.term, success: true })
    }
  }
  return self
}

/** Nodes a, b, c (and more when asked) attached and serving on a fresh network, for the test's scope. */
const setup = (options: MemoryNetwork.Options = {}, ids: ReadonlyArray<string> = ["a", "b", "c"]) =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make(options)
    const nodes: Record<string, { readonly transport: Transport.Transport; readonly recorder: Recorder }> = {}
    for (const id of ids) {
      const transport = network.transport(id)
      const rec = recorder(id)
      yield* transport.serve(rec.handler)
      nodes[id] = { transport, recorder: rec }
    }
    const node = (id: string) => nodes[id]!
    /** An AppendEntries from `from` to `to`, as an Exit. */
    const send = (from: string, to: string, n = 1) =>
      Effect.exit(node(from).transport.appendEntries(to, `mem://${to}`, appendEntries(n, from)))
    return { network, node, send }
  })

/** Lets every runnable fiber run until it suspends. */
const settle = Effect.yieldNow().pipe(Effect.repeatN(50))

const assertUnreachable = (exit: Exit.Exit<unknown, unknown>) => {
  assert.isTrue(Exit.isFailure(exit), "expected the request to fail")
  const error = Exit.isFailure(exit) ? exit.cause : undefined
  const failure = error !== undefined && error._tag === "Fail" ? error.error : undefined
  assert.instanceOf(failure, TransportError)
  assert.strictEqual((failure as TransportError).reason, "unreachable")
  return failure as TransportError
}

const assertDelivered = (exit: Exit.Exit<unknown, unknown>) => assert.isTrue(Exit.isSuccess(exit), String(exit))

describe("MemoryNetwork", () => {
  it.scoped("a request reaches the served handler and its answer comes back", () =>
    Effect.gen(function*() {
      const { node } = yield* setup()
      const response = yield* node("a").transport.appendEntries("b", "mem://b", appendEntries(7))
      assert.strictEqual(response.lastLog, 7)
      assert.deepStrictEqual(node("b").recorder.received, [appendEntries(7)])
      const vote = yield* node("c").transport.requestVote("a", "mem://a", requestVote("c"))
      assert.isTrue(vote.granted)
      assert.deepStrictEqual(node("a").recorder.received, [requestVote("c")])
      assert.strictEqual(node("a").transport.localAddress, "mem://a")
    }))

  it.scoped("a request to an address nobody serves fails with TransportError", () =>
    Effect.gen(function*() {
      const { node } = yield* setup()
      assertUnreachable(yield* Effect.exit(node("a").transport.appendEntries("z", "mem://z", appendEntries(1))))
    }))

  it.scoped("disconnect cuts every link of a node, without running its handler; reconnect restores them", () =>
    Effect.gen(function*() {
      const { network, node, send } = yield* setup()
      yield* network.disconnect("b")
      assertUnreachable(yield* send("a", "b"))
      assertUnreachable(yield* send("b", "a"))
      assertUnreachable(yield* send("c", "b"))
      assert.deepStrictEqual(node("b").recorder.received, [])
      assert.deepStrictEqual(node("a").recorder.received, [])
      assertDelivered(yield* send("a", "c"))
      assert.isFalse(network.canReach("a", "b"))
      yield* network.reconnect("b")
      assertDelivered(yield* send("a", "b"))
      assertDelivered(yield* send("b", "a"))
      assert.isTrue(network.canReach("a", "b"))
    }))

  it.scoped("partition: nodes reach only their own group, and unlisted nodes are alone", () =>
    Effect.gen(function*() {
      const { network, send } = yield* setup({}, ["a", "b", "c", "d"])
      yield* network.partition([["a", "b"], ["c"]])
      assertDelivered(yield* send("a", "b"))
      assertDelivered(yield* send("b", "a"))
      assertUnreachable(yield* send("a", "c"))
      assertUnreachable(yield* send("c", "b"))
      assertUnreachable(yield* send("d", "a"))
      assertUnreachable(yield* send("a", "d"))
      yield* network.partition([["a", "b"]])
      assertUnreachable(yield* send("c", "d")) // two unlisted nodes do not form a group
      assertUnreachable(yield* send("d", "c"))
      yield* network.partition([["a"], ["b", "c", "d"]])
      assertUnreachable(yield* send("a", "b"))
      assertDelivered(yield* send("b", "d"))
      yield* network.heal
      assertDelivered(yield* send("a", "c"))
      assertDelivered(yield* send("d", "a"))
    }))

  it.scoped("block is one way: the blocked direction's request never reaches the handler", () =>
    Effect.gen(function*() {
      const { network, node, send } = yield* setup()
      yield* network.block("a", "b")
      assert.isFalse(network.canReach("a", "b"))
      assert.isTrue(network.canReach("b", "a"))
      assertUnreachable(yield* send("a", "b"))
      assert.deepStrictEqual(node("b").recorder.received, [])
      assertDelivered(yield* send("a", "c"))
      yield* network.unblock("a", "b")
      assertDelivered(yield* send("a", "b"))
      assert.strictEqual(node("b").recorder.received.length, 1)
    }))

  it.scoped("answer lost: with the reverse link blocked the handler runs but the caller gets TransportError", () =>
    Effect.gen(function*() {
      const { network, node, send } = yield* setup()
      yield* network.block("a", "b") // answers from a to b are lost
      const error = assertUnreachable(yield* send("b", "a", 3))
      assert.strictEqual(error.detail, "answer lost")
      assert.deepStrictEqual(node("a").recorder.received, [appendEntries(3, "b")])

      // The reverse link cut while the handler runs: delivered, answer lost.
      yield* network.heal
      const gate = yield* Deferred.make<void>()
      node("c").recorder.gate = gate
      const inFlight = yield* Effect.fork(send("a", "c", 4))
      yield* settle
      assert.deepStrictEqual(node("c").recorder.received, [appendEntries(4)])
      yield* network.block("c", "a")
      yield* Deferred.succeed(gate, void 0)
      assert.strictEqual(assertUnreachable(yield* Fiber.join(inFlight)).detail, "answer lost")
    }))

  it.scoped("heal restores disconnected nodes, blocked links and partitions", () =>
    Effect.gen(function*() {
      const { network, send } = yield* setup()
      yield* network.disconnect("a")
      yield* network.block("b", "c")
      yield* network.partition([["a", "b"]])
      yield* network.heal
      for (const [from, to] of [["a", "b"], ["b", "a"], ["b", "c"], ["c", "b"], ["a", "c"], ["c", "a"]] as const) {
        assertDelivered(yield* send(from, to))
        assert.isTrue(network.canReach(from, to))
      }
    }))

  it.scoped("a node whose serve scope closed is unreachable", () =>
    Effect.gen(function*() {
      const network = MemoryNetwork.make()
      const a = network.transport("a")
      const b = network.transport("b")
      const rb = recorder("b")
      const serving = yield* Scope.make()
      yield* Scope.extend(b.serve(rb.handler), serving)
      yield* a.appendEntries("b", "mem://b", appendEntries(1))
      yield* Scope.close(serving, Exit.void)
      assertUnreachable(yield* Effect.exit(a.appendEntries("b", "mem://b", appendEntries(2))))
      const pipeline = yield* Effect.exit(a.appendEntriesPipeline("b", "mem://b"))
      assert.isTrue(Exit.isFailure(pipeline))
      assert.deepStrictEqual(rb.received, [appendEntries(1)])
    }))

  describe("pipeline", () => {
    it.scoped("setPipelineSupport(false) makes appendEntriesPipeline fail with PipelineNotSupported; true restores it", () =>
      Effect.gen(function*() {
        const { network, node } = yield* setup()
        yield* network.setPipelineSupport("a", false)
        const error = yield* Effect.flip(node("a").transport.appendEntriesPipeline("b", "mem://b"))
        assert.instanceOf(error, PipelineNotSupported)
        yield* network.setPipelineSupport("a", true)
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
        yield* pipeline.send(appendEntries(1))
        assert.strictEqual((yield* pipeline.results.take).response.lastLog, 1)
      }))

    it.scoped("delivers every request and its result in order, for many more sends than the window", () =>
      Effect.gen(function*() {
        const { network, node } = yield* setup({ pipelineWindow: 8 })
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
        const count = 500
        const collector = yield* Effect.fork(
          Effect.forEach(Array.from({ length: count }), () => pipeline.results.take)
        )
        for (let n = 1; n <= count; n++) yield* pipeline.send(appendEntries(n))
        const results = yield* Fiber.join(collector)
        const expected = Array.from({ length: count }, (_, i) => i + 1)
        assert.deepStrictEqual(results.map((r) => r.request.prevLogIndex), expected)
        assert.deepStrictEqual(results.map((r) => r.response.lastLog), expected)
        assert.deepStrictEqual(
          node("b").recorder.received.map((r) => (r as AppendEntriesRequest).prevLogIndex),
          expected
        )
        assert.strictEqual(network.counters.pipelinedAppendEntries, count)
      }))

    it.scoped("send suspends when the window is full and the handler is blocked, and resumes when it answers", () =>
      Effect.gen(function*() {
        const window = 4
        const { node } = yield* setup({ pipelineWindow: window })
        const gate = yield* Deferred.make<void>()
        node("b").recorder.gate = gate
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
        let sent = 0
        const sender = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 20 }, (_, i) => i + 1), (n) =>
            pipeline.send(appendEntries(n)).pipe(Effect.tap(() => void sent++)), { discard: true })
        )
        yield* settle
        // One request is at the blocked handler and `window` wait behind it (hashicorp's inprogressCh
        // plus its decoder); the next send waits.
        assert.strictEqual(node("b").recorder.received.length, 1)
        assert.strictEqual(sent, window + 1)
        assert.isNull(sender.unsafePoll())
        yield* settle
        assert.strictEqual(sent, window + 1)

        yield* Deferred.succeed(gate, void 0)
        yield* Fiber.join(sender)
        assert.strictEqual(sent, 20)
        const results = yield* Effect.forEach(Array.from({ length: 20 }), () => pipeline.results.take)
        assert.deepStrictEqual(results.map((r) => r.request.prevLogIndex), Array.from({ length: 20 }, (_, i) => i + 1))
      }))

    it.scoped("a send waiting for room fails with TransportError \"closed\" when the pipeline closes", () =>
      Effect.gen(function*() {
        const { node } = yield* setup({ pipelineWindow: 2 })
        node("b").recorder.gate = yield* Deferred.make<void>()
        const scope = yield* Scope.make()
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b").pipe(Scope.extend(scope))
        const sender = yield* Effect.fork(
          Effect.forEach([1, 2, 3, 4], (n) => pipeline.send(appendEntries(n)), { discard: true })
        )
        yield* settle
        assert.isNull(sender.unsafePoll())
        yield* Scope.close(scope, Exit.void)
        const exit = yield* Fiber.await(sender)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.instanceOf(error, TransportError)
        assert.strictEqual(error?.reason, "closed")
      }))

    it.scoped("its results mailbox fails with TransportError when the link is cut", () =>
      Effect.gen(function*() {
        const { network, node } = yield* setup()
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
        yield* pipeline.send(appendEntries(1))
        assert.strictEqual((yield* pipeline.results.take).request.prevLogIndex, 1)
        yield* network.disconnect("b")
        yield* pipeline.send(appendEntries(2))
        const error = yield* Effect.flip(pipeline.results.take)
        assert.instanceOf(error, TransportError)
        assert.strictEqual((error as TransportError).reason, "unreachable")
        assert.deepStrictEqual(node("b").recorder.received, [appendEntries(1)])
      }))

    it.scoped("its results mailbox fails with TransportError when answers are lost", () =>
      Effect.gen(function*() {
        const { network, node } = yield* setup()
        const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
        yield* network.block("b", "a")
        yield* pipeline.send(appendEntries(1))
        const error = yield* Effect.flip(pipeline.results.take)
        assert.instanceOf(error, TransportError)
        assert.deepStrictEqual(node("b").recorder.received, [appendEntries(1)])
      }))

    it.scoped("opening a pipeline over a cut link fails with TransportError", () =>
      Effect.gen(function*() {
        const { network, node } = yield* setup()
        yield* network.block("a", "b")
        const error = yield* Effect.flip(node("a").transport.appendEntriesPipeline("b", "mem://b"))
        assert.instanceOf(error, TransportError)
      }))

    describe("straight to a node that takes submissions (submitAppendEntries)", () => {
      /** Node b takes submissions, answering at once or, while `held`, when released; `via` says which way each came. */
      const submitting = (options: MemoryNetwork.Options = {}) =>
        Effect.gen(function*() {
          const network = MemoryNetwork.make(options)
          const a = network.transport("a")
          const b = network.transport("b")
          const b0 = recorder("b")
          const via: Array<string> = []
          const control = { held: false, pending: [] as Array<() => void> }
          const answer = (request: AppendEntriesRequest) => ({
            _tag: "AppendEntriesResponse" as const,
            term: 1,
            lastLog: request.prevLogIndex,
            success: true,
            noRetryBackoff: false
          })
          yield* a.serve(recorder("a").handler)
          yield* b.serve({
            ...b0.handler,
            appendEntries: (request) => Effect.sync(() => (via.push(`effect ${request.prevLogIndex}`), answer(request))),
            submitAppendEntries: (request, onDone) => {
              via.push(`submit ${request.prevLogIndex}`)
              const done = () => onDone(Exit.succeed(answer(request)))
              if (control.held) control.pending.push(done)
              else done()
            }
          })
          const pipeline = yield* a.appendEntriesPipeline("b", "mem://b")
          const take = (count: number) =>
            Effect.map(
              Effect.forEach(Array.from({ length: count }), () => pipeline.results.take),
              (results) => results.map((r) => r.response.lastLog)
            )
          return { network, pipeline, via, control, take }
        })

      it.scoped("on a perfect link every request is submitted (no fiber of the network), answered in order", () =>
        Effect.gen(function*() {
          const { network, pipeline, take, via } = yield* submitting({ pipelineWindow: 8 })
          for (let n = 1; n <= 20; n++) yield* pipeline.send(appendEntries(n))
          assert.deepStrictEqual(yield* take(20), Array.from({ length: 20 }, (_, i) => i + 1))
          assert.deepStrictEqual(via, Array.from({ length: 20 }, (_, i) => `submit ${i + 1}`))
          assert.strictEqual(network.counters.pipelinedAppendEntries, 20)
        }))

      it.scoped("a request sent while others cross a slow link follows them the same way: answers stay in order", () =>
        Effect.gen(function*() {
          const { network, pipeline, take, via } = yield* submitting()
          yield* network.setConditions({ minDelayMillis: 5, maxDelayMillis: 10, dropRate: 0, duplicateRate: 0 })
          for (let n = 1; n <= 3; n++) yield* pipeline.send(appendEntries(n))
          yield* network.setConditions(undefined)
          for (let n = 4; n <= 6; n++) yield* pipeline.send(appendEntries(n))
          const results = yield* Effect.fork(take(6))
          yield* TestClock.adjust(100)
          assert.deepStrictEqual(yield* Fiber.join(results), [1, 2, 3, 4, 5, 6])
          assert.deepStrictEqual(via.map((line) => line.split(" ")[0]), Array(6).fill("effect"))
          // Once the slow requests are answered, the next goes straight again.
          yield* pipeline.send(appendEntries(7))
          assert.deepStrictEqual(yield* take(1), [7])
          assert.strictEqual(via[6], "submit 7")
        }))

      it.scoped("the window bounds the submitted requests not yet answered: send waits for an answer", () =>
        Effect.gen(function*() {
          const { control, pipeline, take } = yield* submitting({ pipelineWindow: 4 })
          control.held = true
          let sent = 0
          const sender = yield* Effect.fork(
            Effect.forEach(Array.from({ length: 10 }, (_, i) => i + 1), (n) =>
              pipeline.send(appendEntries(n)).pipe(Effect.tap(() => void sent++)), { discard: true })
          )
          yield* settle
          assert.strictEqual(sent, 4)
          control.held = false
          while (control.pending.length > 0) control.pending.shift()!()
          yield* Fiber.join(sender)
          assert.deepStrictEqual(yield* take(10), Array.from({ length: 10 }, (_, i) => i + 1))
        }))

      it.scoped("an answer lost on the way back breaks the pipeline with TransportError", () =>
        Effect.gen(function*() {
          const { network, pipeline, via } = yield* submitting()
          yield* network.block("b", "a")
          yield* pipeline.send(appendEntries(1))
          const error = yield* Effect.flip(pipeline.results.take)
          assert.instanceOf(error, TransportError)
          assert.strictEqual((error as TransportError).reason, "unreachable")
          assert.deepStrictEqual(via, ["submit 1"])
          assert.isTrue(Exit.isFailure(yield* Effect.exit(pipeline.send(appendEntries(2)))))
        }))

      describe("answers by callback (listen)", () => {
        /** Registers a listener on `pipeline` that records every answer (its lastLog) and every end. */
        const listening = (pipeline: Transport.AppendPipeline) => {
          const got: Array<number> = []
          const ends: Array<TransportError | undefined> = []
          pipeline.listen!((result) => void got.push(result.response.lastLog), (error) => void ends.push(error))
          return { got, ends }
        }

        it.scoped("the listener gets every answer once and in order, straight or across a slow link; results stays empty", () =>
          Effect.gen(function*() {
            const { network, pipeline, via } = yield* submitting({ pipelineWindow: 4 })
            const { ends, got } = listening(pipeline)
            yield* network.setConditions({ minDelayMillis: 5, maxDelayMillis: 10, dropRate: 0, duplicateRate: 0 })
            const slow = yield* Effect.fork(
              Effect.forEach([1, 2, 3, 4, 5, 6], (n) => pipeline.send(appendEntries(n)), { discard: true })
            )
            yield* TestClock.adjust(100)
            yield* Fiber.join(slow)
            yield* network.setConditions(undefined)
            yield* TestClock.adjust(100)
            for (let n = 7; n <= 30; n++) yield* pipeline.send(appendEntries(n))
            assert.deepStrictEqual(via.filter((line) => line.startsWith("submit")).length, 24)
            assert.deepStrictEqual(got, Array.from({ length: 30 }, (_, i) => i + 1))
            assert.deepStrictEqual(ends, [])
            assert.deepStrictEqual(pipeline.results.unsafeSize(), Option.some(0))
          }).pipe(Effect.withRandom(Random.make("listen"))))

        it.scoped("a break is told once, with its error, and nothing after it; not again when the scope closes", () =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { control, network, pipeline } = yield* Scope.extend(submitting(), scope)
            const { ends, got } = listening(pipeline)
            yield* pipeline.send(appendEntries(1))
            control.held = true
            yield* pipeline.send(appendEntries(2))
            yield* pipeline.send(appendEntries(3))
            yield* network.block("b", "a")
            control.pending.shift()!() // the answer to 2 is lost: the pipeline breaks
            yield* network.unblock("b", "a")
            control.pending.shift()!() // 3 was answered after the break
            assert.isTrue(Exit.isFailure(yield* Effect.exit(pipeline.send(appendEntries(4)))))
            assert.deepStrictEqual(got, [1])
            assert.strictEqual(ends.length, 1)
            assert.strictEqual(ends[0]?.reason, "unreachable")
            yield* Scope.close(scope, Exit.void)
            assert.strictEqual(ends.length, 1)
          }))

        it.scoped("closing the scope tells the end once, as undefined; an answer after it is dropped", () =>
          Effect.gen(function*() {
            const scope = yield* Scope.make()
            const { control, pipeline } = yield* Scope.extend(submitting(), scope)
            const { ends, got } = listening(pipeline)
            yield* pipeline.send(appendEntries(1))
            control.held = true
            yield* pipeline.send(appendEntries(2))
            yield* Scope.close(scope, Exit.void)
            control.pending.shift()!()
            assert.deepStrictEqual(got, [1])
            assert.deepStrictEqual(ends, [undefined])
          }))

        it.scoped("listening to a pipeline that already broke tells its end at once", () =>
          Effect.gen(function*() {
            const { network, pipeline } = yield* submitting()
            yield* network.block("b", "a")
            yield* pipeline.send(appendEntries(1))
            const { ends, got } = listening(pipeline)
            assert.deepStrictEqual(got, [])
            assert.strictEqual(ends.length, 1)
            assert.instanceOf(ends[0], TransportError)
          }))
      })
    })

    it.scoped("closing the pipeline's scope ends its results mailbox", () =>
      Effect.gen(function*() {
        const { node } = yield* setup()
        const scope = yield* Scope.make()
        const pipeline = yield* Scope.extend(node("a").transport.appendEntriesPipeline("b", "mem://b"), scope)
        yield* Scope.close(scope, Exit.void)
        assert.isTrue(yield* pipeline.results.await.pipe(Effect.as(true)))
        assert.isTrue(Exit.isFailure(yield* Effect.exit(pipeline.results.take)))
      }))
  })

  it.scoped("counters count requests, votes, pipelines and dropped messages", () =>
    Effect.gen(function*() {
      const { network, node, send } = yield* setup()
      yield* send("a", "b")
      yield* send("a", "c")
      yield* node("b").transport.requestVote("a", "mem://a", requestVote("b"))
      yield* network.disconnect("c")
      yield* send("a", "c") // dropped: counted as sent and as dropped
      yield* network.heal
      const pipeline = yield* node("a").transport.appendEntriesPipeline("b", "mem://b")
      yield* pipeline.send(appendEntries(1))
      yield* pipeline.send(appendEntries(2))
      yield* pipeline.results.take
      yield* pipeline.results.take
      assert.deepStrictEqual({ ...network.counters }, {
        appendEntries: 3,
        pipelinedAppendEntries: 2,
        requestVote: 1,
        requestPreVote: 0,
        installSnapshot: 0,
        timeoutNow: 0,
        readIndex: 0,
        pipelinesOpened: 1,
        dropped: 1,
        duplicated: 0
      })
    }))

  describe("link conditions", () => {
    it.scoped("a message waits its delay on the clock, each way", () =>
      Effect.gen(function*() {
        const { network, send } = yield* setup()
        yield* network.setConditions({ minDelayMillis: 10, maxDelayMillis: 10, dropRate: 0, duplicateRate: 0 })
        const fiber = yield* Effect.fork(send("a", "b"))
        yield* TestClock.adjust(19)
        assert.isNull(fiber.unsafePoll(), "answered before both hops elapsed")
        yield* TestClock.adjust(1)
        assertDelivered(yield* Fiber.join(fiber))
      }).pipe(Effect.withRandom(Random.make("delay"))))

    it.scoped("with dropRate 1 every request is lost, and with 0 none", () =>
      Effect.gen(function*() {
        const { network, node, send } = yield* setup()
        yield* network.setConditions({ minDelayMillis: 0, maxDelayMillis: 0, dropRate: 1, duplicateRate: 0 })
        for (let i = 0; i < 5; i++) assertUnreachable(yield* send("a", "b"))
        assert.strictEqual(node("b").recorder.received.length, 0)
        yield* network.setConditions({ minDelayMillis: 0, maxDelayMillis: 0, dropRate: 0, duplicateRate: 0 })
        for (let i = 0; i < 5; i++) assertDelivered(yield* send("a", "b"))
        assert.strictEqual(node("b").recorder.received.length, 5)
      }).pipe(Effect.withRandom(Random.make("drop"))))

    it.scoped("with duplicateRate 1 each request reaches the handler twice and the caller gets one answer", () =>
      Effect.gen(function*() {
        const { network, node, send } = yield* setup()
        yield* network.setConditions({ minDelayMillis: 0, maxDelayMillis: 0, dropRate: 0, duplicateRate: 1 })
        assertDelivered(yield* send("a", "b"))
        assert.strictEqual(node("b").recorder.received.length, 2)
        assert.strictEqual(network.counters.duplicated, 1)
      }).pipe(Effect.withRandom(Random.make("dup"))))

    it.scoped("the same seed loses the same messages", () =>
      Effect.gen(function*() {
        const run = (seed: string) =>
          Effect.gen(function*() {
            const { network, send } = yield* setup()
            yield* network.setConditions({ minDelayMillis: 0, maxDelayMillis: 0, dropRate: 0.5, duplicateRate: 0 })
            const outcomes: Array<boolean> = []
            for (let i = 0; i < 40; i++) outcomes.push(Exit.isSuccess(yield* send("a", "b")))
            return outcomes.join("")
          }).pipe(Effect.withRandom(Random.make(seed)))
        const first = yield* run("replay")
        assert.strictEqual(yield* run("replay"), first)
        assert.include(first, "true")
        assert.include(first, "false")
        assert.notStrictEqual(yield* run("another seed"), first)
      }))
  })
})
