/**
 * Linearizable reads: the ReadIndex of the Raft thesis (§6.4), on the leader
 * and on followers, and the leader's lease (§6.4.1). `readIndex` succeeds
 * with an index once this node's FSM has applied it, and then the FSM holds
 * every write acknowledged before the call: the caller reads its FSM.
 *
 * On the leader (`handleRead`, run loop or a reader while it waits): the read
 * index is the commit index, and at least this term's no-op (a new leader
 * knows what earlier leaders committed only once its no-op commits, Raft §8),
 * recorded when the read arrives; the read then joins the leader's open
 * heartbeat round (verify.ts), shared with every read and verification that
 * arrives before a heartbeat fiber sends it. A quorum answering a heartbeat
 * sent after the read arrived proves no other leader had been elected then.
 *
 * Lease mode skips the round while the lease holds. A voter that answered a
 * request this leader sent at time t refuses other candidates until it has
 * not heard from a leader for a heartbeat timeout, or for `leaderLeaseTimeout`
 * once told the leader's connection closed (election.ts, leaderLost.ts), so
 * until t + leaderLeaseTimeout no other leader can be elected by a quorum that
 * answered at t or later. The lease ends there, less `maxClockDrift` (the
 * voters' clocks may run faster than the leader's), and never survives a
 * leadership transfer (its target's voters ignore that window).
 *
 * On a follower (`followerReadIndex`): the reads that arrive while a
 * ReadIndex request is in flight share the next one, so one request to the
 * leader at a time serves them all; the leader answers its read index as
 * above, and each read waits until this node's FSM applied it (a notification
 * from the FSM runner, fsm.ts). The batch and the sender fiber are this
 * module's fields of the node, written in synchronous sections by readers and
 * the sender.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constVoid } from "effect/Function"
import * as Configuration from "../Configuration.js"
import { clockDriftMillis, type ReadMode } from "../RaftConfig.js"
import { LeadershipLost, type NotLeader, RaftShutdown, type ReadError, ReadTimeout } from "../RaftError.js"
import type { ReadIndexRequest, ReadIndexResponse } from "../Rpc.js"
import { onApplied, waitApplied } from "./fsm.js"
import { Future } from "./future.js"
import type { LeaderState, ReadBatch } from "./leaderState.js"
import { emit, loopWaiting, type NodeState, notLeaderError, quorumOf } from "./state.js"
import { joinRound } from "./verify.js"

/** What the leader's side of a read can fail with. */
export type LeaderReadError = NotLeader | LeadershipLost | RaftShutdown

/**
 * Whether the lease of `ls` holds now: a quorum of voters (this leader counting as one) answered requests sent less
 * than `leaderLeaseTimeout`, less the drift margin, ago; and no transfer began in this term.
 */
const leaseHolds = (node: NodeState, ls: LeaderState): boolean => {
  if (ls.transferred || ls.transfer !== undefined) return false
  const configuration = node.latestConfiguration
  const quorum = quorumOf(configuration)
  // The quorum-th most recent send time among the voters' acknowledged requests.
  const sent: Array<number> = Configuration.isVoter(configuration, node.localId) ? [Infinity] : []
  for (const replication of ls.replications.values()) {
    if (Configuration.isVoter(configuration, replication.peer.id)) sent.push(replication.ackedSentAt)
  }
  if (sent.length < quorum) return false
  sent.sort((a, b) => b - a)
  const config = node.config
  const margin = node.bugs.leaseIgnoresDrift === true ? 0 : clockDriftMillis(config)
  return node.now() < sent[quorum - 1]! + config.leaderLeaseTimeoutMillis - margin
}

/**
 * The `Read` event, or a reader's own call while the run loop waits: answers `deferred` with this leader's read
 * index once the read is confirmed, by the lease (`lease` and it holds) or by the next heartbeat round. Synchronous.
 */
export const handleRead = (node: NodeState, lease: boolean, deferred: Future<number, LeaderReadError>): void => {
  const ls = node.leader
  if (ls === undefined) {
    deferred.done(Exit.fail(notLeaderError(node)))
    return
  }
  const index = Math.max(node.commitIndex, ls.noopIndex)
  if ((lease && leaseHolds(node, ls)) || node.bugs.readWithoutConfirm === true) {
    deferred.done(Exit.succeed(index))
    return
  }
  joinRound(node, ls).listen((exit) => deferred.done(Exit.isSuccess(exit) ? Exit.succeed(index) : Exit.failCause(exit.cause)))
}

/** A reader's deadline: every wait of the read fails with the one `ReadTimeout` once the node's clock reaches `at`. */
interface ReadDeadline {
  readonly at: number
  readonly timeoutMillis: number
}

