/**
 * Disk loss on real processes: three `kv node` processes (TCP, the WAL, file
 * snapshots). Follower B is killed; key X is written and acknowledged (the
 * leader L and follower A hold it); A is stopped and its `raft/` directory
 * (log, term, vote) removed; L is killed; A and B are started. A's data directory says it
 * was initialised (`IDENTITY.json`) while its store is empty, so A must refuse
 * to start, exit non-zero and name the recovery step. Had it started empty (or
 * bootstrapped again, as every start did before), its vote would let B, which
 * never saw X, lead without X, and X would be gone for good. Once L is back,
 * X is readable; then the recovery step itself: A started with `--rejoin`
 * comes back as a non-voter, catches up, becomes a voter, and holds X.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bundleKv } from "../fixtures/bundle.js"
import { type ProcessCluster, type ProcessNode, startProcessCluster } from "./processes.js"

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

/** One HTTP call to `node`, redirects not followed; undefined when it did not answer. */
const call = async (node: ProcessNode, method: string, path: string, body?: unknown) => {
  try {
    const response = await fetch(`http://${node.http}${path}`, {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(5000),
      headers: body === undefined ? {} : { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await response.text()
    return { status: response.status, body: text.length > 0 ? JSON.parse(text) : undefined }
  } catch {
    return undefined
  }
}

/** Polls `probe` every 200 ms until it answers something, for at most `millis`. */
const eventually = async <A>(what: string, millis: number, probe: () => Promise<A | undefined>): Promise<A> => {
  const deadline = Date.now() + millis
  while (Date.now() < deadline) {
    const found = await probe()
    if (found !== undefined) return found
    await sleep(200)
  }
  throw new Error(`${what}: not within ${millis} ms`)
}

const ready = (node: ProcessNode) =>
  eventually(`${node.id} answering`, 60_000, async () => (await call(node, "GET", "/status"))?.status === 200 || undefined)

/** How the node's current process ended, or undefined if it is still running after `millis`. */
const exitWithin = (node: ProcessNode, millis: number) =>
  Promise.race([node.exited!, sleep(millis).then(() => undefined)])

const logOf = (dir: string, node: ProcessNode) => fs.readFileSync(join(dir, `${node.id}.log`), "utf8")

let kv = ""
beforeAll(async () => {
  kv = await bundleKv()
})

describe("kv node on a wiped disk (real processes)", () => {
  it("a follower whose Raft store was wiped refuses to start and names --rejoin; the acknowledged write survives", async () => {
    const dir = fs.mkdtempSync(join(tmpdir(), "kv-wiped-"))
    let cluster: ProcessCluster | undefined
    let passed = false
    try {
      cluster = await startProcessCluster({ dir, nodes: 3, command: [kv] })
      const nodes = cluster.nodes
      for (const node of nodes) await ready(node)
      const first = await eventually("a leader", 60_000, () => cluster!.leader(1000))
      const b = nodes.find((node) => node !== first)!
      await cluster.kill(b, "SIGKILL")
      // Written through whichever node leads now (L); the other live node is A.
      const leader = await eventually("x written and acknowledged", 60_000, async () => {
        const current = await cluster!.leader(1000)
        if (current === undefined) return undefined
        const written = await call(current, "PUT", "/kv/x", { value: "acknowledged" })
        return written?.status === 200 ? current : undefined
      })
      const a = nodes.find((node) => node !== leader && node !== b)!

      await cluster.kill(a, "SIGTERM")
      fs.rmSync(join(a.dir, "raft"), { recursive: true })
      await cluster.kill(leader, "SIGKILL")
      cluster.start(a)
      cluster.start(b)

      const refused = await exitWithin(a, 60_000)
      assert.isDefined(refused, `A kept running on its wiped store; logs in ${dir}`)
      assert.strictEqual(refused!.code, 1)
      const line = logOf(dir, a).split("\n").find((text) => text.startsWith("kv: "))
      assert.isDefined(line, logOf(dir, a))
      assert.match(line!, /^kv: data directory .* was initialised as node n\d .* but its Raft store is empty: .*kv node --rejoin/)

      cluster.start(leader)
      const serving = await eventually("a leader after L's return", 60_000, () => cluster!.leader(1000))
      const read = await eventually("a linearizable read of x", 30_000, async () => {
        const answer = await call(serving, "GET", "/kv/x")
        return answer?.status === 200 ? answer : undefined
      })
      assert.strictEqual(read.body.value, "acknowledged")

      // The recovery step the refusal names: A rejoins as a non-voter, catches up, and is a voter again.
      cluster.start(a, { args: [...cluster.arguments(a, false), "--rejoin", "--join", serving.http] })
      await eventually("A a voter again, holding x", 60_000, async () => {
        const status = await call(a, "GET", "/status")
        const self = status?.body?.members?.find((member: { id: string }) => member.id === a.id)
        if (self?.suffrage !== "Voter") return undefined
        const x = await call(a, "GET", "/kv/x?stale=true")
        return x?.body?.value === "acknowledged" || undefined
      })
      assert.isTrue(fs.readdirSync(a.dir).includes("lost-1"), "the wiped store was moved aside, not deleted")
      passed = true
    } finally {
      await cluster?.stop()
      if (passed) fs.rmSync(dir, { recursive: true, force: true })
      else console.log(`kv wiped-disk test: data and logs kept in ${dir}`)
    }
  }, 240_000)
})
