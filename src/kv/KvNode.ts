/**
 * One node of the key-value service, assembled: the key-value state machine,
 * a Raft node over the storage and transport layers given, the optional fault
 * switch, the `Kv` service, and the HTTP API on `NodeHttpServer`. `layer`
 * takes the storage and transport as a layer, so the same node runs in a test
 * on memory layers and in `kv node` on durable ones; `durable` is that one
 * place where the production layers are chosen.
 *
 * Starting a node: what it finds in its stores and data directory decides
 * (`Identity.decide`). With empty stores, `bootstrap` writes the first
 * configuration (itself and its `peers`, all voters), `join` asks that HTTP
 * address (following redirects to the leader) to add it, retrying until it is
 * a member, and `rejoin` (a member that lost its data) first asks the cluster
 * to take it back as a non-voter, then starts, and asks to be a voter again
 * once it applied that change. A data directory that was initialised resumes
 * on its stores, never bootstraps again, and refuses to start
 * (`Identity.StartRefused`) when its stores were lost or belong to another
 * node or cluster. `run` keeps the node up until interrupted, and fails
 * with `NodeStopped` if its Raft shuts down on its own (a fatal error): a node
 * that cannot take part in the cluster does not linger with its HTTP port open.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as Configuration from "../Configuration.js"
import * as LogStore from "../LogStore.js"
import * as Raft from "../Raft.js"
import type * as RaftConfig from "../RaftConfig.js"
import {
  BindError,
  type CantRecover,
  type FsmError,
  type IdentityMismatch,
  type NotVoter,
  type RaftConfigError,
  StorageError
} from "../RaftError.js"
import * as SnapshotStore from "../SnapshotStore.js"
import * as FileSnapshotStore from "../storage/FileSnapshotStore.js"
import * as StableStore from "../StableStore.js"
import * as LogCache from "../storage/LogCache.js"
import * as WalStore from "../storage/WalStore.js"
import * as TcpTransport from "../transport/TcpTransport.js"
import type { Transport } from "../Transport.js"
import type * as Certificates from "./Certificates.js"
import * as FaultSwitch from "./FaultSwitch.js"
import * as Http from "./Http.js"
import * as Identity from "./Identity.js"
import * as HttpLimits from "./HttpLimits.js"
import * as Kv from "./Kv.js"
import * as KvFsm from "./KvFsm.js"
import * as Operator from "./Operator.js"

/** Another server of the cluster, as the command line names it. */
export interface Peer {
  readonly id: string
  readonly raftAddress: string
  readonly httpAddress: string
}

/** How to run one node. */
export interface Options {
  readonly id: string
  /** "host:port" other nodes reach this node's Raft transport at. */
  readonly raftAddress: string
  /** "host:port" the HTTP API listens on. */
  readonly httpAddress: string
  /** The other initial members: with `bootstrap`, the first configuration; always, their HTTP addresses. */
  readonly peers?: ReadonlyArray<Peer> | undefined
  /** Write the first configuration if the stores hold no state and the data directory was never initialised. */
  readonly bootstrap?: boolean | undefined
  /** The cluster id a bootstrap records; default: derived from the initial members (the same on each of them). */
  readonly clusterId?: string | undefined
  /** The HTTP address of a member to ask to add this node. */
  readonly join?: string | undefined
  /**
   * This member lost its data: ask the cluster (through `join`, else the peers) to take it back as a non-voter,
   * then start on empty stores; it asks to become a voter once caught up.
   */
  readonly rejoin?: boolean | undefined
  /** The data directory: where the identity marker lives (a node on memory stores has none). */
  readonly dataDir?: string | undefined
  /** Put the transport behind a fault switch and enable `POST /admin/faults` (tests only). */
  readonly faults?: boolean | undefined
  /** Raft tunables (timers, snapshot threshold, ...). */
  readonly raft?: Omit<RaftConfig.Input, "localId"> | undefined
}

/** What a node's storage and transport layer provides. */
export type Infrastructure = LogStore.LogStore | StableStore.StableStore | SnapshotStore.SnapshotStore | Transport