/** Waits for `future`, until `deadline` if the read has one (the keeper expires it, deadlines.ts). */
const awaitRead = <A, E>(
  node: NodeState,
  future: Future<A, E>,
  deadline: ReadDeadline | undefined,
  onAbandon: () => void = constVoid
): Effect.Effect<A, E | ReadTimeout> =>
  deadline === undefined
    ? future.awaitOr(onAbandon)
    : future.awaitUntil(
      node.deadlines,
      deadline.at,
      onAbandon,
      () => new ReadTimeout({ timeoutMillis: deadline.timeoutMillis })
    )

/** This leader's read index: handled at once while the run loop waits with nothing queued, else by the run loop. */
const leaderReadIndex = (
  node: NodeState,
  lease: boolean,
  deadline?: ReadDeadline
): Effect.Effect<number, LeaderReadError | ReadTimeout> =>
  Effect.suspend(() => {
    const deferred = node.isShutdown ? undefined : startLeaderRead(node, lease)
    return deferred === undefined ? Effect.fail(new RaftShutdown()) : awaitRead(node, deferred, deadline)
  })

/**
 * Starts this leader's read: handled at once while the run loop waits with nothing queued, else by the run loop;
 * undefined when the node's run loop no longer takes events (it shut down).
 */
const startLeaderRead = (node: NodeState, lease: boolean): Future<number, LeaderReadError> | undefined => {
  const deferred = new Future<number, LeaderReadError>()
  if (loopWaiting(node)) handleRead(node, lease, deferred)
  else if (!emit(node, { _tag: "Read", lease, deferred })) return undefined
  return deferred
}

/**
 * A leader's linearizable read for a caller outside any fiber (the key-value service's HTTP front, which saves a
 * fiber and its scheduling per read this way): `callback` gets the read index once this node's FSM has applied it,
 * or the leader's refusal, exactly as `readIndex` would answer on this node. Returns undefined, having done nothing,
 * unless this node leads (the caller then takes `readIndex`, which asks the leader); else a function that drops
 * the caller's wait for the FSM (a round under way still ends, unheard).
 */
export const leaderReadListen = (
  node: NodeState,
  mode: ReadMode | undefined,
  callback: (exit: Exit.Exit<number, LeaderReadError>) => void
): (() => void) | undefined => {
  if (node.isShutdown || node.role !== "Leader") return undefined
  const deferred = startLeaderRead(node, (mode ?? node.config.readMode) === "lease")
  return deferred === undefined ? undefined : listenApplied<LeaderReadError>(node, deferred, callback, true)
}

/**
 * `callback` gets `future`'s failure, or its index once this node's FSM has applied it (at once unless
 * `waitForFsm`); the function returned drops the wait.
 */
const listenApplied = <E>(
  node: NodeState,
  future: Future<number, E>,
  callback: (exit: Exit.Exit<number, E | RaftShutdown>) => void,
  waitForFsm: boolean
): () => void => {
  let dropped = false
  let drop = constVoid
  future.listen((exit) => {
    if (dropped) return
    if (Exit.isFailure(exit) || !waitForFsm) return callback(exit)
    // Shutdown wakes every waiter: the FSM did not apply it then.
    drop = onApplied(node, exit.value, () => callback(node.isShutdown ? Exit.fail(new RaftShutdown()) : exit))
  })
  return () => {
    dropped = true
    drop()
  }
}

/**
 * A follower's linearizable read for a caller outside any fiber, while a ReadIndex request of this node is in flight
 * (a burst of reads, as many clients make): the read joins the next request, and `callback` gets the index once this
 * node's FSM has applied it, exactly as `readIndex` would answer. Returns undefined, having done nothing, otherwise:
 * the first read of a burst takes `readIndex`, whose fiber starts the sender.
 */
export const followerReadListen = (
  node: NodeState,
  mode: ReadMode | undefined,
  callback: (exit: Exit.Exit<number, ReadError>) => void
): (() => void) | undefined => {
  if (node.isShutdown || node.role === "Leader" || node.leaderId === undefined || !node.readSending) return undefined
  const batch = joinReadBatch(node, (mode ?? node.config.readMode) === "lease")
  return listenApplied<ReadError>(node, batch.future, callback, node.bugs.followerReadWithoutApply !== true)
}

/** One ReadIndex exchange with the leader this node knows (or its own read index, if it leads now). */
const askLeader = (node: NodeState, lease: boolean): Effect.Effect<number, ReadError> =>
  Effect.suspend((): Effect.Effect<number, ReadError> => {
    if (node.role === "Leader") return leaderReadIndex(node, lease)
    const { leaderAddress, leaderId } = node
    const send = node.transport.readIndex
    if (leaderId === undefined || leaderAddress === undefined || send === undefined) {
      return Effect.fail(notLeaderError(node))
    }
    const request: ReadIndexRequest = {
      _tag: "ReadIndexRequest",
      term: node.currentTerm,
      serverId: node.localId,
      serverAddress: node.localAddress,
      lease,
      clusterId: node.clusterId
    }
    return Effect.flatMap(
      send(leaderId, leaderAddress, request),
      (response): Effect.Effect<number, LeadershipLost> =>
        response.success ? Effect.succeed(response.index) : Effect.fail(new LeadershipLost())
    )
  })

