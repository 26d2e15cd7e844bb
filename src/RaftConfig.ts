/**
 * The node's tunables. `defaults` holds hashicorp/raft's `DefaultConfig()`
 * values; `make` fills a partial input from them and validates the result with
 * hashicorp's rules (every violation is a `RaftConfigError` naming the field).
 * Durations are accepted as any `Duration.DurationInput` and held as
 * milliseconds, which is what the machine's timers use.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { RaftConfigError } from "./RaftError.js"

/** A resolved, validated configuration. */
export interface RaftConfig {
  /** This server's unique id in the cluster. */
  readonly localId: string
  /**
   * The cluster's id, sent with every request: a node refuses requests of another cluster, and one whose stores
   * record another id refuses to start. None by default; a node without one takes its leader's (see
   * `Raft.bootstrapCluster`'s `clusterId`).
   */
  readonly clusterId: string | undefined
  /** A follower with no contact from a leader for this long starts an election (randomised in [t, 2t)). Default 1 s. */
  readonly heartbeatTimeoutMillis: number
  /** A candidate with no winner for this long starts a new election (randomised in [t, 2t)). Default 1 s. */
  readonly electionTimeoutMillis: number
  /** Longest time replication waits before pushing the commit index to followers when no writes flow. Default 50 ms. */
  readonly commitTimeoutMillis: number
  /** Most entries in one AppendEntries and in one leader `storeLogs` batch. Default 64. */
  readonly maxAppendEntries: number
  /**
   * Largest command `apply` accepts, in bytes; a larger one fails with `EntryTooLarge` before anything is appended.
   * Default 1 MiB. At most `maxAppendEntriesBytes`, so any entry fits in one AppendEntries.
   */
  readonly maxEntryBytes: number
  /**
   * Most bytes of entry data in one AppendEntries: the leader ends a batch before the entry that would cross it (a
   * batch holds at least one entry). Default 4 MiB. With the transport's frame limit in view (`Transport.maxFrameBytes`,
   * the TCP transport's 8 MiB by default), `appendEntriesFrameBound` of the configuration must fit in a frame.
   */
  readonly maxAppendEntriesBytes: number
  /**
   * A leader that has not heard from a quorum of voters for this long steps down. Default 500 ms. Also how long a
   * lease read's lease lasts, and how long a follower told that its leader's connection closed waits for word from
   * it before campaigning (instead of a heartbeat timeout). The same on every voter.
   */
  readonly leaderLeaseTimeoutMillis: number
  /** Whether a leader removed from the configuration shuts down. Default true. */
  readonly shutdownOnRemove: boolean
  /** Entries kept in the log behind a snapshot, for slow followers. Default 10240. */
  readonly trailingLogs: number
  /** How often the snapshot condition is checked. Default 120 s. */
  readonly snapshotIntervalMillis: number
  /** Entries since the last snapshot that trigger a new one. Default 8192. */
  readonly snapshotThreshold: number
  /**
   * PreVote (Raft thesis §9.6, on by default as in hashicorp/raft 1.7): before campaigning, a node asks whether a
   * quorum would vote for it, without raising its term; a node cut off from the cluster so never disrupts it.
   */
  readonly preVote: boolean
  /**
   * The fraction of applies traced, in [0, 1], when a tracer is installed (docs/observability.md): each traced apply
   * costs a few spans on each node. Default 1; 0 turns tracing off. Without a tracer nothing is traced.
   */
  readonly traceSampleRate: number
  /**
   * How `readIndex` confirms a read when the caller does not say: `"readIndex"` (default) by a heartbeat round that
   * concurrent reads share, `"lease"` without one while the leader's lease holds (see `maxClockDriftMillis`).
   */
  readonly readMode: ReadMode
  /**
   * Lease reads only: how much shorter than the leader measures it a `leaderLeaseTimeout` may last on another
   * voter's clock (clock rates differ; a clock stepped backwards is not covered). The lease ends this long before
   * the followers may stop refusing other candidates. Below `leaderLeaseTimeoutMillis`; undefined: a tenth of it.
   * An assumption about the machines, not something the node can check.
   */
  readonly maxClockDriftMillis: number | undefined
}

/** How `readIndex` confirms that a read may be served (`RaftConfig.readMode`). */
export type ReadMode = "readIndex" | "lease"

