/**
 * `npm run fuzz`: a long run of hostile input against the TCP transport (see fuzzing.ts). Prints how many inputs
 * went into the decoder and how many connections into a live transport (plain, a burst of unfinished large frames
 * against its receive budget, and TLS), and fails (exit 1) on a thrown exception, an unhandled rejection, a
 * connection the server did not close, budget kept after every connection closed, or a server that stopped serving.
 *
 *   npm run fuzz -- [--decoder 100000] [--live 5000] [--tls 1000] [--seed N]
 */
import { parseArgs } from "node:util"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { clientHello, decodeAll, fuzzLiveServer, hostile, hostileTls, type LiveReport, unfinished } from "./fuzzing.js"

const { values } = parseArgs({
  options: {
    decoder: { type: "string", default: "100000" },
    live: { type: "string", default: "5000" },
    tls: { type: "string", default: "1000" },
    seed: { type: "string" }
  }
})
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
let unhandled = 0
process.on("unhandledRejection", () => void unhandled++)
process.on("uncaughtException", (error) => {
  process.stderr.write(`uncaught exception: ${String(error)}\n`)
  process.exit(1)
})

const decoderRuns = Number(values.decoder)
const outcomes = new Map<string, number>()
const t0 = performance.now()
FastCheck.assert(
  FastCheck.property(hostile, FastCheck.integer({ min: 1, max: 64 }), (bytes, step) => {
    const outcome = decodeAll(bytes, step)
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  }),
  { numRuns: decoderRuns, seed }
)
const decoderSeconds = (performance.now() - t0) / 1000
console.log(`decoder: ${decoderRuns} inputs in ${decoderSeconds.toFixed(1)} s (seed ${seed}), outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`)

/** Runs `inputs` against a live server and prints what it saw; answers whether it stayed whole. */
const live = async (what: string, inputs: ReadonlyArray<Uint8Array>, concurrency: number, tls: boolean) => {
  const t = performance.now()
  const report: LiveReport = await Effect.runPromise(Effect.scoped(fuzzLiveServer(inputs, concurrency, { tls })))
  console.log(
    `${what}: ${report.connections} connections in ${((performance.now() - t) / 1000).toFixed(1)} s, ` +
      `${report.codecErrorsLogged} closed with a CodecError logged (${report.budgetRefusals} for the budget), ` +
      `${report.tlsRefusals} TLS refusals logged, ${report.leaked} not closed by the server, ${report.inboundAfter} open after, ` +
      `budget peak ${report.receivingPeak} and ${report.receivingAfter} bytes after, serving after: ${report.servingAfter}`
  )
  return report.leaked === 0 && report.inboundAfter === 0 && report.receivingAfter === 0 && report.servingAfter
}

const plainOk = await live("live server", FastCheck.sample(hostile, { numRuns: Number(values.live), seed }), 16, false)
const budgetOk = await live("budget burst", FastCheck.sample(unfinished, { numRuns: 200, seed }), 64, false)
const hello = await Effect.runPromise(clientHello)
const tlsOk = await live("TLS server", FastCheck.sample(hostileTls(hello), { numRuns: Number(values.tls), seed }), 16, true)
console.log(`unhandled rejections: ${unhandled}`)
const ok = plainOk && budgetOk && tlsOk && unhandled === 0
console.log(ok ? "ok" : "FAILED")
process.exit(ok ? 0 : 1)
