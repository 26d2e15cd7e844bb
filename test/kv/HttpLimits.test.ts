/**
 * The HTTP API's limits (issue 16): an oversized body is answered 413 before it is read, a target too long 414, a
 * request head too large 431, JSON nested too deep 400; each answer is a JSON error, never a 500 or a reset.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as net from "node:net"
import * as HttpLimits from "../../src/kv/HttpLimits.js"
import { makeCluster, request } from "./cluster.js"

/**
 * Writes `head` and then `body` (in pieces, as a client streaming it would) to `http` on a raw socket, without
 * ending the request, and answers the status line and JSON body of the first answer the server sends.
 */
const rawAnswer = (http: string, head: string, body: Uint8Array) =>
  Effect.async<{ readonly status: number; readonly body: any }>((resume) => {
    const [host, port] = http.split(":")
    const socket = net.connect({ host: host!, port: Number(port) }, () => {
      socket.write(head)
      for (let at = 0; at < body.length; at += 64 * 1024) socket.write(body.subarray(at, at + 64 * 1024))
    })
    let received = ""
    socket.on("error", () => {})
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString()
      const [headText, rest] = received.split("\r\n\r\n")
      const length = Number(/content-length: (\d+)/i.exec(headText ?? "")?.[1] ?? -1)
      if (rest !== undefined && length >= 0 && Buffer.byteLength(rest) >= length) {
        resume(Effect.succeed({ status: Number(headText!.split(" ")[1]), body: JSON.parse(rest.slice(0, length)) }))
        socket.destroy()
      }
    })
    return Effect.sync(() => socket.destroy())
  })

const MiB = 1024 * 1024

describe("kv HTTP limits", () => {
  it.live("a body over the limit is answered 413 from its Content-Length, before the body is sent", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const leader = yield* cluster.leader
      // 50 MiB announced, 1 KiB sent: the answer comes without the rest.
      const answer = yield* rawAnswer(
        leader.http,
        `PUT /kv/big HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${50 * MiB}\r\n\r\n`,
        new Uint8Array(1024)
      )
      assert.strictEqual(answer.status, 413)
      assert.deepStrictEqual(answer.body, { _tag: "PayloadTooLarge", what: "body", size: 50 * MiB, limit: MiB })
      // A whole 50 MiB body sent by fetch gets the same answer (the rest is discarded unread, the connection stays).
      const fetched = yield* Effect.promise(() => request(leader.http, "PUT", "/kv/big", { value: "x".repeat(50 * MiB) }))
      assert.strictEqual(fetched.status, 413)
      const missing = yield* Effect.promise(() => request(leader.http, "GET", "/kv/big"))
      assert.strictEqual(missing.status, 404)
      yield* cluster.close
    }), 60_000)

  it.live("a chunked body is refused with 413 as soon as it goes over the limit, without waiting for its end", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const leader = yield* cluster.leader
      const chunk = new Uint8Array(64 * 1024).fill(0x61)
      const chunks = Array.from({ length: 40 }, () => Buffer.concat([Buffer.from("10000\r\n"), chunk, Buffer.from("\r\n")]))
      const answer = yield* rawAnswer(
        leader.http,
        "PUT /kv/big HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        Buffer.concat(chunks)
      )
      assert.strictEqual(answer.status, 413)
      assert.deepStrictEqual(answer.body, { _tag: "PayloadTooLarge", what: "body", limit: MiB })
      yield* cluster.close
    }), 60_000)

  it.live("a key too long for a request target is 414, a request head too large 431, JSON nested too deep 400: JSON errors, and the node goes on", () =>
    Effect.gen(function*() {
      const cluster = yield* makeCluster(1)
      const leader = yield* cluster.leader
      const result = yield* Effect.promise(async () => ({
        long: await request(leader.http, "PUT", `/kv/${"k".repeat(10_000)}`, { value: "v" }),
        huge: await request(leader.http, "GET", `/kv/${"k".repeat(70_000)}`),
        deep: await fetch(`http://${leader.http}/kv/deep`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: `{"value":${"[".repeat(200_000)}${"]".repeat(200_000)}}`
        }).then(async (r) => ({ status: r.status, body: await r.json() })),
        shallow: await request(leader.http, "PUT", "/kv/ok", { value: "[[[not json nesting]]]" }),
        after: await request(leader.http, "GET", "/kv/ok")
      }))
      assert.strictEqual(result.long.status, 414)
      assert.deepStrictEqual(result.long.body, { _tag: "UriTooLong", size: 10_004, limit: HttpLimits.defaults.maxUrlBytes })
      assert.strictEqual(result.huge.status, 431)
      assert.deepStrictEqual(result.huge.body, { _tag: "HeadersTooLarge", limit: HttpLimits.defaults.maxHeaderBytes })
      assert.strictEqual(result.deep.status, 400)
      assert.deepStrictEqual(result.deep.body, { _tag: "BadRequest", reason: "JSON nested deeper than 64" })
      assert.strictEqual(result.shallow.status, 200, "brackets inside a string are not nesting")
      assert.strictEqual(result.after.body.value, "[[[not json nesting]]]")
      yield* cluster.close
    }), 60_000)

  it("nestedDeeperThan counts arrays and objects outside strings, escapes included", () => {
    assert.isFalse(HttpLimits.nestedDeeperThan(`{"a":[[1]]}`, 3))
    assert.isTrue(HttpLimits.nestedDeeperThan(`{"a":[[1]]}`, 2))
    assert.isFalse(HttpLimits.nestedDeeperThan(`{"a":"[[[\\"[[["}`, 1))
  })
})
