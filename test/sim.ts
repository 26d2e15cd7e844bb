/**
 * `npm run sim -- [--seeds N] [--from S] [--seed S] [--nodes N] [--duration MS] [--snapshots] [--membership] [--trace]`
 * Runs the deterministic simulator over many seeds (or replays one) and prints
 * seeds/s, the violations found and the faults exercised. `--snapshots` runs
 * with `Simulator.frequentSnapshots` (snapshot and compact every few dozen entries);
 * `--membership` adds the fault that removes a follower and adds it back.
 */
import * as Simulator from "../src/testing/Simulator.js"

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
const config = flag("snapshots") ? Simulator.frequentSnapshots : undefined
const membershipFaults: Simulator.FaultOptions | undefined = flag("membership")
  ? { ...Simulator.defaultFaults, weights: { ...Simulator.defaultFaults.weights, membership: 3 } }
  : undefined

const started = performance.now()
const faults: Record<string, number> = {}
const failures: Array<Simulator.Result> = []
let events = 0
let operations = 0
let unknown = 0
const snapshots = { taken: 0, restoredAtStart: 0, installed: 0 }
for (let seed = from; seed < from + count; seed++) {
  const result = Simulator.run({ seed, nodes, durationMillis, config, faults: membershipFaults })
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
  } else if (single || flag("trace")) {
    console.log(`seed ${seed}: ok, ${result.events} events, ${result.virtualMillis} virtual ms, ${result.leadersElected} leaders`)
    if (flag("trace")) console.log(result.trace.map((line) => `  ${line}`).join("\n"))
  }
}
const seconds = (performance.now() - started) / 1000
console.log(
  `${count} seeds (${from}..${from + count - 1}), ${nodes} nodes, ${durationMillis} virtual ms each: ` +
    `${failures.length} with violations, ${(count / seconds).toFixed(1)} seeds/s, ${Math.round(events / seconds)} events/s`
)
console.log(`operations: ${operations} completed, ${unknown} of unknown outcome; all histories checked for linearizability`)
console.log(
  `snapshots: ${snapshots.taken} taken, ${snapshots.restoredAtStart} restored at start, ${snapshots.installed} installed from a leader`
)
console.log(`faults: ${Object.entries(faults).map(([kind, n]) => `${kind} ${n}`).join(", ")}`)
process.exitCode = failures.length === 0 ? 0 : 1
