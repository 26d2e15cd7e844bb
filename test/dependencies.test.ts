/**
 * The shape of `src/`'s imports, checked with dependency-cruiser on the
 * TypeScript sources (type-only imports included):
 * - no import cycle anywhere in `src/`;
 * - the platform-neutral entry points (`effect-raft` and `effect-raft/testing`)
 *   reach no native module, no Node-only package and no Node built-in.
 * The pack-and-install test checks the second at run time, on the compiled package.
 */
import { assert, describe, it } from "@effect/vitest"
import { cruise, type ICruiseResult, type IForbiddenRuleType } from "dependency-cruiser"
import * as path from "node:path"

const root = path.join(import.meta.dirname, "..")

/**
 * Cycles tolerated for now, as "a.ts -> b.ts" between `src/` paths (none: keep
 * it so). When a listed cycle is gone the test says so: remove its line then.
 */
const knownCycles: ReadonlyArray<string> = []

const neutralEntries = "^src/(index|testing/index)[.]ts$"

const rules: Array<IForbiddenRuleType> = [
  {
    name: "no-cycle",
    severity: "error",
    from: { path: "^src/" },
    to: { circular: true }
  },
  {
    name: "neutral-core",
    comment: "the core entry points load no native module, no Node-only package, no Node built-in",
    severity: "error",
    from: { path: neutralEntries },
    to: {
      reachable: true,
      path: [
        "node_modules/(lmdb|msgpackr|msgpackr-extract|@effect/platform-node|@effect/platform-node-shared)/",
        // Node's built-in modules: neither a source file nor a package
        "^(?!src/|node_modules/)"
      ]
    }
  }
]

const run = async (): Promise<ICruiseResult> => {
  const reported = await cruise(["src"], {
    baseDir: root,
    validate: true,
    ruleSet: { forbidden: rules },
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^src/(demo|kv/)" }
  }, undefined, { tsConfig: { fileName: path.join(root, "tsconfig.json") } })
  assert.isObject(reported.output)
  return reported.output as ICruiseResult
}

/** A cycle as "first -> second" of its two lowest paths, so that a cycle reads the same from any module in it. */
const cycleKey = (cycle: ReadonlyArray<string>): string => [...cycle].sort().slice(0, 2).join(" -> ")

describe("the imports of src/", () => {
  it("have no cycle, and the core reaches nothing native or Node-only", async () => {
    const result = await run()
    const violations = result.summary.violations
    const cycles = new Set<string>()
    const others: Array<string> = []
    for (const violation of violations) {
      if (violation.rule.name === "no-cycle") {
        cycles.add(cycleKey([violation.from, ...(violation.cycle ?? []).map((step) => step.name)]))
      } else {
        others.push(`${violation.rule.name}: ${violation.from} -> ${violation.to}`)
      }
    }
    assert.deepStrictEqual(others, [], "the core entry points reach platform-specific modules")
    const unexpected = [...cycles].filter((cycle) => !knownCycles.includes(cycle))
    assert.deepStrictEqual(unexpected, [], "import cycles in src/")
    const gone = knownCycles.filter((cycle) => !cycles.has(cycle))
    assert.deepStrictEqual(gone, [], "cycles listed in knownCycles no longer exist: remove them from the list")
    // The cruise saw the whole source tree, not an empty set (a wrong base directory would pass vacuously).
    assert.isAbove(result.summary.totalCruised, 40)
  }, 60_000)
})

describe("the imports of the kv executable", () => {
  it("load Swagger UI's module only on demand: a node's static imports do not reach it, one dynamic import does", async () => {
    const reported = await cruise(["src/kv/main.ts"], {
      baseDir: root,
      tsPreCompilationDeps: true,
      doNotFollow: { path: "node_modules" }
    }, undefined, { tsConfig: { fileName: path.join(root, "tsconfig.json") } })
    const output = reported.output as ICruiseResult
    const swagger = output.modules.flatMap((module) =>
      module.dependencies
        .filter((dependency) => dependency.module.includes("HttpApiSwagger"))
        .map((dependency) => `${module.source} ${dependency.dynamic ? "imports on demand" : "imports"} ${dependency.module}`)
    )
    // About 9 MiB of every node's heap (benchmarks/README.md, "Memory"): only the /docs route's first request loads it.
    assert.deepStrictEqual(swagger, ["src/kv/Operator.ts imports on demand @effect/platform/HttpApiSwagger"])
  }, 60_000)
})
