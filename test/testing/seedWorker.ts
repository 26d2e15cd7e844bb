/** A thread of the seed pool (seedPool.ts): runs each seed it is sent and answers its `Result`. */
import { parentPort } from "node:worker_threads"
import * as Simulator from "../../src/testing/Simulator.js"
import type { SeedOptions } from "./seedPool.js"

parentPort!.on("message", (message: { readonly options: SeedOptions; readonly seed: number }) => {
  parentPort!.postMessage({ result: Simulator.run({ ...message.options, seed: message.seed }) })
})
