/**
 * Who a key-value node is, and whether its data can be trusted at start-up.
 *
 * A node records its identity twice:
 * - in its stable store, under `NodeId` and `ClusterId` (next to the term and
 *   the vote, so they are lost together with them);
 * - in a marker file outside the Raft store, `<data-dir>/IDENTITY.json`
 *   (`{"format":1,"nodeId":…,"clusterId":…}`), written atomically (temporary
 *   file, fsync, rename, fsync of the directory) once the node first holds
 *   state: after its bootstrap, or after its first successful join.
 *
 * A data directory with a marker was initialised: the node never bootstraps
 * there again, whatever its flags, and if its stable store no longer holds the
 * identity the marker records (the disk was wiped, `data.mdb` truncated to 0
 * bytes, the store replaced) it refuses to start, with a one-line reason that
 * names the recovery step (`kv node --rejoin`). Restarting such a node empty
 * would let it vote with a log that lost acknowledged writes, and a
 * re-bootstrap would start a new cluster: either can lose a write for good.
 *
 * The cluster id is made at bootstrap: `--cluster-id` (what the launcher and
 * the test clusters pass, one random UUID per cluster), else derived from the
 * initial configuration, so that every initial member bootstrapped with the
 * same flags agrees. Joiners learn it from the member that adds them.
 *
 * `decide` is the whole start-up decision as a pure function of what was found
 * on disk and what the command line asked; `KvNode` carries it out.
 */
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import type * as Configuration from "../Configuration.js"
import { StorageError } from "../RaftError.js"
import type { StableStore } from "../StableStore.js"

/** The marker's file name, in the node's data directory. */
export const MARKER_FILE = "IDENTITY.json"
/** Stable-store key of the node's own id. */
export const KEY_NODE_ID = "NodeId"
/** Stable-store key of the id of the cluster the node belongs to. */
export const KEY_CLUSTER_ID = "ClusterId"

/** What the marker records. */
export const Marker = Schema.Struct({
  format: Schema.Literal(1),
  nodeId: Schema.NonEmptyString,
  clusterId: Schema.optional(Schema.NonEmptyString),
  /** Set while the node rejoins as a non-voter: the index of that change; it asks to become a voter once applied. */
  rejoinIndex: Schema.optional(Schema.Int)
})
/** What the marker records. */
export type Marker = typeof Marker.Type

const decodeMarker = Schema.decodeUnknownEither(Schema.parseJson(Marker))
const encodeMarker = Schema.encodeSync(Schema.parseJson(Marker))

/** The node will not start on this data: `reason` says what is wrong and what to do, on one line. */
export class StartRefused extends Data.TaggedError("StartRefused")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** The identity a stable store holds (either may be missing). */
export interface Stored {
  readonly nodeId: string | undefined
  readonly clusterId: string | undefined
}

const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** The `NodeId` and `ClusterId` a stable store holds. */
export const stored = (stable: StableStore): Effect.Effect<Stored, StorageError> =>
  Effect.map(
    Effect.all([stable.get(KEY_NODE_ID), stable.get(KEY_CLUSTER_ID)]),
    ([nodeId, clusterId]) => ({
      nodeId: Option.getOrUndefined(Option.map(nodeId, (bytes) => decoder.decode(bytes))),
      clusterId: Option.getOrUndefined(Option.map(clusterId, (bytes) => decoder.decode(bytes)))
    })
  )

/** Writes the node's identity into its stable store (the cluster id only when known). */
export const store = (
  stable: StableStore,
  identity: { readonly nodeId: string; readonly clusterId: string | undefined }
): Effect.Effect<void, StorageError> =>
  Effect.zipRight(
    stable.set(KEY_NODE_ID, encoder.encode(identity.nodeId)),
    identity.clusterId === undefined ? Effect.void : stable.set(KEY_CLUSTER_ID, encoder.encode(identity.clusterId))
  )

/** The cluster id of a cluster bootstrapped with `configuration` and no `--cluster-id`: the same on every member. */
export const derivedClusterId = (configuration: Configuration.Configuration): string => {
  const servers = configuration.servers.map((server) => `${server.id}@${server.address}`).sort()
  return `c-${createHash("sha256").update(servers.join("\n")).digest("hex").slice(0, 32)}`
}

