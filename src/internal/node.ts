/**
 * The composition root of one Raft node: `make` reads the node's hard state,
 * builds its record (state.ts), recovers it from the stores (bootstrap.ts),
 * serves RPCs, and forks the node's fibers into its scope:
 * - the run loop (loop.ts), which owns the Raft state and handles every event;
 * - the FSM runner (fsm.ts);
 * - the leader's log writer (leaderLog.ts);
 * - the snapshot loop (snapshot.ts);
 * - the deadline keeper of the callers' timeouts (deadlines.ts).
 * Role fibers (timers, vote requests, replication: election.ts, leader.ts,
 * replication.ts) live in the role's scope inside the node's. A failure of a
 * supervised fiber shuts the node down; so does closing the scope it was
 * started in. docs/engine.md maps the modules and the path of one apply.
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as MetricLabel from "effect/MetricLabel"
import * as PubSub from "effect/PubSub"
import * as Scope from "effect/Scope"
import { type IdentityMismatch, RaftShutdown, type StorageError } from "../RaftError.js"
import type { AppendEntriesRequest, AppendEntriesResponse } from "../Rpc.js"
import type { RpcHandler } from "../Transport.js"
import { makeApi, type Node } from "./api.js"
import { recover } from "./bootstrap.js"
import { InjectedBugs } from "./bugs.js"
import type { Event, FsmItem } from "./events.js"
import { appendNow } from "./follower.js"
import { fsmRunner } from "./fsm.js"
import { Future } from "./future.js"
import { Inbox } from "./inbox.js"
import { claimStores, loadHardState } from "./hardState.js"
import type { LeaderWrite } from "./leaderState.js"
import { leaderWriter } from "./leaderLog.js"
import { markAppended } from "./logAge.js"
import { failEvent, runLoop } from "./loop.js"
import { failReads, serveReadIndex } from "./read.js"
import { tearDownLeader } from "./role.js"
import { receiveSnapshot, snapshotLoop } from "./snapshot.js"
import { ask, emit, foreignCluster, loopWaiting, NodeState, type NodeServices, publish } from "./state.js"
import { makeTracing } from "./tracing.js"
import type { Observation } from "./types.js"

export type { Node } from "./api.js"
export type { NodeServices } from "./state.js"

/** Starts a node in `parentScope`; closing that scope (or `shutdown`) stops every fiber it started. */
export const make = (
  services: NodeServices,
  parentScope: Scope.Scope
): Effect.Effect<Node, StorageError | IdentityMismatch> =>
  Effect.gen(function*() {
    const { config, transport } = services
    const localId = config.localId
    const clock = yield* Effect.clock
    const bugs = yield* InjectedBugs
    const nodeScope = yield* Scope.fork(parentScope, ExecutionStrategy.sequential)
    const mailbox = new Inbox<Event>()
    const fsmMailbox = new Inbox<FsmItem>()
    const writes = new Inbox<LeaderWrite>()
    const observations = yield* PubSub.unbounded<Observation>()
    const clusterId = yield* claimStores(services.stable, localId, config.clusterId)
    const hard = yield* loadHardState(services.stable, bugs)
    const node = new NodeState(services, {
      parentScope,
      nodeScope,
      roleScope: yield* Scope.fork(nodeScope, ExecutionStrategy.sequential),
      clock,
      bugs,
      mailbox,
      fsmMailbox,
      writes,
      observations,
      snapshotLock: yield* Effect.makeSemaphore(1),
      nodeLabels: [MetricLabel.make("node", localId)],
      tracing: yield* makeTracing(config.traceSampleRate),
      clusterId,
      ...hard
    })
    yield* recover(node)
    // What the store holds at start counts from now (logAge.ts).
    markAppended(node, 0)

    const shutdown: Effect.Effect<void> = Effect.suspend(() => {
      if (node.isShutdown) return node.shutdownDone.await
      node.isShutdown = true
      return Effect.gen(function*() {
        yield* Scope.close(nodeScope, Exit.void)
        const previous = node.role
        node.role = "Shutdown"
        yield* publish(node, { _tag: "StateChange", from: previous, to: "Shutdown", term: node.currentTerm })
        // Fail whatever was left waiting.
        for (const event of node.current) failEvent(event)
        node.current = []
        mailbox.unsafeEnd()
        const left = mailbox.unsafeClear()
        for (const event of left) failEvent(event)
        for (const future of node.fsmInHand) future?.deferred.done(Exit.fail(new RaftShutdown()))
        node.fsmInHand = []
        fsmMailbox.unsafeEnd()
        const pendingFsm = fsmMailbox.unsafeClear()
        for (const item of pendingFsm) {
          if (item._tag === "Batch") {
            for (const future of item.futures ?? []) future?.deferred.done(Exit.fail(new RaftShutdown()))
          } else if (item._tag !== "Failed") {
            item.deferred.done(Exit.fail(new RaftShutdown()))
          }
        }
        for (const waiter of node.appliedWaiters) waiter.future.done(Exit.void)
        node.appliedWaiters = []
        failReads(node)
        yield* tearDownLeader(node).pipe(Effect.ignore)
        yield* PubSub.shutdown(observations)
        node.shutdownDone.done(Exit.void)
      }).pipe(Effect.uninterruptible)
    })
    node.shutdown = shutdown

    // ---- start: serve RPCs, run the loop, the FSM runner, the writer and the snapshot loop
    const refuseForeign = (request: { readonly clusterId?: string | undefined }) => {
      const foreign = foreignCluster(node, request.clusterId)
      return foreign === undefined ? undefined : Effect.fail(foreign)
    }
    // The usual AppendEntries while the run loop waits, into a store that writes synchronously, is handled at once
    // (follower.ts `appendNow`); one the follower traces goes to the run loop, which makes its span.
    const appendAtOnce = (request: AppendEntriesRequest) =>
      !node.isShutdown && loopWaiting(node) && (node.tracing === undefined || request.traceparent === undefined)
        ? appendNow(node, request)
        : undefined
    // A request of another cluster is refused before it reaches the run loop.
    const handler: RpcHandler = {
      appendEntries: (request) =>
        refuseForeign(request) ?? Effect.suspend(() => {
          const answer = appendAtOnce(request)
          return answer !== undefined
            ? Effect.succeed(answer)
            : ask(node, (deferred) => ({ _tag: "AppendEntries", request, deferred }))
        }),
      submitAppendEntries: (request, onDone) => {
        const foreign = foreignCluster(node, request.clusterId)
        if (foreign !== undefined) return onDone(Exit.fail(foreign))
        const answer = appendAtOnce(request)
        if (answer !== undefined) return onDone(Exit.succeed(answer))
        const deferred = new Future<AppendEntriesResponse, RaftShutdown>()
        if (node.isShutdown || !emit(node, { _tag: "AppendEntries", request, deferred })) {
          return onDone(Exit.fail(new RaftShutdown()))
        }
        deferred.listen(onDone)
      },
      requestVote: (request) =>
        refuseForeign(request) ?? ask(node, (deferred) => ({ _tag: "RequestVote", request, deferred })),
      requestPreVote: (request) =>
        refuseForeign(request) ?? ask(node, (deferred) => ({ _tag: "RequestPreVote", request, deferred })),
      timeoutNow: (request) =>
        refuseForeign(request) ?? ask(node, (deferred) => ({ _tag: "TimeoutNow", request, deferred })),
      readIndex: (request) => refuseForeign(request) ?? serveReadIndex(node, request),
      peerLost: (serverId) => {
        if (!node.isShutdown && node.leaderId === serverId) emit(node, { _tag: "LeaderLost", from: serverId })
      },
      installSnapshot: (request, data) =>
        refuseForeign(request) ?? receiveSnapshot(node, request, data)
    }
    yield* Scope.extend(transport.serve(handler), nodeScope)

    const fatal = (what: string) => (cause: Cause.Cause<unknown>) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.void
        : Effect.logError(`${what} failed, shutting the node down`, cause).pipe(
          Effect.andThen(Effect.forkIn(shutdown, parentScope)),
          Effect.asVoid
        )
    yield* runLoop(node).pipe(
      Effect.catchAllCause(fatal("raft run loop")),
      Effect.annotateLogs({ module: "Raft", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* fsmRunner(node).pipe(
      Effect.catchAllCause(fatal("FSM")),
      Effect.annotateLogs({ module: "FsmRunner", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* leaderWriter(node).pipe(
      // Stopped (shutdown): whoever waits for the writes waits no more; nothing will be written now.
      Effect.ensuring(Effect.sync(() => {
        node.writerStopped = true
        node.writesDrained?.done(Exit.void)
        node.writesDrained = undefined
      })),
      Effect.catchAllCause(fatal("leader log writer")),
      Effect.annotateLogs({ module: "LeaderWriter", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* node.deadlines.run.pipe(Effect.interruptible, Effect.forkIn(nodeScope))
    yield* snapshotLoop(node).pipe(
      Effect.annotateLogs({ module: "Snapshots", node: localId }),
      Effect.interruptible,
      Effect.forkIn(nodeScope)
    )
    yield* Scope.addFinalizer(parentScope, shutdown)
    return makeApi(node)
  })
