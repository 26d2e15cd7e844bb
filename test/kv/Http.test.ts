import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import * as Cli from "../../src/kv/Cli.js"
import * as Http from "../../src/kv/Http.js"
import { makeCluster, request } from "./cluster.js"

const eventually = <A>(attempt: () => Promise<A>, ok: (a: A) => boolean, millis = 5000): Promise<A> =>
  (async () => {
    const deadline = Date.now() + millis
    for (;;) {
      const value = await attempt()
      if (ok(value) || Date.now() > deadline) return value
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()

describe("kv HTTP API", () => {
  it.live("writes, reads, compare-and-set, delete and list on the leader answer what the state machine did", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const result = yield* Effect.promise(async () => {
        const put = await request(leader.http, "PUT", "/kv/color", { value: "red" }, "follow")
        const get = await request(leader.http, "GET", "/kv/color", undefined, "follow")
        const casBad = await request(leader.http, "POST", "/kv/color/cas", { expected: "blue", value: "green" }, "follow")
        const casOk = await request(leader.http, "POST", "/kv/color/cas", { expected: "red", value: "green" }, "follow")
        const casAbsent = await request(leader.http, "POST", "/kv/shape/cas", { value: "round" }, "follow")
        const list = await request(leader.http, "GET", "/kv?prefix=", undefined, "follow")
        const del = await request(leader.http, "DELETE", "/kv/color", undefined, "follow")
        const missing = await request(leader.http, "GET", "/kv/color", undefined, "follow")
        // A form body, as `curl -d value=...` sends it.
        const form = await fetch(`http://${leader.http}/kv/size`, {
          method: "PUT",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "value=large"
        })
        const size = await request(leader.http, "GET", "/kv/size", undefined, "follow")
        return { put, get, casBad, casOk, casAbsent, list, del, missing, form: form.status, size }
      })
      assert.strictEqual(result.put.status, 200)
      assert.isAbove(result.put.body.index, 0)
      assert.deepStrictEqual(result.get.body.value, "red")
      assert.strictEqual(result.casBad.status, 409)
      assert.deepStrictEqual(result.casBad.body, { _tag: "CasFailed", key: "color", current: "red" })
      assert.strictEqual(result.casOk.status, 200)
      assert.strictEqual(result.casAbsent.status, 200)
      assert.deepStrictEqual(result.list.body.entries, [{ key: "color", value: "green" }, { key: "shape", value: "round" }])
      assert.deepStrictEqual(result.del.body.existed, true)
      assert.strictEqual(result.missing.status, 404)
      assert.strictEqual(result.missing.body._tag, "KeyNotFound")
      assert.strictEqual(result.form, 200)
      assert.strictEqual(result.size.body.value, "large")
      yield* cluster.close
    }))

  it.live("a follower redirects writes to the leader's HTTP address, and serves linearizable and stale reads itself", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const result = yield* Effect.promise(async () => {
        const put = await request(follower.http, "PUT", "/kv/a", { value: "1" })
        const followed = await request(follower.http, "PUT", "/kv/a", { value: "2" }, "follow")
        const get = await request(follower.http, "GET", "/kv/a")
        const stale = await eventually(
          () => request(follower.http, "GET", "/kv/a?stale=true"),
          (answer) => answer.body?.value === "2"
        )
        return { put, followed, get, stale }
      })
      assert.strictEqual(result.put.status, 307)
      assert.strictEqual(result.put.location, `http://${leader.http}/kv/a`)
      assert.deepStrictEqual(result.put.body, { _tag: "NotLeader", leaderId: leader.id, leaderHttp: leader.http })
      assert.strictEqual(result.followed.status, 200, "fetch re-sends the PUT to the leader")
      // Linearizable: the write the leader acknowledged just before is there, without a redirect.
      assert.strictEqual(result.get.status, 200)
      assert.strictEqual(result.get.body.value, "2")
      assert.strictEqual(result.stale.status, 200)
      assert.strictEqual(result.stale.body.value, "2")
      yield* cluster.close
    }))

  it.live("status shows the node, the leader with its HTTP address, indexes and every member", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const status = yield* Effect.promise(() =>
        eventually(
          () => request(follower.http, "GET", "/status"),
          // A follower hears of the leader with its first heartbeat, of the commit index a moment later.
          (answer) => answer.body?.leader?.http !== undefined && answer.body?.commitIndex >= 1
        )
      )
      assert.strictEqual(status.body.id, follower.id)
      assert.strictEqual(status.body.state, "Follower")
      assert.deepStrictEqual(status.body.leader, { id: leader.id, http: leader.http })
      assert.deepStrictEqual(
        status.body.members.map((m: { id: string; http: string }) => [m.id, m.http]).sort(),
        cluster.nodes.map((node) => [node.id, node.http])
      )
      assert.isAtLeast(status.body.commitIndex, 1)
      assert.isNumber(status.body.lastContactMillisAgo)
      yield* cluster.close
    }))

  it.live("the leader's status shows last contact, match index and failures per peer: a cut-off follower falls behind and recovers when healed", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3, { faults: true })
      const leader = yield* cluster.leader
      const [cut, kept] = cluster.nodes.filter((node) => node.id !== leader.id)
      const status = (node: { readonly http: string }) => request(node.http, "GET", "/status").then((a) => a.body)
      const peerOf = (body: any, id: string) => body.peers.find((p: { id: string }) => p.id === id)
      const current = (body: any, id: string) => {
        const peer = peerOf(body, id)
        return peer !== undefined && peer.matchIndex === body.lastIndex && peer.failures === 0 &&
          typeof peer.lastContactMillisAgo === "number"
      }
      yield* Effect.promise(() => request(leader.http, "PUT", "/kv/a", { value: "1" }, "follow"))
      const healthy = yield* Effect.promise(() =>
        eventually(() => status(leader), (body) => current(body, cut!.id) && current(body, kept!.id))
      )
      assert.deepStrictEqual(
        healthy.peers.map((p: { id: string; http: string; suffrage: string }) => [p.id, p.http, p.suffrage]).sort(),
        [cut!, kept!].map((n) => [n.id, n.http, "Voter"]).sort()
      )
      // (Read once it answers as a follower: on a starved machine an election may pass through it first.)
      const follower = yield* Effect.promise(() => eventually(() => status(kept!), (body) => body.state === "Follower"))
      assert.deepStrictEqual(follower.peers, [], "a follower lists peers")

      // The leader's requests to `cut` are dropped (one way: `cut` still hears nothing, so it cannot disrupt).
      yield* Effect.promise(() => request(leader.http, "POST", "/admin/faults", { blocked: [cut!.id] }))
      yield* Effect.promise(() => request(leader.http, "PUT", "/kv/b", { value: "2" }, "follow"))
      const first = yield* Effect.promise(() =>
        eventually(() => status(leader), (body) => (peerOf(body, cut!.id)?.lastContactMillisAgo ?? 0) >= 500)
      )
      const later = yield* Effect.promise(() =>
        eventually(
          () => status(leader),
          (body) => peerOf(body, cut!.id).lastContactMillisAgo > peerOf(first, cut!.id).lastContactMillisAgo + 200 &&
            current(body, kept!.id)
        )
      )
      const cutPeer = peerOf(later, cut!.id)
      assert.isAbove(cutPeer.lastContactMillisAgo, peerOf(first, cut!.id).lastContactMillisAgo, "last contact did not grow")
      assert.isBelow(cutPeer.matchIndex, later.lastIndex, "the cut-off follower's match index is not behind")
      assert.isAbove(cutPeer.failures, 0, "replication to the cut-off follower does not show as failing")
      assert.isTrue(current(later, kept!.id), "the connected follower is not current")
      assert.isBelow(peerOf(later, kept!.id).lastContactMillisAgo, cutPeer.lastContactMillisAgo)

      // The table of `kv status` shows the same from the leader's side.
      const own = new Map<string, any>([[leader.id, later]])
      const table = Cli.statusTable(later, own)
      const cutRow = table.split("\n").find((line) => line.startsWith(cut!.id))!
      assert.include(cutRow, `failing (`)
      assert.include(cutRow, ` ${cutPeer.matchIndex} `)

      yield* Effect.promise(() => request(leader.http, "POST", "/admin/faults", { blocked: [] }))
      const healed = yield* Effect.promise(() =>
        eventually(() => status(leader), (body) => current(body, cut!.id) && current(body, kept!.id), 10_000)
      )
      assert.isTrue(current(healed, cut!.id), "after healing the follower is not current again")
      assert.isTrue(current(healed, kept!.id))
      yield* cluster.close
    }), 30_000)

  it.live("the leader registers its HTTP address in the replicated directory, so every node can redirect to it", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const registered = yield* Effect.promise(() =>
        eventually(
          async () => cluster.nodes.map((node) => HashMap.get(node.kv.current().members, leader.id)),
          (found) => found.every((http) => Option.getOrUndefined(http) === leader.http)
        )
      )
      for (const http of registered) assert.strictEqual(Option.getOrUndefined(http), leader.http)
      yield* cluster.close
    }))

  it.live("the fault switch is refused on a node started without it", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const node = cluster.nodes[0]!
      const answer = yield* Effect.promise(() => request(node.http, "POST", "/admin/faults", { blocked: ["x"] }))
      assert.strictEqual(answer.status, 403)
      assert.strictEqual(answer.body._tag, "FaultsDisabled")
      yield* cluster.close
    }))

  it.live("a node started with --join through a follower becomes a voter and its HTTP address is registered", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const joiner = yield* cluster.addNode("n4", follower.http)
      const status = yield* Effect.promise(() =>
        eventually(
          () => request(leader.http, "GET", "/status", undefined, "follow"),
          (answer) =>
            answer.body?.members?.some((m: { id: string; suffrage: string }) => m.id === "n4" && m.suffrage === "Voter"),
          15_000
        )
      )
      const n4 = status.body.members.find((m: { id: string }) => m.id === "n4")
      assert.deepStrictEqual(n4, { id: "n4", raftAddress: "mem://n4", suffrage: "Voter", http: joiner.http })
      // The new node receives the log.
      yield* Effect.promise(() => request(leader.http, "PUT", "/kv/after-join", { value: "yes" }, "follow"))
      const read = yield* Effect.promise(() =>
        eventually(() => request(joiner.http, "GET", "/kv/after-join?stale=true"), (a) => a.status === 200)
      )
      assert.strictEqual(read.body.value, "yes")
      yield* cluster.close
    }), 30_000)

  it.live("remove takes a server out of the configuration, and transfer-leadership hands the lead to the named voter", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const [other, removed] = cluster.nodes.filter((node) => node.id !== leader.id)
      const remove = yield* Effect.promise(() =>
        request(leader.http, "POST", "/cluster/remove", { id: removed!.id }, "follow")
      )
      assert.strictEqual(remove.status, 200)
      const transfer = yield* Effect.promise(() =>
        request(leader.http, "POST", "/cluster/transfer-leadership", { id: other!.id }, "follow")
      )
      assert.strictEqual(transfer.status, 200)
      assert.strictEqual(transfer.body.leader, other!.id)
      const status = yield* Effect.promise(() =>
        eventually(
          () => request(other!.http, "GET", "/status"),
          (answer) => answer.body?.state === "Leader"
        )
      )
      assert.deepStrictEqual(status.body.members.map((m: { id: string }) => m.id).sort(), [leader.id, other!.id].sort())
      yield* cluster.close
    }), 30_000)

  it.live("the fault switch set on both sides cuts a node off: it loses the lead, and serves no linearizable read", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3, { faults: true })
      const leader = yield* cluster.leader
      const others = cluster.nodes.filter((node) => node.id !== leader.id)
      yield* Effect.promise(() => request(leader.http, "PUT", "/kv/k", { value: "before" }, "follow"))
      yield* Effect.promise(() =>
        Promise.all([
          request(leader.http, "POST", "/admin/faults", { blocked: others.map((node) => node.id) }),
          ...others.map((node) => request(node.http, "POST", "/admin/faults", { blocked: [leader.id] }))
        ])
      )
      // The others elect a new leader and take a write the isolated node never sees.
      const write = yield* Effect.promise(() =>
        eventually(
          () => request(others[0]!.http, "PUT", "/kv/k", { value: "after" }, "follow"),
          (answer) => answer.status === 200,
          15_000
        )
      )
      assert.strictEqual(write.status, 200)
      const isolatedRead = yield* Effect.promise(() => request(leader.http, "GET", "/kv/k"))
      assert.notStrictEqual(isolatedRead.status, 200, "a cut-off node must not answer a linearizable read")
      const staleRead = yield* Effect.promise(() => request(leader.http, "GET", "/kv/k?stale=true"))
      assert.strictEqual(staleRead.body.value, "before")
      // Heal: the old leader catches up.
      yield* Effect.promise(() =>
        Promise.all(cluster.nodes.map((node) => request(node.http, "POST", "/admin/faults", { blocked: [] })))
      )
      const healed = yield* Effect.promise(() =>
        eventually(() => request(leader.http, "GET", "/kv/k?stale=true"), (a) => a.body?.value === "after", 15_000)
      )
      assert.strictEqual(healed.body.value, "after")
      yield* cluster.close
    }), 30_000)

  it.live("the typed client (as `kv put` and `kv get` use it) follows a follower's redirect to the leader", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      const api = yield* Http.client(follower.http)
      const put = yield* api.kv.put({ path: { key: "typed" }, payload: { value: "client" } })
      const got = yield* api.kv.get({ path: { key: "typed" }, urlParams: {} })
      assert.isAbove(put.index, 0)
      assert.strictEqual(got.value, "client")
      const missing = yield* Effect.flip(api.kv.get({ path: { key: "nothing" }, urlParams: {} }))
      assert.strictEqual(missing._tag, "KeyNotFound")
      yield* cluster.close
    }).pipe(Effect.provide(Http.layerFetch)), 30_000)

  it.live("with a tracer installed, each request still gets the platform's server span", () => {
    const names: Array<string> = []
    const native = Context.get(DefaultServices.liveServices, Tracer.Tracer)
    const recording = Tracer.make({
      span: (...args) => {
        names.push(args[0])
        return native.span(...args)
      },
      context: native.context
    })
    return Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const node = cluster.nodes[0]!
      const status = yield* Effect.promise(() => request(node.http, "GET", "/status"))
      yield* cluster.close
      assert.strictEqual(status.status, 200)
      assert.include(names, "http.server GET")
    }).pipe(Effect.withTracer(recording))
  })
})
