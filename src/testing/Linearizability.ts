/**
 * A linearizability checker for histories that tests record against a
 * replicated service: each client call is an interval [call, return] with an
 * input and an output, and the history is linearizable when some total order
 * of the calls respects real time and replays correctly on a sequential
 * `Model`. The search is Wing & Gong's depth-first search with Lowe's
 * memoisation of (linearised set, state) pairs, as Porcupine does it; a model
 * may split the history into independent partitions (per key), which keeps
 * the search small because linearizability is local (Herlihy & Wing §3.3).
 * It is pure and synchronous, and bounded by a step budget, not the clock.
 */
import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"

/**
 * One client call. `return` is undefined when the outcome is unknown (the
 * client crashed or timed out): the call may take effect at any point after
 * `call`, or never. Intervals are closed, so a call returning at t and one
 * invoked at t count as concurrent.
 */
export interface Operation<Input, Output> {
  readonly clientId: number | string
  readonly input: Input
  readonly call: number
  readonly return: number | undefined
  /** Undefined when it was not observed: the model then accepts whatever the call would have returned. */
  readonly output: Output | undefined
}

/** The recorded calls of a test run, in any order. */
export type History<Input, Output> = ReadonlyArray<Operation<Input, Output>>

/** A sub-history whose calls touch nothing the other partitions touch, named so a violation can be located. */
export interface Partition<Input, Output> {
  readonly key: string
  readonly history: History<Input, Output>
}

/** The sequential specification a history is checked against; states must be immutable values. */
export interface Model<State, Input, Output> {
  /** The state before any call. */
  readonly init: () => State
  /** Whether `input` may return `output` in `state` (an undefined output accepts every answer), and the state after it. */
  readonly step: (state: State, input: Input, output: Output | undefined) => readonly [ok: boolean, next: State]
  /** State equality, so configurations reached by different orders are searched once. */
  readonly equal: (self: State, that: State) => boolean
  /** A hash consistent with `equal`. */
  readonly hash: (state: State) => number
  /** Splits a history into independent sub-histories; without it the whole history is one partition. */
  readonly partition?: (history: History<Input, Output>) => ReadonlyArray<Partition<Input, Output>>
}

/**
 * A witness: every completed call, and the unknown-outcome calls that took
 * effect, in an order that respects real time and replays on the model.
 * Unknown-outcome calls that are absent never took effect (or took effect
 * after everything else, which no one can tell apart).
 */
export interface Linearizable<Input, Output> {
  readonly _tag: "Linearizable"
  readonly order: History<Input, Output>
  readonly steps: number
}

/**
 * No order exists. The explanation is the deepest point the search reached:
 * the longest linearizable `prefix` of the partition, the model `state` after
 * it, and the calls that were due next (`unplaced`, all concurrent with the
 * earliest-returning one) of which none fits that state.
 */
export interface NotLinearizable<State, Input, Output> {
  readonly _tag: "NotLinearizable"
  /** The partition key, undefined when the model does not partition. */
  readonly partition: string | undefined
  readonly prefix: History<Input, Output>
  readonly state: State
  readonly unplaced: History<Input, Output>
  readonly steps: number
}

/** The step budget ran out before an answer; `partition` is the one being searched. */
export interface Unknown {
  readonly _tag: "Unknown"
  readonly partition: string | undefined
  readonly steps: number
}

/** The answer of `check`. */
export type CheckResult<State, Input, Output> =
  | Linearizable<Input, Output>
  | NotLinearizable<State, Input, Output>
  | Unknown

/** Limits of one `check`. */
export interface CheckOptions {
  /** Model steps plus backtracks allowed over all partitions; src/ may not read the clock, so this is the timeout. */
  readonly maxSteps?: number
}

/** Enough for histories of a few thousand calls per key at a concurrency of ten. */
export const defaultMaxSteps: number = 10_000_000

/**
 * Decides whether `history` is linearizable with respect to `model`.
 * Partitions are searched in order and share the budget; the first violation
 * or exhaustion ends the check.
 */
export const check = <State, Input, Output>(
  model: Model<State, Input, Output>,
  history: History<Input, Output>,
  options?: CheckOptions
): CheckResult<State, Input, Output> => {
  const partitions: ReadonlyArray<Partition<Input, Output>> = model.partition !== undefined
    ? model.partition(history)
    : [{ key: "", history }]
  const keyOf = (partition: Partition<Input, Output>): string | undefined =>
    model.partition !== undefined ? partition.key : undefined
  let budget = options?.maxSteps ?? defaultMaxSteps
  let steps = 0
  const placed: Array<Placed<Input, Output>> = []
  for (const partition of partitions) {
    const outcome = searchPartition(model, partition.history, budget)
    steps += outcome.steps
    budget -= outcome.steps
    switch (outcome._tag) {
      case "Exhausted":
        return { _tag: "Unknown", partition: keyOf(partition), steps }
      case "Violation":
        return {
          _tag: "NotLinearizable",
          partition: keyOf(partition),
          prefix: outcome.prefix,
          state: outcome.state,
          unplaced: outcome.unplaced,
          steps
        }
      case "Witness":
        for (const entry of outcome.order) placed.push(entry)
    }
  }
  // Array.prototype.sort is stable: ties keep partition order, then witness order.
  placed.sort((a, b) => a.point - b.point)
  return { _tag: "Linearizable", order: placed.map((entry) => entry.operation), steps }
}

