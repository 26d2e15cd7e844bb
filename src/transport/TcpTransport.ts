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
import * as net from "node:net"
import * as tls from "node:tls"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scheduler from "effect/Scheduler"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { fairScheduler } from "../internal/scheduler.js"
import { BindError, CodecError, type RaftShutdown, type StorageError, TransportError } from "../RaftError.js"
import type * as Rpc from "../Rpc.js"
import { type AppendPipeline, type PipelineResult, type RpcHandler, Transport } from "../Transport.js"
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
export const parseAddress = (address: string): { readonly host: string; readonly port: number } | undefined => {
  const colon = address.lastIndexOf(":")
  if (colon <= 0) return undefined
  let host = address.slice(0, colon)
  const port = Number(address.slice(colon + 1))
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  return { host, port }
}

/** The URI SubjectAltName that names server `id` in a certificate: `raft://` and the id, percent-encoded. */
export const serverIdUri = (id: string): string => `raft://${encodeURIComponent(id)}`

const uriPrefix = "raft://"

/**
 * The server ids a certificate names, from its SubjectAltName in Node's text form (`"DNS:a, URI:raft://b"`, values
 * with special characters JSON-quoted): each URI `raft://<id>` (percent-decoded) and each DNS name taken literally,
 * compared case-sensitively, wildcards ignored. The subject's CN is never used. Empty when there is none.
 */
export const serverIdsOf = (subjectAltName: string | undefined): ReadonlyArray<string> => {
  const ids: Array<string> = []
  if (subjectAltName === undefined) return ids
  const text = subjectAltName
  let at = 0
  while (at < text.length) {
    const colon = text.indexOf(":", at)
    if (colon < 0) break
    const kind = text.slice(at, colon)
    let value: string
    let next: number
    if (text[colon + 1] === "\"") {
      let end = colon + 2
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      const parsed = parseJsonString(text.slice(colon + 1, end + 1))
      if (parsed === undefined) break
      value = parsed
      next = end + 1
    } else {
      const comma = text.indexOf(", ", colon + 1)
      next = comma < 0 ? text.length : comma
      value = text.slice(colon + 1, next)
    }
    if (kind === "URI" && value.startsWith(uriPrefix)) {
      const id = decodeComponent(value.slice(uriPrefix.length))
      if (id !== undefined && id.length > 0) ids.push(id)
    } else if (kind === "DNS" && value.length > 0 && !value.includes("*")) {
      ids.push(value)
    }
    at = text.startsWith(", ", next) ? next + 2 : text.length
  }
  return ids
}

const parseJsonString = (literal: string): string | undefined => {
  try {
    const value: unknown = JSON.parse(literal)
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}

const decodeComponent = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}

/** How a refusal names what a certificate named. */
const describeIds = (ids: ReadonlyArray<string>): string =>
  ids.length === 0 ? "no server id" : ids.map((id) => JSON.stringify(id)).join(", ")

const formatAddress = (host: string, port: number): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

const errorText = (error: unknown): string =>
  error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : "unknown error"

// ---------------------------------------------------------------- connections

type Lane = "rpc" | "heartbeat"

/** What a connection reports to whoever owns it now. */
interface ConnOwner {
  readonly onMessage: (message: Codec.Message) => void
  readonly onClose: (reason: TransportError) => void
}

/** One socket with frame reading and writing; owned by one RPC, a pipeline, a pool, or an inbound server loop. */
class Conn {
  readonly reader: Codec.FrameReader
  owner: ConnOwner | undefined = undefined
  closed = false
  closeReason: TransportError | undefined = undefined
  /** Clock millis when the current partial frame began (undefined when no partial frame is buffered). */
  partialSince: number | undefined = undefined
  framesSeen = 0
  /** Inbound with a verified client certificate: the server ids it names, which requests must claim. */
  peerIds: ReadonlyArray<string> | undefined = undefined
  private early: Array<Codec.Message> = []