/** Splits "host:port"; the port must be a number. */
export const parseAddress = (address: string): { readonly host: string; readonly port: number } | undefined => {
  const at = address.lastIndexOf(":")
  const port = Number(address.slice(at + 1))
  return at <= 0 || !Number.isInteger(port) || port < 0 || port > 65535
    ? undefined
    : { host: address.slice(0, at), port }
}

/** The node's Raft stopped on its own (a fatal error; the log above says which): the process should exit. */
export class NodeStopped extends Data.TaggedError("NodeStopped")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** What the start-up found out: the cluster's id (when known) and, while rejoining, the index to catch up to. */
class Started extends Context.Tag("effect-raft/kv/KvNode/Started")<Started, {
  readonly clusterId: string | undefined
  readonly rejoinIndex: number | undefined
}>() {}

const initialConfiguration = (options: Options) =>
  Configuration.voters([
    [options.id, options.raftAddress],
    ...(options.peers ?? []).map((peer) => [peer.id, peer.raftAddress] as const)
  ])

/** HTTP addresses to ask for a (re)join: `join`, then the peers'. */
const targetsOf = (options: Options): ReadonlyArray<string> => [
  ...new Set([...(options.join === undefined ? [] : [options.join]), ...(options.peers ?? []).map((p) => p.httpAddress)])
]

