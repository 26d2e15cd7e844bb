/**
 * An in-memory network for tests and single-process clusters. Nodes attach by
 * id (their address is `mem://<id>` unless given); requests go straight to the
 * target node's handler. Tests cut links with `disconnect`, `partition` and
 * `block` (one way), and mend them with `reconnect`, `unblock` and `heal`. A
 * request whose link is cut fails at once with `TransportError` "unreachable";
 * one whose answer's link is cut meanwhile is delivered but its answer is lost,
 * as on a real network. A node that stops serving (shut down, or crashed in a
 * test) is reported to every node its links reach (`RpcHandler.peerLost`), as
 * peers see a dead process's TCP connections close.
 */
import * as Context from "effect/Context"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import { PipelineNotSupported, type StorageError, TransportError } from "../RaftError.js"
import type { AppendEntriesRequest, AppendEntriesResponse } from "../Rpc.js"
import * as PipelineResults from "../internal/pipelineResults.js"
import { type AppendPipeline, type Refusal, type RpcHandler, Transport } from "../Transport.js"
import { Inbox } from "../internal/inbox.js"
import { Wakers } from "../internal/wakers.js"

/** Tunables of the memory network. */
export interface Options {
  /** Requests a pipeline keeps in flight before `send` waits (hashicorp's rpcMaxPipeline). Default 128. */
  readonly pipelineWindow?: number | undefined
  /** Deadline of each request; none by default, since a request to a cut link fails at once. */
  readonly rpcTimeoutMillis?: number | undefined
}

/**
 * Imperfections of every link, for simulation: each message (request or
 * answer) is delayed by a random time in [minDelay, maxDelay] (so independent
 * requests overtake each other), lost with probability `dropRate` (the caller
 * then fails after the delay, as on a timeout), and a request is delivered a
 * second time with probability `duplicateRate`. Randomness comes from the
 * `Random` service, so a seeded run replays exactly.
 */
export interface LinkConditions {
  readonly minDelayMillis: number
  readonly maxDelayMillis: number
  readonly dropRate: number
  readonly duplicateRate: number
}

/** Counters of what crossed the network, for tests and benchmarks. */
export interface Counters {
  appendEntries: number
  pipelinedAppendEntries: number
  requestVote: number
  requestPreVote: number
  installSnapshot: number
  timeoutNow: number
  readIndex: number
  pipelinesOpened: number
  dropped: number
  duplicated: number
}

