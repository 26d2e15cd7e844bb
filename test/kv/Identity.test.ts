import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Configuration from "../../src/Configuration.js"
import * as StableStore from "../../src/StableStore.js"
import * as Identity from "../../src/kv/Identity.js"
import { tempDir } from "../storage/temp.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)

const facts = (overrides: Partial<Identity.Facts>): Identity.Facts => ({
  id: "n1",
  dataDir: "/data/n1",
  marker: Option.none(),
  stored: { nodeId: undefined, clusterId: undefined },
  hasState: false,
  bootstrap: false,
  bootstrapClusterId: "c-boot",
  join: false,
  rejoin: false,
  ...overrides
})
const marker = (nodeId = "n1", clusterId: string | undefined = "c1"): Option.Option<Identity.Marker> =>
  Option.some({ format: 1, nodeId, ...(clusterId === undefined ? {} : { clusterId }) })
const intact = { stored: { nodeId: "n1", clusterId: "c1" }, hasState: true, marker: marker() } as const

const refusal = (plan: Identity.Plan): string => {
  assert.strictEqual(plan._tag, "Refuse", JSON.stringify(plan))
  return plan._tag === "Refuse" ? plan.reason : ""
}

describe("Identity.decide", () => {
  it("a new data directory bootstraps with --bootstrap, joins with --join, and refuses with neither", () => {
    assert.deepStrictEqual(Identity.decide(facts({ bootstrap: true })), { _tag: "Bootstrap" })
    assert.deepStrictEqual(Identity.decide(facts({ join: true })), { _tag: "Join" })
    assert.match(refusal(Identity.decide(facts({}))), /^node n1 has no state in \/data\/n1 and was told neither --bootstrap/)
  })

  it("an initialised data directory resumes on intact stores and never bootstraps again, whatever its flags", () => {
    for (const flags of [{}, { bootstrap: true }, { join: true }]) {
      assert.deepStrictEqual(Identity.decide(facts({ ...intact, ...flags })), {
        _tag: "Resume",
        clusterId: "c1",
        storeIdentity: false,
        writeMarker: false,
        rejoinIndex: undefined
      })
    }
  })

  it("an initialised data directory whose store is empty refuses to start and names kv node --rejoin, even with --bootstrap", () => {
    for (const flags of [{}, { bootstrap: true }, { join: true }]) {
      const reason = refusal(Identity.decide(facts({ marker: marker(), ...flags })))
      assert.match(
        reason,
        /^data directory \/data\/n1 was initialised as node n1 of cluster c1 \(IDENTITY\.json\) but its Raft store is empty: .*run kv node --rejoin --join/
      )
      assert.notInclude(reason, "\n")
    }
    // Snapshots survived but the store with the term and the vote did not: still lost.
    assert.match(refusal(Identity.decide(facts({ marker: marker(), hasState: true }))), /has lost its identity, term and vote/)
  })

  it("a store or a marker of another node or cluster refuses to start, saying which", () => {
    assert.match(refusal(Identity.decide(facts({ ...intact, marker: marker("n2") }))), /belongs to node n2 \(IDENTITY\.json\), not n1/)
    assert.match(
      refusal(Identity.decide(facts({ ...intact, stored: { nodeId: "n3", clusterId: "c1" } }))),
      /the Raft store in \/data\/n1 belongs to node n3, not n1/
    )
    assert.match(
      refusal(Identity.decide(facts({ ...intact, stored: { nodeId: "n1", clusterId: "c9" } }))),
      /belongs to cluster c9, but IDENTITY\.json records cluster c1/
    )
    assert.match(
      refusal(Identity.decide(facts({ dataDir: undefined, stored: { nodeId: "n2", clusterId: undefined }, hasState: true }))),
      /the Raft store in its stores belongs to node n2, not n1/
    )
  })

  it("--rejoin starts from empty stores of this node only", () => {
    assert.deepStrictEqual(Identity.decide(facts({ rejoin: true, marker: marker() })), { _tag: "Rejoin" })
    assert.deepStrictEqual(Identity.decide(facts({ rejoin: true })), { _tag: "Rejoin" })
    assert.match(refusal(Identity.decide(facts({ ...intact, rejoin: true }))), /--rejoin starts from empty stores/)
    assert.match(refusal(Identity.decide(facts({ rejoin: true, marker: marker("n2") }))), /belongs to node n2/)
  })

  it("a store with state but no marker (from before markers) is adopted; a node still rejoining keeps its index", () => {
    assert.deepStrictEqual(Identity.decide(facts({ hasState: true, bootstrap: true })), {
      _tag: "Resume",
      clusterId: "c-boot",
      storeIdentity: true,
      writeMarker: true,
      rejoinIndex: undefined
    })
    const rejoining = Option.some({ format: 1 as const, nodeId: "n1", clusterId: "c1", rejoinIndex: 42 })
    const plan = Identity.decide(facts({ ...intact, hasState: false, marker: rejoining }))
    assert.strictEqual(plan._tag === "Resume" ? plan.rejoinIndex : undefined, 42)
  })

  it("the derived cluster id is the same for the same initial members in any order", () => {
    const a = Configuration.voters([["n1", "127.0.0.1:1"], ["n2", "127.0.0.1:2"]])
    const b = Configuration.voters([["n2", "127.0.0.1:2"], ["n1", "127.0.0.1:1"]])
    const c = Configuration.voters([["n1", "127.0.0.1:1"], ["n2", "127.0.0.1:3"]])
    assert.strictEqual(Identity.derivedClusterId(a), Identity.derivedClusterId(b))
    assert.notStrictEqual(Identity.derivedClusterId(a), Identity.derivedClusterId(c))
  })
})

