/**
 * The inbound half of the TCP transport (internal): accepting a connection (refused while closing, or when its TLS
 * client certificate does not allow it), serving its requests one at a time and in order (AppendEntries straight
 * from the socket's callback to the node while nothing waits, which keeps arrival order; snapshot data as a stream
 * with the socket paused while the handler is behind), closing connections that stay silent or stall mid-frame,
 * and the listener with its refusals counted and logged.
 */
import * as net from "node:net"
import * as tls from "node:tls"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import type * as Scheduler from "effect/Scheduler"
import * as Stream from "effect/Stream"
import { CodecError, TransportError } from "../../RaftError.js"
import type * as Rpc from "../../Rpc.js"
import * as Codec from "../../transport/codec.js"
import type { Refusal } from "../../Transport.js"
import { Conn } from "./conn.js"
import { checkClient, describeIds, errorText, formatAddress } from "./identity.js"
import type { TcpRuntime } from "./runtime.js"

/**
 * The inbound half over `rt`: answers the listener, which serves each accepted connection with `run` on
 * `scheduler`.
 */
/** The error frame that answers a request the node refused: another cluster's, or any once it is shut down. */
const refusalFrame = (id: number, refusal: Option.Option<Refusal>): Codec.Encoded =>
  Option.isSome(refusal) && refusal.value._tag === "ClusterMismatch"
    ? Codec.encodeError(id, "cluster", refusal.value.message)
    : Codec.encodeError(id, "shutdown", "RaftShutdown")

/** Whether the other end closed the connection (or it broke), not this server (a bad frame, an answer it failed). */
const closedByPeer = (reason: TransportError): boolean =>
  reason.reason === "closed" && reason.detail !== "served" && reason.detail?.startsWith("answer failed") !== true

export const make = (
  rt: TcpRuntime,
  run: (effect: Effect.Effect<void>) => unknown,
  scheduler: Scheduler.Scheduler
): net.Server => {
  const { budget, inbound, log, logCodecError, now } = rt
  const { frameTimeoutMillis, maxFrameBytes, openTimeoutMillis } = rt.limits
  const tlsOptions = rt.tls

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
      // The leader whose AppendEntries this connection carried last: told to the node when the peer closes it.
      let leaderId: string | undefined
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
        return (exit: Exit.Exit<Rpc.AppendEntriesResponse, Refusal>) => {
          direct--
          try {
            slot.frame = Exit.isSuccess(exit)
              ? Codec.encodeResponse(id, exit.value)
              : refusalFrame(id, Cause.failureOption(exit.cause))
            flush()
          } catch (error) {
            conn.close(new TransportError({ target: conn.peer, reason: "closed", detail: `answer failed: ${String(error)}` }))
          }
        }
      }
      conn.setOwner({
        onMessage: (message) => {
          const h = rt.handler
          // An AppendEntries from the server its certificate names (any, without TLS): its leader is noted, and it
          // may go straight to the node.
          const append = message.kind === "request" && message.request._tag === "AppendEntriesRequest" &&
              (conn.peerIds === undefined || conn.peerIds.includes(message.request.leaderId))
            ? message.request
            : undefined
          if (append !== undefined) leaderId = append.leaderId
          if (append !== undefined && !busy && queued === 0 && direct < maxDirect && h?.submitAppendEntries !== undefined) {
            direct++
            return h.submitAppendEntries(append, submitted(message.id))
          }
          queued++
          queuedBytes += sizeOf(message)
          inbox.unsafeOffer(message)
          if (queuedBytes > highWater && !paused) {
            paused = true
            conn.socket.pause()
          }
        },
        onClose: (reason) => {
          inbox.unsafeDone(Exit.fail(reason))
          if (leaderId !== undefined && closedByPeer(reason)) rt.handler?.peerLost?.(leaderId)
        }
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
      const failed = (id: number) => (error: Refusal) => Effect.sync(() => reply(refusalFrame(id, Option.some(error))))

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
          const request = message.request
          const claimed = "leaderId" in request
            ? request.leaderId
            : "candidateId" in request
            ? request.candidateId
            : request.serverId
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
        const h = rt.handler
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
          case "ReadIndexRequest":
            if (h!.readIndex === undefined) reply(Codec.encodeError(id, "no-handler", "no read index"))
            else {
              yield* h!.readIndex(request).pipe(
                Effect.matchEffect({ onFailure: failed(id), onSuccess: (r) => Effect.sync(() => answer(id, r)) })
              )
            }
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
    rt.rejected++
    log(Effect.logWarning(what, detail).pipe(Effect.annotateLogs({ peer })))
  }

  const accept = (socket: net.Socket): void => {
    const peer = formatAddress(socket.remoteAddress ?? "?", socket.remotePort ?? 0)
    if (rt.shuttingDown) {
      socket.destroy()
      return
    }
    let peerIds: ReadonlyArray<string> | undefined
    if (tlsOptions !== undefined) {
      const client = checkClient(tlsOptions, socket as tls.TLSSocket)
      if ("refused" in client) {
        refuse(peer, "refused a client: certificate identity", client.refused)
        socket.destroy()
        return
      }
      peerIds = client.ids
    }
    socket.setNoDelay(true)
    const conn = new Conn(socket, peer, maxFrameBytes, budget, now, (error) => {
      rt.rejected++
      logCodecError(error)
    }, (c) => void inbound.delete(c))
    conn.peerIds = peerIds
    inbound.add(conn)
    run(Effect.withScheduler(serveConnection(conn), scheduler))
  }

  const server: net.Server = tlsOptions === undefined
    ? net.createServer({ noDelay: true }, accept)
    : tls.createServer({
      cert: tlsOptions.cert,
      key: tlsOptions.key,
      ca: tlsOptions.ca,
      requestCert: tlsOptions.requireClientCert,
      rejectUnauthorized: tlsOptions.requireClientCert,
      handshakeTimeout: openTimeoutMillis
    }, accept)
  server.maxConnections = rt.limits.maxInboundConnections
  // Node closes connections over maxConnections itself; they are counted, not logged one by one (a flood would
  // flood the log).
  server.on("drop", () => void rt.rejected++)
  // With a listener here Node leaves the socket to it: a handshake that timed out would otherwise stay open.
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    const peer = formatAddress(socket.remoteAddress ?? "?", socket.remotePort ?? 0)
    socket.destroy()
    rt.rejected++
    log(Effect.logWarning("refused a TLS connection", errorText(error)).pipe(Effect.annotateLogs({ peer })))
  })
  server.on("error", (error) => log(Effect.logError("listener failed", errorText(error))))
  return server
}