/** Asks the cluster to add this node, cycling through `targets` with backoff until one answers. */
const askToJoin = (options: Options, targets: ReadonlyArray<string>, as: { readonly voter: boolean; readonly rejoin: boolean }) =>
  Effect.gen(function*() {
    let turn = 0
    const attempt = Effect.suspend(() => {
      const target = targets[turn++ % targets.length]!
      return Effect.flatMap(Http.client(target), (client) =>
        client.cluster.join({
          payload: {
            id: options.id,
            raftAddress: options.raftAddress,
            httpAddress: options.httpAddress,
            voter: as.voter,
            rejoin: as.rejoin
          }
        })).pipe(Effect.tapError((error) => Effect.logWarning(`${as.rejoin ? "rejoin" : "join"} through ${target} failed, retrying`, error)))
    })
    return yield* attempt.pipe(
      Effect.retry(Schedule.exponential("200 millis", 1.5).pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      // The schedule never ends: no error gets past it.
      Effect.orDie
    )
  }).pipe(Effect.provide(Http.layerFetch))

/** Records the identity in the stable store and, with a data directory, in its marker. */
const record = (options: Options, clusterId: string | undefined, rejoinIndex?: number) =>
  Effect.gen(function*() {
    yield* Identity.store(yield* StableStore.StableStore, { nodeId: options.id, clusterId })
    if (options.dataDir === undefined) return
    yield* Identity.writeMarker(options.dataDir, {
      format: 1,
      nodeId: options.id,
      ...(clusterId === undefined ? {} : { clusterId }),
      ...(rejoinIndex === undefined ? {} : { rejoinIndex })
    })
  })

/** Reads what the stores and the data directory hold, decides how to start (`Identity.decide`) and does it. */
const prepare = (options: Options) =>
  Effect.gen(function*() {
    const stable = yield* StableStore.StableStore
    const configuration = initialConfiguration(options)
    const plan = Identity.decide({
      id: options.id,
      dataDir: options.dataDir,
      marker: options.dataDir === undefined ? Option.none() : yield* Identity.readMarker(options.dataDir),
      stored: yield* Identity.stored(stable),
      hasState: yield* Raft.hasExistingState,
      bootstrap: options.bootstrap === true,
      bootstrapClusterId: options.clusterId ?? Identity.derivedClusterId(configuration),
      join: options.join !== undefined,
      rejoin: options.rejoin === true
    })
    switch (plan._tag) {
      case "Refuse":
        return yield* new Identity.StartRefused({ reason: plan.reason })
      case "Bootstrap": {
        const clusterId = options.clusterId ?? Identity.derivedClusterId(configuration)
        yield* Raft.bootstrapCluster(configuration, { localId: options.id }).pipe(
          Effect.mapError((error) =>
            error._tag === "CantBootstrap" ? new Identity.StartRefused({ reason: error.message }) : error
          )
        )
        yield* record(options, clusterId)
        yield* Effect.logInfo(`bootstrapped cluster ${clusterId} of ${configuration.servers.length}`)
        return { clusterId, rejoinIndex: undefined }
      }
      case "Join":
        return { clusterId: undefined, rejoinIndex: undefined }
      case "Rejoin": {
        const targets = targetsOf(options)
        if (targets.length === 0) {
          return yield* new Identity.StartRefused({ reason: "--rejoin needs --join (or --peer) to reach the cluster" })
        }
        yield* Effect.logInfo(`asking the cluster to take node ${options.id} back as a non-voter`)
        const answer = yield* askToJoin(options, targets, { voter: false, rejoin: true })
        yield* record(options, answer.clusterId, answer.index)
        yield* Effect.logInfo(`rejoined as a non-voter at index ${answer.index}; a voter again once caught up`)
        return { clusterId: answer.clusterId, rejoinIndex: answer.index }
      }
      case "Resume": {
        if (options.bootstrap === true) yield* Effect.logInfo("the data directory was initialised: not bootstrapping")
        if (plan.storeIdentity) yield* Identity.store(stable, { nodeId: options.id, clusterId: plan.clusterId })
        if (plan.writeMarker) yield* record(options, plan.clusterId, plan.rejoinIndex)
        return { clusterId: plan.clusterId, rejoinIndex: plan.rejoinIndex }
      }
    }
  }).pipe(Effect.provide([NodeFileSystem.layer, NodePath.layer]))

/** Asks `target` (and the leader it redirects to) to add this node, until the node sees itself in the configuration. */
const joinLoop = (options: Options, target: string) =>
  Effect.gen(function*() {
    const raft = yield* Raft.Raft
    const isMember = Effect.map(
      raft.getConfiguration,
      ({ configuration }) => Configuration.find(configuration, options.id) !== undefined
    )
    if (yield* isMember) return
    const { index, clusterId } = yield* askToJoin(options, [target], { voter: true, rejoin: false })
    yield* Effect.logInfo(`joined the cluster at index ${index}`)
    yield* record(options, clusterId)
  }).pipe(Effect.provide([NodeFileSystem.layer, NodePath.layer]))

/**
 * A rejoining node: once it has applied the change that took it back as a non-voter (so it holds everything
 * committed before), it asks to be a voter again, and then clears the mark in its marker.
 */
const promoteLoop = (options: Options, rejoinIndex: number, clusterId: string | undefined) =>
  Effect.gen(function*() {
    const raft = yield* Raft.Raft
    yield* raft.appliedIndex.pipe(
      Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (applied) => applied >= rejoinIndex })
    )
    const { configuration } = yield* raft.getConfiguration
    if (Configuration.find(configuration, options.id)?.suffrage !== "Voter") {
      const { index } = yield* askToJoin(options, targetsOf(options), { voter: true, rejoin: false })
      yield* Effect.logInfo(`caught up: a voter again at index ${index}`)
    }
    yield* record(options, clusterId)
  }).pipe(Effect.provide([NodeFileSystem.layer, NodePath.layer]))

/**
 * A whole node over `infrastructure` (storage and transport): Raft, the key-value state machine and service, and
 * the HTTP API listening on `httpAddress`.
 */
export const layer = <E>(
  options: Options,
  infrastructure: Layer.Layer<Infrastructure, E>
): Layer.Layer<
  Raft.Raft | Kv.KvService | KvFsm.KvState,
  E | RaftConfigError | StorageError | IdentityMismatch | NotVoter | ServeError | Identity.StartRefused