  constructor(
    readonly socket: net.Socket,
    readonly peer: string,
    maxFrameBytes: number,
    budget: Codec.ReceiveBudget,
    private readonly now: () => number,
    private readonly onCodecError: (error: CodecError) => void,
    private readonly onClosed: (conn: Conn) => void
  ) {
    this.reader = new Codec.FrameReader(peer, maxFrameBytes, budget)
    socket.on("data", (chunk: Buffer) => this.receive(chunk))
    socket.on("error", (error) => this.close(new TransportError({ target: peer, reason: "closed", detail: errorText(error) })))
    socket.on("end", () => this.close(new TransportError({ target: peer, reason: "closed", detail: "peer closed" })))
    socket.on("close", () => this.close(new TransportError({ target: peer, reason: "closed", detail: "socket closed" })))
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed) return
    const frames = this.reader.push(chunk)
    if (frames instanceof CodecError) return this.reject(frames)
    this.partialSince = this.reader.pending === 0
      ? undefined
      : frames.length > 0 || this.partialSince === undefined
      ? this.now()
      : this.partialSince
    for (const frame of frames) {
      if (this.closed) return
      const decoded = Codec.decode(this.peer, frame)
      if (Either.isLeft(decoded)) return this.reject(decoded.left)
      this.framesSeen++
      const owner = this.owner
      if (owner === undefined) {
        // Between owners (a call about to wait, a server loop about to start): kept until the next owner is set.
        if (this.early.length >= 1024) {
          return this.reject(new CodecError({ peer: this.peer, reason: "malformed", detail: "too many unread frames" }))
        }
        this.early.push(decoded.right)
        continue
      }
      owner.onMessage(decoded.right)
    }
  }

  /** Hands the connection to `owner`: frames that arrived meanwhile go to it first, and a close is reported. */
  setOwner(owner: ConnOwner): void {
    this.owner = owner
    if (this.closed) {
      this.owner = undefined
      return owner.onClose(this.closeReason!)
    }
    while (this.early.length > 0 && this.owner === owner && !this.closed) owner.onMessage(this.early.shift()!)
  }

  /** Closes the connection because of bad input, logging the error. */
  reject(error: CodecError): void {
    if (this.closed) return
    this.onCodecError(error)
    this.close(new TransportError({ target: this.peer, reason: "remote", detail: `${error.reason}: ${error.detail}` }))
  }

  /** Writes a frame; false when the socket's buffer is full (wait for `drained`). */
  write(frame: Codec.Encoded): boolean {
    if (this.closed) return false
    const socket = this.socket
    if (frame[1].length === 0) return socket.write(frame[0])
    socket.cork()
    socket.write(frame[0])
    const ok = socket.write(frame[1])
    socket.uncork()
    return ok
  }

  /** Succeeds once the socket's write buffer has drained (at once if it is not full). */
  get drained(): Effect.Effect<void, TransportError> {
    return Effect.async<void, TransportError>((resume) => {
      if (this.closed) return resume(Effect.fail(this.closeReason!))
      if (!this.socket.writableNeedDrain) return resume(Effect.void)
      const onDrain = () => {
        this.socket.off("close", onClose)
        resume(Effect.void)
      }
      const onClose = () => {
        this.socket.off("drain", onDrain)
        resume(Effect.fail(this.closeReason ?? new TransportError({ target: this.peer, reason: "closed" })))
      }
      this.socket.once("drain", onDrain)
      this.socket.once("close", onClose)
      return Effect.sync(() => {
        this.socket.off("drain", onDrain)
        this.socket.off("close", onClose)
      })
    })
  }

  /** Sends what is buffered, then closes (so a last frame, e.g. an abort, still arrives). */
  end(): void {
    if (!this.closed) this.socket.end()
  }

  close(reason: TransportError): void {
    if (this.closed) return
    this.closed = true
    this.closeReason = reason
    this.socket.destroy()
    this.reader.dispose()
    this.onClosed(this)
    const owner = this.owner
    this.owner = undefined
    owner?.onClose(reason)
  }
}

// ---------------------------------------------------------------- the transport

type Material = string | Buffer
const material = (value: string | Uint8Array): Material =>
  typeof value === "string" ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
const materials = (
  value: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
): Material | Array<Material> | undefined =>
  value === undefined ? undefined : typeof value === "string" || value instanceof Uint8Array
  ? material(value)
  : value.map(material)

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

/** The request frame of `request`, or the `TransportError` "oversize" that refuses it unsent. */
const requestFrame = (
  address: string,
  maxFrameBytes: number,
  id: number,
  request: Rpc.Request
): Codec.Encoded | TransportError => {
  const frame = Codec.encodeRequest(id, request)
  const length = Codec.frameLength(frame)
  return length <= maxFrameBytes ? frame : new TransportError({
    target: address,
    reason: "oversize",
    detail: `${request._tag} needs a frame of ${length} bytes, maxFrameBytes is ${maxFrameBytes}`
  })
}

/**
 * Builds a TCP transport listening on `options.bind`, closed (listener and every connection) with the scope. Fails
 * with `BindError` when it cannot listen, or when its options cannot work together (a snapshot chunk larger than a
 * frame, a receive budget smaller than one).
 */
