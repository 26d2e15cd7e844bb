/**
 * Spans of a node, for whoever installed a tracer (`@effect/opentelemetry`'s
 * `NodeSdk.layer`, or any `Tracer` provided with `Layer.setTracer`). Whether
 * to trace is decided once, when the node starts: with Effect's default
 * tracer in place (nobody exports spans) or `traceSampleRate` 0, the node's
 * `tracing` is undefined and no span is ever made; the hot path then pays a
 * field test per batch (and per entry, one property read).
 *
 * With a tracer, a sampled `apply` opens `raft.apply` in the caller's fiber
 * (a child of the caller's span), and the batches that carry it open child
 * spans in the fibers that handle them: `raft.append` (the leader's write),
 * `raft.append_entries` per follower, `raft.commit`, `raft.fsm.apply`. A
 * batch that carries several sampled applies is a child of the first and
 * links the others: spans go on batches and RPCs, never on entries. The
 * follower's span for an AppendEntries is a child of the leader's, through
 * the W3C `traceparent` the request carries (`Rpc.ts`), so one apply's trace
 * spans the cluster. Spans are made with the tracer directly, synchronously,
 * so the batch loops stay plain code.
 * @internal
 */
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Tracer from "effect/Tracer"
import type { NodeState } from "./state.js"
import type { Tracing } from "./traceState.js"

export type { ApplyTrace, Tracing } from "./traceState.js"

/** Attributes every span of a node carries. */
export const NODE = "raft.node"
/** The term the span's work belongs to. */
export const TERM = "raft.term"
/** The log index of an apply. */
export const INDEX = "raft.index"
/** The first log index a span's batch covers. */
export const FIRST_INDEX = "raft.index.first"
/** The last log index a span's batch covers. */
export const LAST_INDEX = "raft.index.last"
/** The commit index a span saw. */
export const COMMIT_INDEX = "raft.commit_index"
/** The follower (or voter) at the other end. */
export const PEER = "raft.peer"

/** The tracing of a node started now: none unless a tracer other than Effect's default one is installed. */
export const makeTracing = (rate: number): Effect.Effect<Tracing | undefined> =>
  Effect.map(Effect.tracer, (tracer) =>
    rate <= 0 || tracer === Context.get(DefaultServices.liveServices, Tracer.Tracer)
      ? undefined
      : { tracer, rate: Math.min(1, rate), credit: 1 - Math.min(1, rate) })

/** Whether to trace the next apply. */
export const sample = (tracing: Tracing): boolean => {
  tracing.credit += tracing.rate
  if (tracing.credit < 1) return false
  tracing.credit -= 1
  return true
}

const now = (node: NodeState): bigint => node.clock.unsafeCurrentTimeNanos()

/** Starts a span now, synchronously, as a child of `parent` (a root span without one). Only on a tracing node. */
export const startSpan = (
  node: NodeState,
  tracing: Tracing,
  name: string,
  parent: Tracer.AnySpan | undefined,
  attributes: Record<string, unknown>,
  kind: Tracer.SpanKind = "internal",
  links: ReadonlyArray<Tracer.SpanLink> = []
): Tracer.Span => {
  const span = tracing.tracer.span(
    name,
    parent === undefined ? Option.none() : Option.some(parent),
    Context.empty(),
    links,
    now(node),
    kind
  )
  span.attribute(NODE, node.localId)
  for (const key in attributes) span.attribute(key, attributes[key])
  return span
}

/** Ends a span now. */
export const endSpan = (node: NodeState, span: Tracer.Span, exit: Exit.Exit<unknown, unknown> = Exit.void): void =>
  span.end(now(node), exit)

/** Links to the sampled applies of a batch after its first (the batch's span is the first's child), at most 32. */
export const linksTo = (spans: ReadonlyArray<Tracer.Span>): Array<Tracer.SpanLink> => {
  const links: Array<Tracer.SpanLink> = []
  for (let i = 1; i < spans.length && i <= 32; i++) links.push({ _tag: "SpanLink", span: spans[i]!, attributes: {} })
  return links
}

/** A span's W3C trace context (`00-<trace id>-<span id>-<flags>`), as requests carry it. */
export const traceparent = (span: Tracer.AnySpan): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** The remote span a request's `traceparent` names, or undefined when it names none we can read. */
export const remoteParent = (value: string | undefined): Tracer.ExternalSpan | undefined => {
  if (value === undefined) return undefined
  const match = traceparentPattern.exec(value)
  if (match === null) return undefined
  return Tracer.externalSpan({
    traceId: match[1]!,
    spanId: match[2]!,
    sampled: (Number.parseInt(match[3]!, 16) & 1) === 1
  })
}

/**
 * Runs `body` in a span of its own when the node traces (a child of the fiber's current span, or of `parent`),
 * handing it the span; without tracing, `body(undefined)`. For the rare operations: elections' requests, snapshots,
 * membership changes.
 */
export const spanned = <A, E, R>(
  node: NodeState,
  name: string,
  attributes: Record<string, unknown>,
  body: (span: Tracer.Span | undefined) => Effect.Effect<A, E, R>,
  options: { readonly parent?: Tracer.AnySpan | undefined; readonly kind?: Tracer.SpanKind | undefined } = {}
): Effect.Effect<A, E, R> => {
  const tracing = node.tracing
  if (tracing === undefined) return body(undefined)
  return Effect.flatMap(
    Effect.makeSpan(name, {
      attributes: { [NODE]: node.localId, ...attributes },
      parent: options.parent,
      kind: options.kind ?? "internal",
      captureStackTrace: false
    }),
    (span) =>
      body(span).pipe(
        Effect.withParentSpan(span),
        Effect.onExit((exit) => Effect.sync(() => endSpan(node, span, exit)))
      )
  )
}
