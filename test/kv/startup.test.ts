/**
 * `kv node` on data it must not start on, as real processes: each exits with
 * code 1 and one line on stderr, `kv: <what is wrong>`, and no stack trace,
 * instead of half-serving (a node that started from an older snapshot it
 * could not bridge to its log used to shut its Raft down and keep answering
 * on its HTTP port; a damaged LMDB file used to end it with SIGSEGV).
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as KvNode from "../../src/kv/KvNode.js"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as FileSnapshotStore from "../../src/storage/FileSnapshotStore.js"
import { bundleKv } from "../fixtures/bundle.js"
import { freePort } from "./cluster.js"

let kv = ""
beforeAll(async () => {
  kv = await bundleKv()
})

/** A single-node data directory, bootstrapped by the node itself (in this process), holding one snapshot. */
const initialised = async (dir: string, store?: KvNode.StoreKind) => {
  const options: KvNode.Options = {
    id: "n1",
    raftAddress: `127.0.0.1:${await freePort()}`,
    httpAddress: `127.0.0.1:${await freePort()}`,
    dataDir: dir,
    bootstrap: true,
    clusterId: "test-cluster"
  }
  await Effect.runPromise(Effect.scoped(
    Layer.build(KvNode.layer(options, KvNode.durable({ dataDir: dir, raftAddress: options.raftAddress, tls: "plaintext", store })))
  ))
  // A snapshot, as the node's own store writes it.
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const store = yield* SnapshotStore.SnapshotStore
    yield* Stream.run(
      Stream.make(new TextEncoder().encode("snapshot data")),
      store.create({ index: 1, term: 1, configuration: { servers: [] }, configurationIndex: 1 })
    )
  })).pipe(Effect.provide(FileSnapshotStore.layer(join(dir, "snapshots")))))
}

/** Runs `kv node` as `id` on `dir` until it exits (60 s at most). */
const runNode = async (id: string, dir: string) => {
  const args = [
    kv,
    "node",
    "--id",
    id,
    "--raft-addr",
    `127.0.0.1:${await freePort()}`,
    "--http-addr",
    `127.0.0.1:${await freePort()}`,
    "--data-dir",
    dir,
    "--bootstrap",
    "--insecure-transport"
  ]
  return new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    const deadline = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.on("exit", (code, signal) => {
      clearTimeout(deadline)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

describe("kv node refuses to start on bad data, with one line", () => {
  it("a corrupt meta.json, a damaged data.mdb or WAL segment and another node's data directory each exit 1 with one line", async () => {
    const root = fs.mkdtempSync(join(tmpdir(), "kv-startup-"))
    try {
      const original = join(root, "original")
      await initialised(original)
      const copy = (name: string) => {
        const dir = join(root, name)
        fs.cpSync(original, dir, { recursive: true })
        return dir
      }
      const snapshotDir = join(original, "snapshots", fs.readdirSync(join(original, "snapshots"))[0]!)
      const metaCorrupt = copy("meta")
      const metaFile = join(metaCorrupt, "snapshots", fs.readdirSync(join(metaCorrupt, "snapshots"))[0]!, "meta.json")
      fs.writeFileSync(metaFile, fs.readFileSync(metaFile, "utf8").replace(`"index":1`, `"index":7`))
      // A node made before the WAL became the default keeps LMDB; its damaged file is found before LMDB maps it.
      const lmdbDamaged = join(root, "lmdb")
      await initialised(lmdbDamaged, "lmdb")
      const zero = (file: string, bytes: number) => {
        const fd = fs.openSync(file, "r+")
        fs.writeSync(fd, new Uint8Array(bytes), 0, bytes, 0)
        fs.closeSync(fd)
      }
      zero(join(lmdbDamaged, "raft", "data.mdb"), 8192)
      const walDamaged = copy("wal")
      const segment = fs.readdirSync(join(walDamaged, "raft")).find((name) => name.endsWith(".wal"))!
      zero(join(walDamaged, "raft", segment), 16)
      const otherNode = copy("other")

      const [meta, lmdb, wal, other] = await Promise.all([
        runNode("n1", metaCorrupt),
        runNode("n1", lmdbDamaged),
        runNode("n1", walDamaged),
        runNode("n2", otherNode)
      ])
      const expectations = [
        [meta, new RegExp(`^kv: storage open snapshot store failed: .*/meta/snapshots/${snapshotDir.split("/").at(-1)}: metadata checksum mismatch`)],
        [lmdb, /^kv: storage open failed: .*\/lmdb\/raft\/data\.mdb: meta page 0 is all zeros$/],
        [wal, new RegExp(`^kv: storage open failed: .*/wal/raft/${segment} is corrupt at offset 0: `)],
        [other, /^kv: data directory .*\/other belongs to node n1 \(IDENTITY\.json\), not n2/]
      ] as const
      for (const [outcome, pattern] of expectations) {
        const context = `stdout: ${outcome.stdout}\nstderr: ${outcome.stderr}`
        assert.isNull(outcome.signal, context)
        assert.strictEqual(outcome.code, 1, context)
        const lines = outcome.stderr.split("\n").filter((line) => line.length > 0)
        assert.lengthOf(lines, 1, context)
        assert.match(lines[0]!, pattern)
        assert.notMatch(outcome.stdout + outcome.stderr, /^\s+at /m, context)
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }, 120_000)
})
