/**
 * Chaos with real processes: three `kv node` processes (TCP, LMDB, file
 * snapshots, hashicorp's default timers) serve concurrent HTTP clients doing put, get and
 * compare-and-set with unique values, while a nemesis kills nodes with
 * SIGKILL (the leader among them) and restarts them on their data, and cuts
 * one node off the others through the fault switch (`POST /admin/faults` on
 * both sides). Then everything heals and the test checks:
 * - the recorded history (including a final linearizable read of every key)
 *   is linearizable against the key-value model;
 * - every node's state, once it has applied the leader's commit index, is the
 *   same, holds every acknowledged write-once key, and agrees with the final
 *   reads.
 * It prints the number of operations, kills and partitions.
 */
import { assert, describe, it } from "@effect/vitest"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Linearizability from "../../src/testing/Linearizability.js"
import { type ProcessCluster, type ProcessNode, startProcessCluster } from "./processes.js"

const FAULT_MILLIS = Number(process.env.KV_CHAOS_MILLIS ?? 60_000)
const CLIENTS = 6
const KEYS = ["a", "b", "c", "d", "e", "f", "g", "h"]
/** Longer than the server's own write timeout (5 s), so a slow write mostly gets a definite answer. */
const REQUEST_TIMEOUT = 8000

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]!
const now = () => performance.now()

/** An HTTP answer; `refused` when the connection was refused (nothing was sent); undefined when the outcome is unknown. */
type Answer = { readonly status: number; readonly body: any } | undefined

const REFUSED = { status: 0, body: { _tag: "ConnectionRefused" } } as const

/** One HTTP call, following up to three redirects; undefined when no answer came (reset, timed out). */
const call = async (http: string, method: string, path: string, body?: unknown): Promise<Answer> => {
  let url = `http://${http}${path}`
  for (let hop = 0; hop < 4; hop++) {
    let response: Response
    try {
      response = await fetch(url, {
        method,
        redirect: "manual",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT),
        headers: body === undefined ? {} : { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) })
      })
    } catch (error) {
      // A refused connection sent nothing: the request certainly had no effect.
      const code = (error as { cause?: { code?: string } }).cause?.code
      return code === "ECONNREFUSED" ? REFUSED : undefined
    }
    const text = await response.text().catch(() => undefined)
    if (text === undefined) return undefined
    const parsed = text.length > 0 ? JSON.parse(text) : undefined
    const location = response.headers.get("location")
    if (response.status === 307 && location !== null) {
      url = location
      continue
    }
    return { status: response.status, body: parsed }
  }
  return { status: 503, body: { _tag: "TooManyRedirects" } }
}

interface Counts {
  ok: number
  failed: number
  unknown: number
}

