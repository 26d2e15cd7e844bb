/**
 * The status page in a real browser: Debian's Chromium, headless, driven by playwright-core (which downloads no
 * browser of its own). `.ci/run` installs Chromium; without it this test fails, it is never skipped.
 * `UPDATE_SCREENSHOT=1` also writes the page after a leader change to docs/status-page.png.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { makeCluster, request } from "./cluster.js"

const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

const launch = Effect.acquireRelease(
  Effect.promise((): Promise<Browser> => {
    if (!fs.existsSync(executablePath)) {
      return Promise.reject(new Error(`no Chromium at ${executablePath}: apt-get install -y chromium (as .ci/run does)`))
    }
    // As root (CI), Chromium needs --no-sandbox.
    return chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] })
  }),
  (browser) => Effect.promise(() => browser.close())
)

/** What the page shows: the leader, each member's row, and the leader changes listed. */
interface Shown {
  readonly leader: string
  readonly rows: ReadonlyArray<{ readonly member: string; readonly role: string; readonly cells: ReadonlyArray<string> }>
  readonly changes: ReadonlyArray<{ readonly term: number; readonly leader: string }>
}

/** Runs in the page (a string: the tests compile without the DOM's types). */
const readPage = `(() => ({
  leader: document.getElementById("leader")?.textContent ?? "",
  rows: [...document.querySelectorAll("#members tbody tr")].map((row) => ({
    member: row.dataset.member ?? "",
    role: row.dataset.role ?? "",
    cells: [...row.cells].map((cell) => cell.textContent ?? "")
  })),
  changes: [...document.querySelectorAll("#leader-changes li[data-term]")].map((item) => ({
    term: Number(item.dataset.term),
    leader: item.dataset.leader ?? ""
  }))
}))()`

const shown = (page: Page): Effect.Effect<Shown> => Effect.promise(() => page.evaluate<Shown>(readPage))

/** Polls the page (it refreshes itself every second) until `ok`; the last view in the failure otherwise. */
const until = (page: Page, ok: (view: Shown) => boolean, what: string) =>
  Effect.gen(function*() {
    let last: Shown | undefined
    for (let attempt = 0; attempt < 100; attempt++) {
      last = yield* shown(page)
      if (ok(last)) return last
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.dieMessage(`the page never showed ${what}: ${JSON.stringify(last)}`)
  })

describe("kv status page", () => {
  it.live("shows the members, their roles and replication, and follows a leader change", () =>
    Effect.scoped(Effect.gen(function*() {
      const cluster = yield* makeCluster(3)
      yield* Effect.addFinalizer(() => cluster.close)
      const leader = yield* cluster.leader
      const browser = yield* launch
      const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 1200, height: 520 } }))
      // A follower's page: it asks the other members for their own view.
      const observer = cluster.nodes.find((node) => node.id !== leader.id)!
      yield* Effect.promise(() => page.goto(`http://${observer.http}/`))

      const before = yield* until(
        page,
        (view) =>
          view.leader === leader.id && view.rows.length === 3 &&
          view.rows.every((row) => row.role === (row.member === leader.id ? "Leader" : "Follower")) &&
          view.rows.every((row) => row.cells[6] !== ""), // match index known for every member
        `${leader.id} leading three members`
      )
      assert.deepStrictEqual(before.rows.map((row) => row.member), ["n1", "n2", "n3"])

      yield* Effect.promise(async () => {
        for (const key of ["alpha", "beta", "gamma"]) await request(leader.http, "PUT", `/kv/${key}`, { value: "1" }, "follow")
      })
      // Hand leadership to the observer: the page shows it lead, and the change in its list.
      const transferred = yield* Effect.promise(() =>
        request(leader.http, "POST", "/cluster/transfer-leadership", { id: observer.id }, "follow")
      )
      assert.strictEqual(transferred.status, 200, JSON.stringify(transferred.body))
      const after = yield* until(
        page,
        (view) =>
          view.leader === observer.id &&
          view.rows.find((row) => row.member === observer.id)?.role === "Leader" &&
          view.rows.find((row) => row.member === leader.id)?.role === "Follower" &&
          view.changes.some((change) => change.leader === observer.id),
        `${observer.id} leading after the transfer`
      )
      const newest = after.changes.find((change) => change.leader === observer.id)!
      assert.isAbove(newest.term, 0)
      // The leader's own row shows no lag; a follower's lag is the leader's last index minus its match.
      const own = after.rows.find((row) => row.member === observer.id)!
      assert.strictEqual(own.cells[7], "0")

      const file = process.env.UPDATE_SCREENSHOT !== undefined
        ? path.join(import.meta.dirname, "..", "..", "docs", "status-page.png")
        : path.join(os.tmpdir(), `status-page-${process.pid}.png`)
      yield* Effect.promise(() => page.screenshot({ path: file, fullPage: true }))
      assert.isAbove(fs.statSync(file).size, 1000)
      if (process.env.UPDATE_SCREENSHOT === undefined) fs.rmSync(file)
    })))
})
