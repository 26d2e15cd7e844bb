/**
 * The safety properties the simulator checks, and what they remember across the run: log matching on every
 * write, and after every timer event election safety, leader completeness, state-machine safety (committed and
 * applied entries, state machine states) and commit and applied indexes that never go backwards. A broken
 * property is recorded on the run (`Sim.violate`), which stops it.
 * @internal
 */
import type * as Log from "../../Log.js"
import type * as SnapshotStore from "../../SnapshotStore.js"
import { type LogView, termBefore } from "./logView.js"
import { type SimCore, type SimNode, sync } from "./state.js"

const decoder = new TextDecoder()

// Entries are shared by reference between the nodes' stores (the memory network does not copy), so each is
// decoded once.
const keys = new WeakMap<Log.Log, string>()

/** An entry as the checks compare it: term, type and data. */
export const entryKey = (log: Log.Log): string => {
  let key = keys.get(log)
  if (key === undefined) {
    key = `${log.term}/${log.type}/${decoder.decode(log.data)}`
    keys.set(log, key)
  }
  return key
}

/** The start of a 32-bit FNV-1a digest. */
export const FNV_OFFSET = 0x811c9dc5

/** Continues a 32-bit FNV-1a digest over `bytes`. */
export const digestBytes = (digest: number, bytes: Uint8Array): number => {
  let h = digest
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * An (index, term) pair as one map key: a number while both fit (an index below 2^31, a term below 2^21, so the
 * product stays an exact integer), else a string. Numbers never equal strings, so two pairs share a key only if equal.
 */
const pairKey = (index: number, term: number): number | string =>
  index < 2 ** 31 && term < 2 ** 21 && index >= 0 && term >= 0 ? index * 2 ** 21 + term : `${index}/${term}`

const entryAt = (node: SimNode, index: number): Log.Log | undefined => node.view.get(index)
const newestSnapshot = (node: SimNode): SnapshotStore.SnapshotMeta | undefined => sync(node.snapshots.list)[0]
const snapshotIndexOf = (node: SimNode): number => newestSnapshot(node)?.index ?? 0

/** What the checks remember, and the checks. */
export class Invariants {
  // Log matching, checked on every write. An (index, term) pair names one entry forever (one leader per term
  // appends at an index once), so every log holding it must hold the same entry there, and the same term just
  // before it. By induction over the indices, two logs that hold the same (index, term) then agree on every
  // entry before it that both still hold: the Log Matching property. Checking neighbours only keeps the check
  // correct when a log is compacted or starts after a snapshot (whose index and term stand for the entry before).
  private readonly entryOf = new Map<number | string, { readonly node: string; readonly key: string }>()
  private readonly prevTermOf = new Map<number | string, { readonly node: string; readonly term: number }>()
  private readonly leaderOfTerm = new Map<number, string>()
  // The candidate each server is known to have voted for, by server and term (`voter/term`).
  private readonly voteOf = new Map<string, string>()
  private readonly committed = new Map<number, string>() // index -> "term/type/data"
  // The digest of each state machine state seen (snapshots the nodes took, and every node's state at the end),
  // by the last command index it includes: two states after the same commands must be equal.
  private readonly stateAt = new Map<number, { readonly node: string; readonly digest: number }>()
  leadersElected = 0

  constructor(private readonly sim: SimCore) {}

  /** Node `id` holds `entry`, after an entry of term `prevTerm` (undefined when unknown). */
  noteEntry(id: string, entry: Log.Log, prevTerm: number | undefined): void {
    const at = pairKey(entry.index, entry.term)
    const key = entryKey(entry)
    const known = this.entryOf.get(at)
    if (known === undefined) this.entryOf.set(at, { node: id, key })
    else if (known.key !== key) {
      this.sim.violate("log matching", `${known.node} and ${id} hold different entries at ${entry.index}/${entry.term}`)
      return
    }
    if (prevTerm === undefined) return
    const before = this.prevTermOf.get(at)
    if (before === undefined) this.prevTermOf.set(at, { node: id, term: prevTerm })
    else if (before.term !== prevTerm) {
      this.sim.violate(
        "log matching",
        `${before.node} and ${id} both hold ${entry.index}/${entry.term} but differ before it (term ${before.term} vs ` +
          `${prevTerm} at ${entry.index - 1})`
      )
    }
  }

  /** Node `id` is about to store `logs` (its log holds `view`): none may replace an entry it has committed. */
  noteWrite(id: string, view: LogView, logs: ReadonlyArray<Log.Log>): void {
    const committed = this.sim.nodes.find((n) => n.id === id)?.checkedCommit ?? 0
    for (const log of logs) {
      if (log.index > committed) break
      const held = view.get(log.index)
      if (held !== undefined && entryKey(held) !== entryKey(log)) {
        this.sim.violate("durability", `${id} replaced its committed entry ${log.index} (${entryKey(held)}) with ${entryKey(log)}`)
        return
      }
    }
  }

  /**
   * Node `id` is about to delete `min..max` from its log (which holds `view`): never an entry it has committed
   * that no snapshot of its own holds, and a compaction of the front of the log never past its newest snapshot.
   * (Discarding the whole log for a snapshot that replaces it is not a compaction.)
   */
  noteDeletion(id: string, view: LogView, snapshots: SnapshotStore.SnapshotStore, min: number, max: number): void {
    const from = Math.max(min, view.first)
    const to = Math.min(max, view.last)
    if (view.last === 0 || from > to) return
    const committed = this.sim.nodes.find((n) => n.id === id)?.checkedCommit ?? 0
    const snapshotIndex = sync(snapshots.list)[0]?.index ?? 0
    const lost = Math.min(to, committed)
    if (lost >= Math.max(from, snapshotIndex + 1)) {
      this.sim.violate("durability", `${id} deleted its committed entries up to ${lost}, past its snapshot at ${snapshotIndex}`)
    } else if (from === view.first && to < view.last && to > snapshotIndex) {
      this.sim.violate("durability", `${id} compacted its log up to ${to}, past its newest snapshot at ${snapshotIndex}`)
    }
  }

  /** A state machine state after command `through`, by its digest: equal commands must give equal states. */
  noteState(id: string, through: number, digest: number): void {
    const known = this.stateAt.get(through)
    if (known === undefined) this.stateAt.set(through, { node: id, digest })
    else if (known.digest !== digest) {
      this.sim.violate("state-machine safety", `${known.node} and ${id} hold different states after command ${through}`)
    }
  }

  /** `node`'s state machine applies `logs`: each once, none skipped, and the same command as everywhere else. */
  noteApplied(node: SimNode, logs: ReadonlyArray<Log.Log>): void {
    for (const log of logs) {
      if (log.index <= node.appliedThrough) {
        this.sim.violate(
          "state-machine safety",
          `${node.id} applied ${log.index} again (its state includes up to ${node.appliedThrough})`
        )
      } else {
        const skipped = this.skippedCommand(node, node.appliedThrough, log.index)
        if (skipped !== undefined) {
          this.sim.violate("state-machine safety", `${node.id} applied ${log.index} but never command ${skipped} before it`)
        }
      }
      node.appliedThrough = log.index
      // An entry a state machine applies was committed, whether or not a node holds it as committed yet (a
      // leader's own write may still be under way): every later leader must hold it.
      const key = entryKey(log)
      // (Two nodes applying different commands at an index differ from the committed entry there too: this check
      // finds it, so the commands need no comparison of their own.)
      const committed = this.committed.get(log.index)
      if (committed === undefined) this.committed.set(log.index, key)
      else if (committed !== key) {
        this.sim.violate("state-machine safety", `${node.id} applied ${key} at ${log.index}, committed as ${committed}`)
      }
    }
  }

  /** A command between `from` and `to` (both exclusive) that `node`'s state machine should have applied, if any. */
  private skippedCommand(node: SimNode, from: number, to: number): number | undefined {
    for (let index = from + 1; index < to; index++) {
      const key = this.committed.get(index)
      const type = key !== undefined ? key.split("/")[1] : entryAt(node, index)?.type
      if (type === "Command") return index
    }
    return undefined
  }

  /**
   * Server `voter` voted for `candidate` in `term` (for itself when it campaigned, or it granted the candidate's
   * RequestVote): a second candidate in the same term breaks the rule election safety rests on.
   */
  noteVote(voter: string, term: number, candidate: string): void {
    const key = `${voter}/${term}`
    const known = this.voteOf.get(key)
    if (known === undefined) this.voteOf.set(key, candidate)
    else if (known !== candidate) {
      this.sim.violate("one vote per term", `${voter} voted for ${known} and for ${candidate} in term ${term}`)
    }
  }

  /** The checks after every timer event: roles, monotonic indexes, committed entries, one leader per term. */
  checkStep(): void {
    const sim = this.sim
    for (const node of sim.nodes) {
      if (node.raft === undefined) continue
      // What the checks read of the node, without an effect run (see `sync`). Not `stats`: it also builds the
      // configuration's peer count and the leader's replication table, after every event of a run.
      const raft = node.raft
      const stats = {
        state: sync(raft.state),
        term: sync(raft.currentTerm),
        commitIndex: sync(raft.commitIndex),
        appliedIndex: sync(raft.appliedIndex),
        lastLogIndex: sync(raft.lastIndex)
      }
      if (stats.state !== node.lastState) {
        if (node.lastState === "Leader") sim.note(`${node.id} steps down in term ${stats.term} (now ${stats.state})`)
        node.lastState = stats.state
      }
      if (stats.state === "Shutdown") continue
      if (stats.commitIndex < node.lastCommit) {
        sim.violate("monotonic commit", `${node.id} commit index went from ${node.lastCommit} to ${stats.commitIndex}`)
      }
      if (stats.appliedIndex < node.lastApplied) {
        sim.violate("monotonic apply", `${node.id} applied index went from ${node.lastApplied} to ${stats.appliedIndex}`)
      }
      node.lastCommit = stats.commitIndex
      node.lastApplied = stats.appliedIndex
      // Everything a node holds as committed must be the same everywhere.
      let checkedTo = stats.commitIndex
      for (let index = node.checkedCommit + 1; index <= stats.commitIndex; index++) {
        const entry = entryAt(node, index)
        if (entry === undefined) {
          // Compacted entries are covered by the node's snapshot; any other gap is a violation.
          if (index <= snapshotIndexOf(node)) continue
          // A leader's own write may still be under way (it commits through its followers' copies meanwhile,
          // Raft thesis §10.2.1): check this entry once it is written.
          if (stats.state === "Leader" && index > node.view.last) {
            checkedTo = index - 1
            break
          }
          sim.violate("leader completeness", `${node.id} committed ${index} but does not hold it`)
          break
        }
        const key = entryKey(entry)
        const known = this.committed.get(index)
        if (known === undefined) this.committed.set(index, key)
        else if (known !== key) {
          sim.violate("state-machine safety", `index ${index} committed as ${known} and as ${key} (on ${node.id})`)
        }
      }
      node.checkedCommit = Math.max(node.checkedCommit, checkedTo)
      if (stats.state === "Leader") {
        const holder = this.leaderOfTerm.get(stats.term)
        if (holder === undefined) {
          this.leaderOfTerm.set(stats.term, node.id)
          this.leadersElected++
          sim.note(`${node.id} leads term ${stats.term} (last log ${stats.lastLogIndex}, commit ${stats.commitIndex})`)
          // A new leader must hold every entry committed before it.
          const snapshot = newestSnapshot(node)
          for (const [index, key] of this.committed) {
            const entry = entryAt(node, index)
            if (entry === undefined && snapshot !== undefined && index <= snapshot.index) {
              // Covered by the leader's snapshot, which must at least end on the committed entry's term.
              if (index === snapshot.index && !key.startsWith(`${snapshot.term}/`)) {
                sim.violate(
                  "leader completeness",
                  `${node.id}, leader of term ${stats.term}, has a snapshot ending at ${index} in term ` +
                    `${snapshot.term}, but ${key} was committed there`
                )
                break
              }
              continue
            }
            if (entry === undefined || entryKey(entry) !== key) {
              sim.violate(
                "leader completeness",
                `${node.id}, leader of term ${stats.term}, lacks committed entry ${index} (${key})`
              )
              break
            }
          }
        } else if (holder !== node.id) {
          sim.violate("election safety", `${holder} and ${node.id} both lead term ${stats.term}`)
        }
      }
    }
  }

  /** The full log-matching scan of every node's log (the writes are checked as they happen). */
  checkLogMatching(): void {
    for (const node of this.sim.nodes) {
      const { first, last } = node.view
      if (first === 0) continue
      let prevTerm = termBefore(node.view, node.snapshots, first)
      for (let index = first; index <= last; index++) {
        const entry = entryAt(node, index)
        if (entry === undefined) break
        this.noteEntry(node.id, entry, prevTerm)
        if (this.sim.violation !== undefined) return
        prevTerm = entry.term
      }
    }
  }
}
