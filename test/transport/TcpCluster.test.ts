/**
 * Three Raft nodes as three Node processes on loopback TCP (test/fixtures/tcp-node.ts, run with tsx), with memory
 * stores: they elect a leader and replicate; the leader's process is killed with SIGKILL, the other two elect a new
 * leader and go on; the old leader's process is started again and catches up from the new leader, by an
 * InstallSnapshot streamed over TCP (the nodes compact their logs every 16 entries) and then entries.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "vitest"

interface Status {
  readonly id: string
  readonly state: string
  readonly term: number
  readonly leader: string | null
  readonly fsm: number
  readonly digest: number
  readonly restores: number
}

interface Child {
  readonly id: string
  process: ChildProcess
  status: Status | undefined
  readonly done: Map<string, { ok: boolean; error?: string }>
  stderr: string
}

const root = path.join(import.meta.dirname, "../..")
const script = path.join(root, "test/fixtures/tcp-node.ts")
const tsx = path.join(root, "node_modules/tsx/dist/cli.mjs")
const children: Array<Child> = []

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

const start = (child: Child, port: number, peers: string) => {
  child.status = undefined
  child.stderr = ""
  const proc = spawn(process.execPath, [tsx, script, "--id", child.id, "--port", String(port), "--peers", peers], {
    cwd: root,
    stdio: ["pipe", "pipe", "pipe"]
  })
  let buffered = ""
  proc.stdout!.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    let newline: number
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (!line.startsWith("{")) continue
      const message = JSON.parse(line) as Status & { done?: string; ok?: boolean; error?: string }
      if (message.done !== undefined) child.done.set(message.done, { ok: message.ok === true, ...(message.error ? { error: message.error } : {}) })
      else child.status = message
    }
  })
  proc.stderr!.on("data", (chunk: Buffer) => (child.stderr = (child.stderr + chunk.toString()).slice(-4000)))
  child.process = proc
}

const until = async <A>(what: string, check: () => A | undefined, timeoutMs = 30_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = check()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const states = children.map((c) => `${c.id}: ${JSON.stringify(c.status)} ${c.stderr.slice(-500)}`).join("\n")
  throw new Error(`timed out waiting for ${what}\n${states}`)
}

/** The one node all live nodes agree is leader, in the highest term seen. */
const agreedLeader = (live: ReadonlyArray<Child>): Child | undefined => {
  if (live.some((c) => c.status === undefined)) return undefined
  const leaders = live.filter((c) => c.status!.state === "Leader")
  if (leaders.length !== 1) return undefined
  const leader = leaders[0]!
  return live.every((c) => c.status!.leader === leader.id && c.status!.term === leader.status!.term) ? leader : undefined
}

/**
 * Applies n commands through the leader; a batch that fails (the leader lost its lease under load, say) is sent
 * again to whoever leads then. Commands are idempotent in the FSM, so one that did commit counts once.
 */
const apply = async (live: ReadonlyArray<Child>, n: number, tag: string) => {
  for (let attempt = 0; attempt < 5; attempt++) {
    const leader = await until(`a leader for ${tag}`, () => agreedLeader(live))
    const key = `${tag}.${attempt}`
    leader.process.stdin!.write(`apply ${n} ${tag} ${key}\n`)
    const result = await until(`apply ${tag} on ${leader.id}`, () => leader.done.get(key))
    if (result.ok) return leader
  }
  throw new Error(`apply ${tag} failed five times`)
}

const converged = (live: ReadonlyArray<Child>, fsm: number) =>
  until(`${live.map((c) => c.id).join(",")} to apply ${fsm} entries`, () =>
    live.every((c) => c.status?.fsm === fsm) && new Set(live.map((c) => c.status!.digest)).size === 1 ? true : undefined)

afterAll(() => {
  for (const c of children) c.process.kill("SIGKILL")
})

describe("TCP cluster of three processes", () => {
  it("elects a leader, replicates, survives SIGKILL of the leader's process, and the restarted old leader catches up by InstallSnapshot over TCP", async () => {
    const ports = [await freePort(), await freePort(), await freePort()]
    const ids = ["a", "b", "c"]
    const peers = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]}`).join(",")
    for (const id of ids) children.push({ id, process: undefined as unknown as ChildProcess, status: undefined, done: new Map(), stderr: "" })
    children.forEach((c, i) => start(c, ports[i]!, peers))

    await until("a first leader", () => agreedLeader(children), 60_000)
    await apply(children, 40, "one")
    await converged(children, 40)
    const first = await until("the leader", () => agreedLeader(children)) // its process is killed

    const firstTerm = first.status!.term
    first.process.kill("SIGKILL")
    const survivors = children.filter((c) => c !== first)
    await until("a new leader among the survivors", () => {
      const leader = agreedLeader(survivors)
      return leader !== undefined && leader.status!.term > firstTerm ? leader : undefined
    })
    await apply(survivors, 40, "two")
    await converged(survivors, 80)

    start(first, ports[children.indexOf(first)]!, peers)
    await converged(children, 80)
    // The new leader compacted its log meanwhile: the empty node was brought up by a snapshot sent over TCP.
    assert.isAtLeast(first.status!.restores, 1)
    await until("the old leader to follow the leader", () => agreedLeader(children) !== undefined ? true : undefined)
    await apply(children, 20, "three")
    await converged(children, 100)
  }, 120_000)
})
