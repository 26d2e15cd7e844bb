import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { Commitment } from "../../src/internal/commitment.js"

/** A commitment over `voters` with a counter of `onCommit` calls. */
const make = (voters: ReadonlyArray<string>, startIndex: number, commitIndex = 0) => {
  const calls: Array<number> = []
  const commitment: Commitment = new Commitment(voters, startIndex, commitIndex, () => calls.push(commitment.commitIndex))
  return { commitment, calls }
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `s${i + 1}`)

describe("Commitment", () => {
  describe("commit index is the highest index a majority of voters match", () => {
    // For n voters, a majority is floor(n/2)+1: matching one fewer server does not commit.
    for (const n of [1, 2, 3, 4, 5]) {
      const majority = Math.floor(n / 2) + 1
      it(`${n} voter(s): ${majority} matches commit, ${majority - 1} do not`, () => {
        const { commitment } = make(ids(n), 1)
        const voters = ids(n)
        for (let i = 0; i < majority - 1; i++) commitment.match(voters[i]!, 7)
        assert.strictEqual(commitment.commitIndex, 0)
        commitment.match(voters[majority - 1]!, 7)
        assert.strictEqual(commitment.commitIndex, 7)
      })
    }

    it("with differing matches it is the majority's lowest (5 voters: 9,8,6,3,1 → 6)", () => {
      const { commitment } = make(ids(5), 1)
      const matches = [1, 9, 3, 8, 6]
      ids(5).forEach((id, i) => commitment.match(id, matches[i]!))
      assert.strictEqual(commitment.commitIndex, 6)
    })

    it("with 4 voters matching 10,10,4,2 it is 4 (needs 3 of 4)", () => {
      const { commitment } = make(ids(4), 1)
      const matches = [10, 10, 4, 2]
      ids(4).forEach((id, i) => commitment.match(id, matches[i]!))
      assert.strictEqual(commitment.commitIndex, 4)
    })
  })

  it("never moves below startIndex: a quorum at startIndex-1 does not commit (Raft §5.4.2)", () => {
    const { calls, commitment } = make(ids(3), 5)
    commitment.match("s1", 4)
    commitment.match("s2", 4)
    commitment.match("s3", 4)
    assert.strictEqual(commitment.commitIndex, 0)
    assert.deepStrictEqual(calls, [])
    commitment.match("s1", 5)
    assert.strictEqual(commitment.commitIndex, 0)
    commitment.match("s2", 5)
    assert.strictEqual(commitment.commitIndex, 5)
    assert.deepStrictEqual(calls, [5])
  })

  it("keeps the commit index it starts from until a quorum passes it", () => {
    const { calls, commitment } = make(ids(3), 11, 10)
    assert.strictEqual(commitment.commitIndex, 10)
    commitment.match("s1", 11)
    assert.strictEqual(commitment.commitIndex, 10)
    commitment.match("s2", 12)
    assert.strictEqual(commitment.commitIndex, 11)
    assert.deepStrictEqual(calls, [11])
  })

  it("non-voters' matches are ignored", () => {
    const { calls, commitment } = make(ids(3), 1)
    commitment.match("s1", 5)
    commitment.match("learner1", 5)
    commitment.match("learner2", 5)
    assert.strictEqual(commitment.commitIndex, 0)
    assert.strictEqual(commitment.matchIndex("learner1"), 0)
    assert.deepStrictEqual(calls, [])
    commitment.match("s2", 5)
    assert.strictEqual(commitment.commitIndex, 5)
  })

  it("onCommit is called exactly when the commit index advances", () => {
    const { calls, commitment } = make(ids(3), 1)
    commitment.match("s1", 3) // 1 of 3: no quorum
    assert.deepStrictEqual(calls, [])
    commitment.match("s2", 2) // quorum at 2
    assert.deepStrictEqual(calls, [2])
    commitment.match("s3", 2) // quorum still at 2: no advance
    assert.deepStrictEqual(calls, [2])
    commitment.match("s2", 2) // repeated match: no advance
    commitment.match("s2", 1) // lower match is ignored
    assert.deepStrictEqual(calls, [2])
    assert.strictEqual(commitment.matchIndex("s2"), 2)
    commitment.match("s3", 3) // quorum at 3
    assert.deepStrictEqual(calls, [2, 3])
    assert.strictEqual(commitment.commitIndex, 3)
  })

  it("the commit index never decreases", () => {
    const { commitment } = make(ids(3), 1)
    commitment.match("s1", 8)
    commitment.match("s2", 8)
    assert.strictEqual(commitment.commitIndex, 8)
    commitment.match("s3", 2)
    assert.strictEqual(commitment.commitIndex, 8)
  })

  it("for any voters, any order of matches and any change of voters, the commit index is the quorum's match as a full sort gives it", () => {
    // The reference: every voter's highest match so far, sorted descending, the majority's lowest value; the
    // commit index follows it once it reaches startIndex, and never decreases. A step either matches (`who` may
    // name a server that is not a voter now, whose match is ignored) or replaces the voters by a subset of
    // s1..s11, new voters starting at `initial`.
    type Step = { readonly match: readonly [number, number] } | { readonly voters: ReadonlyArray<number>; readonly initial: number }
    const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
      { weight: 6, arbitrary: FastCheck.tuple(FastCheck.nat(10), FastCheck.integer({ min: 0, max: 40 })).map((match) => ({ match })) },
      {
        weight: 1,
        arbitrary: FastCheck.record({
          voters: FastCheck.uniqueArray(FastCheck.nat(10), { maxLength: 11 }),
          initial: FastCheck.integer({ min: 0, max: 40 })
        })
      }
    )
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 1, max: 9 }),
        FastCheck.integer({ min: 1, max: 20 }),
        FastCheck.array(step, { maxLength: 60 }),
        (n, startIndex, steps) => {
          const { commitment } = make(ids(n), startIndex)
          let highest = new Map(ids(n).map((id) => [id, 0]))
          let expected = 0
          for (const s of steps) {
            if ("match" in s) {
              const id = `s${s.match[0] + 1}`
              commitment.match(id, s.match[1])
              const previous = highest.get(id)
              if (previous !== undefined) highest.set(id, Math.max(previous, s.match[1]))
            } else {
              const voters = s.voters.map((i) => `s${i + 1}`)
              commitment.setVoters(voters, () => s.initial)
              highest = new Map(voters.map((id) => [id, highest.get(id) ?? s.initial]))
            }
            if (highest.size > 0) {
              const quorum = [...highest.values()].sort((a, b) => b - a)[Math.floor(highest.size / 2)]!
              if (quorum > expected && quorum >= startIndex) expected = quorum
            }
            if (commitment.commitIndex !== expected) return false
          }
          return true
        }
      ),
      { numRuns: 2000 }
    )
  })

  it("without a quorum (a test-only mode), the most advanced voter's match commits", () => {
    const calls: Array<number> = []
    const commitment: Commitment = new Commitment(ids(5), 1, 0, () => calls.push(commitment.commitIndex), true)
    commitment.match("s3", 4)
    assert.strictEqual(commitment.commitIndex, 4)
    commitment.match("s1", 9)
    commitment.match("s2", 7)
    assert.strictEqual(commitment.commitIndex, 9)
    assert.deepStrictEqual(calls, [4, 9])
  })

  it("with no voters nothing commits", () => {
    const { calls, commitment } = make([], 1)
    commitment.match("s1", 5)
    assert.strictEqual(commitment.commitIndex, 0)
    assert.deepStrictEqual(calls, [])
  })
})
