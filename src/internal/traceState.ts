/**
 * What a node keeps of its tracing (tracing.ts): the tracer it traces with and a sampled apply's spans. Plain
 * shapes, apart from tracing.ts so that the node's state and the leader's records can hold them without importing
 * the code that makes spans (which reads the node's state).
 * @internal
 */
import type * as Tracer from "effect/Tracer"

/** How a node traces; undefined on a node that does not. */
export interface Tracing {
  readonly tracer: Tracer.Tracer
  /** The fraction of applies traced (`RaftConfig.traceSampleRate`). */
  readonly rate: number
  /** Sampling by credit: each apply adds `rate`, one whole credit buys a trace (deterministic, no `Random`). */
  credit: number
}

/** A sampled apply's spans: its own, and its batch's commit span while it waits for the commit. */
export interface ApplyTrace {
  readonly span: Tracer.Span
  commit: Tracer.Span | undefined
}
