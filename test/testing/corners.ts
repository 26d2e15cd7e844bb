/**
 * The simulator's opt-in corners from the command line, shared by `npm run sim` and `npm run sim:mutants`:
 * `--randomize [all|nodes,preVote,timers,maxAppendEntries,snapshots,diskLatency,syncFsm]` draws those per seed, and
 * `--fault name=weight[,name=weight]` adds nemesis faults (transfer, appendCrash, staleCandidate, membership...)
 * to the faults a run uses, and sets the probabilities of the targeted crashes (rebootAfterVote,
 * crashLeaderMidWrite), of late copies of requests (lateCopyRate) and how many servers membership changes may hold
 * out at once (membershipOut).
 */
import * as Simulator from "../../src/testing/Simulator.js"
import type { SeedOptions } from "./seedPool.js"

const dimensions = ["nodes", "preVote", "timers", "maxAppendEntries", "snapshots", "diskLatency", "syncFsm"] as const

/** Every dimension a randomized deployment draws (`--randomize all`). */
export const everyDimension: Simulator.Randomize = Object.fromEntries(dimensions.map((name) => [name, true]))
/** `--fault` names that are probabilities of `FaultOptions`, not weights. */
const probabilities = ["rebootAfterVote", "crashLeaderMidWrite", "membershipOut", "lateCopyRate"]

/** What the corner flags in `args` ask for: how to apply them to a run's options, and the flags to replay them. */
export const cornersFromArgs = (args: ReadonlyArray<string>): {
  readonly apply: (options: SeedOptions) => SeedOptions
  readonly flags: string
  readonly error: string | undefined
} => {
  const valueOf = (name: string): string | undefined => {
    const at = args.indexOf(`--${name}`)
    if (at < 0) return undefined
    const next = args[at + 1]
    return next === undefined || next.startsWith("--") ? "" : next
  }
  const randomizeArg = valueOf("randomize")
  const faultArg = valueOf("fault")
  const chosen = randomizeArg === undefined
    ? []
    : randomizeArg === "" || randomizeArg === "all"
    ? [...dimensions]
    : randomizeArg.split(",")
  const unknownDimension = chosen.find((name) => !(dimensions as ReadonlyArray<string>).includes(name))
  const weights = faultArg === undefined || faultArg === "" ? [] : faultArg.split(",").map((pair) => pair.split("="))
  const badWeight = weights.find(([name, weight]) => name === undefined || !Number.isFinite(Number(weight)))
  const error = unknownDimension !== undefined
    ? `unknown dimension ${unknownDimension} for --randomize; one of ${dimensions.join(", ")}`
    : badWeight !== undefined
    ? `--fault takes name=weight pairs, not ${badWeight.join("=")}`
    : undefined
  const randomize: Simulator.Randomize | undefined = chosen.length === 0
    ? undefined
    : Object.fromEntries(chosen.map((name) => [name, true]))
  const apply = (options: SeedOptions): SeedOptions => {
    const faults = options.faults ?? Simulator.defaultFaults
    return {
      ...options,
      ...(randomize === undefined ? {} : { randomize }),
      ...(weights.length === 0 ? {} : {
        faults: {
          ...faults,
          ...Object.fromEntries(weights.filter(([n]) => probabilities.includes(n!)).map(([n, w]) => [n, Number(w)])),
          weights: {
            ...faults.weights,
            ...Object.fromEntries(weights.filter(([n]) => !probabilities.includes(n!)).map(([n, w]) => [n, Number(w)]))
          }
        }
      })
    }
  }
  const flags = (randomizeArg === undefined ? "" : ` --randomize${randomizeArg === "" ? "" : ` ${randomizeArg}`}`) +
    (faultArg === undefined ? "" : ` --fault ${faultArg}`)
  return { apply, flags, error }
}
