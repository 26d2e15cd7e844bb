/**
 * The HTTP API of the key-value service, declared with `@effect/platform`'s
 * `HttpApi` (so the same definition serves requests, derives a typed client
 * for the CLI, and describes itself as OpenAPI):
 *
 * | method and path | body | answer |
 * |---|---|---|
 * | `GET /kv/:key[?stale=true]` | | `{ key, value, index }`, 404 `KeyNotFound` |
 * | `GET /kv[?prefix=&limit=&stale=true]` | | `{ entries: [{ key, value }], index }` |
 * | `PUT /kv/:key` | `{ value }` (JSON, or form `value=...`) | `{ index }` |
 * | `DELETE /kv/:key` | | `{ index, existed }` |
 * | `POST /kv/:key/cas` | `{ expected?, value }` | `{ index }`, 409 `CasFailed` with the current value |
 * | `GET /status` | | the node's view of the cluster |
 * | `POST /cluster/join` | `{ id, raftAddress, httpAddress, voter?, rejoin? }` | `{ index, clusterId? }` |
 * | `POST /cluster/remove` | `{ id }` | `{ index }` |
 * | `POST /cluster/transfer-leadership` | `{ id? }` | `{ leader }` |
 * | `POST /admin/faults` | `{ blocked: [id] }` | `{ blocked }` (nodes started with `--faults` only) |
 *
 * Beside it, `Operator.ts` serves the status page at `/`, `/metrics`, `/docs` and a JSON 404. In front of it,
 * `HttpFront.ts` serves the hot routes (`PUT` and `GET /kv/:key`) with the same answers, without the platform's
 * per-request machinery (`docs/kv.md`).
 *
 * Reads are served by any node, linearizable unless `stale=true`. Writes and
 * membership changes on a follower answer 307
 * with `Location` at the leader's HTTP address (`curl -L` follows it) and a
 * `NotLeader` body naming it; 421 `NotLeader` when the leader's HTTP address
 * is not known, 503 `NoLeader` when no leader is. A node never redirects to
 * itself, and a node whose Raft has shut down serves no data (503
 * `Unavailable`). Errors are the JSON of the typed errors of `KvError.ts`.
 * Requests over the limits of `HttpLimits.ts` answer 413, 414, 431 or 400.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import type * as HttpApiError from "@effect/platform/HttpApiError"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { FaultSwitchTag } from "./FaultSwitch.js"
import * as HttpFront from "./HttpFront.js"
import * as HttpLimits from "./HttpLimits.js"
import { KvService } from "./Kv.js"
import * as KvError from "./KvError.js"
import * as Operator from "./Operator.js"

const key = HttpApiSchema.param("key", Schema.String)
const Stale = Schema.optional(Schema.BooleanFromString)

/** The answer to a read of one key. */
export const ValueAnswer = Schema.Struct({ key: Schema.String, value: Schema.String, index: Schema.Number })
/** The answer to a list of keys. */
export const ListAnswer = Schema.Struct({
  entries: Schema.Array(Schema.Struct({ key: Schema.String, value: Schema.String })),
  index: Schema.Number
})
/** The answer to a write: the log index it was committed at. */
export const IndexAnswer = Schema.Struct({ index: Schema.Number })
/** The answer to a join: the index of the membership change, and the cluster's id when the member knows it. */
export const JoinAnswer = Schema.Struct({ index: Schema.Number, clusterId: Schema.optional(Schema.String) })
/** The answer to a delete. */
export const DeleteAnswer = Schema.Struct({ index: Schema.Number, existed: Schema.Boolean })

/** One server of the configuration, as `GET /status` shows it. */
export const Member = Schema.Struct({
  id: Schema.String,
  raftAddress: Schema.String,
  suffrage: Schema.Literal("Voter", "Nonvoter"),
  http: Schema.optional(Schema.String)
})
/** The leader's replication to one other member, as `GET /status` on the leader shows it. */
export const PeerStatus = Schema.Struct({
  id: Schema.String,
  suffrage: Schema.Literal("Voter", "Nonvoter"),
  http: Schema.optional(Schema.String),
  matchIndex: Schema.Number,
  nextIndex: Schema.Number,
  lastContactMillisAgo: Schema.optional(Schema.Number),
  failures: Schema.Number
})
/** What `GET /status` answers. */
export const Status = Schema.Struct({
  id: Schema.String,
  clusterId: Schema.optional(Schema.String),
  http: Schema.String,
  state: Schema.Literal("Follower", "Candidate", "Leader", "Shutdown"),
  term: Schema.Number,
  leader: Schema.optional(Schema.Struct({ id: Schema.String, http: Schema.optional(Schema.String) })),
  commitIndex: Schema.Number,
  appliedIndex: Schema.Number,
  lastIndex: Schema.Number,
  lastContactMillisAgo: Schema.optional(Schema.Number),
  configurationIndex: Schema.Number,
  members: Schema.Array(Member),
  peers: Schema.Array(PeerStatus),
  keys: Schema.Number,
  leaderChanges: Schema.Array(Schema.Struct({
    atMillis: Schema.Number,
    term: Schema.Number,
    leader: Schema.optional(Schema.String)
  }))
})

