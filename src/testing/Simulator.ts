/**
 * Deterministic simulation of a whole cluster in one runtime.
 *
 * Time is virtual: a `Clock` whose `sleep` files a timer in a heap, and a
 * driver loop that runs every ready fiber (Effect's `ControlledScheduler`)
 * and then jumps straight to the next due timer. Everything random — election
 * timeouts, message delays and losses, the fault schedule, the client
 * workload — comes from one seeded `Random`, so a seed replays event for
 * event. Nodes run on the memory stores and the memory network.
 *
 * After every timer event the Raft safety properties are checked: at most one
 * leader per term, log matching, leader completeness, state-machine safety,
 * and commit/applied indexes that never go backwards. At the end the faults
 * heal, a leader must appear and a last write must commit within a stated
 * bound, and the client history of the key-value workload is checked for
 * linearizability.
 *
 * This module holds the public shapes and defaults; the machinery (virtual
 * clock, stores, invariants, nemesis, driver loop) is in
 * `src/internal/simulator/`.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Fsm from "../Fsm.js"
import type * as Log from "../Log.js"
import * as internal from "../internal/simulator/run.js"
import type * as RaftConfig from "../RaftConfig.js"
import type { FaultOptions, Options, Result, Workload } from "../internal/simulator/types.js"
import * as Linearizability from "./Linearizability.js"

export type {
  Deployment,
  FaultOptions,
  Options,
  Randomize,
  ReadCounts,
  Result,
  Violation,
  Workload
} from "../internal/simulator/types.js"

// ---------------------------------------------------------------------------
// Defaults

/** Faults of every kind, on a cluster that must survive them (defaults of `run`). */
export const defaultFaults: FaultOptions = {
  intervalMillis: [50, 400],
  weights: {
    partition: 3,
    isolateLeader: 3,
    oneWay: 1,
    cutLink: 1,
    crash: 3,
    restart: 4,
    reboot: 2,
    heal: 3,
    lossyLinks: 2,
    closeConnections: 1
  },
  lossy: { minDelayMillis: 0, maxDelayMillis: 20, dropRate: 0.2, duplicateRate: 0.1 },
  baseline: { minDelayMillis: 0, maxDelayMillis: 3, dropRate: 0, duplicateRate: 0 }
}

/**
 * Raft tunables that make nodes snapshot and compact every few dozen entries, keeping only a few behind: with
 * them (`config: frequentSnapshots`), crashes restart from snapshots and lagging followers need InstallSnapshot.
 */
export const frequentSnapshots: Omit<RaftConfig.Input, "localId"> = {
  snapshotThreshold: 24,
  snapshotInterval: "25 millis",
  trailingLogs: 8
}

// ---------------------------------------------------------------------------
// The key-value workload

/** A command of the key-value workload. */
export type KvInput = Linearizability.KvInput
/** What a key-value command answers. */
export type KvOutput = Linearizability.KvOutput

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** The map of each state machine `kvFsm` made, for the reads that look at it. */
const kvMaps = new WeakMap<Fsm.Fsm, ReadonlyMap<string, string>>()

/**
 * The command each `kvWorkload` encoding holds, by its bytes. The memory network and stores pass an entry's bytes by
 * reference, so every node's state machine applies the very array the client encoded: it takes the command from here
 * instead of decoding and parsing the JSON again (once per node). Other bytes (not encoded here) are parsed.
 */
const encoded = new WeakMap<Uint8Array, KvInput>()

/** A key-value map as an `Fsm`, over JSON-encoded commands, with snapshots of the whole map. */
export const kvFsm = (): Fsm.Fsm & { readonly data: Map<string, string> } => {
  const data = new Map<string, string>()
  const apply = (log: Log.Log): KvOutput => {
    const input = encoded.get(log.data) ?? JSON.parse(decoder.decode(log.data)) as KvInput
    switch (input.op) {
      case "put":
        data.set(input.key, input.value)
        return { ok: true }
      case "delete":
        data.delete(input.key)
        return { ok: true }
      case "get":
        return { value: data.get(input.key) }
      case "cas": {
        if (data.get(input.key) !== input.expected) return { ok: false }
        data.set(input.key, input.value)
        return { ok: true }
      }
    }
  }
  // A snapshot is the map as JSON pairs in key order, so equal states give equal bytes.
  const save = () => encoder.encode(JSON.stringify(Array.from(data).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
  const load = (bytes: Uint8Array) => {
    data.clear()
    for (const [key, value] of JSON.parse(decoder.decode(bytes)) as Array<[string, string]>) data.set(key, value)
  }
  // The same object `fromFunction` made (not a copy), so that its synchronous apply stays registered for the
  // simulator's `syncFsm` runs.
  const fsm = Object.assign(Fsm.fromFunction(apply, { save, load }), { data })
  kvMaps.set(fsm, data)
  return fsm
}

/** The key-value workload over `kv` keys: put, get, compare-and-set and delete, checked against `kvModel`. */
export const kvWorkload = (
  keys = 3
): Workload<Linearizability.KvState, KvInput, KvOutput> => ({
  fsm: kvFsm,
  model: Linearizability.kvModel,
  next: ({ client, history, step }) =>
    Effect.gen(function*() {
      const key = `k${yield* Random.nextIntBetween(0, Math.max(1, keys))}`
      const roll = yield* Random.nextIntBetween(0, 10)
      const value = `c${client}-${step}`
      if (roll < 4) return { op: "put", key, value } as const
      if (roll < 7) return { op: "get", key } as const
      if (roll < 9) {
        // Expect the last value written to the key, so that some compare-and-sets succeed.
        let expected: string | undefined
        for (let i = history.length - 1; i >= 0; i--) {
          const input = history[i]!.input
          if (input.key === key && input.op !== "get") {
            expected = input.op === "delete" ? undefined : input.value
            break
          }
        }
        return { op: "cas", key, expected, value } as const
      }
      return { op: "delete", key } as const
    }),
  encode: (input) => {
    const bytes = encoder.encode(JSON.stringify(input))
    encoded.set(bytes, input)
    return bytes
  },
  output: (response) => response as KvOutput,
  query: (input) => input.op === "get" ? (fsm) => ({ value: kvMaps.get(fsm)?.get(input.key) }) : undefined
})

// ---------------------------------------------------------------------------
// The run

/** Runs one seed to the end (or to its first violation), synchronously, in virtual time. */
export const run = <State = Linearizability.KvState, Input = KvInput, Output = KvOutput>(
  options: Options<State, Input, Output>
): Result => {
  const workload = (options.workload ?? kvWorkload(options.keys ?? 3)) as unknown as Workload<State, Input, Output>
  return internal.run(options, workload, defaultFaults)
}