/** The network and its fault controls. */
export interface MemoryNetwork {
  /** Attaches a node: builds the `Transport` it uses. */
  readonly transport: (id: string, address?: string) => Transport
  /** Cuts every link to and from `id`. */
  readonly disconnect: (id: string) => Effect.Effect<void>
  /**
   * As if `id`'s connections closed while it lives on (a transport that recycles them): every node its links reach
   * is told (`RpcHandler.peerLost`), as when it stops serving.
   */
  readonly closeConnections: (id: string) => Effect.Effect<void>
  /** Restores the links of a disconnected node (other partitions and blocks stay). */
  readonly reconnect: (id: string) => Effect.Effect<void>
  /** Splits the nodes into groups that cannot reach each other; unlisted nodes are alone. */
  readonly partition: (groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Cuts the link from `from` to `to` only. */
  readonly block: (from: string, to: string) => Effect.Effect<void>
  /** Restores the link from `from` to `to`. */
  readonly unblock: (from: string, to: string) => Effect.Effect<void>
  /** Restores every link. */
  readonly heal: Effect.Effect<void>
  /** Makes `id`'s transport answer `PipelineNotSupported` (or support pipelines again). */
  readonly setPipelineSupport: (id: string, supported: boolean) => Effect.Effect<void>
  /** Sets the imperfections of every link; `undefined` makes links perfect again. */
  readonly setConditions: (conditions: LinkConditions | undefined) => Effect.Effect<void>
  /** Whether a message from `from` reaches `to` now. */
  readonly canReach: (from: string, to: string) => boolean
  /** What crossed the network so far. */
  readonly counters: Counters
}

/** The tag of the memory network. */
export const MemoryNetwork: Context.Tag<MemoryNetwork, MemoryNetwork> = Context.GenericTag<MemoryNetwork>(
  "effect-raft/MemoryNetwork"
)

interface Endpoint {
  readonly id: string
  handler: RpcHandler | undefined
}

/** Builds a network. */
export const make = (options: Options = {}): MemoryNetwork => {
  const window = Math.max(1, options.pipelineWindow ?? 128)
  const endpoints = new Map<string, Endpoint>() // by address
  const disconnected = new Set<string>()
  const blocked = new Set<string>() // `${from}\u0000${to}`
  const noPipeline = new Set<string>()
  let groups: Map<string, number> | undefined
  const counters: Counters = {
    appendEntries: 0,
    pipelinedAppendEntries: 0,
    requestVote: 0,
    requestPreVote: 0,
    installSnapshot: 0,
    timeoutNow: 0,
    readIndex: 0,
    pipelinesOpened: 0,
    dropped: 0,
    duplicated: 0
  }
  let conditions: LinkConditions | undefined
  const arrivedNow = Effect.succeed(true)

  /**
   * One hop of a message under the current conditions: waits its delay, then tells whether it arrived. Without a
   * generator, and the sender's `Random` and `Clock` read in one step: one runs per message in the simulator. The
   * draws come in the same order (delay, then loss).
   */
  const hop: Effect.Effect<boolean> = Effect.withFiberRuntime((fiber) => {
    const c = conditions
    if (c === undefined) return arrivedNow
    const services = fiber.currentDefaultServices
    const random = Context.get(services, Random.Random)
    const clock = Context.get(services, Clock.Clock)
    const arrived = c.dropRate <= 0 ? arrivedNow : Effect.map(random.next, (x) => x >= c.dropRate)
    const after = (delay: number) => (delay > 0 ? Effect.zipRight(clock.sleep(Duration.millis(delay)), arrived) : arrived)
    const span = Math.max(0, c.maxDelayMillis - c.minDelayMillis)
    return span === 0
      ? after(c.minDelayMillis)
      : Effect.flatMap(random.nextIntBetween(0, span + 1), (jitter) => after(c.minDelayMillis + jitter))
  })

  const canReach = (from: string, to: string): boolean => {
    if (from === to) return true
    if (disconnected.has(from) || disconnected.has(to)) return false
    if (blocked.size > 0 && blocked.has(`${from}\u0000${to}`)) return false
    if (groups !== undefined) {
      const a = groups.get(from)
      const b = groups.get(to)
      if (a === undefined || b === undefined || a !== b) return false
    }
    return true
  }

  /** Tells every node `id`'s links reach that its connections closed. */
  const announceLost = (id: string): void => {
    for (const other of endpoints.values()) {
      if (other.id !== id && canReach(id, other.id)) other.handler?.peerLost?.(id)
    }
  }

  const withTimeout = <A, E>(target: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | TransportError> =>
    options.rpcTimeoutMillis === undefined
      ? effect
      : Effect.timeoutFail(effect, {
        duration: options.rpcTimeoutMillis,
        onTimeout: () => new TransportError({ target, reason: "timeout" })
      })

  // A handler's refusal, as the sender sees it.
  const refused = (address: string) => (refusal: Refusal) =>
    refusal._tag === "ClusterMismatch"
      ? new TransportError({ target: address, reason: "identity", detail: refusal.message })
      : new TransportError({ target: address, reason: "closed", detail: "node shut down" })

  // Delivers one request from `from` to the node at `address`, modelling loss of the request or of its answer.
  const deliver = <A>(
    from: string,
    address: string,
    call: (handler: RpcHandler) => Effect.Effect<A, Refusal>
  ): Effect.Effect<A, TransportError> =>
    Effect.suspend(() => {
      const endpoint = endpoints.get(address)
      if (endpoint === undefined || endpoint.handler === undefined) {
        counters.dropped++
        return Effect.fail(new TransportError({ target: address, reason: "unreachable", detail: "no such node" }))
      }
      if (!canReach(from, endpoint.id)) {
        counters.dropped++
        return Effect.fail(new TransportError({ target: address, reason: "unreachable" }))
      }
      const handler = endpoint.handler
      if (conditions === undefined) {
        return withTimeout(
          address,
          call(handler).pipe(
            Effect.mapError(refused(address)),
            Effect.flatMap((response) => {
              if (canReach(endpoint.id, from)) return Effect.succeed(response)
              counters.dropped++
              return Effect.fail(new TransportError({ target: address, reason: "unreachable", detail: "answer lost" }))
            })
          )
        )
      }
      const lost = (detail: string) => {
        counters.dropped++
        return Effect.fail(new TransportError({ target: address, reason: "unreachable", detail }))
      }
      // The request's hop, its handling and the answer's hop, chained without a generator (one runs per message
      // in the simulator). The draws come in the same order: delay and loss of the request, duplication, then the
      // duplicate's second hop, then the answer's.
      const answer = (): Effect.Effect<A, TransportError> =>
        call(handler).pipe(
          Effect.mapError(refused(address)),
          Effect.flatMap((response) =>
            Effect.flatMap(hop, (arrived) =>
              arrived && canReach(endpoint.id, from) ? Effect.succeed(response) : lost("answer lost"))
          )
        )
      return withTimeout(
        address,
        Effect.flatMap(hop, (arrived) => {
          if (!arrived || !canReach(from, endpoint.id) || endpoint.handler === undefined) return lost("request lost")
          const c = conditions
          if (c === undefined || c.duplicateRate <= 0) return answer()
          return Effect.flatMap(Random.next, (x) => {
            if (x >= c.duplicateRate) return answer()
            counters.duplicated++
            // A copy arrives first and its answer goes nowhere; the original follows after another delay.
            return Effect.zipRight(
              Effect.ignore(call(handler)),
              Effect.flatMap(hop, (again) => again && canReach(from, endpoint.id) ? answer() : lost("request lost"))
            )
          })
        })
      )
    })

  const transport = (id: string, address: string = `mem://${id}`): Transport => {
    const openPipeline = (target: string) =>
      Effect.gen(function*() {
        if (noPipeline.has(id)) return yield* Effect.fail(new PipelineNotSupported())
        const endpoint = endpoints.get(target)
        if (endpoint === undefined || !canReach(id, endpoint.id)) {
          return yield* Effect.fail(new TransportError({ target, reason: "unreachable" }))
        }
        counters.pipelinesOpened++
        // The opener's clock (the leader's), for requests handed on outside any fiber (`trySend`).
        const clock = yield* Effect.clock
        const results = yield* PipelineResults.make
        let broken: TransportError | undefined
        /** Senders waiting for room in the window (direct requests answered, or queued ones taken on). */
        const waitingForRoom = new Wakers()
        const wakeSenders = () => waitingForRoom.wakeAll()
        const breakWith = (error: TransportError) => {
          if (broken !== undefined) return
          broken = error
          results.end(error)
          wakeSenders()
        }
        /**
         * Requests for the delivery fiber below, in order. It carries one at a time (a request, its handling and its
         * answer, with the links' delays), as a `Queue.bounded(window)` taken one by one would: at most `window`
         * wait while it carries one. An `Inbox` instead of a `Queue`: an offer is a push, a wait registers no
         * canceler (the simulator sends hundreds of these a run). Closed with the scope: a sender waiting for room
         * then fails with "closed".
         */
        const requests = new Inbox<{ readonly request: AppendEntriesRequest; readonly sentAtMillis: number }>()
        let closed = false
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            closed = true
            requests.unsafeEnd()
            wakeSenders()
          })
        )
        // Requests sent through the delivery fiber and not answered yet (one of them carried now, when `carrying`),
        // and requests handed to the target's run loop directly (`direct`) and not answered yet.
        let viaFiber = 0
        let carrying = false
        let direct = 0
        yield* Effect.gen(function*() {
          while (true) {
            const [items, done] = yield* requests.takeAll
            for (const item of items) {
              carrying = true
              wakeSenders()
              const response: AppendEntriesResponse = yield* deliver(id, target, (h) => h.appendEntries(item.request))
              carrying = false
              counters.pipelinedAppendEntries++
              viaFiber--
              results.offer({ request: item.request, response, sentAtMillis: item.sentAtMillis })
            }
            if (done) return
          }
        }).pipe(
          // A sender waiting for room is woken by the break; its send then reports it.
          Effect.catchAll((error) => Effect.sync(() => breakWith(error))),
          Effect.interruptible,
          Effect.forkScoped
        )
        /**
         * On a perfect link (no conditions) with nothing of this pipeline on its way through the delivery fiber,
         * a request goes straight to the target's run loop (`submitAppendEntries`) and its answer straight into
         * `results`: no fiber of the network carries it. In order: the target handles and answers submitted
         * requests in order, and a request after one of the fiber goes through the fiber too (its link may delay).
         * "full": the window is full of direct requests.
         */
        const submitDirect = (request: AppendEntriesRequest, sentAtMillis: number): "sent" | "full" | "no" => {
          if (conditions !== undefined || viaFiber > 0) return "no"
          const endpoint = endpoints.get(target)
          const handler = endpoint?.handler
          if (endpoint === undefined || handler?.submitAppendEntries === undefined || !canReach(id, endpoint.id)) {
            return "no"
          }
          if (direct >= window) return "full"
          direct++
          handler.submitAppendEntries(request, (exit) => {
            direct--
            wakeSenders()
            if (broken !== undefined) return
            if (exit._tag === "Failure") {
              const failure = Cause.failureOption(exit.cause)
              return breakWith(
                failure._tag === "Some"
                  ? refused(target)(failure.value)
                  : new TransportError({ target, reason: "closed", detail: "node shut down" })
              )
            }
            if (!canReach(endpoint.id, id)) {
              counters.dropped++
              return breakWith(new TransportError({ target, reason: "unreachable", detail: "answer lost" }))
            }
            counters.pipelinedAppendEntries++
            results.offer({ request, response: exit.value, sentAtMillis })
          })
          return "sent"
        }
        /** Hands `request` on: "submitted" (its outcome is in `results` already or will be), or whether it was queued. */
        const enqueue = (request: AppendEntriesRequest): Effect.Effect<boolean | "submitted"> =>
          Effect.clockWith((clock) => {
            if (broken !== undefined) return Effect.succeed(true)
            if (closed) return Effect.succeed(false)
            const sentAtMillis = clock.unsafeCurrentTimeMillis()
            const outcome = submitDirect(request, sentAtMillis)
            if (outcome === "sent") return Effect.succeed("submitted" as const)
            if (outcome === "full") return Effect.zipRight(waitingForRoom.await, Effect.suspend(() => enqueue(request)))
            if (viaFiber - (carrying ? 1 : 0) >= window) {
              return Effect.zipRight(waitingForRoom.await, Effect.suspend(() => enqueue(request)))
            }
            requests.unsafeOffer({ request, sentAtMillis })
            viaFiber++
            return Effect.succeed(true)
          })
        const pipeline: AppendPipeline = {
          send: (request) =>
            enqueue(request).pipe(
              Effect.flatMap((accepted) =>
                accepted === "submitted"
                  ? Effect.void
                  : broken !== undefined
                  ? Effect.fail(broken)
                  : accepted
                  ? Effect.void
                  : Effect.fail(new TransportError({ target, reason: "closed" }))
              )
            ),
          results: results.mailbox,
          listen: results.listen,
          trySend: (request) =>
            broken === undefined && !closed && submitDirect(request, clock.unsafeCurrentTimeMillis()) === "sent"
        }
        return pipeline
      })

