/**
 * The TCP transport: what nodes on different machines use (hashicorp's NetworkTransport role). Peers are addressed
 * as "host:port". Every message is a length-prefixed frame (see `codec.ts` and the README's table), decoded with
 * the `Rpc` schemas at the boundary; anything malformed, oversize, of another protocol version or failing its
 * schema closes that one connection with a `CodecError` logged, and the node goes on serving the others.
 *
 * Outbound, a connection carries one RPC at a time: a call takes an idle connection to the peer (or dials one),
 * sends, reads the answer and puts the connection back, keeping at most `maxPool` idle per peer. Heartbeats
 * (AppendEntries without entries) have their own idle connections, so they never wait behind a large batch or a
 * snapshot on the same socket. A pipeline owns one connection with up to `pipelineMaxInFlight` requests (and
 * `pipelineMaxBytes` of entries) in flight, answered in order. InstallSnapshot streams the snapshot as chunk frames
 * after the request, written as fast as the socket drains; the receiver pauses reading while its handler is behind.
 *
 * With TLS, certificates are checked against server ids (`TlsOptions.verifyPeerId`, on by default): a dialled
 * server's certificate must name the id dialled (a `raft://<id>` URI or a DNS SubjectAltName, see `serverIdsOf`),
 * and a client's certificate must name the ids its requests claim as leader or candidate (and, with
 * `allowedPeerIds`, one of those). The transport does not know the cluster's configuration; see the README.
 *
 * Built on `node:net` and `node:tls` wrapped in Effect, not on `@effect/platform`'s `NodeSocket`/`SocketServer`:
 * the platform server has no TLS, and the transport needs per-connection control that those APIs hide (pausing
 * a socket while a snapshot handler is behind, waiting for `drain`, the peer's address and certificate errors).
 */
import type * as net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import * as DeadlineLanes from "../internal/deadlineLanes.js"
import * as Client from "../internal/tcp/client.js"
import type { Conn } from "../internal/tcp/conn.js"
import * as Identity from "../internal/tcp/identity.js"
import type { TcpRuntime } from "../internal/tcp/runtime.js"
import * as Server from "../internal/tcp/server.js"
import { fairScheduler } from "../internal/scheduler.js"
import { BindError, CodecError, TransportError } from "../RaftError.js"
import type * as Rpc from "../Rpc.js"
import { Transport } from "../Transport.js"
import * as Codec from "./codec.js"

/** TLS material, as `node:tls` takes it (PEM strings or buffers). */
export interface TlsOptions {
  /** This node's certificate chain, presented to peers (and, with mutual TLS, to servers it dials). */
  readonly cert: string | Uint8Array
  /** The private key of `cert`. */
  readonly key: string | Uint8Array
  /** The CA(s) that sign peers' certificates; Node's default roots when omitted. */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Refuse inbound connections that present no certificate signed by `ca` (mutual TLS). Default true. */
  readonly requireClientCert?: boolean | undefined
  /**
   * Check certificates against server ids (see `serverIdsOf` for how a certificate names one). Default true.
   * Dialling: the server's certificate must name the id dialled, else `TransportError` "identity" (the address's
   * host is then not checked). Serving with mutual TLS: a client certificate must name a server id, and every
   * request must claim (as leader or candidate) an id its certificate names. When false, a dialled server's
   * certificate is checked against the host of its address (or `serverName`) as HTTPS does, and nothing else.
   */
  readonly verifyPeerId?: boolean | undefined
  /**
   * Serving: accept only client certificates that name one of these server ids (or one the predicate accepts);
   * others, and clients without a certificate, are refused and the refusal logged. Default: any id.
   */
  readonly allowedPeerIds?: ReadonlyArray<string> | ((id: string) => boolean) | undefined
  /** Sent as SNI; with `verifyPeerId` false, also the name a server's certificate is checked against. */
  readonly serverName?: string | undefined
}

