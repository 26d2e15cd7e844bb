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
 * `middleware` goes around the API (`Http.layer`); `createServer` is the Node HTTP server `KvNode` listens with
 * (`layerServer`). That server can put a front handler before the API (`Front`, `HttpFront.ts`): it serves the hot
 * routes itself and hands every other request to the API, with the body it already read (`withPreReadBody`).
 */
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as Etag from "@effect/platform/Etag"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import type * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
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
  // Nesting deeper than `max` takes more than `max` opening brackets: count them first with `indexOf` (native, so
  // a plain `{"value": "..."}` body costs a few calls), and walk the text only when there are that many.
  let opening = 0
  for (let at = text.indexOf("{"); at >= 0 && opening <= max; at = text.indexOf("{", at + 1)) opening++
  for (let at = text.indexOf("["); at >= 0 && opening <= max; at = text.indexOf("[", at + 1)) opening++
  if (opening <= max) return false
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
 * Reads the body of `source` up to `max` bytes and calls `done` once: with its bytes, or undefined once it goes over
 * (the rest is then discarded as it arrives), or the error the stream failed with. Returns a canceller.
 */
export const readBody = (
  source: http.IncomingMessage,
  max: number,
  done: (outcome: Uint8Array | undefined | KvError.BadRequest) => void
): () => void => {
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
    done(undefined)
  }
  const onEnd = () => {
    cleanup()
    done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
  }
  const onError = (error: Error) => {
    cleanup()
    done(new KvError.BadRequest({ reason: `body not received: ${error.message}` }))
  }
  source.on("data", onData)
  source.on("end", onEnd)
  source.on("error", onError)
  return cleanup
}

/** `readBody` as an effect; a body the front handler already read (`withPreReadBody`) is not read again. */
const readCapped = (source: http.IncomingMessage, max: number) =>
  Effect.async<Uint8Array | undefined, KvError.BadRequest>((resume) => {
    const preRead = preReadBodies.get(source)
    if (preRead !== undefined) return resume(Effect.succeed(preRead))
    const cancel = readBody(source, max, (outcome) =>
      resume(outcome instanceof KvError.BadRequest ? Effect.fail(outcome) : Effect.succeed(outcome)))
    return Effect.sync(cancel)
  })

/** Bodies read (within the limit) by a front handler before it handed the request to the API. */
const preReadBodies = new WeakMap<http.IncomingMessage, Uint8Array>()

/** Records that `request`'s body, `body`, was read before the API sees it (the middleware then uses it). */
export const withPreReadBody = (request: http.IncomingMessage, body: Uint8Array): void =>
  void preReadBodies.set(request, body)

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
export const createServer = (limits: Limits = defaults, front?: FrontSlot) => (): http.Server => {
  const server = new FrontedServer({
    maxHeaderSize: limits.maxHeaderBytes,
    requestTimeout: limits.requestTimeoutMillis,
    headersTimeout: Math.min(limits.requestTimeoutMillis, 10_000)
  }, front)
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

/**
 * Serves a request before the API does, or hands it on: `api()` gives it to the API's listener (at once, or later,
 * after reading its body: see `withPreReadBody`). `HttpFront.ts` is the one the key-value service sets.
 */
export type Front = (request: http.IncomingMessage, response: http.ServerResponse, api: () => void) => void

/** Where the server looks for its front handler, per request; empty, every request goes to the API. */
export interface FrontSlot {
  front: Front | undefined
}

/** The front slot of the server `layerServer` made. */
export class FrontSlotTag extends Context.Tag("effect-raft/kv/HttpLimits/FrontSlot")<FrontSlotTag, FrontSlot>() {}

/** A Node HTTP server whose "request" events pass through the front handler of `slot`, when one is set. */
class FrontedServer extends http.Server {
  constructor(options: http.ServerOptions, readonly slot: FrontSlot | undefined) {
    super(options)
  }
  override emit(event: string | symbol, ...args: Array<unknown>): boolean {
    const front = this.slot?.front
    if (event !== "request" || front === undefined) return super.emit(event as string, ...args) // a symbol passes through as well: the cast is for the overloads
    const [request, response] = args as [http.IncomingMessage, http.ServerResponse]
    front(request, response, () => void super.emit("request", request, response))
    return true
  }
}

/**
 * `NodeHttpServer.layer` over `createServer(limits)` at `address`, with the server's front slot (`FrontSlotTag`):
 * what a key-value node listens with.
 */
export const layerServer = (
  address: { readonly host: string; readonly port: number },
  limits: Limits = defaults
): Layer.Layer<
  HttpServer.HttpServer | HttpPlatform.HttpPlatform | Etag.Generator | NodeContext.NodeContext | FrontSlotTag,
  ServeError
> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const slot: FrontSlot = { front: undefined }
    return Layer.merge(Layer.succeed(FrontSlotTag, slot), NodeHttpServer.layer(createServer(limits, slot), address))
  }))
