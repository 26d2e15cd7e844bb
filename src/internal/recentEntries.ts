/**
 * A follower's recent entries: those it stored from its leader at the end of its log (follower.ts, the usual
 * AppendEntries) and has not yet handed to its FSM. A commit usually covers what earlier requests brought, so
 * the entries go to the FSM runner from here instead of being read back from the log store. They stay valid
 * only while they end the log as stored: whatever changes the log another way (a truncation, a snapshot that
 * replaces the log) or leaves the follower role empties them. Bounded by count and by bytes; what they drop is
 * read from the store instead. Run loop, or follower.ts `appendNow`'s fast path.
 * @internal
 */
import type * as Log from "../Log.js"
import type { NodeState } from "./state.js"

/** The most entries kept. */
const MAX_ENTRIES = 64
/** The most bytes of entry data kept (entries' data may hold on to the whole request they came in). */
const MAX_BYTES = 1024 * 1024

/** Takes the oldest `count` entries out. */
const dropOldest = (node: NodeState, count: number): Array<Log.Log> => {
  const recent = node.recentEntries
  for (let i = 0; i < count; i++) node.recentBytes -= recent[i]!.data.byteLength
  return recent.splice(0, count)
}

/** Entries just stored at the end of the log join the recent ones, or replace them after a gap. */
export const keepRecent = (node: NodeState, entries: ReadonlyArray<Log.Log>): void => {
  const recent = node.recentEntries
  if (recent.length > 0 && recent[recent.length - 1]!.index + 1 !== entries[0]!.index) forgetRecent(node)
  for (const entry of entries) {
    recent.push(entry)
    node.recentBytes += entry.data.byteLength
  }
  // Those already handed to the FSM (by a read of the store) leave first, then the oldest past the bounds.
  let drop = 0
  let bytes = node.recentBytes
  while (
    drop < recent.length &&
    (recent[drop]!.index <= node.dispatchedToFsm || recent.length - drop > MAX_ENTRIES || bytes > MAX_BYTES)
  ) {
    bytes -= recent[drop]!.data.byteLength
    drop++
  }
  if (drop > 0) {
    recent.splice(0, drop)
    node.recentBytes = bytes
  }
}

/** The log changed other than at its end, or the node is no longer a follower: the recent entries are void. */
export const forgetRecent = (node: NodeState): void => {
  node.recentEntries.length = 0
  node.recentBytes = 0
}

/**
 * The entries after the last one handed to the FSM, up to the commit index, taken out of the recent entries when
 * they hold them all; undefined when they do not (the caller then reads the store).
 */
export const takeCommitted = (node: NodeState): ReadonlyArray<Log.Log> | undefined => {
  const recent = node.recentEntries
  const from = node.dispatchedToFsm + 1
  const to = node.commitIndex
  if (recent.length === 0 || from <= node.lastSnapshotIndex) return undefined
  const first = recent[0]!.index
  if (from < first || to > recent[recent.length - 1]!.index) return undefined
  const taken = dropOldest(node, to - first + 1)
  return from === first ? taken : taken.slice(from - first)
}
