/**
 * `npm run fuzz`: a long run of hostile input against the TCP transport (see fuzzing.ts). Prints how many inputs
 * went into the decoder and how many connections into a live transport, and fails (exit 1) on a thrown exception,
 * an unhandled rejection, a connection the server did not close, or a server that stopped serving.
 *
 *   npm run fuzz -- [--decoder 100000] [--live 5000] [--seed N]
 */
import { parseArgs } from "node:util"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import { decodeAll, fuzzLiveServer, hostile } from "./fuzzing.js"

const { values } = parseArgs({
  options: { decoder: { type: "string", default: "100000" }, live: { type: "string", default: "5000" }, seed: { type: "string" } }
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

const liveInputs = FastCheck.sample(hostile, { numRuns: Number(values.live), seed })
const t1 = performance.now()
const report = await Effect.runPromise(Effect.scoped(fuzzLiveServer(liveInputs, 16)))
console.log(
  `live server: ${report.connections} connections in ${((performance.now() - t1) / 1000).toFixed(1)} s, ` +
    `${report.codecErrorsLogged} closed with a CodecError logged, ${report.leaked} not closed by the server, ${report.inboundAfter} open after, serving after: ${report.servingAfter}, ` +
    `unhandled rejections: ${unhandled}`
)
const ok = report.leaked === 0 && report.inboundAfter === 0 && report.servingAfter && unhandled === 0
console.log(ok ? "ok" : "FAILED")
process.exit(ok ? 0 : 1)