/** What a user passes: `localId` and any tunables to override. */
export interface Input {
  readonly localId: string
  readonly clusterId?: string | undefined
  readonly heartbeatTimeout?: Duration.DurationInput | undefined
  readonly electionTimeout?: Duration.DurationInput | undefined
  readonly commitTimeout?: Duration.DurationInput | undefined
  readonly maxAppendEntries?: number | undefined
  readonly maxEntryBytes?: number | undefined
  readonly maxAppendEntriesBytes?: number | undefined
  readonly leaderLeaseTimeout?: Duration.DurationInput | undefined
  readonly shutdownOnRemove?: boolean | undefined
  readonly trailingLogs?: number | undefined
  readonly snapshotInterval?: Duration.DurationInput | undefined
  readonly snapshotThreshold?: number | undefined
  readonly preVote?: boolean | undefined
  readonly traceSampleRate?: number | undefined
  readonly readMode?: ReadMode | undefined
  readonly maxClockDrift?: Duration.DurationInput | undefined
}

/**
 * What `raft.reloadConfig` may change on a running node (hashicorp's ReloadableConfig, plus the commit timeout, the
 * lease settings and the read mode): timers, snapshot settings and how reads are confirmed.
 */
export type Reloadable = Pick<
  Input,
  | "heartbeatTimeout"
  | "electionTimeout"
  | "commitTimeout"
  | "leaderLeaseTimeout"
  | "snapshotInterval"
  | "snapshotThreshold"
  | "trailingLogs"
  | "readMode"
  | "maxClockDrift"
>

/** hashicorp/raft's `DefaultConfig()` values (everything but `localId`), and the byte limits of entries. */
export const defaults: Omit<RaftConfig, "localId"> = {
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
}

/** The tag under which a node's resolved configuration is provided. */
export class RaftConfigTag extends Context.Tag("effect-raft/RaftConfig")<RaftConfigTag, RaftConfig>() {}

const millis = (input: Duration.DurationInput | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.decode(input))

const fail = (field: string, reason: string) => Effect.fail(new RaftConfigError({ field, reason }))

/** Checks hashicorp's `ValidateConfig` rules, plus sanity of the counts. */
export const validate = (config: RaftConfig): Effect.Effect<RaftConfig, RaftConfigError> => {
  if (config.localId.length === 0) return fail("localId", "must not be empty")
  if (config.clusterId !== undefined && config.clusterId.length === 0) return fail("clusterId", "must not be empty")
  for (
    const [field, value, min] of [
      ["heartbeatTimeout", config.heartbeatTimeoutMillis, 5],
      ["electionTimeout", config.electionTimeoutMillis, 5],
      ["commitTimeout", config.commitTimeoutMillis, 1],
      ["leaderLeaseTimeout", config.leaderLeaseTimeoutMillis, 5],
      ["snapshotInterval", config.snapshotIntervalMillis, 5]
    ] as const
  ) {
    if (!Number.isFinite(value) || value < min) return fail(field, `must be at least ${min} ms (got ${value})`)
  }
  if (!Number.isInteger(config.maxAppendEntries) || config.maxAppendEntries < 1 || config.maxAppendEntries > 1024) {
    return fail("maxAppendEntries", `must be an integer in [1, 1024] (got ${config.maxAppendEntries})`)
  }
  if (!Number.isSafeInteger(config.maxEntryBytes) || config.maxEntryBytes < 1) {
    return fail("maxEntryBytes", `must be a positive integer (got ${config.maxEntryBytes})`)
  }
  if (!Number.isSafeInteger(config.maxAppendEntriesBytes) || config.maxAppendEntriesBytes < config.maxEntryBytes) {
    return fail(
      "maxAppendEntriesBytes",
      `must be an integer of at least maxEntryBytes, ${config.maxEntryBytes} (got ${config.maxAppendEntriesBytes})`
    )
  }
  if (!Number.isInteger(config.trailingLogs) || config.trailingLogs < 0) {
    return fail("trailingLogs", `must be a non-negative integer (got ${config.trailingLogs})`)
  }
  if (!Number.isInteger(config.snapshotThreshold) || config.snapshotThreshold < 1) {
    return fail("snapshotThreshold", `must be a positive integer (got ${config.snapshotThreshold})`)
  }
  if (!(config.traceSampleRate >= 0 && config.traceSampleRate <= 1)) {
    return fail("traceSampleRate", `must be in [0, 1] (got ${config.traceSampleRate})`)
  }
  if (config.leaderLeaseTimeoutMillis > config.heartbeatTimeoutMillis) {
    return fail("leaderLeaseTimeout", "must not exceed heartbeatTimeout")
  }
  if (config.electionTimeoutMillis < config.heartbeatTimeoutMillis) {
    return fail("electionTimeout", "must be at least heartbeatTimeout")
  }
  if (config.readMode !== "readIndex" && config.readMode !== "lease") {
    return fail("readMode", `must be "readIndex" or "lease" (got ${String(config.readMode)})`)
  }
  const drift = config.maxClockDriftMillis
  if (drift !== undefined && (!Number.isFinite(drift) || drift < 0 || drift >= config.leaderLeaseTimeoutMillis)) {
    return fail("maxClockDrift", `must be at least 0 and below leaderLeaseTimeout (got ${drift})`)
  }
  return Effect.succeed(config)
}

