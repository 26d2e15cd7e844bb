/**
 * A key-value node whose Raft has shut down (after a fatal error) must not
 * half-serve: no data (not even stale reads, which would freeze at what it
 * last applied), no redirect to itself, writes refused as not done (503), and
 * `kv node` stops instead of lingering (`awaitStopped`).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as KvNode from "../../src/kv/KvNode.js"
import { makeCluster, request } from "./cluster.js"

describe("kv node after its Raft shut down", () => {
  it.live("serves no data, never redirects to itself, and refuses writes as not done", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node !== leader)!
      const put = yield* Effect.promise(() => request(leader.http, "PUT", "/kv/x", { value: "1" }))
      assert.strictEqual(put.status, 200)
      yield* Effect.promise(async () => {
        for (;;) {
          const stale = await request(follower.http, "GET", "/kv/x?stale=true")
          if (stale.status === 200) return
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
      })
      for (const node of [leader, follower]) {
        yield* node.raft.shutdown
        const answers = yield* Effect.promise(() =>
          Promise.all([
            request(node.http, "GET", "/kv/x?stale=true"),
            request(node.http, "GET", "/kv?stale=true"),
            request(node.http, "GET", "/kv/x"),
            request(node.http, "PUT", "/kv/x", { value: "2" }),
            request(node.http, "POST", "/kv/x/cas", { expected: "1", value: "2" })
          ])
        )
        for (const answer of answers) {
          assert.strictEqual(answer.status, 503, `${node.id}: ${JSON.stringify(answer)}`)
          assert.deepStrictEqual(answer.body, { _tag: "Unavailable", reason: "this node is shut down" })
          assert.isNull(answer.location)
        }
        const status = yield* Effect.promise(() => request(node.http, "GET", "/status"))
        assert.strictEqual(status.body.state, "Shutdown")
      }
      yield* cluster.close
    }))

  it.live("awaitStopped fails with NodeStopped once the node's Raft shuts down", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const node = yield* cluster.leader
      const watching = yield* Effect.fork(KvNode.awaitStopped(node.raft))
      yield* Effect.sleep("300 millis")
      assert.isNull(watching.unsafePoll())
      yield* node.raft.shutdown
      const error = yield* Effect.flip(Fiber.join(watching))
      assert.strictEqual(error._tag, "NodeStopped")
      assert.match(error.message, /^node n1: Raft shut down after a fatal error/)
      yield* cluster.close
    }))
})
