/**
 * One TCP connection of the transport (internal): frame reading (through the codec's `FrameReader`, charged to the
 * transport's receive budget), frames that arrive between owners kept until the next one, writing, waiting for
 * `drain`, and closing. A connection is owned by one RPC, a pipeline, a pool or an inbound server loop at a time.
 */
import type * as net from "node:net"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { CodecError, TransportError } from "../../RaftError.js"
import * as Codec from "../../transport/codec.js"
import { errorText } from "./identity.js"

export type Lane = "rpc" | "heartbeat"

/**
 * A frame whose body is at most this long is copied behind its header into one buffer (`Codec.concat`) and written
 * with one `socket.write`: Node's corked two-chunk write (the `writev` path) costs more JavaScript than the copy.
 */
const COPY_BELOW_BYTES = 16 * 1024

/** What a connection reports to whoever owns it now. */
export interface ConnOwner {
  readonly onMessage: (message: Codec.Message) => void
  readonly onClose: (reason: TransportError) => void
}

/** One socket with frame reading and writing; owned by one RPC, a pipeline, a pool, or an inbound server loop. */
export class Conn {
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
    if (frame[1].length <= COPY_BELOW_BYTES) return socket.write(Codec.concat(frame))
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
