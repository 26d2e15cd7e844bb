/**
 * `npm run sim -- [--seeds N] [--from S] [--seed S] [--nodes N] [--duration MS] [--snapshots] [--membership]
 *   [--trace] [--workers N] [--mutant NAME [--default-faults]] [--randomize [DIMS]] [--fault NAME=WEIGHT,...]`
 * Runs the deterministic simulator over many seeds (or replays one) and prints
 * seeds/s, the violations found and the faults exercised. `--snapshots` runs
 * with `Simulator.frequentSnapshots` (snapshot and compact every few dozen entries);
 * `--membership` adds the fault that removes a follower and adds it back.
 * Seeds run in parallel on `--workers` threads (one per core by default); the
 * output is the same in any case, in seed order. A failing seed prints the
 * command that replays it. `--mutant` runs with a bug of the mutant catalogue
 * (src/testing/Mutants.ts) injected, in its scenario unless `--default-faults`.
 * `--randomize` and `--fault` turn on the opt-in corners (see testing/corners.ts).
 */
import type * as SimulatorTypes from "../src/testing/Simulator.js"
import { defaultWorkers, runSeeds, SeedPool } from "./testing/seedPool.js"

const args = process.argv.slice(2)
const flag = (name: string) => args.includes(`--${name}`)
const option = (name: string, fallback: number) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 && args[at + 1] !== undefined ? Number(args[at + 1]) : fallback
}
const single = args.includes("--seed")
const from = single ? option("seed", 1) : option("from", 1)
const count = single ? 1 : option("seeds", 100)
const nodes = option("nodes", 5)
const durationMillis = option("duration", 2000)
const workers = Math.min(count, option("workers", defaultWorkers()))
const started = performance.now()
// The simulator's modules come from the workers' bundle (see `SeedPool.load`), not through tsx.
const pool = new SeedPool(workers)
const { cornersFromArgs, Mutants, Simulator } = await pool.load()
const config = flag("snapshots") ? Simulator.frequentSnapshots : undefined
const membershipFaults: SimulatorTypes.FaultOptions | undefined = flag("membership")
  ? { ...Simulator.defaultFaults, weights: { ...Simulator.defaultFaults.weights, membership: 3 } }
  : undefined
const mutantName = args.includes("--mutant") ? args[args.indexOf("--mutant") + 1] : undefined
const mutant = Mutants.catalogue.find((m) => m.name === mutantName)
if (mutantName !== undefined && mutant === undefined) {
  console.error(`unknown mutant ${mutantName}; the catalogue: ${Mutants.catalogue.map((m) => m.name).join(", ")}`)
  await pool.close()
  process.exit(2)
}
const corners = cornersFromArgs(args)
if (corners.error !== undefined) {
  console.error(corners.error)
  await pool.close()
  process.exit(2)
}
const plain = { nodes, durationMillis, config, faults: membershipFaults }
const options = corners.apply(
  mutant === undefined ? plain : { ...plain, ...(flag("default-faults") ? {} : mutant.scenario), bugs: mutant.bugs }
)

/** The command that replays `seed` with the options of this run. */
const replay = (seed: number) =>
  `npm run sim -- --seed ${seed} --nodes ${nodes}` + (durationMillis !== 2000 ? ` --duration ${durationMillis}` : "") +
  (flag("snapshots") ? " --snapshots" : "") + (flag("membership") ? " --membership" : "") +
  (mutant !== undefined ? ` --mutant ${mutant.name}` + (flag("default-faults") ? " --default-faults" : "") : "") +
  corners.flags

const faults: Record<string, number> = {}
const failures: Array<SimulatorTypes.Result> = []
let events = 0
let operations = 0
let unknown = 0
const snapshots = { taken: 0, restoredAtStart: 0, installed: 0 }
const report = (result: SimulatorTypes.Result) => {
  const seed = result.seed
  snapshots.taken += result.snapshots.taken
  snapshots.restoredAtStart += result.snapshots.restoredAtStart
  snapshots.installed += result.snapshots.installed
  events += result.events
  operations += result.operations.ok
  unknown += result.operations.unknown
  for (const [kind, n] of Object.entries(result.faults)) faults[kind] = (faults[kind] ?? 0) + n
  if (!result.ok) {
    failures.push(result)
    console.log(`seed ${seed}: ${result.violation?.property}: ${result.violation?.detail}`)
    console.log(result.trace.map((line) => `  ${line}`).join("\n"))
    if (result.deployment !== undefined) console.log(`  deployment: ${JSON.stringify(result.deployment)}`)
    console.log(`  replay: ${replay(seed)}`)
  } else if (single || flag("trace")) {
    console.log(`seed ${seed}: ok, ${result.events} events, ${result.virtualMillis} virtual ms, ${result.leadersElected} leaders`)
    if (result.deployment !== undefined) console.log(`  deployment: ${JSON.stringify(result.deployment)}`)
    if (flag("trace")) console.log(result.trace.map((line) => `  ${line}`).join("\n"))
  }
}
await runSeeds(
  pool,
  options,
  Array.from({ length: count }, (_, i) => from + i),
  { onResult: report }
)
await pool.close()
const seconds = (performance.now() - started) / 1000
console.log(
  `${count} seeds (${from}..${from + count - 1}), ${nodes} nodes, ${options.durationMillis} virtual ms each: ` +
    `${failures.length} with violations, ${(count / seconds).toFixed(1)} seeds/s, ${Math.round(events / seconds)} events/s` +
    (workers > 1 ? ` (${workers} workers)` : "")
)
console.log(`operations: ${operations} completed, ${unknown} of unknown outcome; all histories checked for linearizability`)
console.log(
  `snapshots: ${snapshots.taken} taken, ${snapshots.restoredAtStart} restored at start, ${snapshots.installed} installed from a leader`
)
console.log(`faults: ${Object.entries(faults).map(([kind, n]) => `${kind} ${n}`).join(", ")}`)
process.exitCode = failures.length === 0 ? 0 : 1
