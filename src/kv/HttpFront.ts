/**
 * The two hot routes of the key-value API, `PUT /kv/:key` and `GET /kv/:key[?stale=true|false]`, served by a plain
 * `node:http` listener in front of the `HttpApi` of `Http.ts`, with the same answers: the same status codes, JSON
 * bodies and typed errors (`KvError.ts`), the same 307 redirects to the leader, the same limits (`HttpLimits.ts`).
 *
 * Why: measured on a one-node cluster (`docs/kv.md`), the `@effect/platform` request path (a fiber per request,
 * the router, `HttpApi`'s Schema decoding of path, query and body, its encoding of the answer, the pre-response
 * handlers) cost about 200 µs of CPU per request, more than the whole rest of a stale read. Here a request costs one
 * fiber (the `Kv` call itself) and one `writeHead`/`end`. The calls' timeouts are kept by `internal/deadlineLanes.ts` instead of
 * `Effect.timeout` (which forks two fibers and arms a timer per call): at its deadline a call is interrupted and
 * answered with the error the timed call fails with (`Kv.untimed`).
 *
 * Anything unusual goes to the API, which answers it as before: another method or path, a key with `%`, `/`, `;` or
 * other characters outside a plain set (the router decodes those), other query parameters, a body that is not
 * `application/json` of a declared length within the limit, a body that is not `{"value": "<string>", ...}` (then
 * handed on with the bytes already read: `HttpLimits.withPreReadBody`), and every request while spans are exported
 * (the API makes a span per request; `Http.layer` sets the front only under Effect's default tracer).
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as http from "node:http"
import * as Deadlines from "../internal/deadlineLanes.js"
import * as HttpLimits from "./HttpLimits.js"
import type * as Kv from "./Kv.js"
import * as KvError from "./KvError.js"

/** Every error the two routes answer with. */
const errors = [
  KvError.NotLeader,
  KvError.NoLeader,
  KvError.Unavailable,
  KvError.OutcomeUnknown,
  KvError.PayloadTooLarge,
  KvError.KeyNotFound
] as const
type RouteError = InstanceType<typeof errors[number]>

const encodeError = Schema.encodeSync(Schema.Union(...errors))
/** The status of each error, from the annotation the API reads too. */
const statusByTag: ReadonlyMap<string, number> = new Map(
  errors.map((error) => [error.identifier, HttpApiSchema.getStatusError(error)])
)

/** A key the router takes as it is: no percent-encoding or separators (dot segments are checked apart). */
const plainKey = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/

const isJson = (type: string | undefined): boolean =>
  type === "application/json" || (type !== undefined && type.startsWith("application/json;"))

const json = (response: http.ServerResponse, status: number, body: string, location?: string): void => {
  response.writeHead(
    status,
    location === undefined
      ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
      : { "content-type": "application/json", "content-length": Buffer.byteLength(body), location }
  )
  response.end(body)
}

/**
 * The front handler over `kv` (`HttpLimits.Front`), running each request's `Kv` call in the caller's context;
 * `limits` are the API's (`HttpLimits.middleware`). Its deadline keeper ends with the scope.
 */
export const make = (
  kv: Kv.Kv,
  limits: HttpLimits.Limits = HttpLimits.defaults
): Effect.Effect<HttpLimits.Front, never, Scope.Scope> =>
  Effect.map(Effect.zip(Effect.runtime<never>(), Deadlines.make), ([runtime, deadlines]) =>
    makeWith(kv, limits, runtime, deadlines.lane(kv.untimed.readTimeoutMillis), deadlines.lane(kv.untimed.writeTimeoutMillis)))

