/**
 * A thread of the seed pool (seedPool.ts): runs each seed it is sent and answers its `Result`. `npm run sim` loads
 * the same bundle in its own thread for the simulator's options, the mutant catalogue and the corners
 * (`SeedPool.load`): one file of plain JavaScript loads in a tenth of a second, where tsx compiled and resolved the
 * same several hundred modules one by one in 1.1-1.8 s.
 */
import { parentPort } from "node:worker_threads"
import * as Mutants from "../../src/testing/Mutants.js"
import * as Simulator from "../../src/testing/Simulator.js"
import { cornersFromArgs } from "./corners.js"
import type { SeedOptions } from "./seedPool.js"

export { cornersFromArgs, Mutants, Simulator }

// Loaded by a launcher in its main thread, it only provides the exports above.
parentPort?.on("message", (message: { readonly options: SeedOptions; readonly seed: number }) => {
  parentPort!.postMessage({ result: Simulator.run({ ...message.options, seed: message.seed }) })
})
