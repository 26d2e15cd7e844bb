/**
 * The size limits of the key-value service's HTTP API, enforced where a request enters: before a body is read, and
 * by the HTTP parser for the request's head. Every refusal is a JSON error of `KvError.ts` (413 `PayloadTooLarge`,
 * 414 `UriTooLong`, 431 `HeadersTooLarge`, 400 `BadRequest`), never a 500 or a reset connection:
 *
 * - a body whose `Content-Length` is over `maxBodyBytes` is refused unread; a chunked body is read up to
 *   `maxBodyBytes` and refused as soon as it goes over. The rest of a refused body is discarded as it arrives (never
 *   held), so the client still reads the answer, and the connection stays usable;
 * - a request target over `maxUrlBytes` (a key or prefix that long) is refused before routing;
 * - a request head over `maxHeaderBytes` is refused by the parser (`createServer` answers it, then lets the client
 *   finish sending before closing, so the answer is not lost to a reset);
 * - JSON nested deeper than `maxJsonDepth` is refused before it is parsed (parsing it could exhaust the stack).
 *
 * `middleware` goes around the API (`Http.layer`); `createServer` is the Node HTTP server `KvNode` listens with.
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as http from "node:http"
import type * as net from "node:net"
import * as KvError from "./KvError.js"

/** The limits; see the module's comment. */
export interface Limits {
  /** Largest request body. Default 1 MiB (a command of `RaftConfig.maxEntryBytes` beside it is refused with 413 too). */
  readonly maxBodyBytes: number
  /** Longest request target (path and query). Default 8 KiB. */
  readonly maxUrlBytes: number
  /** Largest request head (request line and headers), Node's `maxHeaderSize`. Default 16 KiB. */
  readonly maxHeaderBytes: number
  /** Deepest nesting of arrays and objects in a JSON body. Default 64. */
  readonly maxJsonDepth: number
  /** How long a client may take to send a whole request (Node's `requestTimeout`). Default 60 s. */
  readonly requestTimeoutMillis: number
}

/** The limits `kv node` serves with. */
export const defaults: Limits = {
  maxBodyBytes: 1024 * 1024,
  maxUrlBytes: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxJsonDepth: 64,
  requestTimeoutMillis: 60_000
}

/** Whether `text`, read as JSON, nests arrays and objects deeper than `max` (strings are skipped). */
export const nestedDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}

const encodeError = Schema.encodeSync(
  Schema.Union(KvError.PayloadTooLarge, KvError.UriTooLong, KvError.HeadersTooLarge, KvError.BadRequest)
)
type Refusal = KvError.PayloadTooLarge | KvError.UriTooLong | KvError.HeadersTooLarge | KvError.BadRequest

const statusOf = (error: Refusal): number =>
  error._tag === "PayloadTooLarge" ? 413 : error._tag === "UriTooLong" ? 414 : error._tag === "HeadersTooLarge" ? 431 : 400

const refuse = (error: Refusal): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(encodeError(error), { status: statusOf(error) })

/**
 * Reads the body of `source` up to `max` bytes: its bytes, or undefined once it goes over (the rest is then
 * discarded as it arrives), or the error the stream failed with.
 */
const readCapped = (source: http.IncomingMessage, max: number) =>
  Effect.async<Uint8Array | undefined, KvError.BadRequest>((resume) => {
    const chunks: Array<Buffer> = []
    let bytes = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes <= max) return void chunks.push(chunk)
      cleanup()
      source.resume()
      resume(Effect.succeed(undefined))
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    const onError = (error: Error) => {
      cleanup()
      resume(Effect.fail(new KvError.BadRequest({ reason: `body not received: ${error.message}` })))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(cleanup)
  })

/** `request` with its body already read as `text` (and every request derived from it too). */
const withBody = (
  request: HttpServerRequest.HttpServerRequest,
  text: string
): HttpServerRequest.HttpServerRequest =>
  Object.create(request, {
    text: { value: Effect.succeed(text) },
    arrayBuffer: { value: Effect.sync(() => new TextEncoder().encode(text).buffer) },
    modify: { value: (options: Parameters<typeof request.modify>[0]) => withBody(request.modify(options), text) }
  }) as HttpServerRequest.HttpServerRequest

/** Applies `limits` to every request before `app` sees it. */
export const middleware = (limits: Limits = defaults) => (app: HttpApp.Default): HttpApp.Default =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.url.length > limits.maxUrlBytes) {
      return refuse(new KvError.UriTooLong({ size: request.url.length, limit: limits.maxUrlBytes }))
    }
    const declared = request.headers["content-length"]
    const size = declared === undefined ? undefined : Number(declared)
    if (size !== undefined && size > limits.maxBodyBytes) {
      return refuse(new KvError.PayloadTooLarge({ what: "body", size, limit: limits.maxBodyBytes }))
    }
    if (size === 0 || (size === undefined && request.headers["transfer-encoding"] === undefined)) return yield* app
    const body = yield* Effect.either(readCapped(NodeHttpServerRequest.toIncomingMessage(request), limits.maxBodyBytes))
    if (body._tag === "Left") return refuse(body.left)
    if (body.right === undefined) return refuse(new KvError.PayloadTooLarge({ what: "body", limit: limits.maxBodyBytes }))
    const text = new TextDecoder().decode(body.right)
    if (nestedDeeperThan(text, limits.maxJsonDepth)) {
      return refuse(new KvError.BadRequest({ reason: `JSON nested deeper than ${limits.maxJsonDepth}` }))
    }
    return yield* Effect.provideService(app, HttpServerRequest.HttpServerRequest, withBody(request, text))
  })

/** The JSON answer the parser's refusal of a request gets: 431 for a head over the limit, else 400. */
const clientErrorAnswer = (error: Error & { readonly code?: string }, limits: Limits): string => {
  const refusal: Refusal = error.code === "HPE_HEADER_OVERFLOW"
    ? new KvError.HeadersTooLarge({ limit: limits.maxHeaderBytes })
    : new KvError.BadRequest({ reason: error.code ?? "malformed request" })
  const body = JSON.stringify(encodeError(refusal))
  return `HTTP/1.1 ${statusOf(refusal)} ${http.STATUS_CODES[statusOf(refusal)]}\r\ncontent-type: application/json\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
}

/**
 * A Node HTTP server with `limits` on the request head and on the time to receive a request. A request the parser
 * refuses is answered in JSON; the connection then reads and discards what the client still sends until the
 * client closes (or `requestTimeoutMillis` of silence), so closing it does not reset the connection under the answer.
 */
export const createServer = (limits: Limits = defaults) => (): http.Server => {
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMillis,
    headersTimeout: Math.min(limits.requestTimeoutMillis, 10_000)
  })
  // Node's idle timeout for every socket of the server (no timer of ours): with no "timeout" listener, a socket
  // silent this long is destroyed, so a client that neither sends nor closes after a refusal is let go. Requests
  // are answered well within it (writes and reads time out after 5 s).
  server.timeout = limits.requestTimeoutMillis
  server.on("clientError", (error: Error & { readonly code?: string }, socket: net.Socket) => {
    if (error.code === "ECONNRESET" || !socket.writable) return void socket.destroy()
    socket.end(clientErrorAnswer(error, limits))
    socket.on("end", () => socket.destroy())
    socket.resume()
  })
  return server
}
