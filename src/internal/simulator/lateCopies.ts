/**
 * Late copies (`FaultOptions.lateCopyRate`): a request a node sends may be delivered a second time, long after
 * the first, as a network that duplicates and reorders may do (the Raft paper's model of a network). The copy
 * reaches its target through the memory network as it is then (cut links and partitions apply), its answer goes
 * nowhere. So an AppendEntries of an old leader can reach a node of a newer term, and an InstallSnapshot can
 * reach a follower that has applied past it. Copies are sent only during the faulty phase.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import type { Transport } from "../../Transport.js"
import type { SimCore } from "./state.js"

/**
 * Every AppendEntries and InstallSnapshot that node `id` sends in the next `millis` ms is delivered once more,
 * `delay` ms later (the `staleLeader` schedule). Needs `lateCopyRate` above 0, which installs the copying.
 */
export const copyEverything = (sim: SimCore, id: string, millis: number, delay: readonly [number, number]): void => {
  sim.lateCopyBursts.set(id, { until: sim.clock.now + millis, delay })
}

/** `transport` whose AppendEntries and InstallSnapshot requests are, sometimes, delivered once more later. */
export const withLateCopies = (sim: SimCore, from: string, transport: Transport): Transport => {
  const rate = sim.faultOptions.lateCopyRate ?? 0
  const keepVotes = (sim.faultOptions.weights.doubleVote ?? 0) > 0
  if (rate <= 0) return keepVotes ? { ...transport, requestVote: keptVote(sim, from, transport) } : transport
  /** Decides now whether `send` is repeated, and if so forks it after the delay (it outlives the sender). */
  const maybeLater = (what: () => string, send: Effect.Effect<unknown, unknown>): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (sim.chaosOver) return
      const burst = sim.lateCopyBursts.get(from)
      const all = burst !== undefined && sim.clock.now < burst.until
      if (!all && (yield* Random.next) >= rate) return
      const [min, max] = all ? burst.delay : sim.faultOptions.lateCopyDelayMillis ?? [50, 300]
      const delay = min + (yield* Random.nextIntBetween(0, Math.max(0, max - min) + 1))
      yield* Effect.sleep(delay).pipe(
        Effect.zipRight(Effect.suspend(() => {
          if (sim.chaosOver) return Effect.void
          sim.faults.lateCopy = (sim.faults.lateCopy ?? 0) + 1
          sim.note(`late copy, ${delay} ms old: ${what()}`)
          return Effect.ignore(send)
        })),
        Effect.forkIn(sim.rootScope)
      )
    })
  return {
    ...transport,
    ...(keepVotes ? { requestVote: keptVote(sim, from, transport) } : {}),
    appendEntries: (id, address, request) =>
      Effect.zipRight(
        maybeLater(() => describe(from, id, request), transport.appendEntries(id, address, request)),
        transport.appendEntries(id, address, request)
      ),
    appendEntriesPipeline: (id, address) =>
      Effect.map(transport.appendEntriesPipeline(id, address), (pipeline) => ({
        ...pipeline,
        send: (request) =>
          Effect.zipRight(
            maybeLater(() => describe(from, id, request), transport.appendEntries(id, address, request)),
            pipeline.send(request)
          )
      })),
    installSnapshot: (id, address, request, data) => {
      // The bytes as they pass, for the copy.
      const chunks: Array<Uint8Array> = []
      const kept = Stream.tap(data, (chunk) => Effect.sync(() => void chunks.push(chunk)))
      return Effect.tap(transport.installSnapshot(id, address, request, kept), () =>
        maybeLater(
          () => `InstallSnapshot ${from} -> ${id} (term ${request.term}, through ${request.lastLogIndex})`,
          transport.installSnapshot(id, address, request, Stream.fromIterable(chunks))
        ))
    }
  }
}

/**
 * `transport.requestVote`, keeping the last request of each term that `from` sends (`SimCore.sentVotes`), for the
 * `doubleVote` schedule to deliver again later. A few terms are kept.
 */
const keptVote = (sim: SimCore, from: string, transport: Transport): Transport["requestVote"] =>
(id, address, request) =>
  Effect.suspend(() => {
    let sent = sim.sentVotes.get(from)
    if (sent === undefined) sim.sentVotes.set(from, sent = new Map())
    if (!sent.has(request.term)) {
      sent.set(request.term, request)
      for (const term of sent.keys()) if (term < request.term - 8) sent.delete(term)
    }
    return transport.requestVote(id, address, request)
  })

const describe = (
  from: string,
  to: string,
  request: { readonly term: number; readonly prevLogIndex: number; readonly entries: ReadonlyArray<unknown> }
): string =>
  `AppendEntries ${from} -> ${to} (term ${request.term}, after ${request.prevLogIndex}, ${request.entries.length} entries)`
