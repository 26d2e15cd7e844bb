/**
 * Tracks how far each voter's log matches the leader's and derives the commit
 * index: the highest index a quorum of voters holds. Raft §5.4.2: an entry of
 * an earlier term is never committed by counting, so the commit index moves
 * only from `startIndex` on, the index of this leader's own no-op; everything
 * before it commits with it. The leader's own entry counts only after its
 * `storeLogs` succeeded (the caller matches itself then).
 * @internal
 */
export class Commitment {
  private readonly matchIndexes = new Map<string, number>()
  private sorted: Array<number>
  commitIndex: number

  constructor(
    voters: ReadonlyArray<string>,
    readonly startIndex: number,
    commitIndex: number,
    private readonly onCommit: () => void,
    /** Test-only: commit what the most advanced voter holds, without a quorum. */
    private readonly withoutQuorum = false
  ) {
    for (const id of voters) this.matchIndexes.set(id, 0)
    this.sorted = new Array(voters.length).fill(0)
    this.commitIndex = commitIndex
  }

  /** Records that `id` durably holds the leader's entries up to `index`. Non-voters are ignored. */
  match(id: string, index: number): void {
    const previous = this.matchIndexes.get(id)
    if (previous === undefined || index <= previous) return
    this.matchIndexes.set(id, index)
    this.recalculate()
  }

  /**
   * Changes the voters (a configuration entry was appended): voters kept keep their match index, new ones start
   * at `initial(id)`. The commit index may move at once, e.g. when a lagging voter is removed.
   */
  setVoters(voters: ReadonlyArray<string>, initial: (id: string) => number): void {
    const previous = new Map(this.matchIndexes)
    this.matchIndexes.clear()
    for (const id of voters) this.matchIndexes.set(id, previous.get(id) ?? initial(id))
    this.sorted = new Array(voters.length).fill(0)
    this.recalculate()
  }

  /** The servers counted. */
  voters(): Array<string> {
    return [...this.matchIndexes.keys()]
  }

  /** The match index recorded for `id` (0 when unknown). */
  matchIndex(id: string): number {
    return this.matchIndexes.get(id) ?? 0
  }

  private recalculate(): void {
    const sorted = this.sorted
    if (sorted.length === 0) return
    // Insertion into descending order, in place: a handful of voters, and Array.prototype.sort with a comparator
    // allocated on every answer (2.5% of all allocation at one client).
    let n = 0
    for (const value of this.matchIndexes.values()) {
      let j = n++
      while (j > 0 && sorted[j - 1]! < value) {
        sorted[j] = sorted[j - 1]!
        j--
      }
      sorted[j] = value
    }
    const quorumMatch = sorted[this.withoutQuorum ? 0 : Math.floor(sorted.length / 2)]!
    if (quorumMatch > this.commitIndex && quorumMatch >= this.startIndex) {
      this.commitIndex = quorumMatch
      this.onCommit()
    }
  }
}
