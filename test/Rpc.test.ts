import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Rpc from "../src/Rpc.js"

const decodeAppend = Schema.decodeUnknown(Rpc.AppendEntriesRequest)

const valid = {
  _tag: "AppendEntriesRequest",
  term: 4,
  leaderId: "a",
  leaderAddress: "mem://a",
  prevLogIndex: 10,
  prevLogTerm: 3,
  entries: [
    { index: 11, term: 4, type: "Noop", data: new Uint8Array(0) },
    { index: 12, term: 4, type: "Command", data: new Uint8Array([7]) }
  ],
  leaderCommitIndex: 9
}

describe("Rpc", () => {
  it.effect("decodeUnknown of a valid AppendEntriesRequest succeeds and keeps every field", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* decodeAppend(valid), valid as Rpc.AppendEntriesRequest)
      const heartbeat = yield* decodeAppend({ ...valid, entries: [] })
      assert.strictEqual(heartbeat.entries.length, 0)
    }))

  it.effect("the Request union decodes both requests by tag", () =>
    Effect.gen(function*() {
      const decode = Schema.decodeUnknown(Rpc.Request)
      assert.strictEqual((yield* decode(valid))._tag, "AppendEntriesRequest")
      const vote = {
        _tag: "RequestVoteRequest",
        term: 5,
        candidateId: "b",
        candidateAddress: "mem://b",
        lastLogIndex: 12,
        lastLogTerm: 4,
        leadershipTransfer: false
      }
      assert.deepStrictEqual(yield* decode(vote), vote as Rpc.RequestVoteRequest)
      const response = { _tag: "AppendEntriesResponse", term: 4, lastLog: 12, success: true, noRetryBackoff: false }
      assert.deepStrictEqual(yield* Schema.decodeUnknown(Rpc.Response)(response), response as Rpc.AppendEntriesResponse)
    }))

  describe("decodeUnknown of a malformed AppendEntriesRequest fails", () => {
    const { leaderCommitIndex: _commit, ...withoutCommit } = valid
    const { term: _term, ...withoutTerm } = valid
    const entry = valid.entries[1]!
    const cases: ReadonlyArray<{ readonly name: string; readonly input: unknown }> = [
      { name: "negative prevLogIndex", input: { ...valid, prevLogIndex: -1 } },
      { name: "negative term", input: { ...valid, term: -4 } },
      { name: "an entry with a negative index", input: { ...valid, entries: [{ ...entry, index: -12 }] } },
      { name: "an entry with an unknown LogType", input: { ...valid, entries: [{ ...entry, type: "Snapshot" }] } },
      { name: "missing leaderCommitIndex", input: withoutCommit },
      { name: "missing term", input: withoutTerm },
      { name: "an entry missing its data", input: { ...valid, entries: [{ index: 12, term: 4, type: "Command" }] } },
      { name: "entry data not a Uint8Array", input: { ...valid, entries: [{ ...entry, data: [7] }] } },
      { name: "entries not an array", input: { ...valid, entries: entry } },
      { name: "the wrong tag", input: { ...valid, _tag: "RequestVoteRequest" } },
      { name: "a string", input: "AppendEntriesRequest" }
    ]
    it.effect.each(cases)("$name", ({ input }) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(decodeAppend(input))
        assert.strictEqual(error._tag, "ParseError")
      }))
  })
})