/** A client: random operations on random live nodes until `until`; records what it may in `history`. */
const client = async (
  id: number,
  cluster: ProcessCluster,
  until: number,
  history: Array<Linearizability.KvOperation>,
  writeOnce: Map<string, string>,
  counts: Counts
) => {
  let seq = 0
  const lastSeen = new Map<string, string | undefined>()
  while (now() < until) {
    seq++
    const live = cluster.nodes.filter(cluster.alive)
    if (live.length === 0) {
      await sleep(50)
      continue
    }
    const node = pick(live)
    const key = pick(KEYS)
    const value = `c${id}-${seq}`
    const roll = Math.random()
    const start = now()
    if (roll < 0.1) {
      // A write-once key: its acknowledged value must be on every node at the end.
      const unique = `u-${id}-${seq}`
      const answer = await call(node.http, "PUT", `/kv/${unique}`, { value })
      if (answer?.status === 200) {
        writeOnce.set(unique, value)
        counts.ok++
      } else counts.failed++
      continue
    }
    if (roll < 0.45) {
      const answer = await call(node.http, "PUT", `/kv/${key}`, { value })
      const input = { op: "put", key, value } as const
      if (answer?.status === 200) {
        history.push({ clientId: id, input, call: start, return: now(), output: { ok: true } })
        counts.ok++
      } else if (answer === undefined || answer.status === 504) {
        history.push({ clientId: id, input, call: start, return: undefined, output: undefined })
        counts.unknown++
      } else counts.failed++ // redirects exhausted, 503: nothing was done
    } else if (roll < 0.75) {
      const answer = await call(node.http, "GET", `/kv/${key}`)
      const input = { op: "get", key } as const
      if (answer?.status === 200 || answer?.status === 404) {
        const seen = answer.status === 200 ? answer.body.value as string : undefined
        lastSeen.set(key, seen)
        history.push({ clientId: id, input, call: start, return: now(), output: { value: seen } })
        counts.ok++
      } else counts.failed++ // a read that did not answer did nothing
    } else {
      const expected = lastSeen.get(key)
      const body = expected === undefined ? { value } : { expected, value }
      const answer = await call(node.http, "POST", `/kv/${key}/cas`, body)
      const input = { op: "cas", key, expected, value } as const
      if (answer?.status === 200 || answer?.status === 409) {
        history.push({ clientId: id, input, call: start, return: now(), output: { ok: answer.status === 200 } })
        if (answer.status === 200) lastSeen.set(key, value)
        counts.ok++
      } else if (answer === undefined || answer.status === 504) {
        history.push({ clientId: id, input, call: start, return: undefined, output: undefined })
        counts.unknown++
      } else counts.failed++
    }
  }
}

const setFaults = (node: ProcessNode, blocked: ReadonlyArray<string>) =>
  call(node.http, "POST", "/admin/faults", { blocked })

/** Waits until a (re)started node answers over HTTP: starting a process takes seconds on a busy machine. */
const ready = async (node: ProcessNode) => {
  for (let attempt = 0; attempt < 600; attempt++) {
    const answer = await call(node.http, "GET", "/status")
    if (answer !== undefined && answer.status === 200) return
    await sleep(100)
  }
}

interface Faults {
  kills: number
  leaderKills: number
  partitions: number
}

/**
 * One fault at a time until `until`, alternating a SIGKILL (of the leader, then of a random node, and so on) with
 * a partition that isolates a random node; a killed node is restarted on its data and awaited before the next.
 */
const nemesis = async (cluster: ProcessCluster, until: number, faults: Faults) => {
  let round = 0
  while (now() < until - 3000) {
    await sleep(1000 + Math.random() * 1000)
    round++
    if (round % 2 === 1) {
      const leader = round % 4 === 1 ? await cluster.leader(5000) : undefined
      const victim = leader ?? pick(cluster.nodes)
      if (leader !== undefined) faults.leaderKills++
      faults.kills++
      await cluster.kill(victim, "SIGKILL")
      await sleep(500 + Math.random() * 1500)
      cluster.start(victim)
      await ready(victim)
    } else {
      const isolated = pick(cluster.nodes)
      const others = cluster.nodes.filter((node) => node !== isolated)
      faults.partitions++
      await Promise.all([
        setFaults(isolated, others.map((node) => node.id)),
        ...others.map((node) => setFaults(node, [isolated.id]))
      ])
      await sleep(1500 + Math.random() * 2000)
      await Promise.all(cluster.nodes.map((node) => setFaults(node, [])))
    }
  }
}

