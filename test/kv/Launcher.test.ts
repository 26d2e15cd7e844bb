import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as Launcher from "../../src/kv/Launcher.js"
import { tempDir } from "../storage/temp.js"

const plan = (id: string) => ({ id, raft: `127.0.0.1:700${id.slice(1)}`, http: `127.0.0.1:800${id.slice(1)}`, dir: `data/${id}` })

describe("kv cluster (the launcher)", () => {
  it.scoped("bootstraps (one new cluster id for all) only when no node's data directory was initialised", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const dirs = ["n1", "n2", "n3"].map((id) => path.join(root, id))
      const fresh = yield* Launcher.bootstrapOf(dirs)
      assert.match(fresh?.clusterId ?? "", /^[0-9a-f-]{36}$/)
      assert.notStrictEqual((yield* Launcher.bootstrapOf(dirs))?.clusterId, fresh?.clusterId)
      // n2's data directory was initialised; n1's and n3's are gone: nobody bootstraps.
      fs.mkdirSync(dirs[1]!, { recursive: true })
      fs.writeFileSync(path.join(dirs[1]!, "IDENTITY.json"), "{}")
      assert.isUndefined(yield* Launcher.bootstrapOf(dirs))
    }).pipe(Effect.provide(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer))))

  it("passes --bootstrap and --cluster-id only for a new cluster", () => {
    const all = [plan("n1"), plan("n2")]
    const first = Launcher.nodeArguments(all[0]!, all, { tls: "plaintext", bootstrap: { clusterId: "c1" } })
    assert.includeMembers([...first], ["--bootstrap", "--cluster-id", "c1"])
    assert.deepStrictEqual(first.slice(first.indexOf("--peer")), ["--peer", "n2,127.0.0.1:7002,127.0.0.1:8002"])
    const later = Launcher.nodeArguments(all[0]!, all, { tls: "plaintext" })
    assert.notInclude([...later], "--bootstrap")
    assert.notInclude([...later], "--cluster-id")
  })

  it("starts each node's Node with the memory flags (a 2 × 4 MiB young generation, old generation growth bounded) before the entry", () => {
    const all = [plan("n1"), plan("n2")]
    const command = Launcher.nodeCommand("main.js", ["--import", "tsx"], all[0]!, all, {
      tls: "plaintext",
      fast: false,
      bootstrap: undefined
    })
    assert.strictEqual(command._tag, "StandardCommand")
    if (command._tag !== "StandardCommand") return
    assert.strictEqual(command.command, process.execPath)
    assert.deepStrictEqual(command.args.slice(0, 5), [
      "--max-semi-space-size=4",
      "--heap-growing-percent=50",
      "--import",
      "tsx",
      "main.js"
    ])
    assert.deepStrictEqual(command.args.slice(5), [...Launcher.nodeArguments(all[0]!, all, { tls: "plaintext", fast: false })])
  })

  it.scoped("runs nodes from the bundle beside a compiled launcher when the build wrote one, else from main.js", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const launcher = pathToFileURL(path.join(dir, "Launcher.js")).href
      assert.deepStrictEqual(yield* Launcher.nodeEntry(launcher), { entry: path.join(dir, "main.js"), loader: [] })
      fs.writeFileSync(path.join(dir, Launcher.BUNDLE_FILE), "")
      assert.deepStrictEqual(yield* Launcher.nodeEntry(launcher), { entry: path.join(dir, "kv.mjs"), loader: [] })
      // From one of the bundle's own chunks, beside it.
      const chunk = pathToFileURL(path.join(dir, "kv-chunk-ABC.mjs")).href
      assert.deepStrictEqual(yield* Launcher.nodeEntry(chunk), { entry: path.join(dir, "kv.mjs"), loader: [] })
    }).pipe(Effect.provide(Layer.mergeAll(NodeFileSystem.layer, NodePath.layer))))
})