export const make = (options: Options): Effect.Effect<TcpTransport, BindError, Scope.Scope> =>
  Effect.gen(function*() {
    const bindAddress = formatAddress(options.bind.host, options.bind.port)
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

    const inbound = new Set<Conn>()
    const outbound = new Set<Conn>()
    let rejected = 0
    let shuttingDown = false

    // ------------------------------------------------------------ outbound

    // A connection is pooled under the server id it was dialled for as well: with verifyPeerId its certificate
    // was checked for that id, so it must not serve another id that moves to the same address.
    const pools = new Map<string, Array<Conn>>() // `${lane} ${id} ${address}` → idle connections
    const poolKey = (lane: Lane, id: string, address: string) => `${lane} ${JSON.stringify(id)} ${address}`

    const dialOnce = (id: string, address: string): Effect.Effect<Conn, TransportError> =>
      Effect.async<Conn, TransportError>((resume) => {
        const target = parseAddress(address)
        if (target === undefined) {
          return resume(Effect.fail(new TransportError({ target: address, reason: "unreachable", detail: "bad address" })))
        }
        // Set when the server's certificate (signed by `ca`) does not name `id`: the handshake fails with it.
        let wrongIdentity: string | undefined
        const checkServerIdentity = (_host: string, cert: tls.PeerCertificate): Error | undefined => {
          const named = serverIdsOf(cert.subjectaltname)
          if (named.includes(id)) return undefined
          wrongIdentity = `expected server id ${JSON.stringify(id)}, certificate names ${describeIds(named)}`
          return new Error(wrongIdentity)
        }
        const socket = tlsOptions === undefined
          ? net.connect({ host: target.host, port: target.port, noDelay: true })
          : tls.connect({
            host: target.host,
            port: target.port,
            ca: materials(tlsOptions.ca),
            cert: material(tlsOptions.cert),
            key: material(tlsOptions.key),
            rejectUnauthorized: true,
            ...(verifyPeerId ? { checkServerIdentity } : {}),
            ...(tlsOptions.serverName !== undefined
              ? { servername: tlsOptions.serverName }
              : net.isIP(target.host) === 0
              ? { servername: target.host }
              : {})
          })
        const ready = tlsOptions === undefined ? "connect" : "secureConnect"
        const onReady = () => {
          socket.off("error", onError)
          socket.setNoDelay(true)
          const conn = new Conn(socket, address, maxFrameBytes, budget, now, logCodecError, (c) => void outbound.delete(c))
          outbound.add(conn)
          resume(Effect.succeed(conn))
        }
        const onError = (error: Error) => {
          socket.off(ready, onReady)
          socket.destroy()
          if (wrongIdentity !== undefined) {
            const refused = new TransportError({ target: address, reason: "identity", detail: wrongIdentity })
            log(Effect.logWarning("refused a server: wrong identity", refused.detail).pipe(Effect.annotateLogs({ peer: address })))
            return resume(Effect.fail(refused))
          }
          resume(Effect.fail(new TransportError({ target: address, reason: "unreachable", detail: errorText(error) })))
        }
        socket.once(ready, onReady)
        socket.once("error", onError)
        return Effect.sync(() => {
          socket.off(ready, onReady)
          socket.off("error", onError)
          socket.destroy()
        })
      })

    // Refused or reset while dialling: try again after 10, 20, 40 ms, all within connectTimeout.
    const dialRetry = Schedule.exponential("10 millis", 2).pipe(Schedule.intersect(Schedule.recurs(3)))
    const dial = (id: string, address: string): Effect.Effect<Conn, TransportError> =>
      shuttingDown
        ? Effect.fail(new TransportError({ target: address, reason: "closed", detail: "transport closed" }))
        : dialOnce(id, address).pipe(
          Effect.retry({
            schedule: dialRetry,
            while: (error) => error.detail !== "bad address" && error.reason !== "identity"
          }),
          Effect.timeoutFail({
            duration: connectTimeoutMillis,
            onTimeout: () => new TransportError({ target: address, reason: "timeout", detail: "connect" })
          })
        )

    const idleOwner = (key: string, address: string, conn: Conn): ConnOwner => ({
      onMessage: (message) =>
        conn.reject(new CodecError({ peer: address, reason: "malformed", detail: `unasked-for ${message.kind} frame` })),
      onClose: () => {
        const pool = pools.get(key)
        const at = pool?.indexOf(conn) ?? -1
        if (at >= 0) pool!.splice(at, 1)
      }
    })

    const acquire = (lane: Lane, id: string, address: string): Effect.Effect<Conn, TransportError> =>
      Effect.suspend(() => {
        const pool = pools.get(poolKey(lane, id, address))
        while (pool !== undefined && pool.length > 0) {
          const conn = pool.pop()!
          if (!conn.closed) {
            conn.owner = undefined
            return Effect.succeed(conn)
          }
        }
        return dial(id, address)
      })

    const release = (lane: Lane, id: string, address: string, conn: Conn): void => {
      if (conn.closed) return
      const key = poolKey(lane, id, address)
      let pool = pools.get(key)
      if (pool === undefined) pools.set(key, (pool = []))
      if (pool.length >= maxPool || shuttingDown) {
        conn.close(new TransportError({ target: address, reason: "closed", detail: "pool full" }))
        return
      }
      pool.push(conn)
      conn.setOwner(idleOwner(key, address, conn))
    }

    let nextId = 1
    const newId = () => {
      const id = nextId
      nextId = nextId >= 0xffffffff ? 1 : nextId + 1
      return id
    }

    /**
     * Takes `conn` to wait for the answer to request `id` of the kind `tag` (an error frame or a close fails it),
     * before the request is written, so an answer can never arrive unowned. Returns the effect that awaits it.
     */
    const expectResponse = <A extends Rpc.Response>(
      conn: Conn,
      address: string,
      id: number,
      tag: A["_tag"]
    ): Effect.Effect<A, TransportError> => {
      let outcome: Effect.Effect<A, TransportError> | undefined
      let resume: ((outcome: Effect.Effect<A, TransportError>) => void) | undefined
      const settle = (result: Effect.Effect<A, TransportError>) => {
        if (outcome !== undefined) return
        outcome = result
        resume?.(result)
      }
      conn.setOwner({
        onMessage: (message) => {
          conn.owner = undefined
          if (message.kind === "response" && message.id === id && message.response._tag === tag) {
            return settle(Effect.succeed(message.response as A))
          }
          if (message.kind === "error" && message.id === id) {
            // Both codes (shut down, not serving) mean the peer's node is not there to answer.
            const error = new TransportError({ target: address, reason: "closed", detail: `${message.code}: ${message.detail}` })
            conn.close(error)
            return settle(Effect.fail(error))
          }
          const error = new CodecError({ peer: address, reason: "malformed", detail: `unexpected ${message.kind} frame` })
          conn.reject(error)
          settle(Effect.fail(new TransportError({ target: address, reason: "remote", detail: error.detail })))
        },
        onClose: (reason) => settle(Effect.fail(reason))
      })
      return Effect.async<A, TransportError>((callback) => {
        if (outcome !== undefined) return callback(outcome)
        resume = callback
        return Effect.sync(() => (resume = undefined))
      })
    }

    const withRpcTimeout = <A, E>(address: string, effect: Effect.Effect<A, E>) =>
      Effect.timeoutFail(effect, {
        duration: rpcTimeoutMillis,
        onTimeout: () => new TransportError({ target: address, reason: "timeout" })
      })

    /** One request, one answer, on a connection of `lane` taken for the call. */
    const call = <A extends Rpc.Response>(
      lane: Lane,
      peerId: string,
      address: string,
      request: Exclude<Rpc.Request, Rpc.InstallSnapshotRequest>,
      tag: A["_tag"]
    ): Effect.Effect<A, TransportError> => {
      const id = newId()
      const frame = requestFrame(address, maxFrameBytes, id, request)
      if (frame instanceof TransportError) return Effect.fail(frame)
      return Effect.flatMap(acquire(lane, peerId, address), (conn) => {
        const answer = expectResponse<A>(conn, address, id, tag)
        conn.write(frame)
        return withRpcTimeout(address, answer).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) release(lane, peerId, address, conn)
              else conn.close(new TransportError({ target: address, reason: "closed", detail: "rpc failed" }))
            })
          )
        )
      })
    }

    const installSnapshot = (
      peerId: string,
      address: string,
      request: Rpc.InstallSnapshotRequest,
      data: Stream.Stream<Uint8Array, StorageError>
    ): Effect.Effect<Rpc.InstallSnapshotResponse, TransportError | StorageError> => {
      const id = newId()
      const frame = requestFrame(address, maxFrameBytes, id, request)
      if (frame instanceof TransportError) return Effect.fail(frame)
      return Effect.flatMap(dial(peerId, address), (conn) => {
        let answered = false
        const answer = expectResponse<Rpc.InstallSnapshotResponse>(conn, address, id, "InstallSnapshotResponse").pipe(
          Effect.ensuring(Effect.sync(() => (answered = true)))
        )
        return Effect.gen(function*() {
          conn.write(frame)
          // The answer is awaited from the start: a receiver that answers early (shut down) stops the sending.
          const answerFiber = yield* Effect.fork(answer)
          const sent = yield* data.pipe(
            Stream.runForEachChunk((chunks) =>
              Effect.suspend(() => {
                if (answered || conn.closed) {
                  return Effect.fail(conn.closeReason ?? new TransportError({ target: address, reason: "closed" }))
                }
                let full = false
                for (const chunk of chunks) {
                  for (let at = 0; at < chunk.length; at += chunkBytes) {
                    full = !conn.write(Codec.encodeChunk(id, chunk.subarray(at, at + chunkBytes))) || full
                  }
                }
                return full ? conn.drained : Effect.void
              })
            ),
            Effect.either
          )
          if (Either.isLeft(sent)) {
            const error = sent.left
            if (error._tag === "StorageError") {
              // (Short text: with maxFrameBytes at least 1024, the abort frame always fits, as every answer does.)
              conn.write(Codec.encodeAbort(id, `sender failed to read the snapshot: ${error.operation}`.slice(0, 512)))
              conn.end()
              return yield* Effect.fail(error)
            }
            if (!answered) return yield* Effect.fail(error)
          } else if (!answered) {
            conn.write(Codec.encodeEnd(id))
          }
          return yield* withRpcTimeout(address, answerFiber.await.pipe(Effect.flatten))
        }).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) release("rpc", peerId, address, conn)
              else conn.close(new TransportError({ target: address, reason: "closed", detail: "snapshot failed" }))
            })
          )
        )
      })
    }

    const openPipeline = (peerId: string, address: string): Effect.Effect<AppendPipeline, TransportError, Scope.Scope> =>
      Effect.gen(function*() {
        const conn = yield* Effect.acquireRelease(
          dial(peerId, address),
          (conn) => Effect.sync(() => conn.close(new TransportError({ target: address, reason: "closed", detail: "pipeline closed" })))
        )
        const results = yield* Mailbox.make<PipelineResult, TransportError>()
        yield* Effect.addFinalizer(() => results.end)
        interface InFlight {
          readonly id: number
          readonly request: Rpc.AppendEntriesRequest
          readonly sentAtMillis: number
          readonly bytes: number
        }
        const inFlight: Array<InFlight> = []
        let head = 0
        let inFlightBytes = 0
        let broken: TransportError | undefined
        let wakers: Array<() => void> = []
        const signal = () => {
          const woken = wakers
          wakers = []
          for (const wake of woken) wake()
        }
        const breakWith = (error: TransportError) => {
          if (broken !== undefined) return
          broken = error
          results.unsafeDone(Exit.fail(error))
          signal()
          conn.close(error)
        }
        conn.setOwner({
          onMessage: (message) => {
            const sent = inFlight[head]
            if (sent === undefined || message.kind !== "response" || message.id !== sent.id ||
              message.response._tag !== "AppendEntriesResponse")
            {
              const detail = message.kind === "error" ? message.detail : `unexpected ${message.kind} frame`
              return breakWith(new TransportError({ target: address, reason: "remote", detail }))
            }
            inFlight[head++] = undefined as unknown as InFlight
            if (head > 1024 && head * 2 > inFlight.length) {
              inFlight.splice(0, head)
              head = 0
            }
            inFlightBytes -= sent.bytes
            results.unsafeOffer({ request: sent.request, response: message.response, sentAtMillis: sent.sentAtMillis })
            signal()
          },
          onClose: (reason) => breakWith(reason)
        })
        // The oldest answer may take at most rpcTimeout.
        yield* Effect.gen(function*() {
          while (broken === undefined) {
            yield* Effect.sleep(Math.max(10, rpcTimeoutMillis / 4))
            const oldest = inFlight[head]
            if (oldest !== undefined && now() - oldest.sentAtMillis > rpcTimeoutMillis) {
              breakWith(new TransportError({ target: address, reason: "timeout", detail: "pipelined answer" }))
            }
          }
        }).pipe(Effect.interruptible, Effect.forkScoped)

        const roomFor = (bytes: number) =>
          inFlight.length - head < maxInFlight && (inFlightBytes + bytes <= maxInFlightBytes || inFlight.length === head)
        const waitForRoom = (bytes: number): Effect.Effect<void, TransportError> =>
          Effect.suspend(() => {
            if (broken !== undefined) return Effect.fail(broken)
            if (roomFor(bytes)) return Effect.void
            return Effect.zipRight(
              Effect.async<void>((resume) => {
                const wake = () => resume(Effect.void)
                wakers.push(wake)
                return Effect.sync(() => void (wakers = wakers.filter((w) => w !== wake)))
              }),
              waitForRoom(bytes)
            )
          })

        const pipeline: AppendPipeline = {
          send: (request) =>
            Effect.suspend(() => {
              const id = newId()
              const frame = requestFrame(address, maxFrameBytes, id, request)
              if (frame instanceof TransportError) return Effect.fail(frame)
              const bytes = frame[1].length
              return Effect.flatMap(waitForRoom(bytes), () => {
                if (broken !== undefined) return Effect.fail(broken)
                inFlight.push({ id, request, sentAtMillis: now(), bytes })
                inFlightBytes += bytes
                return conn.write(frame) ? Effect.void : conn.drained
              })
            }),
          results
        }
        return pipeline
      })

    // ------------------------------------------------------------ inbound

    let handler: RpcHandler | undefined

    /** Serves one inbound connection: its requests one at a time, in order (so pipelined answers stay in order). */
    const serveConnection = (conn: Conn): Effect.Effect<void> =>
      Effect.gen(function*() {
        const inbox = yield* Mailbox.make<Codec.Message, TransportError>()
        let queuedBytes = 0
        let paused = false
        const highWater = 4 * 1024 * 1024
        const lowWater = 1024 * 1024
        const sizeOf = (message: Codec.Message) => message.kind === "chunk" ? message.data.length : 64
        // AppendEntries go straight from the socket's callback to the node (`submitAppendEntries`) while nothing
        // waits in the inbox and the loop below is not handling a request, so every request is still handled and
        // answered in arrival order; at most `maxDirect` at a time, after which the inbox (and its pause) takes over.
        let queued = 0
        let busy = false
        let direct = 0
        const maxDirect = 64
        // Answers leave in the order their requests arrived, whatever order the handler completes them in (a node
        // shutting down fails new requests at once while earlier ones wait): a direct submission keeps its place.
        const slots: Array<{ frame: Codec.Encoded | undefined }> = []
        const flush = () => {
          while (slots.length > 0 && slots[0]!.frame !== undefined) conn.write(slots.shift()!.frame!)
        }
        const reply = (frame: Codec.Encoded): void => {
          if (slots.length === 0) {
            conn.write(frame)
            return
          }
          slots.push({ frame })
          flush()
        }
        const answer = (id: number, response: Rpc.Response) => reply(Codec.encodeResponse(id, response))
        const submitted = (id: number) => {
          const slot: { frame: Codec.Encoded | undefined } = { frame: undefined }
          slots.push(slot)
          // Called by the node's run loop: nothing here may fail it.
          return (exit: Exit.Exit<Rpc.AppendEntriesResponse, RaftShutdown>) => {
            direct--
            try {
              slot.frame = Exit.isSuccess(exit)
                ? Codec.encodeResponse(id, exit.value)
                : Codec.encodeError(id, "shutdown", "RaftShutdown")
              flush()
            } catch (error) {
              conn.close(new TransportError({ target: conn.peer, reason: "closed", detail: `answer failed: ${String(error)}` }))
            }
          }
        }
        conn.setOwner({
          onMessage: (message) => {
            const h = handler
            if (
              !busy && queued === 0 && direct < maxDirect && message.kind === "request" &&
              message.request._tag === "AppendEntriesRequest" && h?.submitAppendEntries !== undefined &&
              (conn.peerIds === undefined || conn.peerIds.includes(message.request.leaderId))
            ) {
              direct++
              return h.submitAppendEntries(message.request, submitted(message.id))
            }
            queued++
            queuedBytes += sizeOf(message)
            inbox.unsafeOffer(message)
            if (queuedBytes > highWater && !paused) {
              paused = true
              conn.socket.pause()
            }
          },
          onClose: (reason) => void inbox.unsafeDone(Exit.fail(reason))
        })
        const take: Effect.Effect<Codec.Message, TransportError | "done"> = Effect.map(
          Effect.mapError(inbox.take, (e) => e._tag === "NoSuchElementException" ? "done" as const : e),
          (message) => {
            queued--
            // In the same step as the count: no socket callback may see the loop idle with this message in hand.
            busy = true
            queuedBytes -= sizeOf(message)
            if (paused && queuedBytes < lowWater) {
              paused = false
              conn.socket.resume()
            }
            return message
          }
        )
        const protocolError = (detail: string) => {
          conn.reject(new CodecError({ peer: conn.peer, reason: "malformed", detail }))
          return Effect.void
        }
        const failed = (id: number) => (error: { readonly _tag: string }) =>
          Effect.sync(() => reply(Codec.encodeError(id, "shutdown", error._tag)))

        // The frame watchdog: a connection that never speaks, or stalls mid-frame, is closed.
        yield* Effect.gen(function*() {
          const opened = now()
          while (!conn.closed) {
            yield* Effect.sleep(Math.max(5, Math.min(frameTimeoutMillis, openTimeoutMillis) / 4))
            const at = now()
            if (conn.framesSeen === 0 && conn.reader.pending === 0 && at - opened > openTimeoutMillis) {
              conn.reject(
                new CodecError({ peer: conn.peer, reason: "stalled", detail: `no frame ${openTimeoutMillis} ms after connecting` })
              )
            } else if (conn.partialSince !== undefined && at - conn.partialSince > frameTimeoutMillis) {
              conn.reject(
                new CodecError({ peer: conn.peer, reason: "stalled", detail: `frame incomplete after ${frameTimeoutMillis} ms` })
              )
            }
          }
        }).pipe(Effect.interruptible, Effect.forkScoped)

        while (true) {
          busy = false
          const next = yield* Effect.either(take)
          if (Either.isLeft(next)) return
          const message = next.right
          if (message.kind !== "request") {
            yield* protocolError(`unexpected ${message.kind} frame from a client`)
            return
          }
          if (conn.peerIds !== undefined) {
            const claimed = "leaderId" in message.request ? message.request.leaderId : message.request.candidateId
            if (!conn.peerIds.includes(claimed)) {
              refuse(
                conn.peer,
                "refused a client: request from another server id",
                `${message.request._tag} claims server id ${JSON.stringify(claimed)}, certificate names ${
                  describeIds(conn.peerIds)
                }`
              )
              conn.close(new TransportError({ target: conn.peer, reason: "identity", detail: "sender id" }))
              return
            }
          }
          const id = message.id
          const h = handler
          if (h === undefined) {
            reply(Codec.encodeError(id, "no-handler", "not serving"))
            if (message.request._tag !== "InstallSnapshotRequest") continue
          }
          const request = message.request
          switch (request._tag) {
            case "AppendEntriesRequest":
              yield* h!.appendEntries(request).pipe(
                Effect.matchEffect({ onFailure: failed(id), onSuccess: (r) => Effect.sync(() => answer(id, r)) })
              )
              break
            case "RequestVoteRequest":
              yield* h!.requestVote(request).pipe(
                Effect.matchEffect({ onFailure: failed(id), onSuccess: (r) => Effect.sync(() => answer(id, r)) })
              )
              break
            case "RequestPreVoteRequest":
              yield* h!.requestPreVote(request).pipe(
                Effect.matchEffect({ onFailure: failed(id), onSuccess: (r) => Effect.sync(() => answer(id, r)) })
              )
              break
            case "TimeoutNowRequest":
              yield* h!.timeoutNow(request).pipe(
                Effect.matchEffect({ onFailure: failed(id), onSuccess: (r) => Effect.sync(() => answer(id, r)) })
              )
              break
            case "InstallSnapshotRequest": {
              // The data follows as chunk frames up to an end (or abort) frame; the handler reads them as a stream.
              let finished = false
              let violation: string | undefined
              const data: Stream.Stream<Uint8Array, TransportError> = Stream.repeatEffectOption(
                Effect.suspend(() => {
                  if (finished) return Effect.fail(Option.none())
                  return Effect.flatMap(
                    Effect.mapError(take, (e) =>
                      e === "done"
                        ? Option.some(new TransportError({ target: conn.peer, reason: "closed", detail: "sender closed" }))
                        : Option.some(e)),
                    (m): Effect.Effect<Uint8Array, Option.Option<TransportError>> => {
                      if (m.kind === "chunk" && m.id === id) return Effect.succeed(m.data)
                      finished = true
                      if (m.kind === "end" && m.id === id) return Effect.fail(Option.none())
                      if (m.kind === "abort" && m.id === id) {
                        return Effect.fail(
                          Option.some(new TransportError({ target: conn.peer, reason: "remote", detail: m.reason }))
                        )
                      }
                      violation = `unexpected ${m.kind} frame in a snapshot stream`
                      return Effect.fail(
                        Option.some(new TransportError({ target: conn.peer, reason: "remote", detail: violation }))
                      )
                    }
                  )
                })
              )
              if (h === undefined) {
                yield* Stream.runDrain(data).pipe(Effect.ignore)
              } else {
                const result = yield* Effect.either(h.installSnapshot(request, data))
                // A handler that stopped reading early: skip the rest of the data before the next request.
                if (!finished) yield* Stream.runDrain(data).pipe(Effect.ignore)
                if (violation !== undefined) return yield* protocolError(violation)
                if (conn.closed) return
                if (Either.isLeft(result)) yield* failed(id)(result.left)
                else answer(id, result.right)
              }
              break
            }
          }
        }
      }).pipe(
        Effect.scoped,
        Effect.ensuring(
          Effect.sync(() => conn.close(new TransportError({ target: conn.peer, reason: "closed", detail: "served" })))
        ),
        Effect.annotateLogs({ module: "TcpTransport", peer: conn.peer })
      )

    const refuse = (peer: string, what: string, detail: string): void => {
      rejected++
      log(Effect.logWarning(what, detail).pipe(Effect.annotateLogs({ peer })))
    }

    /** With TLS, what a client's certificate allows: a refusal, or the ids its requests must claim (or any). */
    const checkClient = (
      socket: tls.TLSSocket
    ): { readonly refused: string } | { readonly ids: ReadonlyArray<string> | undefined } => {
      const cert = socket.authorized ? socket.getPeerCertificate() : undefined
      if (cert === undefined || cert.raw === undefined) {
        // Without a certificate (only possible when client certificates are not required) ids are unknown: fail
        // closed whenever ids are to be checked.
        return isAllowed === undefined && !(verifyPeerId && requireClientCert)
          ? { ids: undefined }
          : { refused: "no client certificate" }
      }
      const named = serverIdsOf(cert.subjectaltname)
      if (verifyPeerId && named.length === 0) return { refused: "client certificate names no server id" }
      const usable = isAllowed === undefined ? named : named.filter(isAllowed)
      if (isAllowed !== undefined && usable.length === 0) return { refused: `client certificate names ${describeIds(named)}, none in allowedPeerIds` }
      return { ids: verifyPeerId ? usable : undefined }
    }

    const accept = (socket: net.Socket): void => {
      const peer = formatAddress(socket.remoteAddress ?? "?", socket.remotePort ?? 0)
      if (shuttingDown) {
        socket.destroy()
        return
      }
      let peerIds: ReadonlyArray<string> | undefined
      if (tlsOptions !== undefined) {
        const client = checkClient(socket as tls.TLSSocket)
        if ("refused" in client) {
          refuse(peer, "refused a client: certificate identity", client.refused)
          socket.destroy()
          return
        }
        peerIds = client.ids
      }
      socket.setNoDelay(true)
      const conn = new Conn(socket, peer, maxFrameBytes, budget, now, (error) => {
        rejected++
        logCodecError(error)
      }, (c) => void inbound.delete(c))
      conn.peerIds = peerIds
      inbound.add(conn)
      run(Effect.withScheduler(serveConnection(conn), scheduler))
    }

    const server: net.Server = tlsOptions === undefined
      ? net.createServer({ noDelay: true }, accept)
      : tls.createServer({
        cert: material(tlsOptions.cert),
        key: material(tlsOptions.key),
        ca: materials(tlsOptions.ca),
        requestCert: requireClientCert,
        rejectUnauthorized: requireClientCert,
        handshakeTimeout: openTimeoutMillis
      }, accept)
    server.maxConnections = options.maxInboundConnections ?? defaults.maxInboundConnections
    // Node closes connections over maxConnections itself; they are counted, not logged one by one (a flood would
    // flood the log).
    server.on("drop", () => void rejected++)
    // With a listener here Node leaves the socket to it: a handshake that timed out would otherwise stay open.
    server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
      const peer = formatAddress(socket.remoteAddress ?? "?", socket.remotePort ?? 0)
      socket.destroy()
      rejected++
      log(Effect.logWarning("refused a TLS connection", errorText(error)).pipe(Effect.annotateLogs({ peer })))
    })
    server.on("error", (error) => log(Effect.logError("listener failed", errorText(error))))

    const bound = yield* Effect.acquireRelease(
      Effect.async<net.AddressInfo, BindError>((resume) => {
        const onError = (error: Error) =>
          resume(Effect.fail(new BindError({ address: bindAddress, reason: errorText(error), cause: error })))
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
          shuttingDown = true
          for (const pool of pools.values()) pool.length = 0
          const closed = new TransportError({ target: bindAddress, reason: "closed", detail: "transport closed" })
          for (const conn of [...outbound, ...inbound]) conn.close(closed)
          if (!server.listening) return resume(Effect.void)
          server.close(() => resume(Effect.void))
        })
    )
    const localAddress = options.advertise ?? formatAddress(
      bound.address === "::" || bound.address === "0.0.0.0" ? options.bind.host : bound.address,
      bound.port
    )

    const transport: TcpTransport = {
      localAddress,
      maxFrameBytes,
      stats: Effect.sync(() => ({
        inbound: inbound.size,
        outbound: outbound.size,
        rejected,
        receiving: budget.used,
        receivingPeak: budget.peak
      })),
      serve: (h) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            handler = h
          }),
          () =>
            Effect.sync(() => {
              if (handler === h) handler = undefined
            })
        ),
      appendEntries: (id, address, request) =>
        call<Rpc.AppendEntriesResponse>(
          request.entries.length === 0 ? "heartbeat" : "rpc",
          id,
          address,
          request,
          "AppendEntriesResponse"
        ),
      requestVote: (id, address, request) =>
        call<Rpc.RequestVoteResponse>("rpc", id, address, request, "RequestVoteResponse"),
      requestPreVote: (id, address, request) =>
        call<Rpc.RequestPreVoteResponse>("rpc", id, address, request, "RequestPreVoteResponse"),
      timeoutNow: (id, address, request) => call<Rpc.TimeoutNowResponse>("rpc", id, address, request, "TimeoutNowResponse"),
      installSnapshot: (id, address, request, data) => installSnapshot(id, address, request, data),
      appendEntriesPipeline: (id, address) => openPipeline(id, address)
    }
    return transport
  })

/** Provides a `Transport` over TCP (and TLS when `options.tls` is set), listening while the layer lives. */
export const layer = (options: Options): Layer.Layer<Transport, BindError> => Layer.scoped(Transport, make(options))