/** Options of `TcpTransport.make` / `layer`. */
export interface Options {
  /** Where to listen; port 0 picks a free port (read `localAddress`). */
  readonly bind: { readonly host: string; readonly port: number }
  /** The "host:port" peers use to reach this node; the bound address by default. */
  readonly advertise?: string | undefined
  /** Speak TLS (both ways) with this material. */
  readonly tls?: TlsOptions | undefined
  /**
   * Largest frame accepted or sent: a bigger length prefix closes the connection, and a request that would need a
   * bigger frame fails with `TransportError` "oversize" unsent. Default 8 MiB. Give every node of a cluster the same.
   */
  readonly maxFrameBytes?: number | undefined
  /** How long dialling a peer may take, retries included. Default 5 s. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** How long an RPC's answer (or the oldest pipelined answer) may take. Default 10 s (as hashicorp's). */
  readonly rpcTimeout?: Duration.DurationInput | undefined
  /** Idle connections kept per peer and lane (hashicorp's maxPool). Default 3. */
  readonly maxPool?: number | undefined
  /** Pipelined AppendEntries in flight on one connection. Default 16 (see the README for the measurement). */
  readonly pipelineMaxInFlight?: number | undefined
  /** Bytes of entries in flight on a pipeline before `send` waits. Default 4 MiB. */
  readonly pipelineMaxBytes?: number | undefined
  /** Inbound: how long a peer may take to complete a frame it has started. Default 10 s. */
  readonly frameTimeout?: Duration.DurationInput | undefined
  /**
   * Inbound: how long a new connection may take to finish its TLS handshake and to start its first frame; a
   * connection that stays silent that long is closed. Default 3 s.
   */
  readonly openTimeout?: Duration.DurationInput | undefined
  /** Inbound connections served at once; more are refused (and counted in `rejected`). Default 256. */
  readonly maxInboundConnections?: number | undefined
  /**
   * Bytes all connections together may hold for frames still being received (see `Codec.ReceiveBudget`). A frame
   * over 64 KiB reserves its announced size when its length prefix arrives; one that does not fit closes its
   * connection with a `CodecError` "budget" logged. Each connection may also hold one frame of up to 64 KiB outside
   * the budget. Default 64 MiB; at least `maxFrameBytes` + 4.
   */
  readonly receiveBudgetBytes?: number | undefined
  /**
   * Largest chunk frame of a snapshot stream; bigger stream chunks are split. Default 256 KiB (less when frames are
   * smaller); a value whose frame would exceed `maxFrameBytes` fails construction.
   */
  readonly snapshotChunkBytes?: number | undefined
}

/** Connection counts, for tests and operators. */
export interface Stats {
  /** Inbound connections open now. */
  readonly inbound: number
  /** Outbound connections open now (idle in a pool, busy with an RPC, or owned by a pipeline). */
  readonly outbound: number
  /** Inbound connections closed for bad input or a timeout, or refused, since start. */
  readonly rejected: number
  /** Bytes of frames being received that are reserved in the receive budget now. */
  readonly receiving: number
  /** The most bytes reserved in the receive budget at once since start. */
  readonly receivingPeak: number
}

/** The TCP transport: a `Transport` plus its connection counts. */
export interface TcpTransport extends Transport {
  /** Connections open now and rejected so far. */
  readonly stats: Effect.Effect<Stats>
}

/** The defaults of `Options`. */
export const defaults = {
  maxFrameBytes: 8 * 1024 * 1024,
  connectTimeoutMillis: 5_000,
  rpcTimeoutMillis: 10_000,
  maxPool: 3,
  pipelineMaxInFlight: 16,
  pipelineMaxBytes: 4 * 1024 * 1024,
  frameTimeoutMillis: 10_000,
  openTimeoutMillis: 3_000,
  maxInboundConnections: 256,
  receiveBudgetBytes: 64 * 1024 * 1024,
  /** Frames up to this size (length prefix included) are not charged to the receive budget. */
  unchargedFrameBytes: 64 * 1024,
  snapshotChunkBytes: 256 * 1024
} as const

/** Splits "host:port" (or "[v6]:port") into its parts; undefined when it is not one. */
export const parseAddress: (address: string) => { readonly host: string; readonly port: number } | undefined =
  Identity.parseAddress

/** The URI SubjectAltName that names server `id` in a certificate: `raft://` and the id, percent-encoded. */
export const serverIdUri: (id: string) => string = Identity.serverIdUri

/**
 * The server ids a certificate names, from its SubjectAltName in Node's text form (`"DNS:a, URI:raft://b"`, values
 * with special characters JSON-quoted): each URI `raft://<id>` (percent-decoded) and each DNS name taken literally,
 * compared case-sensitively, wildcards ignored. The subject's CN is never used. Empty when there is none.
 */
export const serverIdsOf: (subjectAltName: string | undefined) => ReadonlyArray<string> = Identity.serverIdsOf

