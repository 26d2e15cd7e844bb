/**
 * `kv recover`: a key-value cluster of three nodes on durable stores (LMDB
 * and file snapshots in temporary directories; the memory network between
 * them) loses two nodes for good; the command line rewrites the survivor's
 * data directory, and the survivor starts alone, leads, and answers every
 * key that was written.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Cli from "../../src/kv/Cli.js"
import * as KvNode from "../../src/kv/KvNode.js"
import * as Raft from "../../src/Raft.js"
import * as FileSnapshotStore from "../../src/storage/FileSnapshotStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"
import { Transport } from "../../src/Transport.js"
import { freePort, request, testTimers } from "./cluster.js"

describe("kv recover", () => {
  it.scopedLive("after losing two of three nodes for good, the recovered survivor leads alone and keeps every key", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "kv-recover-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const network = MemoryNetwork.make()
      const ports = yield* Effect.promise(() => Promise.all([freePort(), freePort(), freePort()]))
      // Raft addresses as `kv node` takes them; the memory network carries any address.
      const peers = ports.map((port, i) => ({
        id: `n${i + 1}`,
        raftAddress: `127.0.0.1:${17001 + i}`,
        httpAddress: `127.0.0.1:${port}`
      }))
      const start = (self: (typeof peers)[number], bootstrap: boolean) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const dataDir = join(dir, self.id)
          const infrastructure = Layer.mergeAll(
            LmdbStore.layer({ path: join(dataDir, "raft") }),
            FileSnapshotStore.layer(join(dataDir, "snapshots")),
            Layer.sync(Transport, () => network.transport(self.id, self.raftAddress))
          )
          const context = yield* Layer.buildWithScope(
            KvNode.layer({
              id: self.id,
              raftAddress: self.raftAddress,
              httpAddress: self.httpAddress,
              peers: peers.filter((peer) => peer.id !== self.id),
              bootstrap,
              raft: testTimers
            }, infrastructure),
            scope
          )
          return { scope, raft: Context.get(context, Raft.Raft), http: self.httpAddress }
        })
      const nodes = yield* Effect.forEach(peers, (peer) => start(peer, true))
      const awaitLeader = (candidates: ReadonlyArray<{ readonly raft: Raft.Raft; readonly http: string }>) =>
        Effect.gen(function*() {
          for (let waited = 0; waited < 10_000; waited += 20) {
            for (const node of candidates) if ((yield* node.raft.state) === "Leader") return node
            yield* Effect.sleep("20 millis")
          }
          return assert.fail("no leader within 10 s")
        })
      const leader = yield* awaitLeader(nodes)
      const written = yield* Effect.promise(async () => {
        const out: Array<number> = []
        for (let i = 0; i < 5; i++) out.push((await request(leader.http, "PUT", `/kv/k${i}`, { value: `v${i}` }, "follow")).status)
        return out
      })
      assert.deepStrictEqual(written, [200, 200, 200, 200, 200])
      yield* Effect.forEach(nodes, (node) => Scope.close(node.scope, Exit.void), { discard: true })

      // n2 and n3 are gone for good; n1 is recovered as the only voter.
      yield* Cli.run(["node", "kv", "recover", "--data-dir", join(dir, "n1"), "--peer", `n1,${peers[0]!.raftAddress}`]).pipe(
        Effect.scoped,
        Effect.provide(NodeContext.layer)
      )
      const survivor = yield* start(peers[0]!, false)
      yield* Effect.addFinalizer(() => Scope.close(survivor.scope, Exit.void))
      yield* awaitLeader([survivor])
      const after = yield* Effect.promise(async () => {
        const values: Array<string> = []
        for (let i = 0; i < 5; i++) values.push((await request(survivor.http, "GET", `/kv/k${i}`)).body.value)
        const put = await request(survivor.http, "PUT", "/kv/after", { value: "recovered" })
        return { values, put: put.status }
      })
      assert.deepStrictEqual(after.values, ["v0", "v1", "v2", "v3", "v4"])
      assert.strictEqual(after.put, 200)
      const { configuration } = yield* survivor.raft.getConfiguration
      assert.deepStrictEqual(configuration.servers.map((server) => server.id), ["n1"])
    }))

  it.scopedLive("refuses a --peer it cannot parse, and a data directory without state", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "kv-recover-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const run = (args: ReadonlyArray<string>) =>
        Cli.run(["node", "kv", "recover", "--data-dir", dir, ...args]).pipe(
          Effect.scoped,
          Effect.provide(NodeContext.layer),
          Effect.flip
        )
      const bad = yield* run(["--peer", "n1"])
      assert.strictEqual(bad._tag, "UsageError")
      const empty = yield* run(["--peer", "n1,127.0.0.1:7001"])
      assert.strictEqual(empty._tag, "CantRecover")
    }))
})
