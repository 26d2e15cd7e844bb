/**
 * Spans of the engine, recorded by OpenTelemetry's in-memory exporter through `@effect/opentelemetry`: one apply's
 * trace covers the leader's spans and each follower's, linked through the trace context the AppendEntries carries.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Fsm from "../src/Fsm.js"
import * as TestCluster from "../src/testing/TestCluster.js"

/** A tracer that records every finished span in memory, and the exporter to read them from. */
const recording = () => {
  const exporter = new InMemorySpanExporter()
  const layer = NodeSdk.layer(() => ({
    spanProcessor: new SimpleSpanProcessor(exporter),
    resource: { serviceName: "effect-raft-test" }
  }))
  return { exporter, layer }
}

const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId

/** The spans of one trace as an indented tree (name and attributes), children in start order. */
export const spanTree = (spans: ReadonlyArray<ReadableSpan>): string => {
  const ids = new Set(spans.map((span) => span.spanContext().spanId))
  const children = new Map<string | undefined, Array<ReadableSpan>>()
  for (const span of spans) {
    const parent = parentOf(span)
    const key = parent !== undefined && ids.has(parent) ? parent : undefined
    children.set(key, [...(children.get(key) ?? []), span])
  }
  const lines: Array<string> = []
  const walk = (parent: string | undefined, depth: number) => {
    const list = [...(children.get(parent) ?? [])].sort((a, b) =>
      a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]
    )
    for (const span of list) {
      const attributes = Object.entries(span.attributes).map(([key, value]) => `${key.replace(/^raft\./, "")}=${String(value)}`)
      const micros = Math.round((span.duration[0] * 1e9 + span.duration[1]) / 1000)
      lines.push(`${"  ".repeat(depth)}${span.name} (${micros} µs) ${attributes.join(" ")}`)
      walk(span.spanContext().spanId, depth + 1)
    }
  }
  walk(undefined, 0)
  return lines.join("\n")
}

/** Polls `look` until it finds something; dies after 5 s. */
const waitFor = <A>(look: () => A | undefined): Effect.Effect<A> => {
  const poll: Effect.Effect<A> = Effect.suspend(() => {
    const found = look()
    return found !== undefined ? Effect.succeed(found) : Effect.zipRight(Effect.sleep("10 millis"), poll)
  })
  return poll.pipe(Effect.timeout("5 seconds"), Effect.orDie)
}

const nothing = () => Fsm.fromFunction(() => undefined)

describe("tracing", () => {
  it.live("one apply's trace spans the leader and both followers, through the trace context of AppendEntries", () => {
    const { exporter, layer } = recording()
    return Effect.scoped(Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: nothing })
      const leader = yield* cluster.awaitLeader()
      const followers = cluster.nodes.filter((node) => node.id !== leader.id).map((node) => node.id).sort()
      const result = yield* leader.raft.apply(new Uint8Array([1])).pipe(Effect.withSpan("client.put"))
      const client = exporter.getFinishedSpans().find((span) => span.name === "client.put")!
      const traceId = client.spanContext().traceId
      const inTrace = () => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId)
      // Both followers answered (the commit needed only one): wait for the second one's span to end.
      const spans = yield* waitFor(() => {
        const found = inTrace()
        return found.filter((span) => span.name === "raft.follower.append_entries").length >= 2 ? found : undefined
      })
      if (process.env.PRINT_TRACE !== undefined) console.log(spanTree(spans))

      const one = (name: string, node: string) => {
        const found = spans.filter((span) => span.name === name && span.attributes["raft.node"] === node)
        assert.isAtLeast(found.length, 1, `${name} on ${node}`)
        return found[0]!
      }
      const apply = one("raft.apply", leader.id)
      assert.strictEqual(parentOf(apply), client.spanContext().spanId)
      assert.strictEqual(apply.attributes["raft.index"], result.index)
      for (const name of ["raft.append", "raft.commit", "raft.fsm.apply"]) {
        assert.strictEqual(parentOf(one(name, leader.id)), apply.spanContext().spanId, name)
      }
      for (const follower of followers) {
        const sent = spans.find((span) =>
          span.name === "raft.append_entries" && span.attributes["raft.peer"] === follower &&
          span.attributes["raft.node"] === leader.id
        )
        assert.isDefined(sent, `AppendEntries to ${follower}`)
        assert.strictEqual(parentOf(sent!), apply.spanContext().spanId)
        const received = one("raft.follower.append_entries", follower)
        assert.strictEqual(parentOf(received), sent!.spanContext().spanId, `${follower}'s span is the leader's child`)
        assert.isAtMost(received.attributes["raft.index.first"] as number, result.index)
        assert.isAtLeast(received.attributes["raft.index.last"] as number, result.index)
      }
    })).pipe(Effect.provide(layer))
  })

  it.live("elections are traced, with each vote request's span on the voter", () => {
    const { exporter, layer } = recording()
    return Effect.scoped(Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: nothing })
      const leader = yield* cluster.awaitLeader()
      const won = yield* waitFor(() =>
        exporter.getFinishedSpans().find((span) =>
          span.name === "raft.election" && span.attributes["raft.outcome"] === "won" &&
          span.attributes["raft.node"] === leader.id
        )
      )
      const votes = exporter.getFinishedSpans().filter((span) =>
        span.name.startsWith("raft.follower.request_") && span.spanContext().traceId === won.spanContext().traceId
      )
      assert.isAtLeast(votes.length, 1)
    })).pipe(Effect.provide(layer))
  })

  it.live("traceSampleRate traces that fraction of applies, and 0 none", () => {
    const { exporter, layer } = recording()
    const applies = (rate: number) =>
      Effect.scoped(Effect.gen(function*() {
        exporter.reset()
        const cluster = yield* TestCluster.make({
          nodes: 1,
          fsm: nothing,
          config: { ...TestCluster.fastTimers, traceSampleRate: rate }
        })
        const leader = yield* cluster.awaitLeader()
        for (let i = 0; i < 20; i++) yield* leader.raft.apply(new Uint8Array([i]))
        return exporter.getFinishedSpans().filter((span) => span.name === "raft.apply").length
      }))
    return Effect.gen(function*() {
      assert.strictEqual(yield* applies(1), 20)
      assert.strictEqual(yield* applies(0.25), 5)
      assert.strictEqual(yield* applies(0), 0)
    }).pipe(Effect.provide(layer))
  })
})
