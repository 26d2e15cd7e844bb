import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Http from "../../src/kv/Http.js"
import * as HttpFront from "../../src/kv/HttpFront.js"
import * as HttpLimits from "../../src/kv/HttpLimits.js"
import * as Kv from "../../src/kv/Kv.js"
import * as Operator from "../../src/kv/Operator.js"
import * as KvError from "../../src/kv/KvError.js"
import { makeCluster } from "./cluster.js"

interface Raw {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

/** One request with node:http: the status, every header but the date, and the body as text. */
const raw = (address: string, method: string, path: string, body?: string, type = "application/json") =>
  new Promise<Raw>((resolve, reject) => {
    const [host, port] = address.split(":")
    const request = http.request({
      host,
      port: Number(port),
      method,
      path,
      headers: body === undefined ? {} : { "content-type": type, "content-length": Buffer.byteLength(body) }
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("end", () => {
        const { date: _date, ...headers } = response.headers
        resolve({ status: response.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString("utf8") })
      })
    })
    request.on("error", reject)
    request.end(body)
  })

/** The answer with the index of a write replaced: two writes never get the same one. */
const withoutIndex = (answer: Raw): Raw => ({ ...answer, body: answer.body.replace(/"index":\d+/, `"index":0`) })

describe("kv HTTP front (the hot routes served before the HttpApi)", () => {
  it.live("PUT and GET /kv/:key answer as the API does: status, headers and body, on the leader and a follower", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      const leader = yield* cluster.leader
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      // `%63olor` is `color` to the router; the front hands a percent-encoded key to the API.
      const both = (address: string, method: string, key: string, query = "", body?: string, type?: string) =>
        Promise.all([
          raw(address, method, `/kv/${key}${query}`, body, type),
          raw(address, method, `/kv/%${key.charCodeAt(0).toString(16)}${key.slice(1)}${query}`, body, type)
        ])
      const value = JSON.stringify({ value: "red" })
      const result = yield* Effect.promise(async () => ({
        put: await both(leader.http, "PUT", "color", "", value),
        get: await both(leader.http, "GET", "color"),
        stale: await both(leader.http, "GET", "color", "?stale=true"),
        notStale: await both(leader.http, "GET", "color", "?stale=false"),
        missing: await both(leader.http, "GET", "nothing"),
        extra: await both(leader.http, "PUT", "color", "", JSON.stringify({ value: "red", other: 1 })),
        // What the front hands to the API after reading the body: the API's own refusals.
        notJson: await both(leader.http, "PUT", "color", "", "{"),
        notString: await both(leader.http, "PUT", "color", "", JSON.stringify({ value: 1 })),
        array: await both(leader.http, "PUT", "color", "", JSON.stringify([{ value: "red" }])),
        deep: await both(leader.http, "PUT", "color", "", `{"value":"x","d":${"[".repeat(100)}${"]".repeat(100)}}`),
        redirect: await both(follower.http, "PUT", "color", "", value)
      }))
      const followerRead = yield* Effect.promise(() => both(follower.http, "GET", "color"))
      for (const [name, [front, api]] of Object.entries(result)) {
        if (name === "redirect") continue
        assert.deepStrictEqual(withoutIndex(front), withoutIndex(api), name)
      }
      assert.strictEqual(result.put[0].status, 200)
      assert.strictEqual(JSON.parse(result.get[0].body).value, "red")
      assert.strictEqual(result.missing[0].status, 404)
      assert.strictEqual(result.notJson[0].status, 400)
      assert.strictEqual(result.deep[0].status, 400)
      // The redirect keeps the request's own target.
      const [front, api] = result.redirect
      assert.strictEqual(front.status, 307)
      assert.strictEqual(front.headers.location, `http://${leader.http}/kv/color`)
      assert.deepStrictEqual(
        { ...front, headers: { ...front.headers, location: "" } },
        { ...api, headers: { ...api.headers, location: "" } }
      )
      assert.deepStrictEqual(followerRead[0], followerRead[1])
      assert.strictEqual(JSON.parse(followerRead[0].body).value, "red")
      yield* cluster.close
    }), 30_000)

