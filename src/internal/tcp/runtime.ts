/**
 * What the outbound and inbound halves of the TCP transport share (internal): the normalised limits, the TLS
 * material, the receive budget, the clock and the log, the connection sets, and the few fields both halves write
 * (`rejected`, `shuttingDown`, `handler`). One plain record made by `TcpTransport.make`, as `NodeState` is for the
 * engine: no Ref, all callbacks run on the event loop.
 */
import type * as Effect from "effect/Effect"
import type { CodecError } from "../../RaftError.js"
import type * as Codec from "../../transport/codec.js"
import type { RpcHandler } from "../../Transport.js"
import type { Conn } from "./conn.js"
import type { TlsMaterial } from "./identity.js"

/** The transport's limits, resolved from its options and defaults. */
export interface Limits {
  readonly maxFrameBytes: number
  readonly connectTimeoutMillis: number
  readonly rpcTimeoutMillis: number
  readonly frameTimeoutMillis: number
  readonly openTimeoutMillis: number
  readonly maxPool: number
  readonly maxInFlight: number
  readonly maxInFlightBytes: number
  readonly chunkBytes: number
  readonly maxInboundConnections: number
}

/** The shared record. */
export interface TcpRuntime {
  readonly limits: Limits
  readonly tls: TlsMaterial | undefined
  readonly budget: Codec.ReceiveBudget
  readonly now: () => number
  /** Runs a log effect, annotated with the module. */
  readonly log: (effect: Effect.Effect<void>) => void
  readonly logCodecError: (error: CodecError) => void
  readonly inbound: Set<Conn>
  readonly outbound: Set<Conn>
  /** Inbound connections closed for bad input or a timeout, or refused (written by the server half). */
  rejected: number
  /** Set once when the transport closes (by `make`'s finalizer); both halves stop taking connections. */
  shuttingDown: boolean
  /** The node's handler while it serves (set by `serve`), read by the server half. */
  handler: RpcHandler | undefined
}
