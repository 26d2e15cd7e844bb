/**
 * The outbound half of the TCP transport (internal): pools of idle connections per peer and lane, dialling with
 * retry, one RPC at a time per connection (`call`), the InstallSnapshot sender (request, chunk frames as fast as the
 * socket drains, end or abort), and pipelines of AppendEntries answered in order within a count and byte window.
 * Every request is checked against `maxFrameBytes` before it is written.
 */
import * as net from "node:net"
import * as tls from "node:tls"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { CodecError, type StorageError, TransportError } from "../../RaftError.js"
import type * as Rpc from "../../Rpc.js"
import * as Codec from "../../transport/codec.js"
import type { AppendPipeline } from "../../Transport.js"
import { Conn, type ConnOwner, type Lane } from "./conn.js"
import { describeIds, errorText, parseAddress, serverIdsOf } from "./identity.js"
import type { TcpRuntime } from "./runtime.js"
import type { Lane as DeadlineLane } from "../deadlineLanes.js"
import * as PipelineResults from "../pipelineResults.js"
import { Wakers } from "../wakers.js"

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
 * The outbound half over `rt`; `clearPools` forgets the idle connections (when the transport closes). `rpcDeadlines`
 * keeps the deadlines of one-answer RPCs (`rpcTimeout` each).
 */
export const make = (rt: TcpRuntime, rpcDeadlines: DeadlineLane) => {
  const { connectTimeoutMillis, maxFrameBytes, maxInFlight, maxInFlightBytes, maxPool, rpcTimeoutMillis, chunkBytes } =
    rt.limits
  const { budget, log, logCodecError, now, outbound } = rt
  const tlsOptions = rt.tls
  const verifyPeerId = tlsOptions?.verifyPeerId ?? false

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
          ca: tlsOptions.ca,
          cert: tlsOptions.cert,
          key: tlsOptions.key,
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
    rt.shuttingDown
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
    if (pool.length >= maxPool || rt.shuttingDown) {
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
    tag: A["_tag"],
    deadlines?: DeadlineLane
  ): Effect.Effect<A, TransportError> => {
    let outcome: Effect.Effect<A, TransportError> | undefined
    let resume: ((outcome: Effect.Effect<A, TransportError>) => void) | undefined
    const settle = (result: Effect.Effect<A, TransportError>) => {
      if (outcome !== undefined) return
      outcome = result
      deadline?.done()
      resume?.(result)
    }
    // Past it, the call fails with "timeout" (and `call` closes the connection, whose answer may still come).
    const deadline = deadlines?.add(() => settle(Effect.fail(new TransportError({ target: address, reason: "timeout" }))))
    conn.setOwner({
      onMessage: (message) => {
        conn.owner = undefined
        if (message.kind === "response" && message.id === id && message.response._tag === tag) {
          return settle(Effect.succeed(message.response as A))
        }
        if (message.kind === "error" && message.id === id) {
          // Shut down or not serving: the peer's node is not there to answer; cluster: it belongs to another cluster.
          const error = new TransportError({
            target: address,
            reason: message.code === "cluster" ? "identity" : "closed",
            detail: `${message.code}: ${message.detail}`
          })
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
      return Effect.sync(() => {
        resume = undefined
        deadline?.done()
      })
    })
  }

  /** The InstallSnapshot sender's wait for its answer (one call per snapshot: a timer of its own is cheap there). */
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
      const answer = expectResponse<A>(conn, address, id, tag, rpcDeadlines)
      conn.write(frame)
      return answer.pipe(
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
      const results = yield* PipelineResults.make
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
      const wakers = new Wakers()
      const signal = () => wakers.wakeAll()
      const breakWith = (error: TransportError) => {
        if (broken !== undefined) return
        broken = error
        results.end(error)
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
          results.offer({ request: sent.request, response: message.response, sentAtMillis: sent.sentAtMillis })
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
      // Sends waiting for room, not written yet: a request must not overtake them (`trySend` refuses meanwhile).
      let queued = 0
      /** Records the request as in flight and writes it: false when the socket's buffer is full. */
      const write = (id: number, request: Rpc.AppendEntriesRequest, frame: Codec.Encoded, bytes: number): boolean => {
        inFlight.push({ id, request, sentAtMillis: now(), bytes })
        inFlightBytes += bytes
        return conn.write(frame)
      }
      /** Waits for room, then writes; `queued` counts it until it is written or gives up. */
      const sendQueued = (
        id: number,
        request: Rpc.AppendEntriesRequest,
        frame: Codec.Encoded,
        bytes: number
      ): Effect.Effect<void, TransportError> => {
        let waiting = true
        const stopWaiting = () => {
          if (waiting) (waiting = false, queued--)
        }
        const attempt: Effect.Effect<void, TransportError> = Effect.suspend(() => {
          if (broken !== undefined) return (stopWaiting(), Effect.fail(broken))
          if (!roomFor(bytes)) return Effect.zipRight(wakers.await, attempt)
          stopWaiting()
          return write(id, request, frame, bytes) ? Effect.void : conn.drained
        })
        queued++
        // A send interrupted while it waits wrote nothing.
        return Effect.onInterrupt(attempt, () => Effect.sync(stopWaiting))
      }

      const pipeline: AppendPipeline = {
        send: (request) =>
          Effect.suspend(() => {
            const id = newId()
            const frame = requestFrame(address, maxFrameBytes, id, request)
            if (frame instanceof TransportError) return Effect.fail(frame)
            if (broken !== undefined) return Effect.fail(broken)
            const bytes = Codec.bodyLength(frame)
            if (queued > 0 || !roomFor(bytes)) return sendQueued(id, request, frame, bytes)
            return write(id, request, frame, bytes) ? Effect.void : conn.drained
          }),
        // As `send` when it would not wait: not broken, nothing queued before it, room in the window, and the
        // socket's buffer not full (a `send` waits for `drain` then, so this leaves the request to it).
        trySend: (request) => {
          if (broken !== undefined || conn.closed || queued > 0 || conn.socket.writableNeedDrain) return false
          if (inFlight.length - head >= maxInFlight) return false
          const id = newId()
          const frame = requestFrame(address, maxFrameBytes, id, request)
          if (frame instanceof TransportError) return false
          const bytes = Codec.bodyLength(frame)
          if (!roomFor(bytes)) return false
          write(id, request, frame, bytes)
          return true
        },
        results: results.mailbox,
        listen: results.listen
      }
      return pipeline
    })

  return {
    call,
    installSnapshot,
    openPipeline,
    clearPools: (): void => {
      for (const pool of pools.values()) pool.length = 0
    }
  }
}
