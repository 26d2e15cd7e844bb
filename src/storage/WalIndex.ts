/**
 * The in-memory index of the write-ahead log (`WalStore.ts`): for each log
 * index held, the segment and the byte range of its newest entry frame. Built
 * at open by replaying the committed batches in order, then kept up to date
 * as batches become durable. A Raft log is contiguous, so three parallel
 * arrays offset by the first index beat a Map; a deleted index in the middle
 * is a hole (segment -1) until the ends are trimmed.
 */

/** Where an entry's frame is. */
export interface Slot {
  readonly seq: number
  readonly offset: number
  readonly length: number
}

/** The index; `release(seq)` is called whenever a slot that pointed into segment `seq` is replaced or removed. */
export interface Index {
  /** First index held, 0 when empty. */
  readonly first: () => number
  /** Last index held, 0 when empty. */
  readonly last: () => number
  /** The slot of `index`, if held. */
  readonly get: (index: number) => Slot | undefined
  /** Points `index` at a frame, replacing what it pointed at. */
  readonly set: (index: number, seq: number, offset: number, length: number) => void
  /** Forgets the indices `min..max`. */
  readonly remove: (min: number, max: number) => void
}

const HOLE = -1

/** An empty index. */
export const make = (release: (seq: number) => void): Index => {
  let low = 0
  let high = 0
  let seqs: Array<number> = []
  let offsets: Array<number> = []
  let lengths: Array<number> = []

  const reset = () => {
    low = 0
    high = 0
    seqs = []
    offsets = []
    lengths = []
  }

  const trim = () => {
    let lead = 0
    while (lead < seqs.length && seqs[lead] === HOLE) lead++
    if (lead === seqs.length) return reset()
    if (lead > 0) {
      seqs.splice(0, lead)
      offsets.splice(0, lead)
      lengths.splice(0, lead)
      low += lead
    }
    let end = seqs.length
    while (seqs[end - 1] === HOLE) end--
    if (end < seqs.length) {
      seqs.length = end
      offsets.length = end
      lengths.length = end
      high = low + end - 1
    }
  }

  return {
    first: () => low,
    last: () => high,
    get: (index) => {
      if (high === 0 || index < low || index > high) return undefined
      const seq = seqs[index - low]!
      return seq === HOLE ? undefined : { seq, offset: offsets[index - low]!, length: lengths[index - low]! }
    },
    set: (index, seq, offset, length) => {
      if (high === 0) {
        low = index
        high = index
        seqs = [seq]
        offsets = [offset]
        lengths = [length]
        return
      }
      if (index < low) {
        const gap = new Array<number>(low - index).fill(HOLE)
        seqs = [...gap, ...seqs]
        offsets = [...gap, ...offsets]
        lengths = [...gap, ...lengths]
        low = index
      }
      while (high < index) {
        seqs.push(HOLE)
        offsets.push(HOLE)
        lengths.push(HOLE)
        high++
      }
      const at = index - low
      const old = seqs[at]!
      if (old !== HOLE) release(old)
      seqs[at] = seq
      offsets[at] = offset
      lengths[at] = length
    },
    remove: (min, max) => {
      const from = Math.max(min, low)
      const to = Math.min(max, high)
      if (high === 0 || from > to) return
      for (let index = from; index <= to; index++) {
        const seq = seqs[index - low]!
        if (seq !== HOLE) {
          release(seq)
          seqs[index - low] = HOLE
        }
      }
      trim()
    }
  }
}