/**
 * Bytes a frame must allow for the largest AppendEntries `config` lets a leader send: its entry data
 * (`maxAppendEntriesBytes`), `entryOverheadBytes` per entry (index, term, type, length) and `envelopeBytes` for the
 * rest (terms, indexes, the leader's id and address).
 */
export const appendEntriesFrameBound = (config: Pick<RaftConfig, "maxAppendEntries" | "maxAppendEntriesBytes">): number =>
  config.maxAppendEntriesBytes + config.maxAppendEntries * entryOverheadBytes + envelopeBytes

/** Upper bound of what one entry costs on a wire beside its data (the TCP codec needs at most 25 bytes). */
export const entryOverheadBytes: number = 64

/** Upper bound of an AppendEntries beside its entries (ids and addresses of up to 16 KiB each). */
export const envelopeBytes: number = 64 * 1024

/** Fails with `RaftConfigError` when the largest AppendEntries `config` allows would not fit in a frame of `maxFrameBytes`. */
export const checkFrameLimit = (config: RaftConfig, maxFrameBytes: number | undefined): Effect.Effect<void, RaftConfigError> => {
  if (maxFrameBytes === undefined) return Effect.void
  const needed = appendEntriesFrameBound(config)
  return needed <= maxFrameBytes ? Effect.void : fail(
    "maxAppendEntriesBytes",
    `with maxAppendEntries ${config.maxAppendEntries} needs frames of ${needed} bytes; the transport's limit is ${maxFrameBytes}`
  )
}

/** `base` with the settings `input` gives replaced (durations converted to milliseconds). */
const overlay = (base: RaftConfig, input: Omit<Input, "localId">): RaftConfig => ({
  localId: base.localId,
  clusterId: input.clusterId ?? base.clusterId,
  heartbeatTimeoutMillis: millis(input.heartbeatTimeout, base.heartbeatTimeoutMillis),
  electionTimeoutMillis: millis(input.electionTimeout, base.electionTimeoutMillis),
  commitTimeoutMillis: millis(input.commitTimeout, base.commitTimeoutMillis),
  maxAppendEntries: input.maxAppendEntries ?? base.maxAppendEntries,
  maxEntryBytes: input.maxEntryBytes ?? base.maxEntryBytes,
  maxAppendEntriesBytes: input.maxAppendEntriesBytes ?? base.maxAppendEntriesBytes,
  leaderLeaseTimeoutMillis: millis(input.leaderLeaseTimeout, base.leaderLeaseTimeoutMillis),
  shutdownOnRemove: input.shutdownOnRemove ?? base.shutdownOnRemove,
  trailingLogs: input.trailingLogs ?? base.trailingLogs,
  snapshotIntervalMillis: millis(input.snapshotInterval, base.snapshotIntervalMillis),
  snapshotThreshold: input.snapshotThreshold ?? base.snapshotThreshold,
  preVote: input.preVote ?? base.preVote,
  traceSampleRate: input.traceSampleRate ?? base.traceSampleRate,
  readMode: input.readMode ?? base.readMode,
  maxClockDriftMillis: input.maxClockDrift === undefined
    ? base.maxClockDriftMillis
    : Duration.toMillis(Duration.decode(input.maxClockDrift))
})

/** Fills `input` from `defaults` and validates it. */
export const make = (input: Input): Effect.Effect<RaftConfig, RaftConfigError> =>
  Effect.suspend(() => validate(overlay({ ...defaults, localId: input.localId }, input)))

/**
 * `current` with the settings of `changes` replaced, validated as a whole (`RaftConfigError` naming a bad field, and
 * nothing changes). What `raft.reloadConfig` applies.
 */
export const reload = (current: RaftConfig, changes: Reloadable): Effect.Effect<RaftConfig, RaftConfigError> =>
  Effect.suspend(() => validate(overlay(current, changes)))

/** The margin a leader's lease leaves for clock drift: `maxClockDriftMillis`, or a tenth of `leaderLeaseTimeout`. */
export const clockDriftMillis = (config: RaftConfig): number =>
  config.maxClockDriftMillis ?? config.leaderLeaseTimeoutMillis / 10

/** Provides a validated configuration. */
export const layer = (input: Input): Layer.Layer<RaftConfigTag, RaftConfigError> =>
  Layer.effect(RaftConfigTag, make(input))
