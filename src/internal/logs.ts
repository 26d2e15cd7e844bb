/**
 * The log lines an operator reads: elections, leader changes, membership
 * changes, snapshots and step-downs, at Info, each annotated with the node,
 * its current term and its last log index (and whatever else the line
 * needs), so a JSON log can be filtered by any of them.
 * @internal
 */
import * as Effect from "effect/Effect"
import type { NodeState } from "./state.js"

/** An Info line of `node`, annotated with `node`, `term` and `index`, and `extra`. */
export const logEvent = (
  node: NodeState,
  message: string,
  extra: Record<string, unknown> = {}
): Effect.Effect<void> => annotated(node, Effect.logInfo(message), extra)

/** The same at Warning, for what needs attention (a leader losing its lease). */
export const logTrouble = (
  node: NodeState,
  message: string,
  extra: Record<string, unknown> = {}
): Effect.Effect<void> => annotated(node, Effect.logWarning(message), extra)

const annotated = (node: NodeState, log: Effect.Effect<void>, extra: Record<string, unknown>) =>
  Effect.annotateLogs(log, { node: node.localId, term: node.currentTerm, index: node.lastLogIndex, ...extra })