describe("kv chaos", () => {
  it("under kills, restarts and partitions the history is linearizable and no acknowledged write is lost", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kv-chaos-"))
    const cluster = await startProcessCluster({ dir, nodes: 3, faults: true })
    let passed = false
    try {
      for (const node of cluster.nodes) await ready(node)
      assert.isDefined(await cluster.leader(90_000), `no leader came up; logs in ${dir}`)
      const history: Array<Linearizability.KvOperation> = []
      const writeOnce = new Map<string, string>()
      const counts: Counts = { ok: 0, failed: 0, unknown: 0 }
      const faults: Faults = { kills: 0, leaderKills: 0, partitions: 0 }
      const until = now() + FAULT_MILLIS
      await Promise.all([
        nemesis(cluster, until, faults),
        ...Array.from({ length: CLIENTS }, (_, i) => client(i, cluster, until, history, writeOnce, counts))
      ])

      // Heal: every node up, no fault switch set.
      for (const node of cluster.nodes) if (!cluster.alive(node)) cluster.start(node)
      for (const node of cluster.nodes) await ready(node)
      for (let attempt = 0; attempt < 20; attempt++) {
        const answers = await Promise.all(cluster.nodes.map((node) => setFaults(node, [])))
        if (answers.every((answer) => answer?.status === 200)) break
        await sleep(500)
      }
      const leader = await cluster.leader(60_000)
      assert.isDefined(leader, `no leader after healing; logs in ${dir}`)

      // A final linearizable read of every key, recorded in the history.
      const finals = new Map<string, string | undefined>()
      for (const key of KEYS) {
        for (let attempt = 0;; attempt++) {
          const start = now()
          const answer = await call(leader!.http, "GET", `/kv/${key}`)
          if (answer?.status === 200 || answer?.status === 404) {
            const value = answer.status === 200 ? answer.body.value as string : undefined
            finals.set(key, value)
            history.push({ clientId: "final", input: { op: "get", key }, call: start, return: now(), output: { value } })
            break
          }
          assert.isBelow(attempt, 100, `final read of ${key} kept failing`)
          await sleep(200)
        }
      }

      // Every node applies up to the leader's commit index, then shows the same state.
      const leaderStatus = await call(leader!.http, "GET", "/status")
      const target = leaderStatus?.body.commitIndex as number
      const dumps: Array<Map<string, string>> = []
      for (const node of cluster.nodes) {
        for (let attempt = 0;; attempt++) {
          const status = await call(node.http, "GET", "/status")
          if (status?.status === 200 && status.body.appliedIndex >= target) break
          assert.isBelow(attempt, 300, `${node.id} did not catch up to ${target}; logs in ${dir}`)
          await sleep(100)
        }
        const dump = await call(node.http, "GET", "/kv?stale=true&limit=1000000")
        assert.strictEqual(dump?.status, 200)
        dumps.push(new Map((dump!.body.entries as Array<{ key: string; value: string }>).map((e) => [e.key, e.value])))
      }
      for (const [i, dump] of dumps.entries()) {
        assert.deepStrictEqual(dump, dumps[0], `node ${cluster.nodes[i]!.id} differs from ${cluster.nodes[0]!.id}`)
        for (const [key, value] of writeOnce) {
          assert.strictEqual(dump.get(key), value, `acknowledged write ${key} missing on ${cluster.nodes[i]!.id}`)
        }
        for (const key of KEYS) assert.strictEqual(dump.get(key), finals.get(key), `${key} on ${cluster.nodes[i]!.id}`)
      }

      const result = Linearizability.check(Linearizability.kvModel, history)
      const summary = `${history.length + writeOnce.size} recorded operations (${counts.ok} acknowledged, ` +
        `${counts.unknown} of unknown outcome, ${counts.failed} refused), ${writeOnce.size} write-once keys; ` +
        `${faults.kills} kills (${faults.leaderKills} of the leader), ${faults.partitions} partitions ` +
        `in ${FAULT_MILLIS / 1000} s: ${result._tag}`
      console.log(`kv chaos: ${summary}`)
      assert.strictEqual(result._tag, "Linearizable", summary)
      assert.isAtLeast(faults.kills, 2, summary)
      assert.isAtLeast(faults.leaderKills, 1, summary)
      assert.isAtLeast(faults.partitions, 1, summary)
      assert.isAtLeast(counts.ok, 100, summary)
      passed = true
    } finally {
      await cluster.stop()
      // A failed run keeps its data and logs for a look.
      if (passed) rmSync(dir, { recursive: true, force: true })
      else console.log(`kv chaos: data and logs kept in ${dir}`)
    }
  }, 240_000)
})
