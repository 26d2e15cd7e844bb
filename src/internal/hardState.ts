/**
 * The node's hard state, as the Raft paper calls what must survive a crash:
 * the current term and the vote cast in it, kept in the `StableStore`. The
 * rule is persist before you answer: a term is stored before the node acts
 * on it, a vote before it is granted or counted.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { IdentityMismatch, StorageError } from "../RaftError.js"
import type { StableStore } from "../StableStore.js"
import type { Bugs } from "./bugs.js"
import type { NodeState } from "./state.js"

/** The StableStore key of the current term. */
export const KEY_CURRENT_TERM = "CurrentTerm"
/** The StableStore key of the last vote: `{ term, candidate }` as JSON. */
export const KEY_LAST_VOTE = "LastVote"
/** The StableStore key of the id of the node the stores belong to. */
export const KEY_NODE_ID = "NodeId"
/** The StableStore key of the id of the cluster the node belongs to. */
export const KEY_CLUSTER_ID = "ClusterId"
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/**
 * Reads the term and the last vote at start (a generator for node.ts's `make` to delegate to, so start-up runs
 * the same steps as when this was inline).
 */
export function* loadHardState(stable: StableStore, bugs: Bugs) {
  const currentTerm = yield* stable.getUint64(KEY_CURRENT_TERM)
  let lastVoteTerm = 0
  let lastVoteCandidate = ""
  const vote = bugs.forgetVoteAtStart === true ? Option.none() : yield* stable.get(KEY_LAST_VOTE)
  if (Option.isSome(vote)) {
    const parsed = JSON.parse(textDecoder.decode(vote.value)) as { term?: unknown; candidate?: unknown }
    if (typeof parsed.term === "number" && typeof parsed.candidate === "string") {
      lastVoteTerm = parsed.term
      lastVoteCandidate = parsed.candidate
    } else {
      return yield* new StorageError({ operation: "open", reason: "malformed LastVote record" })
    }
  }
  return { currentTerm, lastVoteTerm, lastVoteCandidate }
}

/**
 * Checks that the stores belong to `localId`, or claims them for it when they name no node yet (fresh stores,
 * or stores of a version that did not record it): a node never runs on another node's log and votes. Then the
 * same for the cluster: answers the cluster id the node runs with (the stored one, else `configured`, which is
 * stored), undefined when neither names one.
 */
export const claimStores = (
  stable: StableStore,
  localId: string,
  configured: string | undefined
): Effect.Effect<string | undefined, StorageError | IdentityMismatch> =>
  Effect.gen(function*() {
    const storedNode = yield* stable.get(KEY_NODE_ID)
    if (Option.isNone(storedNode)) yield* stable.set(KEY_NODE_ID, textEncoder.encode(localId))
    else if (textDecoder.decode(storedNode.value) !== localId) {
      const owner = textDecoder.decode(storedNode.value)
      return yield* new IdentityMismatch({
        reason: `these stores belong to node "${owner}", not "${localId}": start "${owner}" on them, ` +
          `or give "${localId}" stores of its own`
      })
    }
    const storedCluster = yield* stable.get(KEY_CLUSTER_ID)
    if (Option.isSome(storedCluster)) {
      const cluster = textDecoder.decode(storedCluster.value)
      if (configured !== undefined && configured !== cluster) {
        return yield* new IdentityMismatch({
          reason: `these stores belong to cluster "${cluster}", but node "${localId}" is configured for cluster ` +
            `"${configured}": give it the stores of that cluster, or fix its clusterId`
        })
      }
      return cluster
    }
    if (configured !== undefined) yield* stable.set(KEY_CLUSTER_ID, textEncoder.encode(configured))
    return configured
  })

/** Records the cluster id a node without one takes from its leader, before it acts on the leader's request. */
export const adoptCluster = (node: NodeState, clusterId: string) =>
  Effect.map(node.stable.set(KEY_CLUSTER_ID, textEncoder.encode(clusterId)), () => {
    node.clusterId = clusterId
  })

/** Stores `term` as the current term (nothing when it already is). Run loop only. */
export const setCurrentTerm = (node: NodeState, term: number) =>
  Effect.suspend(() => {
    if (term === node.currentTerm) return Effect.void
    return Effect.map(node.stable.setUint64(KEY_CURRENT_TERM, term), () => {
      node.currentTerm = term
    })
  })

/** Stores a vote for `candidate` in `term`; it counts only once stored. Run loop only. */
export const persistVote = (node: NodeState, term: number, candidate: string) =>
  Effect.map(
    node.bugs.voteWithoutPersist
      ? Effect.void
      : node.stable.set(KEY_LAST_VOTE, textEncoder.encode(JSON.stringify({ term, candidate }))),
    () => {
      node.lastVoteTerm = term
      node.lastVoteCandidate = candidate
    }
  )
