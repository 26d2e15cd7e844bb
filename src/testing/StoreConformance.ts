/**
 * A conformance suite for `LogStore` and `StableStore` implementations: the
 * properties a Raft node relies on, as named checks that any test runner can
 * register (each `run` is a scoped `Effect`; with `@effect/vitest`,
 * `for (const c of StoreConformance.logStore(subject)) it.scoped(c.name, () => c.run)`).
 * Give it a `Subject`: a fresh, empty location per check, opened as often as a
 * check needs (a reopen closes the previous scope first). A store kept in
 * memory passes by handing out the same instance on every open.
 *
 * Covered: ordering, first and last index after appends and deletes,
 * `LogNotFound` for compacted and missing indices, missing stable keys, large
 * values, indices beyond 2^32, concurrent writes, and what survives a reopen.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Log, LogType } from "../Log.js"
import type { LogStore } from "../LogStore.js"
import type { LogNotFound, StorageError } from "../RaftError.js"
import type { StableStore } from "../StableStore.js"

/** A check found the store not doing what it must; `check` names it. */
export class ConformanceFailure extends Data.TaggedError("ConformanceFailure")<{
  readonly check: string
  readonly message: string
}> {
  override get message(): string {
    return `${this.check}: ${this.message}`
  }
}

/** One location of a store under test. */
export interface Subject<S> {
  /** Opens the store at this location; it closes with the scope. Opening again must see what was stored before. */
  readonly open: Effect.Effect<S, StorageError, Scope.Scope>
}

/** Makes a fresh, empty location; whatever it creates is released with the scope. */
export type MakeSubject<S> = Effect.Effect<Subject<S>, StorageError, Scope.Scope>

/** A named property; `run` fails with `ConformanceFailure` (or the store's own error) when it does not hold. */
export interface Check {
  readonly name: string
  readonly run: Effect.Effect<void, ConformanceFailure | StorageError | LogNotFound, Scope.Scope>
}

/** A subject for a store that lives in memory: every open hands out the same instance, as across a simulated restart. */
export const inMemory = <S>(make: () => S): MakeSubject<S> =>
  Effect.sync(() => {
    const store = make()
    return { open: Effect.succeed(store) }
  })

// ---------------------------------------------------------------- helpers

const TYPES: ReadonlyArray<LogType> = ["Command", "Noop", "Barrier", "Configuration"]