/**
 * The fiber that sends a follower's batches, one request at a time, until none waits; one runs at most, started by
 * the first read of a burst. Interrupted (the node shut down), it fails what it held.
 */
const sendReads = (node: NodeState): Effect.Effect<void> => {
  let inHand: ReadBatch | undefined
  return Effect.gen(function*() {
    while (true) {
      const batch = node.readBatch
      if (batch === undefined) {
        node.readSending = false
        return
      }
      node.readBatch = undefined
      inHand = batch
      const exit = yield* Effect.exit(askLeader(node, batch.lease))
      inHand = undefined
      batch.future.done(exit)
    }
  }).pipe(
    Effect.onInterrupt(() =>
      Effect.sync(() => {
        node.readSending = false
        inHand?.future.done(Exit.fail(new RaftShutdown()))
        failReads(node)
      })
    )
  )
}

/** Fails the reads waiting to be sent: the node shut down. */
export const failReads = (node: NodeState): void => {
  node.readBatch?.future.done(Exit.fail(new RaftShutdown()))
  node.readBatch = undefined
}

/** The batch of this follower's next ReadIndex request, with a read of `lease` in it: a lease read only if all are. */
const joinReadBatch = (node: NodeState, lease: boolean): ReadBatch => {
  const batch = node.readBatch
  if (batch === undefined) return (node.readBatch = { lease, future: new Future() })
  if (!lease) batch.lease = false
  return batch
}

/** A follower's read index: from its leader, in the next request the reads arriving meanwhile share. */
const followerReadIndex = (node: NodeState, lease: boolean, deadline: ReadDeadline | undefined): Effect.Effect<number, ReadError> =>
  Effect.suspend(() => {
    if (node.leaderId === undefined) return Effect.fail(notLeaderError(node))
    const batch = joinReadBatch(node, lease)
    if (node.readSending) return awaitRead(node, batch.future, deadline)
    node.readSending = true
    return Effect.zipRight(
      Effect.forkIn(Effect.interruptible(sendReads(node)), node.nodeScope),
      awaitRead(node, batch.future, deadline)
    )
  })

/**
 * `raft.readIndex`: the index of a linearizable read, once this node's FSM has applied it; `ReadTimeout` after
 * `timeoutMillis` (the whole wait). Any fiber.
 */
export const readIndex = (
  node: NodeState,
  mode: ReadMode | undefined,
  timeoutMillis: number | undefined
): Effect.Effect<number, ReadError> =>
  Effect.suspend(() => {
    if (node.isShutdown) return Effect.fail(new RaftShutdown())
    const lease = (mode ?? node.config.readMode) === "lease"
    const leading = node.role === "Leader"
    // One deadline for the whole read: whichever wait is pending when it passes fails with ReadTimeout.
    const deadline = timeoutMillis === undefined ? undefined : { at: node.now() + timeoutMillis, timeoutMillis }
    return Effect.flatMap(
      leading ? leaderReadIndex(node, lease, deadline) : followerReadIndex(node, lease, deadline),
      (index) =>
        Effect.zipRight(
          !leading && node.bugs.followerReadWithoutApply === true
            ? Effect.void
            : waitApplied(node, index, (future, drop) => awaitRead(node, future, deadline, drop)),
          // Shutdown wakes every waiter: the FSM did not apply it then.
          Effect.suspend(() => node.isShutdown ? Effect.fail(new RaftShutdown()) : Effect.succeed(index))
        )
    )
  })

/**
 * A follower's ReadIndex request, leader side: the read index once confirmed, or a refusal. The follower's
 * replication is woken too, so it learns the commit index now rather than at its next commit tick: its read waits
 * until it has applied the index. A transport's handler fiber.
 */
export const serveReadIndex = (
  node: NodeState,
  request: ReadIndexRequest
): Effect.Effect<ReadIndexResponse, RaftShutdown> =>
  Effect.matchEffect(leaderReadIndex(node, request.lease), {
    onFailure: (error) =>
      error._tag === "RaftShutdown"
        ? Effect.fail(error)
        : Effect.succeed({ _tag: "ReadIndexResponse" as const, term: node.currentTerm, success: false, index: 0 }),
    onSuccess: (index) =>
      Effect.sync(() => {
        node.leader?.replications.get(request.serverId)?.trigger.unsafeOpen()
        return { _tag: "ReadIndexResponse" as const, term: node.currentTerm, success: true, index }
      })
  })
