/**
 * `npm run sim:digest -- [--set n3|n5|snapshots|membership] [--seeds N] [--out FILE] [--workers N]`
 *
 * The golden master of the engine: one SHA-256 of each simulator seed's whole `Result` (events, virtual ms, the
 * trace's last lines, faults, operations, leaders, snapshots, the verdict). The simulator is deterministic, so a
 * change that only moves code, keeping every effect in the same order, prints the same digests; a change that
 * shifts scheduling or behaviour prints other ones. Compare two runs with `diff`.
 *
 * Sets (all by default): `n3` seeds 1–500 on 3 nodes, `n5` seeds 1–200 on 5 nodes, `snapshots` seeds 1–100 on
 * 3 nodes with frequent snapshots, `membership` seeds 1–100 on 5 nodes with membership faults. `--seeds N` runs
 * only each set's first N seeds, for a quick look. Seeds run on `--workers` threads (one per core by default);
 * the digests do not depend on it.
 */
import { createHash } from "node:crypto"
import { writeFileSync } from "node:fs"
import * as Simulator from "../src/testing/Simulator.js"
import { defaultWorkers, runSeeds, SeedPool } from "./testing/seedPool.js"

interface DigestSet {
  readonly name: string
  readonly seeds: number
  readonly options: Omit<Simulator.Options, "seed">
}

const sets: ReadonlyArray<DigestSet> = [
  { name: "n3", seeds: 500, options: { nodes: 3, durationMillis: 2000 } },
  { name: "n5", seeds: 200, options: { nodes: 5, durationMillis: 2000 } },
  { name: "snapshots", seeds: 100, options: { nodes: 3, durationMillis: 2000, config: Simulator.frequentSnapshots } },
  {
    name: "membership",
    seeds: 100,
    options: {
      nodes: 5,
      durationMillis: 2000,
      faults: { ...Simulator.defaultFaults, weights: { ...Simulator.defaultFaults.weights, membership: 3 } }
    }
  }
]

const args = process.argv.slice(2)
const option = (name: string): string | undefined => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? args[at + 1] : undefined
}
const only = option("set")
const limit = option("seeds")
const out = option("out")
const chosen = only === undefined ? sets : sets.filter((set) => set.name === only)
if (chosen.length === 0) {
  console.error(`unknown set ${only}; one of ${sets.map((set) => set.name).join(", ")}`)
  process.exit(2)
}

const lines: Array<string> = []
const started = performance.now()
const pool = new SeedPool(Number(option("workers") ?? defaultWorkers()))
for (const set of chosen) {
  const whole = createHash("sha256")
  let failures = 0
  const seeds = limit === undefined ? set.seeds : Math.min(set.seeds, Number(limit))
  for (const result of await runSeeds(pool, set.options, Array.from({ length: seeds }, (_, i) => i + 1))) {
    const seed = result.seed
    if (!result.ok) failures++
    const digest = createHash("sha256").update(JSON.stringify(result)).digest("hex").slice(0, 16)
    whole.update(digest)
    lines.push(`${set.name} ${seed} ${digest}${result.ok ? "" : ` violation:${result.violation?.property}`}`)
  }
  const summary = `${set.name} all ${whole.digest("hex").slice(0, 16)} (${seeds} seeds, ${failures} with violations)`
  lines.push(summary)
  console.log(summary)
}
await pool.close()
console.log(`${((performance.now() - started) / 1000).toFixed(0)} s`)
if (out !== undefined) writeFileSync(out, lines.join("\n") + "\n")
else console.log(lines.join("\n"))