/** The key-value endpoints. */
export class KvGroup extends HttpApiGroup.make("kv")
  .add(
    HttpApiEndpoint.get("get")`/kv/${key}`
      .setUrlParams(Schema.Struct({ stale: Stale }))
      .addSuccess(ValueAnswer)
      .addError(KvError.KeyNotFound)
  )
  .add(
    HttpApiEndpoint.get("list", "/kv")
      .setUrlParams(Schema.Struct({
        prefix: Schema.optional(Schema.String),
        limit: Schema.optional(Schema.NumberFromString),
        stale: Stale
      }))
      .addSuccess(ListAnswer)
  )
  .add(
    HttpApiEndpoint.put("put")`/kv/${key}`
      .setPayload(Schema.Struct({ value: Schema.String }))
      .addSuccess(IndexAnswer)
  )
  .add(HttpApiEndpoint.del("delete")`/kv/${key}`.addSuccess(DeleteAnswer))
  .add(
    HttpApiEndpoint.post("cas")`/kv/${key}/cas`
      .setPayload(Schema.Struct({ expected: Schema.optional(Schema.String), value: Schema.String }))
      .addSuccess(IndexAnswer)
      .addError(KvError.CasFailed)
  )
  .addError(KvError.NotLeader)
  .addError(KvError.NoLeader)
  .addError(KvError.Unavailable)
  .addError(KvError.OutcomeUnknown)
  .addError(KvError.PayloadTooLarge)
{}

/** The cluster endpoints. */
export class ClusterGroup extends HttpApiGroup.make("cluster")
  .add(HttpApiEndpoint.get("status", "/status").addSuccess(Status))
  .add(
    HttpApiEndpoint.post("join", "/cluster/join")
      .setPayload(Schema.Struct({
        id: Schema.NonEmptyString,
        raftAddress: Schema.NonEmptyString,
        httpAddress: Schema.NonEmptyString,
        voter: Schema.optional(Schema.Boolean),
        rejoin: Schema.optional(Schema.Boolean)
      }))
      .addSuccess(JoinAnswer)
  )
  .add(
    HttpApiEndpoint.post("remove", "/cluster/remove")
      .setPayload(Schema.Struct({ id: Schema.NonEmptyString }))
      .addSuccess(IndexAnswer)
  )
  .add(
    HttpApiEndpoint.post("transferLeadership", "/cluster/transfer-leadership")
      .setPayload(Schema.Struct({ id: Schema.optional(Schema.String) }))
      .addSuccess(Schema.Struct({ leader: Schema.optional(Schema.String) }))
  )
  .add(
    HttpApiEndpoint.post("faults", "/admin/faults")
      .setPayload(Schema.Struct({ blocked: Schema.Array(Schema.String) }))
      .addSuccess(Schema.Struct({ blocked: Schema.Array(Schema.String) }))
      .addError(KvError.FaultsDisabled)
  )
  .addError(KvError.NotLeader)
  .addError(KvError.NoLeader)
  .addError(KvError.Unavailable)
  .addError(KvError.OutcomeUnknown)
  .addError(KvError.ClusterChangeFailed)
  .addError(KvError.PayloadTooLarge)
{}

/** The whole API of a key-value node. */
export class KvApi extends HttpApi.make("kv").add(KvGroup).add(ClusterGroup) {}

const encodeNotLeader = Schema.encodeSync(KvError.NotLeader)

/** Turns a `NotLeader` that knows the leader's HTTP address into a 307 to the same path there. */
const redirecting = <A, E, R>(
  request: HttpServerRequest.HttpServerRequest,
  effect: Effect.Effect<A, E | KvError.NotLeader, R>
): Effect.Effect<A | HttpServerResponse.HttpServerResponse, E | KvError.NotLeader, R> =>
  Effect.catchIf(
    effect,
    (error): error is KvError.NotLeader => error instanceof KvError.NotLeader && error.leaderHttp !== undefined,
    (error) =>
      Effect.succeed(HttpServerResponse.unsafeJson(encodeNotLeader(error), {
        status: 307,
        headers: { location: `http://${error.leaderHttp}${request.url}` }
      }))
  )

const kvHandlers: Layer.Layer<HttpApiGroup.ApiGroup<"kv", "kv">, never, KvService> = HttpApiBuilder.group(
  KvApi,
  "kv",
  (handlers) =>
    Effect.gen(function*() {
      const kv = yield* KvService
      return handlers
        .handle("get", ({ path, request, urlParams }) =>
          redirecting(
            request,
            Effect.map(kv.get(path.key, { stale: urlParams.stale }), ({ index, value }) => ({
              key: path.key,
              value,
              index
            }))
          ))
        .handle("list", ({ request, urlParams }) => redirecting(request, kv.list(urlParams)))
        .handle("put", ({ path, payload, request }) => redirecting(request, kv.put(path.key, payload.value)))
        .handle("delete", ({ path, request }) => redirecting(request, kv.delete(path.key)))
        .handle(
          "cas",
          ({ path, payload, request }) => redirecting(request, kv.cas(path.key, payload.expected, payload.value))
        )
    })
)

