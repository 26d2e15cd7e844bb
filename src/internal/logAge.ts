/**
 * The age of the oldest entry in the log store (hashicorp's oldestLogAge),
 * without a timestamp on every entry: the node keeps a mark (first index,
 * time) for the first batch it appends in each second, drops the marks a
 * compaction leaves behind, and reports the age of the oldest mark left. The
 * age is therefore an upper bound, to within a second; entries found in the
 * store at start count from the start.
 * @internal
 */
import { metrics } from "./metrics.js"
import type { NodeState } from "./state.js"

/** Entries from `firstIndex` on were just stored. Whoever stores them (the leader's writer, follower.ts). */
export const markAppended = (node: NodeState, firstIndex: number): void => {
  const at = node.now()
  const marks = node.appendMarks
  if (marks.length > 0 && at - marks[marks.length - 1]!.at < 1000) return
  marks.push({ index: firstIndex, at })
}

/** Entries before `firstIndex` were deleted by a compaction. Run loop. */
export const noteCompacted = (node: NodeState, firstIndex: number): void => {
  const marks = node.appendMarks
  let k = 0
  while (k + 1 < marks.length && marks[k + 1]!.index <= firstIndex) k++
  if (k > 0) node.appendMarks = marks.slice(k)
  reportOldestLogAge(node)
}

/** The whole log was replaced by a snapshot: it is empty. Run loop. */
export const noteLogReplaced = (node: NodeState): void => {
  node.appendMarks = []
  metrics.oldestLogAge.unsafeUpdate(0, node.nodeLabels)
}

/** Sets the gauge from the oldest mark; called on compaction and by the periodic fibers of every role. */
export const reportOldestLogAge = (node: NodeState): void => {
  const oldest = node.appendMarks[0]
  if (oldest !== undefined) metrics.oldestLogAge.unsafeUpdate(node.now() - oldest.at, node.nodeLabels)
}