describe("Identity files and stores", () => {
  it.scoped("the marker round-trips; a damaged marker refuses the start", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      assert.isTrue(Option.isNone(yield* Identity.readMarker(dir)))
      yield* Identity.writeMarker(dir, { format: 1, nodeId: "n1", clusterId: "c1" })
      assert.deepStrictEqual(yield* Identity.readMarker(dir), Option.some({ format: 1 as const, nodeId: "n1", clusterId: "c1" }))
      assert.deepStrictEqual(fs.readdirSync(dir), [Identity.MARKER_FILE])
      fs.writeFileSync(path.join(dir, Identity.MARKER_FILE), "{\"format\":1,\"node")
      const error = yield* Effect.flip(Identity.readMarker(dir))
      assert.match(error.message, /IDENTITY\.json is damaged/)
    }).pipe(Effect.provide(platform)))

  it.scoped("moveStoresAside moves raft/ and snapshots/ into lost-<n>/ and deletes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      assert.isUndefined(yield* Identity.moveStoresAside(dir))
      for (const round of [1, 2]) {
        fs.mkdirSync(path.join(dir, "raft"))
        fs.writeFileSync(path.join(dir, "raft", "data.mdb"), `round ${round}`)
        fs.mkdirSync(path.join(dir, "snapshots"))
        assert.strictEqual(yield* Identity.moveStoresAside(dir), path.join(dir, `lost-${round}`))
      }
      assert.deepStrictEqual(fs.readdirSync(dir).sort(), ["lost-1", "lost-2"])
      assert.strictEqual(fs.readFileSync(path.join(dir, "lost-2", "raft", "data.mdb"), "utf8"), "round 2")
    }).pipe(Effect.provide(platform)))

  it.effect("the identity is stored under NodeId and ClusterId", () =>
    Effect.gen(function*() {
      const stable = StableStore.makeMemory()
      assert.deepStrictEqual(yield* Identity.stored(stable), { nodeId: undefined, clusterId: undefined })
      yield* Identity.store(stable, { nodeId: "n1", clusterId: "c1" })
      assert.deepStrictEqual(yield* Identity.stored(stable), { nodeId: "n1", clusterId: "c1" })
      assert.isTrue(Option.isSome(yield* stable.get(Identity.KEY_NODE_ID)))
    }))
})