> => {
  const http = parseAddress(options.httpAddress)
  const started = Layer.provideMerge(Layer.effect(Started, prepare(options)), infrastructure)
  const withFaults = options.faults === true
    ? Layer.provideMerge(FaultSwitch.layer(), started)
    : started
  const node = Raft.layer({ ...options.raft, localId: options.id }).pipe(
    Layer.provideMerge(Layer.merge(KvFsm.layer, withFaults))
  )
  const peers = new Map((options.peers ?? []).map((peer) => [peer.id, peer.httpAddress]))
  const service = Layer.unwrapEffect(
    Effect.map(Started, ({ clusterId }) => Kv.layer({ httpAddress: options.httpAddress, peers, clusterId }))
  ).pipe(Layer.provideMerge(node))
  const server = Http.layer.pipe(
    Layer.provide(Operator.layerMetrics()),
    Layer.provide(
      HttpLimits.layerServer({ host: http?.host ?? "127.0.0.1", port: http?.port ?? 0 })
    )
  )
  const joining = Layer.scopedDiscard(Effect.gen(function*() {
    const { clusterId, rejoinIndex } = yield* Started
    const loop = rejoinIndex !== undefined
      ? promoteLoop(options, rejoinIndex, clusterId)
      : options.join === undefined
      ? Effect.void
      : joinLoop(options, options.join)
    yield* Effect.forkScoped(Effect.interruptible(loop))
  }))
  return Layer.mergeAll(server, joining).pipe(Layer.provideMerge(service))
}

/**
 * Runs a node until interrupted; fails with `NodeStopped` as soon as its Raft shuts down on its own (after a fatal
 * error), closing the HTTP server and the stores on the way out.
 */
export const run = <E>(
  options: Options,
  infrastructure: Layer.Layer<Infrastructure, E>
): Effect.Effect<
  never,
  E | RaftConfigError | StorageError | IdentityMismatch | NotVoter | ServeError | Identity.StartRefused | NodeStopped
> =>
  Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(layer(options, infrastructure))
    return yield* awaitStopped(Context.get(context, Raft.Raft))
  }))

/** Fails with `NodeStopped` once `raft` is shut down (checked every 100 ms); never succeeds. */
export const awaitStopped = (raft: Raft.Raft): Effect.Effect<never, NodeStopped> =>
  raft.state.pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (state) => state === "Shutdown" }),
    Effect.zipRight(
      Effect.fail(
        new NodeStopped({ reason: `node ${raft.id}: Raft shut down after a fatal error (logged above); stopping the node` })
      )
    )
  )

/** Timers ten times shorter than hashicorp's defaults (the anchor's "fast timers"). */
export const fastTimers: Omit<RaftConfig.Input, "localId"> = {
  heartbeatTimeout: "100 millis",
  electionTimeout: "100 millis",
  leaderLeaseTimeout: "50 millis",
  commitTimeout: "5 millis"
}

