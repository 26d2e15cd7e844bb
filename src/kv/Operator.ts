/**
 * What an operator reads from a key-value node, beside its API (`Http.ts`):
 *
 * | path | answer |
 * |---|---|
 * | `GET /` | the status page (`StatusPage.ts`): the cluster at a glance, refreshed every second |
 * | `GET /metrics` | every metric of the process (`RaftMetrics`, …) in Prometheus text format |
 * | `GET /docs` | the API described by OpenAPI, in Swagger UI (served whole, nothing loaded from elsewhere; its module is loaded on the first request) |
 * | `GET /docs/openapi.json` | the OpenAPI document itself |
 * | anything else | 404 with a JSON `RouteNotFound` |
 *
 * `/metrics` goes through `@effect/opentelemetry`'s metric producer, which
 * reads Effect's metric registry, and OpenTelemetry's Prometheus exporter,
 * whose serializer writes the text (its own HTTP server is not started).
 * `GET /status` answers any origin, so the status page of one node can ask
 * the others.
 */
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as KvError from "./KvError.js"
import * as StatusPage from "./StatusPage.js"

/** Collecting the metrics failed (the exporter's promise was rejected). */
export class MetricsUnavailable extends Data.TaggedError("MetricsUnavailable")<{ readonly cause: unknown }> {}

/** Reads every metric of the process as Prometheus text. */
export class MetricsScrape extends Context.Tag("effect-raft/kv/MetricsScrape")<
  MetricsScrape,
  Effect.Effect<string, MetricsUnavailable>
>() {}

/**
 * The Prometheus exporter over Effect's metrics: a reader that never starts a server, registered with
 * `@effect/opentelemetry`'s producer for the life of the layer. Series are labelled by the metrics' own labels
 * (`node`, `peer`, …), without OpenTelemetry's scope labels.
 */
export const layerMetrics = (serviceName = "effect-raft-kv"): Layer.Layer<MetricsScrape> =>
  Layer.scoped(
    MetricsScrape,
    Effect.gen(function*() {
      const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
      yield* Metrics.registerProducer(yield* Metrics.makeProducer, () => exporter)
      const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
      return Effect.tryPromise({
        try: () => exporter.collect(),
        catch: (cause) => new MetricsUnavailable({ cause })
      }).pipe(Effect.map((collected) => serializer.serialize(collected.resourceMetrics)))
    })
  ).pipe(Layer.provide(Resource.layer({ serviceName })))

/** The content type of Prometheus' text format. */
export const prometheusContentType: string = "text/plain; version=0.0.4; charset=utf-8"

/**
 * Swagger UI for `api` at `/docs`, as `@effect/platform`'s `HttpApiSwagger` serves it, its module imported on the
 * first request and its router kept in `scope`: the module's strings (Swagger UI's script and style, 2 MB of
 * source held twice) and the page it renders make about 9 MiB of every node's heap, for a page rarely opened.
 */
const swaggerDocs = (api: HttpApi.HttpApi.Any, scope: Scope.Scope) =>
  Effect.promise(() => import("@effect/platform/HttpApiSwagger")).pipe(
    Effect.flatMap((swagger) => HttpLayerRouter.toHttpEffect(swagger.layerHttpLayerRouter({ api, path: "/docs" }))),
    Scope.extend(scope)
  )

/** `/`, `/metrics` and `/docs/openapi.json` on the API's router, and Swagger UI at `/docs`. */
export const routes: Layer.Layer<never, never, HttpApi.Api | MetricsScrape> = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const scrape = yield* MetricsScrape
    const { api } = yield* HttpApi.Api
    const spec = OpenApi.fromApi(api)
    const docs = yield* Effect.cached(swaggerDocs(api, yield* Effect.scope))
    yield* router.get("/docs", Effect.flatten(docs))
    yield* router.get("/", Effect.succeed(HttpServerResponse.html(StatusPage.html)))
    yield* router.get(
      "/metrics",
      scrape.pipe(
        Effect.map((text) => HttpServerResponse.text(text, { contentType: prometheusContentType })),
        Effect.catchTag("MetricsUnavailable", (error) =>
          Effect.as(
            Effect.logWarning("collecting the metrics failed", error.cause),
            HttpServerResponse.text("metrics unavailable\n", { status: 503 })
          ))
      )
    )
    yield* router.get("/docs/openapi.json", Effect.succeed(HttpServerResponse.unsafeJson(spec)))
  })
)

const encodeRouteNotFound = Schema.encodeSync(KvError.RouteNotFound)



/**
 * Answers a request no route took with a JSON `RouteNotFound` (the router's own answer is an empty 404), and lets
 * any origin read `GET /status` (the status page of another node asks it). Both are done just before the response
 * is sent (a pre-response handler): the router's 404 is made after the middleware's turn. The handler is set once,
 * for every request `layer` serves (its fibers inherit it), not appended per request: appending updates the
 * request fiber's `FiberRef`s, a copy of all of them, on every request.
 */
export const withResponses = <A, E, R>(layer: Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.locallyWith(layer, HttpApp.currentPreResponseHandlers, (current) =>
    Option.some(Option.match(current, {
      onNone: () => beforeResponse,
      onSome: (previous): HttpApp.PreResponseHandler => (request, response) =>
        Effect.flatMap(previous(request, response), (answer) => beforeResponse(request, answer))
    })))

const beforeResponse = (
  request: HttpServerRequest.HttpServerRequest,
  response: HttpServerResponse.HttpServerResponse
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  if (response.status === 404 && response.body._tag === "Empty") {
    const path = request.url.split("?")[0] ?? request.url
    return Effect.succeed(
      HttpServerResponse.unsafeJson(encodeRouteNotFound(new KvError.RouteNotFound({ method: request.method, path })), {
        status: 404
      })
    )
  }
  return Effect.succeed(
    request.method === "GET" && (request.url === "/status" || request.url.startsWith("/status?"))
      ? HttpServerResponse.setHeader(response, "access-control-allow-origin", "*")
      : response
  )
}
