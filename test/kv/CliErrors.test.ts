import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawnSync } from "node:child_process"
import { createServer } from "node:net"
import { join } from "node:path"
import * as Cli from "../../src/kv/Cli.js"
import * as KvError from "../../src/kv/KvError.js"

const entry = join(import.meta.dirname, "../../src/kv/main.ts")

/** Runs `kv` with `args` (and `env` added to this process's environment). */
const kv = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ["--import", "tsx", entry, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, ...env }
  })

/** A port on which nothing listens: one the system handed out and that was closed again. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const lines = (text: string) => text.split("\n").filter((line) => line.trim().length > 0)

describe("kv command line errors", () => {
  it("an ordinary failure prints one line and exits 1; --verbose prints the whole cause", async () => {
    const port = await closedPort()
    const plain = kv(["get", "nosuch", "--http-addr", `127.0.0.1:${port}`])
    assert.strictEqual(plain.status, 1, plain.stderr)
    assert.deepStrictEqual(lines(plain.stdout), [])
    const printed = lines(plain.stderr)
    assert.strictEqual(printed.length, 1, plain.stderr)
    assert.match(printed[0]!, new RegExp(`^kv: cannot reach GET http://127\\.0\\.0\\.1:${port}/.*ECONNREFUSED`))

    const verbose = kv(["get", "nosuch", "--http-addr", `127.0.0.1:${port}`, "--verbose"])
    assert.strictEqual(verbose.status, 1)
    assert.isAbove(lines(verbose.stderr).length, 3, "--verbose shows the cause with its trace")
  }, 120_000)

  it("options not given are read from the environment (KV_HTTP_ADDR)", async () => {
    const port = await closedPort()
    const run = kv(["get", "k"], { KV_HTTP_ADDR: `127.0.0.1:${port}` })
    assert.strictEqual(run.status, 1, run.stderr)
    assert.include(run.stderr, `127.0.0.1:${port}`, "the address came from KV_HTTP_ADDR, not the default")
    // A flag wins over the environment.
    const other = await closedPort()
    const flagged = kv(["get", "k", "--http-addr", `127.0.0.1:${other}`], { KV_HTTP_ADDR: `127.0.0.1:${port}` })
    assert.include(flagged.stderr, `127.0.0.1:${other}`)
  }, 120_000)

  it("a missing argument is explained by the parser, without an error object dumped", () => {
    const run = kv(["get"])
    assert.strictEqual(run.status, 1)
    assert.notInclude(run.stdout + run.stderr, "_tag")
  }, 60_000)

  it("the service's errors are described by their message, on one line", () => {
    assert.strictEqual(Cli.describeFailure(new KvError.KeyNotFound({ key: "nosuch" })), "no key nosuch")
    assert.strictEqual(Cli.describeFailure("plain"), "plain")
  })

  it.effect("kv node --log-format json logs one JSON object per line", () =>
    Effect.gen(function*() {
      const written: Array<unknown> = []
      const original = globalThis.console.log
      globalThis.console.log = (...args: Array<unknown>) => void written.push(...args)
      yield* Effect.logInfo("leader elected").pipe(
        Effect.annotateLogs("term", 3),
        Effect.provide(Cli.logger("json")),
        Effect.ensuring(Effect.sync(() => (globalThis.console.log = original)))
      )
      assert.strictEqual(written.length, 1)
      const record = JSON.parse(String(written[0])) as { message: unknown; annotations: { term: unknown } }
      assert.strictEqual(record.message, "leader elected")
      assert.strictEqual(record.annotations.term, 3)
    }))
})