const markerError = (path: string) => (error: PlatformError) =>
  new StorageError({ operation: "write identity", reason: `${path}: ${error.message}`, cause: error })

/** The marker of `dataDir`, if it has one; an unreadable or malformed marker refuses the start. */
export const readMarker = (
  dataDir: string
): Effect.Effect<Option.Option<Marker>, StartRefused, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const file = (yield* Path.Path).join(dataDir, MARKER_FILE)
    const text = yield* fs.readFileString(file).pipe(
      Effect.map(Option.some),
      Effect.catchIf(
        (error) => error._tag === "SystemError" && error.reason === "NotFound",
        () => Effect.succeed(Option.none<string>())
      ),
      Effect.mapError((error) => new StartRefused({ reason: `${file} cannot be read: ${error.message}` }))
    )
    if (Option.isNone(text)) return Option.none()
    const marker = decodeMarker(text.value)
    if (Either.isLeft(marker)) {
      return yield* new StartRefused({
        reason: `${file} is damaged (not the identity this node wrote); restore it, or if the node's data is lost ` +
          `run kv node --rejoin`
      })
    }
    return Option.some(marker.right)
  })

/** Writes `dataDir`'s marker atomically: a temporary file, fsync, rename over the old one, fsync of the directory. */
export const writeMarker = (
  dataDir: string,
  marker: Marker
): Effect.Effect<void, StorageError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(dataDir, MARKER_FILE)
    const temp = `${file}.tmp`
    yield* Effect.scoped(Effect.gen(function*() {
      const handle = yield* fs.open(temp, { flag: "w" })
      yield* handle.writeAll(encoder.encode(encodeMarker(marker) + "\n"))
      yield* handle.sync
    })).pipe(Effect.mapError(markerError(temp)))
    yield* fs.rename(temp, file).pipe(Effect.mapError(markerError(file)))
    yield* Effect.scoped(Effect.flatMap(fs.open(dataDir, { flag: "r" }), (handle) => handle.sync)).pipe(
      Effect.mapError(markerError(dataDir))
    )
  })

/**
 * Moves the Raft store and the snapshots of `dataDir` aside, into `<dataDir>/lost-<n>/` (the first `n` free), so
 * that `--rejoin` starts from empty stores without deleting anything. Answers where they went (undefined when there
 * was nothing to move).
 */
export const moveStoresAside = (
  dataDir: string
): Effect.Effect<string | undefined, StorageError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const present: Array<string> = []
    for (const name of ["raft", "snapshots"]) {
      if (yield* fs.exists(path.join(dataDir, name))) present.push(name)
    }
    if (present.length === 0) return undefined
    let n = 1
    while (yield* fs.exists(path.join(dataDir, `lost-${n}`))) n++
    const target = path.join(dataDir, `lost-${n}`)
    yield* fs.makeDirectory(target)
    for (const name of present) yield* fs.rename(path.join(dataDir, name), path.join(target, name))
    yield* Effect.scoped(Effect.flatMap(fs.open(dataDir, { flag: "r" }), (handle) => handle.sync))
    return target
  }).pipe(
    Effect.mapError((error) =>
      new StorageError({ operation: "move stores aside", reason: `${dataDir}: ${error.message}`, cause: error })
    )
  )

/** What a node found at start and what it was asked to do. */
export interface Facts {
  readonly id: string
  /** The data directory (undefined for a node on memory stores: no marker then). */
  readonly dataDir: string | undefined
  readonly marker: Option.Option<Marker>
  readonly stored: Stored
  /** Whether the stores hold Raft state: a term, a log entry or a snapshot. */
  readonly hasState: boolean
  readonly bootstrap: boolean
  /** The cluster id a bootstrap would record (`--cluster-id`, or derived from the initial members). */
  readonly bootstrapClusterId: string
  readonly join: boolean
  readonly rejoin: boolean
}