/** A call with a linearization point inside its interval, so witnesses of partitions merge into one. */
interface Placed<Input, Output> {
  readonly operation: Operation<Input, Output>
  readonly point: number
}

type PartitionOutcome<State, Input, Output> =
  | { readonly _tag: "Witness"; readonly order: ReadonlyArray<Placed<Input, Output>>; readonly steps: number }
  | {
    readonly _tag: "Violation"
    readonly prefix: History<Input, Output>
    readonly state: State
    readonly unplaced: History<Input, Output>
    readonly steps: number
  }
  | { readonly _tag: "Exhausted"; readonly steps: number }

/** murmur3's finaliser: spreads operation indices over 32 bits so XOR-ing them hashes a set. */
const mix32 = (x: number): number => {
  let h = x | 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) | 0
}

/** Memo of configurations already explored; a configuration is a set of linearised calls plus a model state. */
class Cache<State> {
  private readonly buckets = new Map<number, Array<{ readonly bits: Uint32Array; readonly state: State }>>()
  constructor(
    private readonly equal: (self: State, that: State) => boolean,
    private readonly hash: (state: State) => number
  ) {}

  /** Records the configuration, answering false when it was seen before (and so leads nowhere new). */
  add(bits: Uint32Array, bitsHash: number, state: State): boolean {
    const key = (bitsHash ^ Math.imul(this.hash(state) | 0, 0x9e3779b1)) | 0
    const bucket = this.buckets.get(key)
    if (bucket === undefined) {
      this.buckets.set(key, [{ bits: bits.slice(), state }])
      return true
    }
    for (const entry of bucket) {
      if (sameBits(entry.bits, bits) && this.equal(entry.state, state)) return false
    }
    bucket.push({ bits: bits.slice(), state })
    return true
  }
}

const sameBits = (a: Uint32Array, b: Uint32Array): boolean => {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return false
  }
  return true
}

/**
 * The search over one partition. Calls and returns form a doubly linked list
 * sorted by time; node 2i is call i and 2i+1 its return. Scanning from the
 * head, every call met before the first return is a candidate to linearise
 * next (its invocation precedes every pending return). Linearising a call
 * unlinks both its nodes and restarts the scan; meeting a return means its
 * call fits nowhere from here, so the last choice is undone (dancing links,
 * restored in reverse order of removal). The search succeeds once every
 * completed call is linearised: unknown-outcome calls left over never took
 * effect. Steps count model steps and backtracks.
 */
