/**
 * One node of the key-value service, assembled: the key-value state machine,
 * a Raft node over the storage and transport layers given, the optional fault
 * switch, the `Kv` service, and the HTTP API on `NodeHttpServer`. `layer`
 * takes the storage and transport as a layer, so the same node runs in a test
 * on memory layers and in `kv node` on durable ones; `durable` is that one
 * place where the production layers are chosen.
 *
 * Starting a node: with `bootstrap`, the node's stores get the first
 * configuration (itself and its `peers`, all voters) unless they already hold
 * state, which is how a second start resumes the same cluster. With `join`,
 * the node asks that HTTP address (following redirects to the leader) to add
 * it, retrying until it is a member.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type { ServeError } from "@effect/platform/HttpServerError"
import { readFileSync } from "node:fs"
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
  type StorageError
} from "../RaftError.js"
import * as SnapshotStore from "../SnapshotStore.js"
import * as FileSnapshotStore from "../storage/FileSnapshotStore.js"
import * as StableStore from "../StableStore.js"
import * as LmdbStore from "../storage/LmdbStore.js"
import * as LogCache from "../storage/LogCache.js"
import * as TcpTransport from "../transport/TcpTransport.js"
import type { Transport } from "../Transport.js"
import type * as Certificates from "./Certificates.js"
import * as FaultSwitch from "./FaultSwitch.js"
import * as Http from "./Http.js"
import * as HttpLimits from "./HttpLimits.js"
import * as Kv from "./Kv.js"
import * as KvFsm from "./KvFsm.js"

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
  /** Write the first configuration if the stores hold no state. */
  readonly bootstrap?: boolean | undefined
  /** The HTTP address of a member to ask to add this node. */
  readonly join?: string | undefined
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

/** Writes the first configuration into the stores in context, unless they already hold state. */
const bootstrap = (options: Options) =>
  Effect.gen(function*() {
    const configuration = Configuration.voters([
      [options.id, options.raftAddress],
      ...(options.peers ?? []).map((peer) => [peer.id, peer.raftAddress] as const)
    ])
    yield* Raft.bootstrapCluster(configuration).pipe(
      Effect.tap(() => Effect.logInfo(`bootstrapped a cluster of ${configuration.servers.length}`)),
      Effect.catchTag("CantBootstrap", (error) => Effect.logInfo(`not bootstrapping: ${error.reason}`))
    )
  })

/** Asks `target` (and the leader it redirects to) to add this node, until the node sees itself in the configuration. */
const joinLoop = (options: Options, target: string) =>
  Effect.gen(function*() {
    const raft = yield* Raft.Raft
    const client = yield* Http.client(target)
    const isMember = Effect.map(
      raft.getConfiguration,
      ({ configuration }) => Configuration.find(configuration, options.id) !== undefined
    )
    if (yield* isMember) return
    yield* client.cluster.join({
      payload: { id: options.id, raftAddress: options.raftAddress, httpAddress: options.httpAddress }
    }).pipe(
      Effect.tapError((error) => Effect.logWarning(`join through ${target} failed, retrying`, error)),
      Effect.retry(Schedule.exponential("200 millis", 1.5).pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      Effect.tap(({ index }) => Effect.logInfo(`joined the cluster at index ${index}`))
    )
  }).pipe(Effect.provide(Http.layerFetch))

/**
 * A whole node over `infrastructure` (storage and transport): Raft, the key-value state machine and service, and
 * the HTTP API listening on `httpAddress`.
 */
export const layer = <E>(
  options: Options,
  infrastructure: Layer.Layer<Infrastructure, E>
): Layer.Layer<
  Raft.Raft | Kv.KvService | KvFsm.KvState,
  E | RaftConfigError | StorageError | IdentityMismatch | NotVoter | ServeError
> => {
  const http = parseAddress(options.httpAddress)
  const withBootstrap = options.bootstrap === true
    ? Layer.tap(infrastructure, (context) => Effect.provide(bootstrap(options), context))
    : infrastructure
  const withFaults = options.faults === true
    ? Layer.provideMerge(FaultSwitch.layer(), withBootstrap)
    : withBootstrap
  const node = Raft.layer({ ...options.raft, localId: options.id }).pipe(
    Layer.provideMerge(Layer.merge(KvFsm.layer, withFaults))
  )
  const peers = new Map((options.peers ?? []).map((peer) => [peer.id, peer.httpAddress]))
  const service = Kv.layer({ httpAddress: options.httpAddress, peers }).pipe(Layer.provideMerge(node))
  const server = Http.layer.pipe(
    Layer.provide(
      NodeHttpServer.layer(HttpLimits.createServer(), { host: http?.host ?? "127.0.0.1", port: http?.port ?? 0 })
    )
  )
  const joining = options.join === undefined
    ? Layer.empty
    : Layer.scopedDiscard(Effect.forkScoped(Effect.interruptible(joinLoop(options, options.join))))
  return Layer.mergeAll(server, joining).pipe(Layer.provideMerge(service))
}

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

/**
 * The production storage and transport of `kv node`: the LMDB log (behind a cache of recent entries) and stable
 * store in `<dataDir>/raft`, file snapshots in `<dataDir>/snapshots`, and the TCP transport listening on
 * `raftAddress`, with mutual TLS over the files of `tls` (peers prove their server id with a certificate of the same
 * CA), or in plaintext when `tls` is "plaintext" (anyone who reaches the address can then act as a peer).
 */
export const durable = (options: {
  readonly dataDir: string
  readonly raftAddress: string
  readonly tls: Certificates.TlsFiles | "plaintext"
}): Layer.Layer<Infrastructure, StorageError | BindError> => {
  const lmdb = LmdbStore.layer({ path: join(options.dataDir, "raft") })
  // Context.merge keeps the later service: the cache in front of the same LMDB log wins.
  const stores = Layer.merge(lmdb, LogCache.layer(logCacheEntries).pipe(Layer.provide(lmdb)))
  return Layer.mergeAll(
    stores,
    snapshotStore(options.dataDir),
    Layer.unwrapEffect(Effect.gen(function*() {
      const bind = parseAddress(options.raftAddress) ?? { host: "127.0.0.1", port: 0 }
      const tls = options.tls === "plaintext" ? undefined : yield* readTls(options.tls, options.raftAddress)
      return TcpTransport.layer({ bind, advertise: options.raftAddress, tls })
    }))
  )
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
  configuration: Configuration.Configuration
): Effect.Effect<SnapshotStore.SnapshotMeta, CantRecover | FsmError | StorageError> =>
  Raft.recoverCluster(configuration).pipe(
    Effect.provide(Layer.mergeAll(
      KvFsm.layer,
      LmdbStore.layer({ path: join(dataDir, "raft") }),
      snapshotStore(dataDir)
    ))
  )

/** Recent log entries kept in memory in front of the LMDB log, so replication reads do not hit the disk. */
export const logCacheEntries: number = 4096

/** Memory storage and a memory-network transport: for tests in one process. */
export const inMemory = (
  transport: Layer.Layer<Transport>
): Layer.Layer<Infrastructure> =>
  Layer.mergeAll(LogStore.layerMemory, StableStore.layerMemory, SnapshotStore.layerMemory, transport)
