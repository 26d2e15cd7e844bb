/** The snapshot store conformance suite, run against the memory store and the file store. */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as SnapshotStore from "../../src/SnapshotStore.js"
import * as FileSnapshotStore from "../../src/storage/FileSnapshotStore.js"
import * as SnapshotStoreConformance from "../../src/testing/SnapshotStoreConformance.js"

const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer)

describe("SnapshotStore conformance: makeMemory", () => {
  for (const check of SnapshotStoreConformance.snapshotStore(({ retain }) => Effect.sync(() => SnapshotStore.makeMemory(retain)))) {
    it.effect(check.name, () => check.run)
  }
})

describe("SnapshotStore conformance: FileSnapshotStore.make", () => {
  const make = ({ retain }: { readonly retain: number }) =>
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const directory = yield* fs.makeTempDirectoryScoped({ prefix: "effect-raft-snapshots-" })
      return yield* FileSnapshotStore.make(directory, { retain })
    })
  for (const check of SnapshotStoreConformance.snapshotStore(make)) {
    it.live(check.name, () => Effect.provide(check.run, platform))
  }
})
