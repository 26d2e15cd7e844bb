/**
 * A follower told that its leader's connection closed (`RpcHandler.peerLost`: the
 * leader's process ended, or closed the connection) campaigns sooner. A hint, never
 * proof: the node stops counting on that leader once it has been silent for a
 * lease (`leaderLeaseTimeout`) instead of a heartbeat timeout, and campaigns then,
 * with a small random delay so that two followers told at once do not split the vote.
 *
 * Safe for lease reads: a leader's lease lasts `leaderLeaseTimeout`, less the clock
 * drift, from the requests a quorum answered (read.ts), and a voter refuses other
 * candidates for at least that long after it last heard from the leader, hint or
 * not (election.ts `hearsOtherLeader`). A later request of the leader, on any
 * connection, voids the hint: only silence since the hint counts.
 * @internal
 */
import * as Effect from "effect/Effect"
import { type NodeState, timerOnce } from "./state.js"

/**
 * How long after the last contact with a leader this node still counts on it (refusing other candidates, not
 * campaigning): a lease once told that leader's connection closed, a heartbeat timeout otherwise.
 */
export const contactWindowMillis = (node: NodeState): number =>
  node.leaderLostAt !== undefined && node.lastContact !== undefined && node.leaderLostAt >= node.lastContact
    ? (node.bugs.leaderLostAtOnce === true ? 0 : node.config.leaderLeaseTimeoutMillis)
    : node.config.heartbeatTimeoutMillis

/** The `LeaderLost` event: `from`'s connection to this node closed. Run loop. */
export const handleLeaderLost = (node: NodeState, from: string) =>
  Effect.suspend(() => {
    if (node.role !== "Follower" || node.leaderId !== from || node.lastContact === undefined) return Effect.void
    node.leaderLostAt = node.now()
    const lease = node.config.leaderLeaseTimeoutMillis
    const due = Math.max(0, node.lastContact + contactWindowMillis(node) - node.leaderLostAt)
    const epoch = node.epoch
    // Up to a fifth of a lease later: far more than a round trip between followers told at once.
    return timerOnce(node, epoch, due, Math.floor(lease / 5))
  })
