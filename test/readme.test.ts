/**
 * The README's code, and the examples of the documents under docs/, are files of test/examples/: this test checks
 * that each block marked `<!-- example: test/examples/NAME -->` is that file, word for word, and that the README
 * has no unmarked TypeScript block. `npm run check` type-checks the files; here they run (the test example,
 * `counter.test.ts`, runs as any test file does).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Layer from "effect/Layer"
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import { Simulator } from "effect-raft"

const root = path.join(import.meta.dirname, "..")
const documents = ["README.md", "docs/guide.md", "docs/simulation.md", "docs/testing.md"]

interface Block {
  readonly document: string
  readonly line: number
  readonly example: string | undefined
  readonly code: string
}

/** The ```ts blocks of a Markdown document, with the example file named by the marker just above each. */
const blocks = (document: string): ReadonlyArray<Block> => {
  const lines = readFileSync(path.join(root, document), "utf8").split("\n")
  const found: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```ts") continue
    const end = lines.indexOf("```", i + 1)
    const marker = /^<!-- example: (\S+) -->$/.exec(lines[i - 1] ?? "")
    found.push({ document, line: i + 1, example: marker?.[1], code: lines.slice(i + 1, end).join("\n") + "\n" })
    i = end
  }
  return found
}

describe("README and docs examples", () => {
  it("every marked block is its example file, and the README has no unmarked TypeScript block", () => {
    const all = documents.flatMap(blocks)
    const unmarked = all.filter((block) => block.document === "README.md" && block.example === undefined)
    assert.deepStrictEqual(unmarked.map((block) => `README.md:${block.line}`), [])
    const marked = all.filter((block) => block.example !== undefined)
    assert.isAbove(marked.length, 4)
    for (const block of marked) {
      const file = readFileSync(path.join(root, block.example!), "utf8")
      assert.strictEqual(block.code, file, `${block.document}:${block.line} differs from ${block.example}`)
    }
  })

  it("the first cluster runs as written: three nodes elect a leader and count to 5", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/examples/first-cluster.ts"], {
      cwd: root
    })
    // The result is the last line, after the nodes' Info lines (elections, leaders).
    assert.match(stdout.trim().split("\n").at(-1) ?? "", /^leader [abc], entry 4: the counter is 5$/)
  }, 60_000)

  it("the durable node is a layer (building it needs a disk and a port)", async () => {
    const { node } = await import("./examples/durable.js")
    assert.isTrue(Layer.isLayer(node))
  })

  it("the simulation example runs a counter workload to a clean result, also with frequent snapshots", async () => {
    const { counter, result } = await import("./examples/simulation.js")
    assert.isTrue(result.ok, result.violation?.detail)
    assert.strictEqual(result.linearizability, "Linearizable")
    const compacting = Simulator.run({ seed: 1, nodes: 3, durationMillis: 2000, workload: counter, config: Simulator.frequentSnapshots })
    assert.isTrue(compacting.ok, compacting.violation?.detail)
  }, 60_000)
})
