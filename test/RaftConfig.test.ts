import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Fsm from "../src/Fsm.js"
import * as LogStore from "../src/LogStore.js"
import * as Raft from "../src/Raft.js"
import * as RaftConfig from "../src/RaftConfig.js"
import { RaftConfigError } from "../src/RaftError.js"
import * as SnapshotStore from "../src/SnapshotStore.js"
import * as StableStore from "../src/StableStore.js"
import * as MemoryNetwork from "../src/transport/MemoryNetwork.js"
import { Transport } from "../src/Transport.js"

/** The field a failing `make` names, or a test failure when it succeeds. */
const failingField = (input: RaftConfig.Input) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(RaftConfig.make(input))
    assert.instanceOf(error, RaftConfigError)
    return error.field
  })

describe("RaftConfig", () => {
  it("defaults equal hashicorp's DefaultConfig(), with entries of at most 1 MiB in AppendEntries of at most 4 MiB, and reads by ReadIndex", () => {
    assert.deepStrictEqual(RaftConfig.defaults, {
      clusterId: undefined,
      heartbeatTimeoutMillis: 1000,
      electionTimeoutMillis: 1000,
      commitTimeoutMillis: 50,
      maxAppendEntries: 64,
      maxEntryBytes: 1024 * 1024,
      maxAppendEntriesBytes: 4 * 1024 * 1024,
      leaderLeaseTimeoutMillis: 500,
      shutdownOnRemove: true,
      trailingLogs: 10240,
      snapshotIntervalMillis: 120_000,
      snapshotThreshold: 8192,
      preVote: true,
      readMode: "readIndex",
      maxClockDriftMillis: undefined,
      traceSampleRate: 1
    })
  })

  it.effect("make with only localId resolves to the defaults", () =>
    Effect.gen(function*() {
      const config = yield* RaftConfig.make({ localId: "a" })
      assert.deepStrictEqual(config, { localId: "a", ...RaftConfig.defaults })
    }))

  it.effect("Duration inputs resolve to milliseconds: strings, Durations and numbers (as ms)", () =>
    Effect.gen(function*() {
      const config = yield* RaftConfig.make({
        localId: "a",
        heartbeatTimeout: "2 seconds",
        electionTimeout: 3000,
        commitTimeout: "20 millis",
        leaderLeaseTimeout: 750,
        snapshotInterval: "1 minute"
      })
      assert.strictEqual(config.heartbeatTimeoutMillis, 2000)
      assert.strictEqual(config.electionTimeoutMillis, 3000)
      assert.strictEqual(config.commitTimeoutMillis, 20)
      assert.strictEqual(config.leaderLeaseTimeoutMillis, 750)
      assert.strictEqual(config.snapshotIntervalMillis, 60_000)
    }))

  it.effect("the smallest allowed values pass validation", () =>
    Effect.gen(function*() {
      const config = yield* RaftConfig.make({
        localId: "a",
        heartbeatTimeout: 5,
        electionTimeout: 5,
        commitTimeout: 1,
        leaderLeaseTimeout: 5,
        snapshotInterval: 5,
        maxAppendEntries: 1
      })
      assert.strictEqual(config.heartbeatTimeoutMillis, 5)
      const largest = yield* RaftConfig.make({ localId: "a", maxAppendEntries: 1024 })
      assert.strictEqual(largest.maxAppendEntries, 1024)
    }))

  describe("each validation rule fails with a RaftConfigError naming the field", () => {
    const cases: ReadonlyArray<{ readonly rule: string; readonly field: string; readonly input: RaftConfig.Input }> = [
      { rule: "empty localId", field: "localId", input: { localId: "" } },
      { rule: "heartbeatTimeout < 5ms", field: "heartbeatTimeout", input: { localId: "a", heartbeatTimeout: 4 } },
      { rule: "electionTimeout < 5ms", field: "electionTimeout", input: { localId: "a", electionTimeout: 4 } },
      { rule: "commitTimeout < 1ms", field: "commitTimeout", input: { localId: "a", commitTimeout: 0.5 } },
      { rule: "leaderLeaseTimeout < 5ms", field: "leaderLeaseTimeout", input: { localId: "a", leaderLeaseTimeout: 4 } },
      { rule: "snapshotInterval < 5ms", field: "snapshotInterval", input: { localId: "a", snapshotInterval: 4 } },
      { rule: "maxAppendEntries 0", field: "maxAppendEntries", input: { localId: "a", maxAppendEntries: 0 } },
      { rule: "maxAppendEntries 1025", field: "maxAppendEntries", input: { localId: "a", maxAppendEntries: 1025 } },
      { rule: "maxAppendEntries 1.5", field: "maxAppendEntries", input: { localId: "a", maxAppendEntries: 1.5 } },
      { rule: "maxEntryBytes 0", field: "maxEntryBytes", input: { localId: "a", maxEntryBytes: 0 } },
      { rule: "maxEntryBytes 1.5", field: "maxEntryBytes", input: { localId: "a", maxEntryBytes: 1.5 } },
      {
        rule: "maxAppendEntriesBytes < maxEntryBytes",
        field: "maxAppendEntriesBytes",
        input: { localId: "a", maxEntryBytes: 2048, maxAppendEntriesBytes: 2047 }
      },
      {
        rule: "leaderLeaseTimeout > heartbeatTimeout",
        field: "leaderLeaseTimeout",
        input: { localId: "a", heartbeatTimeout: "1 second", electionTimeout: "2 seconds", leaderLeaseTimeout: 1001 }
      },
      {
        // The lease lasts leaderLeaseTimeout less the drift: a drift as long leaves no lease (0.5 allowed it).
        rule: "maxClockDrift ≥ leaderLeaseTimeout",
        field: "maxClockDrift",
        input: { localId: "a", leaderLeaseTimeout: "500 millis", maxClockDrift: "500 millis" }
      },
      {
        rule: "electionTimeout < heartbeatTimeout",
        field: "electionTimeout",
        input: { localId: "a", heartbeatTimeout: "2 seconds", electionTimeout: "1999 millis" }
      }
    ]
    it.effect.each(cases)("$rule → field $field", ({ field, input }) =>
      Effect.gen(function*() {
        assert.strictEqual(yield* failingField(input), field)
      }))
  })

  it.effect("Raft.layer with a bad config fails building with RaftConfigError", () =>
    Effect.gen(function*() {
      const network = MemoryNetwork.make()
      const layer = Raft.layer({ localId: "node1", maxAppendEntries: 0 }).pipe(
        Layer.provide([
          Fsm.layer(Fsm.fromFunction(() => undefined)),
          LogStore.layerMemory,
          StableStore.layerMemory,
          SnapshotStore.layerMemory,
          MemoryNetwork.layerTransport("node1").pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network)))
        ])
      )
      const exit = yield* Effect.exit(Effect.scoped(Layer.build(layer)))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      assert.instanceOf(error, RaftConfigError)
      assert.strictEqual(error.field, "maxAppendEntries")
    }))

  it.effect("checkFrameLimit refuses a configuration whose largest AppendEntries would not fit the transport's frames", () =>
    Effect.gen(function*() {
      const config = yield* RaftConfig.make({ localId: "a" })
      const bound = RaftConfig.appendEntriesFrameBound(config)
      assert.isBelow(bound, 8 * 1024 * 1024, "the defaults do not fit the TCP transport's default frames")
      yield* RaftConfig.checkFrameLimit(config, bound)
      yield* RaftConfig.checkFrameLimit(config, undefined)
      const error = yield* Effect.flip(RaftConfig.checkFrameLimit(config, bound - 1))
      assert.strictEqual(error.field, "maxAppendEntriesBytes")
    }))

  it.effect("Raft.layer over a transport with frames too small for the configuration fails with RaftConfigError", () =>
    Effect.gen(function*() {
      const network = MemoryNetwork.make()
      const transport = Layer.map(
        MemoryNetwork.layerTransport("node1").pipe(Layer.provide(Layer.succeed(MemoryNetwork.MemoryNetwork, network))),
        (context) => Context.add(context, Transport, { ...Context.get(context, Transport), maxFrameBytes: 1024 * 1024 })
      )
      const layer = Raft.layer({ localId: "node1" }).pipe(
        Layer.provide([
          Fsm.layer(Fsm.fromFunction(() => undefined)),
          LogStore.layerMemory,
          StableStore.layerMemory,
          SnapshotStore.layerMemory,
          transport
        ])
      )
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
      assert.instanceOf(error, RaftConfigError)
      assert.strictEqual(error.field, "maxAppendEntriesBytes")
    }))
})
