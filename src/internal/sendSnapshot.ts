/**
 * A leader's side of InstallSnapshot (the seed's sendLatestSnapshot): when a follower needs entries compacted away,
 * the newest snapshot is streamed to it. The receiving side is `snapshot.ts`.
 * @internal
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { SnapshotNotFound } from "../RaftError.js"
import type { InstallSnapshotRequest } from "../Rpc.js"
import type { LeaderState, Replication } from "./leaderState.js"
import { logEvent } from "./logs.js"
import { metrics } from "./metrics.js"
import type { NodeState } from "./state.js"
import { INDEX, PEER, spanned, TERM, traceparent } from "./tracing.js"

/** A follower could not install the snapshot sent to it; sending is retried with backoff. */
export class SnapshotRejected extends Data.TaggedError("SnapshotRejected")<{ readonly index: number }> {}

/**
 * Sends the newest snapshot to `replication`'s follower in `term`: "stop" when the answer carries a higher term
 * (`stepDown` has been told), "continue" once installed. `acknowledged` records the answer's timing.
 */
export const sendLatestSnapshotTo = (
  node: NodeState,
  ls: LeaderState,
  replication: Replication,
  term: number,
  stepDown: (newTerm: number) => void,
  acknowledged: (sentAt: number) => void
) => {
  const { localAddress, localId, snapshots, transport } = node
  return spanned(node, "raft.install_snapshot", { [PEER]: replication.peer.id, [TERM]: term }, (span) =>
    Effect.gen(function*() {
      const newest = (yield* snapshots.list)[0]
      if (newest === undefined) {
        return yield* new SnapshotNotFound({ reason: "a follower needs compacted entries and no snapshot exists" })
      }
      const opened = yield* snapshots.open(newest.id)
      const request: InstallSnapshotRequest = {
        _tag: "InstallSnapshotRequest",
        term,
        leaderId: localId,
        leaderAddress: localAddress,
        lastLogIndex: opened.meta.index,
        lastLogTerm: opened.meta.term,
        configuration: opened.meta.configuration,
        configurationIndex: opened.meta.configurationIndex,
        clusterId: node.clusterId,
        ...(span === undefined ? {} : { traceparent: traceparent(span) })
      }
      span?.attribute(INDEX, opened.meta.index)
      yield* logEvent(node, `sending snapshot ${opened.meta.id} (index ${opened.meta.index}) to ${replication.peer.id}`, {
        peer: replication.peer.id,
        snapshotIndex: opened.meta.index
      })
      const start = node.nowMicros()
      const sentAt = node.now()
      const response = yield* transport.installSnapshot(
        replication.peer.id,
        replication.peer.address,
        request,
        opened.data
      )
      metrics.installSnapshot.unsafeUpdate(node.nowMicros() - start, replication.labels)
      if (response.term > term) {
        stepDown(response.term)
        return "stop" as const
      }
      acknowledged(sentAt)
      if (!response.success) {
        return yield* new SnapshotRejected({ index: opened.meta.index })
      }
      replication.failures = 0
      replication.nextIndex = opened.meta.index + 1
      if (opened.meta.index > replication.matchIndex) replication.matchIndex = opened.meta.index
      ls.commitment.match(replication.peer.id, opened.meta.index)
      return "continue" as const
    }), { kind: "client" })
}