/** The default snapshot chunk: 256 KiB, or what a smaller frame can carry. */
const defaultChunkBytes = (maxFrameBytes: number): number =>
  Math.min(defaults.snapshotChunkBytes, maxFrameBytes - (Codec.HEADER_BYTES - 4))

/** Why `options` cannot work, or undefined. */
const invalidOptions = (options: Options): string | undefined => {
  const maxFrameBytes = options.maxFrameBytes ?? defaults.maxFrameBytes
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1024) {
    return `maxFrameBytes must be an integer of at least 1024 (got ${maxFrameBytes})`
  }
  const chunk = options.snapshotChunkBytes ?? defaultChunkBytes(maxFrameBytes)
  if (!Number.isSafeInteger(chunk) || chunk < 1 || chunk + Codec.HEADER_BYTES - 4 > maxFrameBytes) {
    return `snapshotChunkBytes must be a positive integer whose frame fits in maxFrameBytes ${maxFrameBytes} (got ${chunk})`
  }
  const budget = options.receiveBudgetBytes ?? defaults.receiveBudgetBytes
  if (!Number.isSafeInteger(budget) || budget < maxFrameBytes + 4) {
    return `receiveBudgetBytes must be an integer of at least maxFrameBytes + 4 (got ${budget})`
  }
  const connections = options.maxInboundConnections ?? defaults.maxInboundConnections
  if (!Number.isSafeInteger(connections) || connections < 1) {
    return `maxInboundConnections must be a positive integer (got ${connections})`
  }
  return undefined
}

/**
 * Builds a TCP transport listening on `options.bind`, closed (listener and every connection) with the scope. Fails
 * with `BindError` when it cannot listen, or when its options cannot work together (a snapshot chunk larger than a
 * frame, a receive budget smaller than one).
 */