const makeWith = (
  kv: Kv.Kv,
  limits: HttpLimits.Limits,
  runtime: Runtime.Runtime<never>,
  reads: Deadlines.Lane,
  writes: Deadlines.Lane
): HttpLimits.Front => {
  const run = Runtime.runCallback(runtime)
  const runFork = Runtime.runFork(runtime)

  /** Answers `exit` of a request's call: `ok` makes the body of a success. */
  const answer = <A>(
    request: http.IncomingMessage,
    response: http.ServerResponse,
    exit: Exit.Exit<A, RouteError>,
    ok: (value: A) => string
  ): void => {
    if (response.writableEnded || response.destroyed) return
    if (exit._tag === "Success") return json(response, 200, ok(exit.value))
    const failure = Cause.failureOption(exit.cause)
    if (failure._tag === "Some") {
      const error = failure.value
      const body = JSON.stringify(encodeError(error))
      // A `NotLeader` that knows the leader's HTTP address is a redirect there, as `Http.ts` answers it.
      return error._tag === "NotLeader" && error.leaderHttp !== undefined
        ? json(response, 307, body, `http://${error.leaderHttp}${request.url}`)
        : json(response, statusByTag.get(error._tag) ?? 500, body)
    }
    // Interrupted (the node is closing) or a defect: an empty 503 or 500, as the API answers them.
    const interrupted = Cause.isInterruptedOnly(exit.cause)
    if (!interrupted) runFork(Effect.logError("the key-value API failed unexpectedly", exit.cause))
    response.writeHead(interrupted ? 503 : 500, { "content-length": 0 })
    response.end()
  }

  /**
   * Runs `effect` for the request within the deadline `lane` keeps, answering `timedOut()` if it is interrupted for
   * it; a client that goes away interrupts it too, as the API does.
   */
  const serve = <A>(
    request: http.IncomingMessage,
    response: http.ServerResponse,
    effect: Effect.Effect<A, RouteError>,
    ok: (value: A) => string,
    lane: Deadlines.Lane,
    timedOut: () => RouteError
  ): void => {
    let expired = false
    let cancel: (() => void) | undefined
    const deadline = lane.add(() => {
      expired = true
      cancel?.()
    })
    cancel = run(effect, {
      onExit: (exit) => {
        deadline.done()
        answer(request, response, expired && Exit.isInterrupted(exit) ? Exit.fail(timedOut()) : exit, ok)
      }
    })
    if (!response.writableEnded) response.on("close", () => response.writableEnded || cancel?.())
  }

  const get = (request: http.IncomingMessage, response: http.ServerResponse, key: string, stale: boolean | undefined) => {
    const ok = ({ index, value }: { readonly index: number; readonly value: string }) =>
      JSON.stringify({ key, value, index })
    // Without a fiber where the node can (`Kv.untimed.getNow`): a stale read, a linearizable one on the leader, or
    // on a follower whose ReadIndex request is in flight.
    let settled = false
    let drop: (() => void) | undefined
    const deadline = reads.add(() => {
      if (settled) return
      settled = true
      drop?.()
      answer(request, response, Exit.fail(kv.untimed.readTimedOut()), ok)
    })
    drop = kv.untimed.getNow(key, { stale }, (exit) => {
      if (settled) return
      settled = true
      deadline.done()
      answer(request, response, exit, ok)
    })
    if (drop === undefined) {
      deadline.done()
      return serve(request, response, kv.untimed.get(key, { stale }), ok, reads, kv.untimed.readTimedOut)
    }
    // A client that goes away drops its wait, as it interrupts a call.
    if (!settled) {
      response.on("close", () => {
        if (settled || response.writableEnded) return
        settled = true
        deadline.done()
        drop?.()
      })
    }
  }

  const put = (request: http.IncomingMessage, response: http.ServerResponse, key: string, api: () => void) =>
    HttpLimits.readBody(request, limits.maxBodyBytes, (body) => {
      // Over the limit or cut short: the API answers it (its middleware sees the same outcome).
      if (body === undefined || body instanceof KvError.BadRequest) return api()
      const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
      const value = HttpLimits.nestedDeeperThan(text, limits.maxJsonDepth) ? undefined : valueOf(text)
      if (value === undefined) {
        HttpLimits.withPreReadBody(request, body)
        return api()
      }
      serve(request, response, kv.untimed.put(key, value), JSON.stringify, writes, kv.untimed.writeTimedOut)
    })

  return (request, response, api) => {
    const url = request.url
    if (url === undefined || url.length > limits.maxUrlBytes || !url.startsWith("/kv/")) return api()
    const query = url.indexOf("?", 4)
    const key = query < 0 ? url.slice(4) : url.slice(4, query)
    if (!plainKey.test(key) || key === "." || key === "..") return api()
    if (request.method === "GET") {
      const params = query < 0 ? undefined : url.slice(query + 1)
      if (params === undefined) return get(request, response, key, undefined)
      if (params === "stale=true") return get(request, response, key, true)
      if (params === "stale=false") return get(request, response, key, false)
      return api()
    }
    if (request.method !== "PUT" || query >= 0 || !isJson(request.headers["content-type"])) return api()
    const declared = request.headers["content-length"]
    const size = declared === undefined ? Number.NaN : Number(declared)
    if (!(size > 0 && size <= limits.maxBodyBytes) || request.headers["transfer-encoding"] !== undefined) return api()
    put(request, response, key, api)
  }
}

/** The `value` of a JSON body `{"value": "<string>", ...}`, else undefined (the API then says what is wrong). */
const valueOf = (text: string): string | undefined => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined
  const value = (parsed as { readonly value?: unknown }).value
  return typeof value === "string" ? value : undefined
}