/** Entries from..to of `term`, each with a payload that names its index and term, cycling through the types. */
const entries = (from: number, to: number, term = 1): Array<Log> => {
  const out: Array<Log> = []
  for (let index = from; index <= to; index++) {
    const data = new TextEncoder().encode(`entry ${index} term ${term}`)
    out.push({ index, term, type: TYPES[index % TYPES.length]!, data })
  }
  return out
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const describeLog = (log: Log): string => `{index ${log.index}, term ${log.term}, ${log.type}, ${log.data.length} bytes}`

const sameLog = (a: Log, b: Log): boolean =>
  a.index === b.index && a.term === b.term && a.type === b.type && sameBytes(a.data, b.data)

/** Builds the assertions of one check, each failing with a `ConformanceFailure` that names the check. */
const asserts = (check: string) => {
  const fail = (message: string) => Effect.fail(new ConformanceFailure({ check, message }))
  const expect = (ok: boolean, message: string): Effect.Effect<void, ConformanceFailure> =>
    ok ? Effect.void : fail(message)
  const equal = <A>(actual: A, expected: A, what: string): Effect.Effect<void, ConformanceFailure> =>
    expect(actual === expected, `${what}: expected ${String(expected)}, got ${String(actual)}`)
  const bounds = (store: LogStore, first: number, last: number, when: string) =>
    Effect.gen(function*() {
      yield* equal(yield* store.firstIndex, first, `firstIndex ${when}`)
      yield* equal(yield* store.lastIndex, last, `lastIndex ${when}`)
    })
  const logsEqual = (actual: ReadonlyArray<Log>, expected: ReadonlyArray<Log>, what: string) =>
    Effect.gen(function*() {
      yield* equal(actual.length, expected.length, `${what}: number of entries`)
      for (let i = 0; i < expected.length; i++) {
        if (!sameLog(actual[i]!, expected[i]!)) {
          return yield* fail(`${what}: entry ${i} is ${describeLog(actual[i]!)}, expected ${describeLog(expected[i]!)}`)
        }
      }
    })
  /** The index a failed lookup names; fails the check unless the lookup fails with `LogNotFound`. */
  const notFound = <A>(lookup: Effect.Effect<A, LogNotFound | StorageError>, what: string) =>
    Effect.flatMap(Effect.either(lookup), (result) => {
      if (result._tag === "Right") return fail(`${what}: expected LogNotFound, got a result`)
      if (result.left._tag !== "LogNotFound") return fail(`${what}: expected LogNotFound, got ${result.left._tag}`)
      return Effect.succeed(result.left.index)
    })
  const missing = (lookup: Effect.Effect<unknown, LogNotFound | StorageError>, index: number, what: string) =>
    Effect.flatMap(notFound(lookup, what), (named) => equal(named, index, `${what}: index named by LogNotFound`))
  return { fail, expect, equal, bounds, logsEqual, missing }
}

const check = (
  name: string,
  body: (a: ReturnType<typeof asserts>) => Effect.Effect<void, ConformanceFailure | StorageError | LogNotFound, Scope.Scope>
): Check => ({ name, run: Effect.suspend(() => body(asserts(name))) })

/** Opens, runs `f`, and closes the store again before returning. */
const session = <S, A, E>(subject: Subject<S>, f: (store: S) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.scoped(Effect.flatMap(subject.open, f))

// ---------------------------------------------------------------- LogStore

/** The checks every `LogStore` must pass. */
export const logStore = (make: MakeSubject<LogStore>): ReadonlyArray<Check> => {
  const opened = Effect.flatMap(make, (subject) => subject.open)
  const filled = Effect.tap(opened, (store) => store.storeLogs(entries(1, 10)))
  return [
    check("an empty store answers 0 for firstIndex and lastIndex", (a) =>
      Effect.flatMap(opened, (store) => a.bounds(store, 0, 0, "of an empty store"))),

    check("stored entries read back equal: index, term, type and data of every kind of entry", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const written = [...entries(1, 8, 3), { index: 9, term: 3, type: "Noop" as const, data: new Uint8Array(0) }]
        yield* store.storeLogs(written)
        for (const log of written) yield* a.logsEqual([yield* store.getLog(log.index)], [log], `getLog(${log.index})`)
      })),

    check("getLogs returns the inclusive range in index order", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* a.logsEqual(yield* store.getLogs(3, 7), entries(3, 7), "getLogs(3, 7)")
        yield* a.logsEqual(yield* store.getLogs(10, 10), entries(10, 10), "getLogs(10, 10)")
        yield* a.logsEqual(yield* store.getLogs(1, 10), entries(1, 10), "getLogs(1, 10)")
      })),

    check("entries stored out of order in one batch read back in index order", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const written = entries(1, 6)
        yield* store.storeLogs([written[3]!, written[0]!, written[5]!, written[1]!, written[4]!, written[2]!])
        yield* a.bounds(store, 1, 6, "after an unordered batch")
        yield* a.logsEqual(yield* store.getLogs(1, 6), written, "getLogs(1, 6)")
      })),

    check("first and last index follow appends", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        yield* store.storeLogs(entries(5, 5))
        yield* a.bounds(store, 5, 5, "after storing 5")
        yield* store.storeLogs(entries(6, 20))
        yield* a.bounds(store, 5, 20, "after storing 6..20")
        yield* store.storeLogs([])
        yield* a.bounds(store, 5, 20, "after an empty batch")
      })),

    check("storeLogs replaces entries at the same indices and leaves the others", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* store.storeLogs(entries(8, 10, 2))
        yield* a.logsEqual(yield* store.getLogs(7, 10), [...entries(7, 7, 1), ...entries(8, 10, 2)], "getLogs(7, 10)")
        yield* a.bounds(store, 1, 10, "after replacing 8..10")
      })),

    check("getLog of a missing index fails with LogNotFound naming it: 0, past the last, in an empty store", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* a.missing(store.getLog(0), 0, "getLog(0)")
        yield* a.missing(store.getLog(11), 11, "getLog(11)")
        yield* a.missing(store.getLog(1_000_000), 1_000_000, "getLog(1000000)")
        const empty = yield* opened
        yield* a.missing(empty.getLog(1), 1, "getLog(1) of an empty store")
      })),

    check("getLogs fails with LogNotFound naming the first missing index of the range", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* a.missing(store.getLogs(8, 13), 11, "getLogs(8, 13)")
        yield* store.deleteRange(1, 4)
        yield* a.missing(store.getLogs(3, 7), 3, "getLogs(3, 7) after compacting 1..4")
        yield* store.deleteRange(6, 6)
        yield* a.missing(store.getLogs(5, 8), 6, "getLogs(5, 8) with a hole at 6")
      })),

    check("deleteRange at the front (compaction) moves firstIndex; compacted indices fail with LogNotFound", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* store.deleteRange(1, 4)
        yield* a.bounds(store, 5, 10, "after compacting 1..4")
        for (let index = 1; index <= 4; index++) yield* a.missing(store.getLog(index), index, `getLog(${index})`)
        yield* a.logsEqual([yield* store.getLog(5)], entries(5, 5), "getLog(5)")
        yield* store.deleteRange(1, 3)
        yield* a.bounds(store, 5, 10, "after deleting 1..3 again")
      })),

    check("deleteRange at the back (truncation) moves lastIndex, and the log extends again from there", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* store.deleteRange(7, 10)
        yield* a.bounds(store, 1, 6, "after truncating 7..10")
        yield* a.missing(store.getLog(7), 7, "getLog(7)")
        yield* store.storeLogs(entries(7, 8, 2))
        yield* a.bounds(store, 1, 8, "after storing 7..8 of term 2")
        yield* a.logsEqual(yield* store.getLogs(6, 8), [...entries(6, 6, 1), ...entries(7, 8, 2)], "getLogs(6, 8)")
      })),

    check("deleteRange of everything empties the store (0, 0), and it refills from any index", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* store.deleteRange(1, 10)
        yield* a.bounds(store, 0, 0, "after deleting everything")
        yield* a.missing(store.getLog(5), 5, "getLog(5)")
        yield* store.storeLogs(entries(100, 102))
        yield* a.bounds(store, 100, 102, "after storing 100..102")
      })),

    check("deleteRange outside what is held, or empty (min > max), changes nothing", (a) =>
      Effect.gen(function*() {
        const store = yield* filled
        yield* store.deleteRange(20, 30)
        yield* store.deleteRange(6, 5)
        yield* a.bounds(store, 1, 10, "after deleting nothing")
        yield* a.logsEqual(yield* store.getLogs(1, 10), entries(1, 10), "getLogs(1, 10)")
      })),

    check("large values: a 1 MiB entry and a batch of 10,000 entries read back intact", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const big = new Uint8Array(1 << 20)
        for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
        yield* store.storeLogs([{ index: 1, term: 1, type: "Command", data: big }])
        yield* a.logsEqual([yield* store.getLog(1)], [{ index: 1, term: 1, type: "Command", data: big }], "getLog(1)")
        const many = entries(2, 10_001)
        yield* store.storeLogs(many)
        yield* a.bounds(store, 1, 10_001, "after 10,000 entries")
        yield* a.logsEqual(yield* store.getLogs(2, 10_001), many, "getLogs(2, 10001)")
      })),

    check("indices and terms beyond 2^32 round-trip", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const base = 2 ** 32 - 2
        const written = entries(base, base + 4, 2 ** 33 + 5)
        yield* store.storeLogs(written)
        yield* a.bounds(store, base, base + 4, "around 2^32")
        yield* a.logsEqual(yield* store.getLogs(base, base + 4), written, "getLogs across 2^32")
      })),

    check("concurrent storeLogs calls all take effect", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const batches = Array.from({ length: 16 }, (_, b) => entries(b * 8 + 1, b * 8 + 8))
        yield* Effect.forEach(batches, (batch) => store.storeLogs(batch), { concurrency: "unbounded", discard: true })
        yield* a.bounds(store, 1, 128, "after 16 concurrent batches")
        yield* a.logsEqual(yield* store.getLogs(1, 128), batches.flat(), "getLogs(1, 128)")
      })),

    check("after a reopen the entries, the bounds and the deletions are as they were", (a) =>
      Effect.gen(function*() {
        const subject = yield* make
        yield* session(subject, (store) =>
          Effect.gen(function*() {
            yield* store.storeLogs(entries(1, 20))
            yield* store.deleteRange(1, 5)
            yield* store.deleteRange(18, 20)
            yield* store.storeLogs(entries(18, 18, 2))
          }))
        yield* session(subject, (store) =>
          Effect.gen(function*() {
            yield* a.bounds(store, 6, 18, "after reopening")
            yield* a.logsEqual(yield* store.getLogs(6, 18), [...entries(6, 17), ...entries(18, 18, 2)], "getLogs(6, 18)")
            yield* a.missing(store.getLog(5), 5, "getLog(5) after reopening")
            yield* store.storeLogs(entries(19, 19, 2))
          }))
        yield* session(subject, (store) => a.bounds(store, 6, 19, "after a second reopen"))
      }))
  ]
}