const clusterHandlers: Layer.Layer<HttpApiGroup.ApiGroup<"kv", "cluster">, never, KvService> = HttpApiBuilder
  .group(KvApi, "cluster", (handlers) =>
    Effect.gen(function*() {
      const kv = yield* KvService
      const faults = yield* Effect.serviceOption(FaultSwitchTag)
      return handlers
        .handle("status", () => kv.status)
        .handle("join", ({ payload, request }) => redirecting(request, kv.join(payload)))
        .handle("remove", ({ payload, request }) => redirecting(request, kv.remove(payload.id)))
        .handle(
          "transferLeadership",
          ({ payload, request }) => redirecting(request, kv.transferLeadership(payload.id))
        )
        .handle("faults", ({ payload }) =>
          Option.match(faults, {
            onNone: () => Effect.fail(new KvError.FaultsDisabled()),
            onSome: (control) =>
              Effect.zipRight(control.block(payload.blocked), Effect.map(control.blocked, (blocked) => ({ blocked })))
          }))
    }))

/** The API's handlers over the node's `KvService` (the fault switch is used when one is in context). */
export const layerApi: Layer.Layer<HttpApi.Api, never, KvService> = HttpApiBuilder.api(KvApi).pipe(
  Layer.provide([kvHandlers, clusterHandlers])
)

/**
 * `@effect/platform` makes a span per request (the URL parsed, the headers redacted, a dozen attributes) for the
 * tracer in place. With Effect's default tracer nobody exports spans: then `layer` serves without them, as Raft
 * itself does (`RaftConfig.traceSampleRate`); with any other tracer (`Layer.setTracer`, OpenTelemetry's), the spans
 * are made as before.
 */
const spansOnlyWhenExported = <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapEffect(Effect.map(Effect.tracer, (tracer) =>
    tracer === Context.get(DefaultServices.liveServices, Tracer.Tracer)
      ? HttpMiddleware.withTracerDisabledWhen(layer, () => true)
      : layer))

/**
 * Sets the server's front handler (`HttpFront.ts`: `PUT` and `GET /kv/:key` without the platform's per-request
 * machinery) when the server has a front slot (`HttpLimits.layerServer`) and nobody exports spans (the API's path
 * makes a span per request then); it is taken away when the layer closes.
 */
const front: Layer.Layer<never, never, KvService> = Layer.scopedDiscard(Effect.gen(function*() {
  const slot = yield* Effect.serviceOption(HttpLimits.FrontSlotTag)
  const tracer = yield* Effect.tracer
  if (Option.isNone(slot) || tracer !== Context.get(DefaultServices.liveServices, Tracer.Tracer)) return
  const handler = yield* HttpFront.make(yield* KvService)
  slot.value.front = handler
  yield* Effect.addFinalizer(() => Effect.sync(() => {
    if (slot.value.front === handler) slot.value.front = undefined
  }))
}))

/**
 * Serves the API on the `HttpServer` in context (`NodeHttpServer.layer` provides it and the platform services),
 * behind `HttpLimits.middleware` (body, target and JSON nesting limits), with the operator's pages of `Operator.ts`
 * (status page, `/metrics`, `/docs`, JSON 404), and its hot routes before it (`front`) on `HttpLimits.layerServer`.
 */
export const layer: Layer.Layer<
  never,
  never,
  KvService | Operator.MetricsScrape | HttpServer.HttpServer | HttpRouter.HttpRouter.DefaultServices
> = Layer.merge(
  spansOnlyWhenExported(Operator.withResponses(HttpApiBuilder.serve(HttpLimits.middleware()))).pipe(
    Layer.provide(Operator.routes),
    Layer.provide(layerApi)
  ),
  front
)

/**
 * A typed client of the node at `address` ("host:port") that follows redirects to the leader itself: `fetch`
 * cannot re-send a request body on a redirect, so fetch is told not to follow, and each hop sends a fresh copy.
 */
export const client = (address: string): Effect.Effect<
  HttpApiClient.Client<typeof KvGroup | typeof ClusterGroup, HttpApiError.HttpApiDecodeError, never>,
  never,
  HttpClient.HttpClient
> =>
  HttpApiClient.make(KvApi, {
    baseUrl: `http://${address}`,
    transformClient: (http) =>
      http.pipe(
        HttpClient.mapRequest((request) =>
          request.body._tag === "Uint8Array"
            ? HttpClientRequest.setBody(request, HttpBody.uint8Array(request.body.body.slice(), request.body.contentType))
            : request
        ),
        HttpClient.followRedirects(5)
      )
  })

/** `fetch` as the HTTP client, told to hand redirects back (the `client` above follows them). */
export const layerFetch: Layer.Layer<HttpClient.HttpClient> = FetchHttpClient.layer.pipe(
  Layer.provide(Layer.succeed(FetchHttpClient.RequestInit, { redirect: "manual" }))
)
