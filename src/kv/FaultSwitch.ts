/**
 * A fault switch for tests with real processes: a `Transport` wrapper that
 * drops every request this node sends to the peers on its block list (the
 * request fails at once with `TransportError` "unreachable", as a refused
 * connection would; an open pipeline fails its next send). It acts on
 * outbound traffic only, so a partition between A and B is set on both A and
 * B; set on one side it is a one-way cut. The key-value node exposes it as
 * `POST /admin/faults` when started with `--faults`, and the chaos test
 * drives it there; it wraps any transport, so the TCP transport stays
 * untouched.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { TransportError } from "../RaftError.js"
import { Transport } from "../Transport.js"

/** The switch: which peers this node's requests no longer reach. */
export interface FaultSwitch {
  /** The blocked peer ids. */
  readonly blocked: Effect.Effect<ReadonlyArray<string>>
  /** Replaces the block list (an empty list heals). */
  readonly block: (ids: ReadonlyArray<string>) => Effect.Effect<void>
}

/** The tag of a node's fault switch. */
export class FaultSwitchTag extends Context.Tag("effect-raft/kv/FaultSwitch")<FaultSwitchTag, FaultSwitch>() {}

/** Wraps `transport` so that requests to the ids in `blocked` fail as unreachable. */
export const wrap = (transport: Transport, blocked: ReadonlySet<string>): Transport => {
  const cut = (id: string) => new TransportError({ target: id, reason: "unreachable", detail: "fault switch" })
  const guard = <A, E, R>(id: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | TransportError, R> =>
    Effect.suspend((): Effect.Effect<A, E | TransportError, R> => (blocked.has(id) ? Effect.fail(cut(id)) : effect))
  return {
    localAddress: transport.localAddress,
    serve: transport.serve,
    appendEntries: (id, address, request) => guard(id, transport.appendEntries(id, address, request)),
    requestVote: (id, address, request) => guard(id, transport.requestVote(id, address, request)),
    requestPreVote: (id, address, request) => guard(id, transport.requestPreVote(id, address, request)),
    installSnapshot: (id, address, request, data) => guard(id, transport.installSnapshot(id, address, request, data)),
    timeoutNow: (id, address, request) => guard(id, transport.timeoutNow(id, address, request)),
    readIndex: transport.readIndex === undefined
      ? undefined
      : (id, address, request) => guard(id, transport.readIndex!(id, address, request)),
    appendEntriesPipeline: (id, address) =>
      guard(
        id,
        Effect.map(transport.appendEntriesPipeline(id, address), (pipeline) => ({
          results: pipeline.results,
          send: (request) => guard(id, pipeline.send(request))
        }))
      )
  }
}

/**
 * Replaces the `Transport` in context with one behind a fault switch, and provides the switch; `initial` is the
 * block list to start with.
 */
export const layer = (
  initial: ReadonlyArray<string> = []
): Layer.Layer<Transport | FaultSwitchTag, never, Transport> =>
  Layer.effectContext(Effect.gen(function*() {
    const inner = yield* Transport
    const blocked = new Set<string>(initial)
    const control: FaultSwitch = {
      blocked: Effect.sync(() => Array.from(blocked).sort()),
      block: (ids) =>
        Effect.sync(() => {
          blocked.clear()
          for (const id of ids) blocked.add(id)
        })
    }
    return Context.make(Transport, wrap(inner, blocked)).pipe(Context.add(FaultSwitchTag, control))
  }))
