/**
 * The TCP server tells its node (`RpcHandler.peerLost`) when a connection that carried a leader's AppendEntries
 * closes from the other end, as when the leader's process exits: the follower then campaigns after a lease instead
 * of a heartbeat timeout (src/internal/leaderLost.ts). A connection that carried no AppendEntries says nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { appendEntries, eventually, loopback, recorder } from "./tcpHelpers.js"

const vote = {
  _tag: "RequestVoteRequest",
  term: 2,
  candidateId: "c",
  candidateAddress: "127.0.0.1:1",
  lastLogIndex: 0,
  lastLogTerm: 0,
  leadershipTransfer: false
} as const

describe("TcpTransport peerLost", () => {
  it.scopedLive("a connection that carried a leader's AppendEntries, closed by the sender, names that leader", () =>
    Effect.gen(function*() {
      const lost: Array<string> = []
      const server = yield* TcpTransport.make({ bind: loopback })
      const rec = recorder()
      yield* server.serve({ ...rec.handler, peerLost: (id) => void lost.push(id) })
      // A candidate's connection first: it closes with its transport, and names nobody.
      const voterScope = yield* Scope.make()
      const voter = yield* TcpTransport.make({ bind: loopback }).pipe(Scope.extend(voterScope))
      yield* voter.requestVote("b", server.localAddress, vote)
      yield* Scope.close(voterScope, Exit.void)
      const leaderScope = yield* Scope.make()
      const leader = yield* TcpTransport.make({ bind: loopback }).pipe(Scope.extend(leaderScope))
      yield* leader.appendEntries("b", server.localAddress, appendEntries(0))
      assert.deepStrictEqual(lost, [], "nothing closed yet")
      yield* Scope.close(leaderScope, Exit.void)
      yield* eventually(Effect.sync(() => lost.length > 0), "peerLost after the leader's transport closed")
      assert.deepStrictEqual(lost, ["a"])
    }))
})
