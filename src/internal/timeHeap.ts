/**
 * Entries in the order of their time, equal times in the order they were filed (`seq`, unique): a binary min-heap.
 * The nodes' deadline keepers (`deadlines.ts`) and the simulator's virtual clock keep their entries in one.
 * @internal
 */

/** What a `TimeHeap` orders by. */
export interface Timed {
  readonly at: number
  readonly seq: number
}

const before = (a: Timed, b: Timed): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq)

export class TimeHeap<T extends Timed> {
  private items: Array<T> = []

  /** How many entries it holds. */
  get size(): number {
    return this.items.length
  }

  /** The earliest entry, left in place. */
  peek(): T | undefined {
    return this.items[0]
  }

  push(entry: T): void {
    const items = this.items
    items.push(entry)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(entry, items[parent]!)) break
      items[i] = items[parent]!
      i = parent
    }
    items[i] = entry
  }

  /** Removes and returns the earliest entry. */
  pop(): T | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0) {
      items[0] = last!
      this.down(0)
    }
    return top
  }

  /** Keeps only the entries `keep` accepts, in one pass and one rebuild. */
  retain(keep: (entry: T) => boolean): void {
    this.items = this.items.filter(keep)
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.down(i)
  }

  private down(from: number): void {
    const items = this.items
    const entry = items[from]!
    let i = from
    for (;;) {
      const l = 2 * i + 1
      if (l >= items.length) break
      const r = l + 1
      const m = r < items.length && before(items[r]!, items[l]!) ? r : l
      if (!before(items[m]!, entry)) break
      items[i] = items[m]!
      i = m
    }
    items[i] = entry
  }
}
