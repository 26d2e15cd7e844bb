import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type * as Rpc from "../../src/Rpc.js"
import type * as Transport from "../../src/Transport.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { captureLogs } from "./captureLogs.js"

// Peer identity over TLS. Certificates (test/fixtures/tls/generate.sh): a.pem and b.pem name server ids "a" and
// "b" as URI SANs raft://a, raft://b; c.pem names "c" as a DNS SAN; node.pem names no server id. All are signed by
// the cluster's CA and list 127.0.0.1, so without the identity check any of them passes for any server.

const fixtures = path.join(import.meta.dirname, "../fixtures/tls")
const pem = (name: string) => fs.readFileSync(path.join(fixtures, name), "utf8")
const material = (name: string): TcpTransport.TlsOptions => ({
  cert: pem(`${name}.pem`),
  key: pem(`${name}.key`),
  ca: pem("ca.pem")
})
const loopback = { host: "127.0.0.1", port: 0 }

const heartbeat = (leaderId: string): Rpc.AppendEntriesRequest => ({
  _tag: "AppendEntriesRequest",
  term: 1,
  leaderId,
  leaderAddress: "127.0.0.1:1",
  prevLogIndex: 0,
  prevLogTerm: 0,
  entries: [],
  leaderCommitIndex: 0
})

/** A handler that answers AppendEntries and records the leader ids it was sent. */
const recorder = () => {
  const leaders: Array<string> = []
  const unexpected = Effect.dieMessage("not used in these tests")
  const handler: Transport.RpcHandler = {
    appendEntries: (request) =>
      Effect.sync(() => {
        leaders.push(request.leaderId)
        return { _tag: "AppendEntriesResponse", term: request.term, lastLog: 0, success: true, noRetryBackoff: false }
      }),
    requestVote: () => unexpected,
    requestPreVote: () => unexpected,
    installSnapshot: () => unexpected,
    timeoutNow: () => unexpected
  }
  return { leaders, handler }
}

/** A transport on loopback with the certificate `name`, serving a recorder. */
const node = (name: string, tls: Partial<TcpTransport.TlsOptions> = {}) =>
  Effect.gen(function*() {
    const transport = yield* TcpTransport.make({ bind: loopback, tls: { ...material(name), ...tls } })
    const rec = recorder()
    yield* transport.serve(rec.handler)
    return { transport, leaders: rec.leaders, address: transport.localAddress }
  })

const eventually = (check: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      if (check()) return
      yield* Effect.sleep("25 millis")
    }
    assert.fail(`never: ${what}`)
  })