// ---------------------------------------------------------------- StableStore

/** The checks every `StableStore` must pass. */
export const stableStore = (make: MakeSubject<StableStore>): ReadonlyArray<Check> => {
  const opened = Effect.flatMap(make, (subject) => subject.open)
  const bytesEqual = (a: ReturnType<typeof asserts>, actual: Option.Option<Uint8Array>, expected: Uint8Array, what: string) =>
    Option.isNone(actual)
      ? a.fail(`${what}: missing`)
      : a.expect(sameBytes(actual.value, expected), `${what}: ${actual.value.length} bytes differ from the ${expected.length} stored`)
  return [
    check("get of a missing key is none, and getUint64 of a missing key is 0", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        yield* a.expect(Option.isNone(yield* store.get("CurrentTerm")), "get of a missing key returned a value")
        yield* a.equal(yield* store.getUint64("CurrentTerm"), 0, "getUint64 of a missing key")
      })),

    check("set then get returns the bytes, and a second set replaces them", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        yield* store.set("LastVote", new Uint8Array([1, 2, 3]))
        yield* bytesEqual(a, yield* store.get("LastVote"), new Uint8Array([1, 2, 3]), "get after set")
        yield* store.set("LastVote", new Uint8Array([9]))
        yield* bytesEqual(a, yield* store.get("LastVote"), new Uint8Array([9]), "get after a second set")
        yield* store.set("empty", new Uint8Array(0))
        yield* bytesEqual(a, yield* store.get("empty"), new Uint8Array(0), "get of an empty value")
      })),

    check("setUint64 round-trips 0, small numbers and numbers up to 2^53 - 1", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        for (const value of [42, 0, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]) {
          yield* store.setUint64("CurrentTerm", value)
          yield* a.equal(yield* store.getUint64("CurrentTerm"), value, `getUint64 after setUint64(${value})`)
        }
      })),

    check("keys are independent of each other", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        yield* store.set("a", new Uint8Array([1]))
        yield* store.set("b", new Uint8Array([2]))
        yield* store.setUint64("x", 7)
        yield* store.setUint64("y", 8)
        yield* bytesEqual(a, yield* store.get("a"), new Uint8Array([1]), "get(a)")
        yield* bytesEqual(a, yield* store.get("b"), new Uint8Array([2]), "get(b)")
        yield* a.equal(yield* store.getUint64("x"), 7, "getUint64(x)")
        yield* a.equal(yield* store.getUint64("y"), 8, "getUint64(y)")
        yield* a.expect(Option.isNone(yield* store.get("c")), "get(c) of a key never set returned a value")
      })),

    check("a 1 MiB value round-trips", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const big = new Uint8Array(1 << 20)
        for (let i = 0; i < big.length; i++) big[i] = (i * 13 + 1) & 0xff
        yield* store.set("big", big)
        yield* bytesEqual(a, yield* store.get("big"), big, "get(big)")
      })),

    check("neither the caller's buffer after set nor a value read can change what is stored", (a) =>
      Effect.gen(function*() {
        const store = yield* opened
        const buffer = new Uint8Array([1, 2, 3])
        yield* store.set("k", buffer)
        buffer[0] = 99
        const read = yield* store.get("k")
        if (Option.isSome(read)) read.value[1] = 99
        yield* bytesEqual(a, yield* store.get("k"), new Uint8Array([1, 2, 3]), "get(k)")
      })),

    check("after a reopen the values and numbers are as they were", (a) =>
      Effect.gen(function*() {
        const subject = yield* make
        yield* session(subject, (store) =>
          Effect.gen(function*() {
            yield* store.setUint64("CurrentTerm", 5)
            yield* store.set("LastVote", new Uint8Array([5, 1]))
            yield* store.setUint64("CurrentTerm", 6)
          }))
        yield* session(subject, (store) =>
          Effect.gen(function*() {
            yield* a.equal(yield* store.getUint64("CurrentTerm"), 6, "getUint64(CurrentTerm) after reopening")
            yield* bytesEqual(a, yield* store.get("LastVote"), new Uint8Array([5, 1]), "get(LastVote) after reopening")
            yield* a.expect(Option.isNone(yield* store.get("never")), "a key never set has a value after reopening")
          }))
      }))
  ]
}