/** Reads a node's TLS files into the transport's TLS options: peers must present a certificate of the same CA naming their id. */
const readTls = (files: Certificates.TlsFiles, bind: string): Effect.Effect<TcpTransport.TlsOptions, BindError> =>
  Effect.try({
    try: () => ({ cert: readFileSync(files.cert, "utf8"), key: readFileSync(files.key, "utf8"), ca: readFileSync(files.ca, "utf8") }),
    catch: (cause) =>
      new BindError({ address: bind, reason: `cannot read the TLS files: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
  })

/** Which durable log and stable store a node keeps in `<dataDir>/raft`: LMDB, or the write-ahead log (`WalStore`). */
export type StoreKind = "lmdb" | "wal"

/**
 * The log and stable store of `kind` in `<dataDir>/raft`. Fails to open, rather than starting on an empty store,
 * when the directory holds the other kind's files (the node would otherwise look like one that lost its data).
 * Without a `kind`, the directory's own kind: LMDB when it holds `data.mdb` (a node created before the WAL was
 * the default), else the WAL.
 */
const durableStores = (
  dataDir: string,
  kind: StoreKind | undefined
): Layer.Layer<LogStore.LogStore | StableStore.StableStore, StorageError> => {
  const path = join(dataDir, "raft")
  const holds = Effect.try({
    try: (): StoreKind | undefined =>
      existsSync(join(path, "data.mdb"))
        ? "lmdb"
        : existsSync(path) && readdirSync(path).some((name) => name.endsWith(".wal"))
        ? "wal"
        : undefined,
    catch: (cause) => new StorageError({ operation: "open", reason: `${path}: ${String(cause)}`, cause })
  })
  return Layer.unwrapEffect(Effect.flatMap(holds, (found) => {
    const chosen = kind ?? found ?? "wal"
    return found !== undefined && found !== chosen
      ? Effect.fail(new StorageError({ operation: "open", reason: `${path} holds ${storeNames[found]}: start with --store ${found}` }))
      : chosen === "wal"
      ? Effect.succeed(WalStore.layer({ path }))
      : Effect.map(loadLmdbStore(path), (LmdbStore) => LmdbStore.layer({ path }))
  }))
}

/**
 * `LmdbStore`, imported only by a node that keeps its log in LMDB: loading `lmdb` maps its native addon and
 * allocates its shared read buffer, about 1.5 MiB of RSS per node that a node on the WAL does not need.
 */
const loadLmdbStore = (path: string) =>
  Effect.tryPromise({
    try: () => import("../storage/LmdbStore.js"),
    catch: (cause) =>
      new StorageError({ operation: "open", reason: `${path}: cannot load the LMDB store: ${String(cause)}`, cause })
  })

const storeNames: Record<StoreKind, string> = { lmdb: "an LMDB store", wal: "a WAL store" }

/**
 * The production storage and transport of `kv node`: the log (behind a cache of recent entries) and stable
 * store of `store` (by default what the directory holds, and the WAL for a new one) in `<dataDir>/raft`, file snapshots in `<dataDir>/snapshots`, and the TCP transport listening on
 * `raftAddress`, with mutual TLS over the files of `tls` (peers prove their server id with a certificate of the same
 * CA), or in plaintext when `tls` is "plaintext" (anyone who reaches the address can then act as a peer).
 */
export const durable = (options: {
  readonly dataDir: string
  readonly raftAddress: string
  readonly tls: Certificates.TlsFiles | "plaintext"
  readonly store?: StoreKind | undefined
}): Layer.Layer<Infrastructure, StorageError | BindError> => {
  const durable = durableStores(options.dataDir, options.store)
  // Context.merge keeps the later service: the cache in front of the same durable log wins.
  const stores = Layer.merge(durable, LogCache.layer(logCacheEntries, logCacheBytes).pipe(Layer.provide(durable)))
  const transport = Layer.unwrapEffect(Effect.gen(function*() {
    const bind = parseAddress(options.raftAddress) ?? { host: "127.0.0.1", port: 0 }
    const tls = options.tls === "plaintext" ? undefined : yield* readTls(options.tls, options.raftAddress)
    return TcpTransport.layer({ bind, advertise: options.raftAddress, tls })
  }))
  // One after the other, the stores first: a node refused for its data directory (the other store's files, a
  // damaged log) creates nothing and binds nothing, and no half-done start goes on after the failure.
  return transport.pipe(Layer.provideMerge(snapshotStore(options.dataDir)), Layer.provideMerge(stores))
}

/** The file snapshot store of a node's data directory. */
const snapshotStore = (dataDir: string) => FileSnapshotStore.layer(join(dataDir, "snapshots"))

/**
 * `kv recover`: rewrites the stores of a stopped node in `dataDir` so that it starts as a member of
 * `configuration` only (`Raft.recoverCluster` with a fresh key-value state machine): the way back from the loss of
 * a quorum. Every write the node holds, committed or not, is kept.
 */
export const recover = (
  dataDir: string,
  configuration: Configuration.Configuration,
  store?: StoreKind | undefined
): Effect.Effect<SnapshotStore.SnapshotMeta, CantRecover | FsmError | StorageError> =>
  Raft.recoverCluster(configuration).pipe(
    Effect.provide(Layer.mergeAll(
      KvFsm.layer,
      durableStores(dataDir, store),
      snapshotStore(dataDir)
    ))
  )

/** Recent log entries kept in memory in front of the durable log, so replication reads do not hit the disk. */
export const logCacheEntries: number = 4096

/**
 * At most this much entry data in that cache (16 MiB): 4,096 entries of 128-byte PUTs batched at 64 clients hold
 * 2–6 MiB, but entries of up to `maxEntryBytes` (1 MiB) would hold 4 GiB.
 */
export const logCacheBytes: number = 16 * 1024 * 1024

/** Memory storage and a memory-network transport: for tests in one process. */
export const inMemory = (
  transport: Layer.Layer<Transport>
): Layer.Layer<Infrastructure> =>
  Layer.mergeAll(LogStore.layerMemory, StableStore.layerMemory, SnapshotStore.layerMemory, transport)