describe("TcpTransport peer identity", () => {
  it("serverIdsOf reads raft:// URI SANs (percent-decoded) and DNS SANs, quoted or not, and nothing else", () => {
    assert.deepStrictEqual(TcpTransport.serverIdsOf("URI:raft://a, IP Address:127.0.0.1, DNS:localhost"), [
      "a",
      "localhost"
    ])
    // Node's text form as printed for a certificate with these SANs (values with a comma are JSON-quoted).
    assert.deepStrictEqual(
      TcpTransport.serverIdsOf(
        "URI:raft://x%2Cy, DNS:\"a\\u002cb\", DNS:*.z, URI:raft://p q, URI:spiffe://t/x, email:a@b, IP Address:::1"
      ),
      ["x,y", "a,b", "p q"]
    )
    assert.deepStrictEqual(TcpTransport.serverIdsOf(undefined), [])
    assert.deepStrictEqual(TcpTransport.serverIdsOf("URI:raft://%E0%A4%A, DNS:"), [])
    assert.strictEqual(TcpTransport.serverIdUri("node 1/x"), "raft://node%201%2Fx")
    assert.deepStrictEqual(TcpTransport.serverIdsOf(`URI:${TcpTransport.serverIdUri("node 1/x")}`), ["node 1/x"])
  })

  it.scopedLive("a server presenting a cluster certificate for another id is refused with TransportError identity, logged; the right one is accepted and other connections keep working", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const run = logs.run
      const a = yield* run(node("a"))
      const b = yield* run(node("b"))
      const c = yield* run(node("c"))
      const anonymous = yield* run(node("node", { verifyPeerId: false }))
      // A connection to b is open and pooled before the impostor is dialled.
      assert.strictEqual((yield* a.transport.appendEntries("b", b.address, heartbeat("a"))).success, true)

      // c's certificate is valid for the cluster, but a dials server "b" at c's address.
      const impostor = yield* Effect.flip(a.transport.appendEntries("b", c.address, heartbeat("a")))
      assert.strictEqual(impostor._tag, "TransportError")
      assert.strictEqual(impostor.reason, "identity")
      assert.strictEqual(impostor.detail, "expected server id \"b\", certificate names \"c\"")
      // A certificate naming no server id at all is refused the same way.
      const nameless = yield* Effect.flip(a.transport.appendEntries("d", anonymous.address, heartbeat("a")))
      assert.strictEqual(nameless.reason, "identity")
      assert.strictEqual(nameless.detail, "expected server id \"d\", certificate names no server id")
      assert.deepStrictEqual(c.leaders, [])
      assert.deepStrictEqual(anonymous.leaders, [])
      const refusals = logs.lines.filter((l) => l.includes("refused a server: wrong identity"))
      assert.strictEqual(refusals.length, 2, logs.lines.join("\n"))
      assert(refusals.some((l) => l.includes(`peer=${c.address}`) && l.includes("certificate names \\\"c\\\"")))

      // The same server dialled as the id it names is accepted (a DNS SAN here), and b still answers.
      assert.strictEqual((yield* a.transport.appendEntries("c", c.address, heartbeat("a"))).success, true)
      assert.strictEqual((yield* a.transport.appendEntries("b", b.address, heartbeat("a"))).success, true)
      assert.deepStrictEqual(c.leaders, ["a"])
      assert.deepStrictEqual(b.leaders, ["a", "a"])
    }))

  it.scopedLive("with verifyPeerId false, any certificate signed by the CA is accepted for any id", () =>
    Effect.gen(function*() {
      const a = yield* node("a", { verifyPeerId: false })
      const anonymous = yield* node("node", { verifyPeerId: false })
      const c = yield* node("c", { verifyPeerId: false })
      assert.strictEqual((yield* a.transport.appendEntries("b", anonymous.address, heartbeat("a"))).success, true)
      assert.strictEqual((yield* a.transport.appendEntries("b", c.address, heartbeat("a"))).success, true)
      assert.strictEqual((yield* anonymous.transport.appendEntries("c", c.address, heartbeat("x"))).success, true)
    }))

  it.scopedLive("mutual TLS with allowedPeerIds: a client certificate for an unlisted id, or naming none, is refused and logged; a listed one is served", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const run = logs.run
      const b = yield* run(node("b", { allowedPeerIds: ["a"] }))
      const viaPredicate = yield* run(node("b", { allowedPeerIds: (id) => id === "a" }))
      const a = yield* run(node("a"))
      const c = yield* run(node("c"))
      const anonymous = yield* run(node("node"))

      assert.strictEqual((yield* a.transport.appendEntries("b", b.address, heartbeat("a"))).success, true)
      for (const server of [b, viaPredicate]) {
        const refused = yield* Effect.flip(c.transport.appendEntries("b", server.address, heartbeat("c")))
        assert.include(["closed", "unreachable", "remote"], refused.reason)
      }
      const nameless = yield* Effect.flip(anonymous.transport.appendEntries("b", b.address, heartbeat("node")))
      assert.include(["closed", "unreachable", "remote"], nameless.reason)
      yield* eventually(
        () => logs.lines.filter((l) => l.includes("refused a client: certificate identity")).length === 3,
        "three refusals logged"
      )
      const refusals = logs.lines.filter((l) => l.includes("refused a client: certificate identity"))
      assert.strictEqual(refusals.filter((l) => l.includes("certificate names \\\"c\\\", none in allowedPeerIds")).length, 2)
      assert.strictEqual(refusals.filter((l) => l.includes("client certificate names no server id\"")).length, 1)
      assert(refusals.every((l) => /peer=127\.0\.0\.1:\d+/.test(l)), refusals.join("\n"))
      assert.strictEqual((yield* b.transport.stats).rejected, 2)
      assert.strictEqual((yield* viaPredicate.transport.stats).rejected, 1)

      // The listed client is still served, on both servers.
      assert.strictEqual((yield* a.transport.appendEntries("b", b.address, heartbeat("a"))).success, true)
      assert.strictEqual((yield* a.transport.appendEntries("b", viaPredicate.address, heartbeat("a"))).success, true)
      assert.deepStrictEqual(b.leaders, ["a", "a"])
      assert.deepStrictEqual(viaPredicate.leaders, ["a"])
    }))

  it.scopedLive("without client certificates (requireClientCert false) clients are served, unless allowedPeerIds is set: then refused", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const run = logs.run
      const open = yield* run(node("b", { requireClientCert: false }))
      const listed = yield* run(node("b", { requireClientCert: false, allowedPeerIds: ["a"] }))
      const a = yield* run(node("a"))
      assert.strictEqual((yield* a.transport.appendEntries("b", open.address, heartbeat("x"))).success, true)
      const refused = yield* Effect.flip(a.transport.appendEntries("b", listed.address, heartbeat("a")))
      assert.include(["closed", "unreachable", "remote"], refused.reason)
      assert.deepStrictEqual(listed.leaders, [])
      yield* eventually(() => logs.lines.some((l) => l.includes("no client certificate")), "the refusal logged")
    }))

  it.scopedLive("mutual TLS: a client certificate naming no server id is refused, and a client whose request claims an id its certificate does not name is disconnected unserved", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const run = logs.run
      const b = yield* run(node("b"))
      const c = yield* run(node("c"))
      const anonymous = yield* run(node("node"))
      // A client certificate naming no server id is refused before any request.
      const nameless = yield* Effect.flip(anonymous.transport.appendEntries("b", b.address, heartbeat("node")))
      assert.include(["closed", "unreachable", "remote"], nameless.reason)
      yield* eventually(
        () => logs.lines.some((l) => l.includes("client certificate names no server id\"")),
        "the nameless client's refusal logged"
      )
      // c holds a valid certificate for "c" and pretends to be leader "a".
      const spoofed = yield* Effect.flip(c.transport.appendEntries("b", b.address, heartbeat("a")))
      assert.include(["closed", "unreachable", "remote"], spoofed.reason)
      assert.deepStrictEqual(b.leaders, [])
      yield* eventually(
        () => logs.lines.some((l) => l.includes("refused a client: request from another server id")),
        "the refusal logged"
      )
      const line = logs.lines.find((l) => l.includes("request from another server id"))!
      assert.include(line, "AppendEntriesRequest claims server id \\\"a\\\", certificate names \\\"c\\\"")
      // A follower's ReadIndex names its sender too.
      const spoofedRead = yield* Effect.flip(c.transport.readIndex!("b", b.address, {
        _tag: "ReadIndexRequest",
        term: 1,
        serverId: "a",
        serverAddress: c.address,
        lease: false
      }))
      assert.include(["closed", "unreachable", "remote"], spoofedRead.reason)
      assert.strictEqual((yield* b.transport.stats).rejected, 3)
      // As itself, c is served.
      assert.strictEqual((yield* c.transport.appendEntries("b", b.address, heartbeat("c"))).success, true)
      assert.deepStrictEqual(b.leaders, ["c"])
    }))
})