const searchPartition = <State, Input, Output>(
  model: Model<State, Input, Output>,
  ops: History<Input, Output>,
  maxSteps: number
): PartitionOutcome<State, Input, Output> => {
  const n = ops.length
  const opAt = (index: number): Operation<Input, Output> => ops[index]!
  const pending = (index: number): boolean => opAt(index).return === undefined
  const time = (node: number): number =>
    (node & 1) === 0 ? opAt(node >> 1).call : (opAt(node >> 1).return ?? Number.POSITIVE_INFINITY)

  const nodes: Array<number> = []
  for (let i = 0; i < 2 * n; i++) nodes.push(i)
  nodes.sort((a, b) => {
    const byTime = time(a) - time(b)
    if (byTime !== 0 && !Number.isNaN(byTime)) return byTime
    // At equal times calls come first (closed intervals overlap), and known returns before unknown ones.
    const byKind = (a & 1) - (b & 1)
    if (byKind !== 0) return byKind
    const byPending = Number(pending(a >> 1)) - Number(pending(b >> 1))
    return byPending !== 0 ? byPending : a - b
  })

  const head = 2 * n
  const next = new Int32Array(2 * n + 1)
  const prev = new Int32Array(2 * n + 1)
  let last = head
  for (const node of nodes) {
    next[last] = node
    prev[node] = last
    last = node
  }
  next[last] = -1

  const unlink = (node: number): void => {
    const before = prev[node]!
    const after = next[node]!
    next[before] = after
    if (after !== -1) prev[after] = before
  }
  const relink = (node: number): void => {
    const before = prev[node]!
    const after = next[node]!
    next[before] = node
    if (after !== -1) prev[after] = node
  }

  const bits = new Uint32Array(Math.max(1, Math.ceil(n / 32)))
  const cache = new Cache<State>(model.equal, model.hash)
  const stackOps: Array<number> = []
  const stackStates: Array<State> = []
  let bitsHash = 0
  let state = model.init()
  let remaining = 0
  for (let i = 0; i < n; i++) if (!pending(i)) remaining++
  let steps = 0
  let deepest: { prefix: History<Input, Output>; state: State; unplaced: History<Input, Output> } | undefined
  let node = next[head]!

  while (remaining > 0) {
    if (steps >= maxSteps) return { _tag: "Exhausted", steps }
    if ((node & 1) === 0) {
      const index = node >> 1
      const operation = opAt(index)
      steps++
      const [ok, after] = model.step(state, operation.input, operation.output)
      // An unknown-outcome call that changes nothing here may as well never have happened: leaving it out prunes.
      if (ok && !(operation.return === undefined && model.equal(after, state))) {
        const word = index >>> 5
        const bit = 1 << (index & 31)
        bits[word] = bits[word]! | bit
        const nextHash = bitsHash ^ mix32(index + 1)
        if (cache.add(bits, nextHash, after)) {
          stackOps.push(index)
          stackStates.push(state)
          state = after
          bitsHash = nextHash
          unlink(node)
          unlink(node + 1)
          if (!pending(index)) remaining--
          node = next[head]!
          continue
        }
        bits[word] = bits[word]! & ~bit
      }
      node = next[node]!
    } else {
      // A return before any fitting call: every call concurrent with it was tried from this configuration.
      if (deepest === undefined || stackOps.length > deepest.prefix.length) {
        const unplaced: Array<Operation<Input, Output>> = []
        for (let scan = next[head]!; scan !== -1 && (scan & 1) === 0; scan = next[scan]!) unplaced.push(opAt(scan >> 1))
        deepest = { prefix: stackOps.map(opAt), state, unplaced }
      }
      const index = stackOps.pop()
      if (index === undefined) return { _tag: "Violation", ...deepest, steps }
      steps++
      state = stackStates.pop()!
      bitsHash ^= mix32(index + 1)
      const word = index >>> 5
      bits[word] = bits[word]! & ~(1 << (index & 31))
      relink(2 * index + 1)
      relink(2 * index)
      if (!pending(index)) remaining++
      node = next[2 * index]!
    }
  }

  const order: Array<Placed<Input, Output>> = []
  let point = Number.NEGATIVE_INFINITY
  for (const index of stackOps) {
    // The latest invocation so far is inside this call's interval: nothing linearised before it returned after it.
    point = Math.max(point, opAt(index).call)
    order.push({ operation: opAt(index), point })
  }
  return { _tag: "Witness", order, steps }
}

/** A call to the key-value service the tests drive. */
export type KvInput =
  | { readonly op: "put"; readonly key: string; readonly value: string }
  | { readonly op: "get"; readonly key: string }
  | { readonly op: "cas"; readonly key: string; readonly expected: string | undefined; readonly value: string }
  | { readonly op: "delete"; readonly key: string }

/** What the key-value service answers: `{ ok }` to put, delete and cas, `{ value }` to get. */
export type KvOutput = { readonly ok: boolean } | { readonly value: string | undefined }

/** Key-value contents; an Effect HashMap so states compare and hash structurally. */
export type KvState = HashMap.HashMap<string, string>

/** Shorthand for one call of a key-value history. */
export type KvOperation = Operation<KvInput, KvOutput>

/**
 * The sequential key-value store: put and delete always succeed (record only
 * calls that were acknowledged, or with an unknown outcome), get returns the
 * current value, cas swaps when the current value (undefined when absent)
 * equals `expected`. Partitioned by key.
 */
export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => HashMap.empty(),
  step: (state, input, output) => {
    switch (input.op) {
      case "put":
        return [true, HashMap.set(state, input.key, input.value)]
      case "delete":
        return [true, HashMap.remove(state, input.key)]
      case "get": {
        const current = Option.getOrUndefined(HashMap.get(state, input.key))
        return [output === undefined || ("value" in output && output.value === current), state]
      }
      case "cas": {
        const swapped = Option.getOrUndefined(HashMap.get(state, input.key)) === input.expected
        const ok = output === undefined || ("ok" in output && output.ok === swapped)
        return [ok, ok && swapped ? HashMap.set(state, input.key, input.value) : state]
      }
    }
  },
  equal: Equal.equals,
  hash: Hash.hash,
  partition: (history) => {
    const byKey = new Map<string, Array<KvOperation>>()
    for (const operation of history) {
      const calls = byKey.get(operation.input.key)
      if (calls === undefined) byKey.set(operation.input.key, [operation])
      else calls.push(operation)
    }
    return Array.from(byKey, ([key, calls]) => ({ key, history: calls }))
  }
}
