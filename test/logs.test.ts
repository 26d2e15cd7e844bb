import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as Fsm from "../src/Fsm.js"
import * as TestCluster from "../src/testing/TestCluster.js"

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** Every log line, with its level and annotations. */
const capture = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    lines.push({
      level: logLevel.label,
      message: Array.isArray(message) ? message.map(String).join(" ") : String(message),
      annotations: Object.fromEntries(HashMap.toEntries(annotations))
    })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

const counter = () => {
  let count = 0
  return Fsm.fromFunction(() => ++count, {
    save: () => new TextEncoder().encode(String(count)),
    load: (bytes) => {
      count = Number(new TextDecoder().decode(bytes))
    }
  })
}

describe("the engine's log", () => {
  it.scoped("elections, leader changes, membership changes, snapshots and step-downs are at Info with node, term and index", () => {
    const { layer, lines } = capture()
    return Effect.gen(function*() {
      const cluster = yield* TestCluster.make({ nodes: 3, fsm: counter })
      const leader = yield* cluster.awaitLeader()
      yield* leader.raft.apply(new Uint8Array([1]))
      yield* leader.raft.snapshot
      const follower = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* leader.raft.removeServer(follower.id)
      // Cut off, the leader loses its lease and steps down.
      yield* cluster.isolate(leader.id)
      yield* cluster.advance("300 millis")

      const find = (pattern: RegExp, node?: string) =>
        lines.find((line) => pattern.test(line.message) && (node === undefined || line.annotations.node === node))
      const expectations: ReadonlyArray<readonly [string, RegExp, string | undefined]> = [
        ["an election", /^(election for term \d+|pre-vote: )/, undefined],
        ["the winner", /^elected leader of term \d+$/, leader.id],
        ["a leader change on a follower", /^following leader \S+ of term \d+$/, undefined],
        ["a snapshot", /^snapshot \S+ taken at index \d+$/, leader.id],
        ["a membership change", /^configuration change appended: RemoveServer /, leader.id],
        ["its commit", /^configuration committed: /, leader.id],
        ["a step-down", /^(no longer leader of term \d+|failed to contact a quorum)/, leader.id]
      ]
      for (const [what, pattern, node] of expectations) {
        const line = find(pattern, node)
        assert.isDefined(line, `no log line for ${what}:\n${lines.map((l) => l.message).join("\n")}`)
        assert.include(["INFO", "WARN"], line!.level, what)
        assert.isString(line!.annotations.node, what)
        assert.isNumber(line!.annotations.term, what)
        assert.isNumber(line!.annotations.index, what)
      }
    }).pipe(Effect.provide(layer))
  })
})