export const make = (options: Options): Effect.Effect<TcpTransport, BindError, Scope.Scope> =>
  Effect.gen(function*() {
    const bindAddress = Identity.formatAddress(options.bind.host, options.bind.port)
    const invalid = invalidOptions(options)
    if (invalid !== undefined) return yield* new BindError({ address: bindAddress, reason: invalid })
    const maxFrameBytes = options.maxFrameBytes ?? defaults.maxFrameBytes
    const connectTimeoutMillis = options.connectTimeout === undefined
      ? defaults.connectTimeoutMillis
      : Duration.toMillis(options.connectTimeout)
    const rpcTimeoutMillis = options.rpcTimeout === undefined
      ? defaults.rpcTimeoutMillis
      : Duration.toMillis(options.rpcTimeout)
    const frameTimeoutMillis = options.frameTimeout === undefined
      ? defaults.frameTimeoutMillis
      : Duration.toMillis(options.frameTimeout)
    const openTimeoutMillis = options.openTimeout === undefined
      ? defaults.openTimeoutMillis
      : Duration.toMillis(options.openTimeout)
    const budget = new Codec.ReceiveBudget(
      options.receiveBudgetBytes ?? defaults.receiveBudgetBytes,
      defaults.unchargedFrameBytes
    )
    const maxPool = Math.max(0, options.maxPool ?? defaults.maxPool)
    const maxInFlight = Math.max(1, options.pipelineMaxInFlight ?? defaults.pipelineMaxInFlight)
    const maxInFlightBytes = Math.max(1, options.pipelineMaxBytes ?? defaults.pipelineMaxBytes)
    const chunkBytes = options.snapshotChunkBytes ?? defaultChunkBytes(maxFrameBytes)
    const tlsOptions = options.tls
    const verifyPeerId = tlsOptions !== undefined && (tlsOptions.verifyPeerId ?? true)
    const requireClientCert = tlsOptions?.requireClientCert ?? true
    const allowed = tlsOptions?.allowedPeerIds
    const isAllowed: ((id: string) => boolean) | undefined = allowed === undefined
      ? undefined
      : typeof allowed === "function"
      ? allowed
      : (id) => allowed.includes(id)

    // Inbound connections are served on the scheduler the node's fibers use (see internal/scheduler.ts), so a
    // request handed from socket to node and its answer back never wait behind a starved microtask queue.
    const ambient = yield* FiberRef.get(FiberRef.currentScheduler)
    const scheduler = ambient === Scheduler.defaultScheduler ? fairScheduler : ambient
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const run = yield* FiberSet.runtime(fibers)<never>()
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const log = (effect: Effect.Effect<void>): void => {
      runFork(Effect.annotateLogs(effect, { module: "TcpTransport" }))
    }
    const logCodecError = (error: CodecError): void =>
      log(Effect.logWarning("closing connection: bad input", error).pipe(Effect.annotateLogs({ peer: error.peer })))

    const rt: TcpRuntime = {
      limits: {
        maxFrameBytes,
        connectTimeoutMillis,
        rpcTimeoutMillis,
        frameTimeoutMillis,
        openTimeoutMillis,
        maxPool,
        maxInFlight,
        maxInFlightBytes,
        chunkBytes,
        maxInboundConnections: options.maxInboundConnections ?? defaults.maxInboundConnections
      },
      tls: tlsOptions === undefined ? undefined : {
        cert: Identity.material(tlsOptions.cert),
        key: Identity.material(tlsOptions.key),
        ca: Identity.materials(tlsOptions.ca),
        serverName: tlsOptions.serverName,
        verifyPeerId,
        requireClientCert,
        isAllowed
      },
      budget,
      now,
      log,
      logCodecError,
      inbound: new Set<Conn>(),
      outbound: new Set<Conn>(),
      rejected: 0,
      shuttingDown: false,
      handler: undefined
    }
    const client = Client.make(rt, (yield* DeadlineLanes.make).lane(rpcTimeoutMillis))
    const server = Server.make(rt, run, scheduler)

    const bound = yield* Effect.acquireRelease(
      Effect.async<net.AddressInfo, BindError>((resume) => {
        const onError = (error: Error) =>
          resume(Effect.fail(new BindError({ address: bindAddress, reason: Identity.errorText(error), cause: error })))
        server.once("error", onError)
        server.listen(options.bind.port, options.bind.host, () => {
          server.off("error", onError)
          const address = server.address()
          if (address === null || typeof address === "string") {
            return resume(Effect.fail(new BindError({ address: bindAddress, reason: "not a TCP address" })))
          }
          resume(Effect.succeed(address))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          rt.shuttingDown = true
          client.clearPools()
          const closed = new TransportError({ target: bindAddress, reason: "closed", detail: "transport closed" })
          for (const conn of [...rt.outbound, ...rt.inbound]) conn.close(closed)
          if (!server.listening) return resume(Effect.void)
          server.close(() => resume(Effect.void))
        })
    )
    const localAddress = options.advertise ?? Identity.formatAddress(
      bound.address === "::" || bound.address === "0.0.0.0" ? options.bind.host : bound.address,
      bound.port
    )

    const transport: TcpTransport = {
      localAddress,
      maxFrameBytes,
      stats: Effect.sync(() => ({
        inbound: rt.inbound.size,
        outbound: rt.outbound.size,
        rejected: rt.rejected,
        receiving: budget.used,
        receivingPeak: budget.peak
      })),
      serve: (h) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            rt.handler = h
          }),
          () =>
            Effect.sync(() => {
              if (rt.handler === h) rt.handler = undefined
            })
        ),
      appendEntries: (id, address, request) =>
        client.call<Rpc.AppendEntriesResponse>(
          request.entries.length === 0 ? "heartbeat" : "rpc",
          id,
          address,
          request,
          "AppendEntriesResponse"
        ),
      requestVote: (id, address, request) =>
        client.call<Rpc.RequestVoteResponse>("rpc", id, address, request, "RequestVoteResponse"),
      requestPreVote: (id, address, request) =>
        client.call<Rpc.RequestPreVoteResponse>("rpc", id, address, request, "RequestPreVoteResponse"),
      timeoutNow: (id, address, request) => client.call<Rpc.TimeoutNowResponse>("rpc", id, address, request, "TimeoutNowResponse"),
      readIndex: (id, address, request) => client.call<Rpc.ReadIndexResponse>("rpc", id, address, request, "ReadIndexResponse"),
      installSnapshot: (id, address, request, data) => client.installSnapshot(id, address, request, data),
      appendEntriesPipeline: (id, address) => client.openPipeline(id, address)
    }
    return transport
  })

/** Provides a `Transport` over TCP (and TLS when `options.tls` is set), listening while the layer lives. */
export const layer = (options: Options): Layer.Layer<Transport, BindError> => Layer.scoped(Transport, make(options))