/** What to do. */
export type Plan =
  /** Do not start; `reason` is the one line to print. */
  | { readonly _tag: "Refuse"; readonly reason: string }
  /**
   * Start on the stores as they are, writing whatever of the identity is missing (`clusterId` when known). With
   * `rejoinIndex`, the node is still rejoining: it asks to become a voter once it applied that index.
   */
  | {
    readonly _tag: "Resume"
    readonly clusterId: string | undefined
    readonly storeIdentity: boolean
    readonly writeMarker: boolean
    readonly rejoinIndex: number | undefined
  }
  /** Empty stores and `--bootstrap`: bootstrap, then record the identity. */
  | { readonly _tag: "Bootstrap" }
  /** Empty stores and `--join`: start empty; record the identity once the join succeeds. */
  | { readonly _tag: "Join" }
  /** `--rejoin`: ask the cluster to take this node back as a non-voter, record the identity, then start empty. */
  | { readonly _tag: "Rejoin" }

const rejoinHint = (id: string) =>
  `to bring it back, run kv node --rejoin --join <HTTP address of a member> with the same --id ${id}, ` +
  `addresses and --data-dir: it rejoins as a non-voter and becomes a voter once caught up`

/** The start-up decision (see the module's comment). */
export const decide = (facts: Facts): Plan => {
  const { id, marker, stored } = facts
  const where = facts.dataDir ?? "its stores"
  const refuse = (reason: string): Plan => ({ _tag: "Refuse", reason })
  if (Option.isSome(marker) && marker.value.nodeId !== id) {
    return refuse(
      `data directory ${where} belongs to node ${marker.value.nodeId} (${MARKER_FILE}), not ${id}: ` +
        `start it with --id ${marker.value.nodeId}, or give ${id} a data directory of its own`
    )
  }
  if (facts.rejoin) {
    return facts.hasState
      ? refuse(`--rejoin starts from empty stores, but ${where} holds Raft state; move it aside first`)
      : { _tag: "Rejoin" }
  }
  if (stored.nodeId !== undefined && stored.nodeId !== id) {
    return refuse(
      `the Raft store in ${where} belongs to node ${stored.nodeId}, not ${id}: it comes from another node; ` +
        `put this node's own store back, or ${rejoinHint(id)}`
    )
  }
  if (Option.isSome(marker)) {
    const recorded = marker.value
    const cluster = recorded.clusterId === undefined ? "" : ` of cluster ${recorded.clusterId}`
    if (stored.nodeId === undefined) {
      return refuse(
        `data directory ${where} was initialised as node ${id}${cluster} (${MARKER_FILE}) but its Raft store ` +
          `${facts.hasState ? "has lost its identity, term and vote" : "is empty"}: the store was lost, wiped or ` +
          `replaced, and starting on it could lose acknowledged writes; ${rejoinHint(id)}`
      )
    }
    if (recorded.clusterId !== undefined && stored.clusterId !== undefined && recorded.clusterId !== stored.clusterId) {
      return refuse(
        `the Raft store in ${where} belongs to cluster ${stored.clusterId}, but ${MARKER_FILE} records cluster ` +
          `${recorded.clusterId}: the store comes from another cluster; put this node's own store back, or ${
            rejoinHint(id)
          }`
      )
    }
    return {
      _tag: "Resume",
      clusterId: recorded.clusterId ?? stored.clusterId,
      storeIdentity: stored.clusterId === undefined && recorded.clusterId !== undefined,
      writeMarker: recorded.clusterId === undefined && stored.clusterId !== undefined,
      rejoinIndex: recorded.rejoinIndex
    }
  }
  if (facts.hasState) {
    // Initialised before markers existed (or stopped between its first write and its marker): adopt it.
    const clusterId = stored.clusterId ?? (facts.bootstrap ? facts.bootstrapClusterId : undefined)
    return {
      _tag: "Resume",
      clusterId,
      storeIdentity: stored.nodeId === undefined || stored.clusterId !== clusterId,
      writeMarker: facts.dataDir !== undefined,
      rejoinIndex: undefined
    }
  }
  if (facts.bootstrap) return { _tag: "Bootstrap" }
  if (facts.join) return { _tag: "Join" }
  return refuse(
    `node ${id} has no state in ${where} and was told neither --bootstrap (a new cluster), --join (a new member) ` +
      `nor --rejoin (a member that lost its data)`
  )
}