  it.live("serves plain keys itself and hands everything else to the API, a read body with it", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const get = (key: string, options?: { readonly stale?: boolean | undefined }) =>
        Effect.suspend((): Effect.Effect<{ value: string; index: number }, KvError.KeyNotFound | KvError.NotLeader> => {
          calls.push(`get ${key} ${options?.stale}`)
          return key === "gone"
            ? Effect.fail(new KvError.KeyNotFound({ key }))
            : key === "moved"
            ? Effect.fail(new KvError.NotLeader({ leaderId: "n2", leaderHttp: "127.0.0.1:1" }))
            : key === "slow"
            ? Effect.never
            : Effect.succeed({ value: "v", index: 7 })
        })
      const put = (key: string, value: string) =>
        Effect.suspend((): Effect.Effect<{ index: number }, KvError.OutcomeUnknown> => {
          calls.push(`put ${key} ${value}`)
          return key === "late"
            ? Effect.fail(new KvError.OutcomeUnknown({ reason: "timed out" }))
            : key === "slow"
            ? Effect.onInterrupt(Effect.never, () => Effect.sync(() => calls.push("put slow given up")))
            : Effect.succeed({ index: 8 })
        })
      // Served without a fiber: keys starting with "now"; every other key goes to `get`.
      const getNow = (
        key: string,
        options: { readonly stale?: boolean | undefined } | undefined,
        callback: (exit: Exit.Exit<{ value: string; index: number }, KvError.KeyNotFound>) => void
      ) => {
        if (!key.startsWith("now")) return undefined
        calls.push(`getNow ${key} ${options?.stale}`)
        if (key === "nowgone") callback(Exit.fail(new KvError.KeyNotFound({ key })))
        else if (key === "nowlater") Promise.resolve().then(() => callback(Exit.succeed({ value: "later", index: 9 })))
        else if (key !== "nowslow") callback(Exit.succeed({ value: "now", index: 5 }))
        return () => void calls.push(`getNow ${key} dropped`)
      }
      const kv = {
        untimed: {
          get,
          getNow,
          put,
          readTimeoutMillis: 100,
          writeTimeoutMillis: 150,
          readTimedOut: () => new KvError.Unavailable({ reason: "no read index within 100 ms" }),
          writeTimedOut: () => new KvError.OutcomeUnknown({ reason: "no outcome within 150 ms" })
        }
      } as unknown as Kv.Kv
      const front = yield* HttpFront.make(kv)
      const server = http.createServer((request, response) =>
        front(request, response, () => {
          // The API's stand-in: says what it got, the body the front read included.
          const chunks: Array<Buffer> = []
          const answer = () => response.end(`api ${request.method} ${request.url} ${Buffer.concat(chunks).length}`)
          if (request.readableEnded) return answer()
          request.on("data", (chunk: Buffer) => chunks.push(chunk))
          request.on("end", answer)
        })
      )
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
      const result = yield* Effect.promise(async () => ({
        get: await raw(address, "GET", "/kv/a.b-c"),
        stale: await raw(address, "GET", "/kv/a?stale=true"),
        gone: await raw(address, "GET", "/kv/gone"),
        moved: await raw(address, "GET", "/kv/moved?stale=false"),
        put: await raw(address, "PUT", "/kv/k", JSON.stringify({ value: "x" })),
        late: await raw(address, "PUT", "/kv/late", JSON.stringify({ value: "x" })),
        encoded: await raw(address, "GET", "/kv/%61"),
        dots: await raw(address, "GET", "/kv/.."),
        nested: await raw(address, "GET", "/kv/a/b"),
        list: await raw(address, "GET", "/kv?prefix=a"),
        otherQuery: await raw(address, "GET", "/kv/a?stale=yes"),
        form: await raw(address, "PUT", "/kv/k", "value=x", "application/x-www-form-urlencoded"),
        badBody: await raw(address, "PUT", "/kv/k", JSON.stringify({ value: 1 })),
        del: await raw(address, "DELETE", "/kv/k"),
        // Past their deadlines (kept by `Deadlines.ts`): the call is given up, the timeout's error answered.
        slowGet: await raw(address, "GET", "/kv/slow"),
        slowPut: await raw(address, "PUT", "/kv/slow", JSON.stringify({ value: "x" })),
        now: await raw(address, "GET", "/kv/now?stale=true"),
        nowGone: await raw(address, "GET", "/kv/nowgone"),
        nowLater: await raw(address, "GET", "/kv/nowlater"),
        nowSlow: await raw(address, "GET", "/kv/nowslow")
      }))
      assert.deepStrictEqual(calls, [
        "get a.b-c undefined",
        "get a true",
        "get gone undefined",
        "get moved false",
        "put k x",
        "put late x",
        "get slow undefined",
        "put slow x",
        "put slow given up",
        "getNow now true",
        "getNow nowgone undefined",
        "getNow nowlater undefined",
        "getNow nowslow undefined",
        "getNow nowslow dropped"
      ])
      assert.deepStrictEqual([result.now.status, result.now.body], [200, `{"key":"now","value":"now","index":5}`])
      assert.deepStrictEqual(
        [result.nowGone.status, JSON.parse(result.nowGone.body)],
        [404, { _tag: "KeyNotFound", key: "nowgone" }]
      )
      assert.deepStrictEqual(result.nowLater.body, `{"key":"nowlater","value":"later","index":9}`)
      assert.deepStrictEqual(
        [result.nowSlow.status, JSON.parse(result.nowSlow.body)],
        [503, { _tag: "Unavailable", reason: "no read index within 100 ms" }]
      )
      assert.deepStrictEqual(
        [result.slowGet.status, JSON.parse(result.slowGet.body)],
        [503, { _tag: "Unavailable", reason: "no read index within 100 ms" }]
      )
      assert.deepStrictEqual(
        [result.slowPut.status, JSON.parse(result.slowPut.body)],
        [504, { _tag: "OutcomeUnknown", reason: "no outcome within 150 ms" }]
      )
      assert.deepStrictEqual(
        [result.get.status, result.get.headers["content-type"], result.get.body],
        [200, "application/json", `{"key":"a.b-c","value":"v","index":7}`]
      )
      assert.strictEqual(result.stale.body, `{"key":"a","value":"v","index":7}`)
      assert.deepStrictEqual([result.gone.status, JSON.parse(result.gone.body)], [404, { _tag: "KeyNotFound", key: "gone" }])
      assert.deepStrictEqual(
        [result.moved.status, result.moved.headers.location],
        [307, "http://127.0.0.1:1/kv/moved?stale=false"]
      )
      assert.deepStrictEqual([result.put.status, result.put.body], [200, `{"index":8}`])
      assert.deepStrictEqual(
        [result.late.status, JSON.parse(result.late.body)],
        [504, { _tag: "OutcomeUnknown", reason: "timed out" }]
      )
      assert.strictEqual(result.encoded.body, "api GET /kv/%61 0")
      assert.strictEqual(result.dots.body, "api GET /kv/.. 0")
      assert.strictEqual(result.nested.body, "api GET /kv/a/b 0")
      assert.strictEqual(result.list.body, "api GET /kv?prefix=a 0")
      assert.strictEqual(result.otherQuery.body, "api GET /kv/a?stale=yes 0")
      assert.strictEqual(result.form.body, "api PUT /kv/k 7")
      // Read by the front already: the API's stand-in sees no more bytes (the middleware takes the pre-read body).
      assert.strictEqual(result.badBody.body, "api PUT /kv/k 0")
      assert.strictEqual(result.del.body, "api DELETE /kv/k 0")
    }).pipe(Effect.scoped))

  it.live("a node's server gets the front while nobody exports spans, and keeps every request on the API otherwise", () =>
    Effect.gen(function*() {
      const frontOf = (layer: typeof Http.layer) =>
        Effect.scoped(Effect.map(
          Layer.build(layer.pipe(
            Layer.provideMerge(HttpLimits.layerServer({ host: "127.0.0.1", port: 0 })),
            Layer.provide(Operator.layerMetrics()),
            Layer.provide(Layer.succeed(Kv.KvService, { untimed: { readTimeoutMillis: 1, writeTimeoutMillis: 1 } } as Kv.Kv))
          )),
          (context) => Context.get(context, HttpLimits.FrontSlotTag).front
        ))
      const plain = yield* frontOf(Http.layer)
      const exported = yield* frontOf(Http.layer.pipe(Layer.provide(Layer.setTracer(Tracer.make({
        span: () => {
          throw new Error("no span expected while building")
        },
        context: (f) => f()
      })))))
      assert.isDefined(plain)
      assert.isUndefined(exported)
    }))
})