    return {
      localAddress: address,
      serve: (handler) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            const endpoint: Endpoint = { id, handler }
            endpoints.set(address, endpoint)
            return endpoint
          }),
          (endpoint) =>
            Effect.sync(() => {
              endpoint.handler = undefined
              if (endpoints.get(address) === endpoint) endpoints.delete(address)
              announceLost(id)
            })
        ),
      appendEntries: (_target, targetAddress, request) =>
        Effect.suspend(() => {
          counters.appendEntries++
          return deliver(id, targetAddress, (h) => h.appendEntries(request))
        }),
      requestVote: (_target, targetAddress, request) =>
        Effect.suspend(() => {
          counters.requestVote++
          return deliver(id, targetAddress, (h) => h.requestVote(request))
        }),
      requestPreVote: (_target, targetAddress, request) =>
        Effect.suspend(() => {
          counters.requestPreVote++
          return deliver(id, targetAddress, (h) => h.requestPreVote(request))
        }),
      installSnapshot: (_target, targetAddress, request, data) =>
        Effect.suspend(() => {
          counters.installSnapshot++
          // The receiver reads the sender's stream directly; a cut link or a failed read ends it with a TransportError
          // on the receiving side, and the sender's call reports its own read failure as such.
          let readFailure: StorageError | undefined
          const endpointId = endpoints.get(targetAddress)?.id ?? targetAddress
          const carried = data.pipe(
            Stream.mapError((error) => {
              readFailure = error
              return new TransportError({ target: address, reason: "remote", detail: "sender failed to read" })
            }),
            Stream.mapEffect((chunk) =>
              canReach(id, endpointId)
                ? Effect.succeed(chunk)
                : Effect.fail(new TransportError({ target: address, reason: "unreachable", detail: "link cut" }))
            )
          )
          return deliver(id, targetAddress, (h) => h.installSnapshot(request, carried)).pipe(
            Effect.flatMap((response) => readFailure === undefined ? Effect.succeed(response) : Effect.fail(readFailure))
          )
        }),
      timeoutNow: (_target, targetAddress, request) =>
        Effect.suspend(() => {
          counters.timeoutNow++
          return deliver(id, targetAddress, (h) => h.timeoutNow(request))
        }),
      readIndex: (_target, targetAddress, request) =>
        Effect.suspend(() => {
          counters.readIndex++
          return deliver(id, targetAddress, (h) =>
            h.readIndex === undefined
              ? Effect.succeed({ _tag: "ReadIndexResponse" as const, term: request.term, success: false, index: 0 })
              : h.readIndex(request))
        }),
      appendEntriesPipeline: (_target, targetAddress) => openPipeline(targetAddress)
    }
  }

  return {
    transport,
    disconnect: (id) => Effect.sync(() => void disconnected.add(id)),
    closeConnections: (id) => Effect.sync(() => announceLost(id)),
    reconnect: (id) => Effect.sync(() => void disconnected.delete(id)),
    partition: (list) =>
      Effect.sync(() => {
        groups = new Map()
        list.forEach((group, n) => group.forEach((member) => groups!.set(member, n)))
      }),
    block: (from, to) => Effect.sync(() => void blocked.add(`${from}\u0000${to}`)),
    unblock: (from, to) => Effect.sync(() => void blocked.delete(`${from}\u0000${to}`)),
    heal: Effect.sync(() => {
      disconnected.clear()
      blocked.clear()
      groups = undefined
    }),
    setConditions: (next) => Effect.sync(() => void (conditions = next)),
    setPipelineSupport: (id, supported) =>
      Effect.sync(() => void (supported ? noPipeline.delete(id) : noPipeline.add(id))),
    canReach,
    counters
  }
}

/** Provides a fresh network. */
export const layer = (options: Options = {}): Layer.Layer<MemoryNetwork> => Layer.sync(MemoryNetwork, () => make(options))

/** Provides the `Transport` of node `id` on the network in context. */
export const layerTransport = (id: string, address?: string): Layer.Layer<Transport, never, MemoryNetwork> =>
  Layer.effect(Transport, Effect.map(MemoryNetwork, (network) => network.transport(id, address)))
