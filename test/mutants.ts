/**
 * `npm run sim:mutants -- [--seeds N] [--nodes 3,5] [--only a,b] [--default-faults] [--randomize [DIMS]]
 *   [--fault NAME=WEIGHT,...] [--all] [--json] [--workers N]`
 *
 * The mutation report: runs every mutant of the catalogue (src/testing/Mutants.ts) on seeds 1..N (100 by default)
 * at each cluster size, stopping at its first catch, and prints per mutant the seeds it took, the seed and the
 * invariant that caught it, and the command that replays the catch; `--json` prints the same as JSON. `--all`
 * runs every seed and counts how many catch each mutant (a finer measure of how well a scenario hunts it).
 * `--default-faults` hunts every mutant under the default faults instead of its own scenario; `--randomize` and
 * `--fault` add the opt-in corners (test/testing/corners.ts) to every run.
 * Exits with 1 when a mutant escapes.
 */
import * as Mutants from "../src/testing/Mutants.js"
import type * as Simulator from "../src/testing/Simulator.js"
import { cornersFromArgs } from "./testing/corners.js"
import { defaultWorkers, runSeeds, SeedPool } from "./testing/seedPool.js"

const args = process.argv.slice(2)
const value = (name: string): string | undefined => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? args[at + 1] : undefined
}
const seeds = Number(value("seeds") ?? 100)
const sizes = (value("nodes") ?? "3,5").split(",").map(Number)
const only = value("only")?.split(",")
const ownScenario = !args.includes("--default-faults")
const json = args.includes("--json")
const workers = Number(value("workers") ?? defaultWorkers())
const all = args.includes("--all")

const corners = cornersFromArgs(args)
if (corners.error !== undefined) {
  console.error(corners.error)
  process.exit(2)
}

const chosen = Mutants.catalogue.filter((mutant) => only === undefined || only.includes(mutant.name))
if (only !== undefined && chosen.length !== only.length) {
  console.error(`unknown mutant in ${only.join(", ")}; the catalogue: ${Mutants.catalogue.map((m) => m.name).join(", ")}`)
  process.exit(2)
}

/** One line of the report. */
interface Row {
  readonly mutant: string
  readonly nodes: number
  /** Seeds run up to and including the first catch (all of them when it escaped). */
  readonly seedsRun: number
  /** The first seed that caught it, null when none of the seeds did. */
  readonly caughtBy: number | null
  /** With `--all`, how many of the seeds caught it. */
  readonly catches: number | undefined
  readonly property: Simulator.Violation["property"] | undefined
  readonly detail: string | undefined
  readonly replay: string | undefined
}

const started = performance.now()
const pool = new SeedPool(workers)
const hunt = async (mutant: Mutants.Mutant, nodes: number): Promise<Row> => {
  const scenario = ownScenario ? mutant : { ...mutant, scenario: undefined }
  const results = await runSeeds(
    pool,
    corners.apply(Mutants.huntOptions(scenario, nodes)),
    Array.from({ length: seeds }, (_, i) => i + 1),
    { stop: (result) => !all && Mutants.catches(mutant, result) }
  )
  const catching = results.filter((result) => Mutants.catches(mutant, result))
  const caught = catching[0]
  return {
    mutant: mutant.name,
    // A mutant with `minNodes` runs that many at a smaller size.
    nodes: Mutants.huntOptions(mutant, nodes).nodes,
    seedsRun: caught === undefined ? results.length : caught.seed,
    caughtBy: caught?.seed ?? null,
    catches: all ? catching.length : undefined,
    property: caught?.violation?.property,
    detail: caught?.violation?.detail,
    replay: caught === undefined
      ? undefined
      : `npm run sim -- --mutant ${mutant.name} --nodes ${nodes} --seed ${caught.seed}` +
        (ownScenario ? "" : " --default-faults") + corners.flags
  }
}
const rows = await Promise.all(chosen.flatMap((mutant) => sizes.map((nodes) => hunt(mutant, nodes))))
await pool.close()
const seconds = (performance.now() - started) / 1000

const caught = rows.filter((row) => row.caughtBy !== null)
const counts = caught.map((row) => row.seedsRun).sort((a, b) => a - b)
const median = counts.length === 0 ? undefined : counts[Math.floor((counts.length - 1) / 2)]
const summary = {
  mutants: chosen.length,
  runs: rows.length,
  caught: caught.length,
  medianSeedsToCatch: median,
  worstSeedsToCatch: caught.length === rows.length ? counts[counts.length - 1] : undefined,
  seedsPerMutant: seeds,
  scenario: (ownScenario ? "own" : "default faults") + corners.flags,
  seconds: Math.round(seconds)
}
if (json) {
  console.log(JSON.stringify({ summary, rows }, null, 2))
} else {
  const table = [["mutant", "nodes", "seeds to catch", ...(all ? ["catches"] : []), "caught by", "replay"]]
  for (const row of rows) {
    table.push([
      row.mutant,
      String(row.nodes),
      row.caughtBy === null ? `not in ${row.seedsRun}` : String(row.seedsRun),
      ...(all ? [`${row.catches}/${seeds}`] : []),
      row.property ?? "-",
      row.replay ?? "-"
    ])
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((line) => line[column]!.length)))
  for (const line of table) console.log(line.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd())
  console.log(
    `${caught.length} of ${rows.length} caught within ${seeds} seeds (${summary.scenario}); ` +
      `seeds to catch: median ${median ?? "-"}, worst ${summary.worstSeedsToCatch ?? "-"}; ${summary.seconds} s`
  )
}
process.exitCode = caught.length === rows.length ? 0 : 1
