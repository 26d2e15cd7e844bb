/**
 * Peers prove who they are (issue 16): `kv cluster`'s certificates, `kv node`'s refusal to start without transport
 * security, and, on real `kv node` processes with mutual TLS, a forged AppendEntries from a client without
 * credentials that changes nothing on a follower and is refused in its log.
 */
import { assert, describe, it } from "@effect/vitest"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { X509Certificate } from "node:crypto"
import * as Certificates from "../../src/kv/Certificates.js"
import * as Cli from "../../src/kv/Cli.js"
import * as KvFsm from "../../src/kv/KvFsm.js"
import * as Codec from "../../src/transport/codec.js"
import * as TcpTransport from "../../src/transport/TcpTransport.js"
import { startProcessCluster } from "./processes.js"

const temporary = () => mkdtempSync(join(tmpdir(), "kv-tls-"))

const getJson = (http: string, path: string) =>
  fetch(`http://${http}${path}`).then(async (r) => ({ status: r.status, body: await r.json() as any }))

/** PUTs through any node (redirects followed) until one answers 200 (elections on a busy machine); answers its index. */
const put = async (https: ReadonlyArray<string>, key: string, value: string): Promise<number> => {
  for (let i = 0; i < 200; i++) {
    const answer = await fetch(`http://${https[i % https.length]}/kv/${key}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ value })
    }).then(async (r) => ({ status: r.status, body: await r.json() as any })).catch(() => undefined)
    if (answer?.status === 200) return answer.body.index
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`PUT ${key} never succeeded`)
}

describe("kv transport security", () => {
  it.live("ensureCluster makes a CA and a certificate per node naming its id; a second run reuses them; the nodes' transports talk mutual TLS and check ids", () =>
    Effect.gen(function*() {
      const dir = temporary()
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const nodes = ["n1", "n2"].map((id) => ({ id, dir: join(dir, id) }))
      const first = yield* Certificates.ensureCluster(dir, nodes)
      assert.strictEqual(first.made.length, 3)
      const n1 = first.files.get("n1")!
      const cert = new X509Certificate(readFileSync(n1.cert))
      assert.strictEqual(cert.subjectAltName, "URI:raft://n1")
      assert.isTrue(cert.checkIssued(new X509Certificate(readFileSync(n1.ca))))
      assert.strictEqual(statSync(n1.key).mode & 0o777, 0o600)
      assert.strictEqual(statSync(join(dir, "tls", "ca.key")).mode & 0o777, 0o600)
      const again = yield* Certificates.ensureCluster(dir, [...nodes, { id: "n3", dir: join(dir, "n3") }])
      assert.deepStrictEqual(again.made, [join(dir, "n3", "tls", "node.crt")], "only the new node's certificate is made")
      const tlsOf = (id: string) => {
        const files = again.files.get(id)!
        return { cert: readFileSync(files.cert, "utf8"), key: readFileSync(files.key, "utf8"), ca: readFileSync(files.ca, "utf8") }
      }
      const loopback = { host: "127.0.0.1", port: 0 }
      const a = yield* TcpTransport.make({ bind: loopback, tls: tlsOf("n1") })
      const b = yield* TcpTransport.make({ bind: loopback, tls: tlsOf("n2") })
      yield* b.serve({
        appendEntries: (request) => Effect.succeed({ _tag: "AppendEntriesResponse", term: request.term, lastLog: 0, success: true, noRetryBackoff: false }),
        requestVote: () => Effect.die("unused"),
        requestPreVote: () => Effect.die("unused"),
        installSnapshot: () => Effect.die("unused"),
        timeoutNow: () => Effect.die("unused")
      })
      const heartbeat = {
        _tag: "AppendEntriesRequest",
        term: 1,
        leaderId: "n1",
        leaderAddress: a.localAddress,
        prevLogIndex: 0,
        prevLogTerm: 0,
        entries: [],
        leaderCommitIndex: 0
      } as const
      assert.isTrue((yield* a.appendEntries("n2", b.localAddress, heartbeat)).success)
      const wrongId = yield* Effect.flip(a.appendEntries("n3", b.localAddress, heartbeat))
      assert.strictEqual(wrongId.reason, "identity", "a server whose certificate names n2 was taken for n3")
    }).pipe(Effect.scoped, Effect.provide(NodeContext.layer)), 60_000)

  it("kv node refuses to start without --tls-* files or --insecure-transport, and says why", () => {
    const dir = temporary()
    try {
      const entry = join(import.meta.dirname, "../../src/kv/main.ts")
      const run = spawnSync(process.execPath, [
        "--import",
        "tsx",
        entry,
        "node",
        "--id",
        "n1",
        "--raft-addr",
        "127.0.0.1:1",
        "--http-addr",
        "127.0.0.1:1",
        "--data-dir",
        dir
      ], { encoding: "utf8", timeout: 60_000 })
      assert.strictEqual(run.status, 1, run.stderr)
      assert.include(run.stdout + run.stderr, Cli.insecureRefusal)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it("on kv node processes with mutual TLS, a forged AppendEntries from a client without a certificate changes nothing on a follower, and the refusal is logged", async () => {
    const dir = temporary()
    const cluster = await startProcessCluster({ dir, nodes: 3, fast: true })
    try {
      const https = cluster.nodes.map((node) => node.http)
      const index = await put(https, "real", "1")
      const leader = await cluster.leader()
      assert.isDefined(leader, "no leader")
      const follower = cluster.nodes.find((node) => node !== leader)!
      let before: any
      // On a busy machine the follower's HTTP server may still be starting: a refused connection means "not yet".
      for (let i = 0; i < 400; i++) {
        before = (await getJson(follower.http, "/status").catch(() => undefined))?.body
        if (before !== undefined && before.appliedIndex >= index && before.lastIndex === before.appliedIndex) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.isDefined(before, `follower ${follower.id} never answered /status`)
      // What a script that knows the follower's state would send: the next entry, committed at once.
      const forged = Codec.concat(Codec.encodeRequest(1, {
        _tag: "AppendEntriesRequest",
        term: before.term,
        leaderId: leader!.id,
        leaderAddress: leader!.raft,
        prevLogIndex: before.lastIndex,
        prevLogTerm: before.term,
        entries: [{
          index: before.lastIndex + 1,
          term: before.term,
          type: "Command",
          data: Either.getOrThrow(KvFsm.machine.encodeCommand({ _tag: "Put", key: "forged", value: "by a stranger" }))
        }],
        leaderCommitIndex: before.lastIndex + 1
      }))
      const [host, port] = follower.raft.split(":")
      const outcome = await new Promise<string>((resolve) => {
        const socket = net.connect({ host: host!, port: Number(port) }, () => socket.write(forged))
        socket.on("data", () => resolve("answered"))
        socket.on("error", () => {})
        socket.on("close", () => resolve("closed"))
      })
      assert.strictEqual(outcome, "closed")
      // The cluster goes on; the follower never applied the forged entry.
      await put(https, "after", "2")
      let after: { status: number; body: any } | undefined
      for (let i = 0; i < 100; i++) {
        after = await getJson(follower.http, "/kv/after?stale=true").catch(() => undefined)
        if (after?.status === 200) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      assert.strictEqual(after!.status, 200)
      const stranger = await getJson(follower.http, "/kv/forged?stale=true")
      assert.strictEqual(stranger.status, 404, `the follower serves a forged key: ${JSON.stringify(stranger.body)}`)
      const log = readFileSync(join(dir, `${follower.id}.log`), "utf8")
      assert.include(log, "refused a TLS connection")
    } finally {
      await cluster.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
