/**
 * Raft nodes as Node processes on loopback TCP (test/fixtures/tcp-node.ts, run with tsx), driven through their
 * stdin and watched through the JSON status lines they print: shared by the TCP cluster tests.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"

export interface Status {
  readonly id: string
  readonly state: string
  readonly term: number
  readonly leader: string | null
  readonly fsm: number
  readonly digest: number
  readonly restores: number
  /** The process's resident set and its transport's receive budget (see test/fixtures/tcp-node.ts). */
  readonly rss: number
  readonly heap: number
  readonly receiving: number
  readonly receivingPeak: number
  readonly rejected: number
}

export interface Child {
  readonly id: string
  process: ChildProcess
  status: Status | undefined
  readonly done: Map<string, { ok: boolean; error?: string }>
  stderr: string
  /** Every status line seen, oldest first (for peaks over a window). */
  readonly history: Array<Status>
}

const root = path.join(import.meta.dirname, "../..")
const script = path.join(root, "test/fixtures/tcp-node.ts")
const tsx = path.join(root, "node_modules/tsx/dist/cli.mjs")
/** Every child started by this test file, killed after it. */
export const children: Array<Child> = []

export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

export const start = (child: Child, port: number, peers: string) => {
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
      else {
        child.status = message
        child.history.push(message)
      }
    }
  })
  proc.stderr!.on("data", (chunk: Buffer) => (child.stderr = (child.stderr + chunk.toString()).slice(-4000)))
  child.process = proc
}

export const until = async <A>(what: string, check: () => A | undefined, timeoutMs = 30_000): Promise<A> => {
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
export const agreedLeader = (live: ReadonlyArray<Child>): Child | undefined => {
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
export const apply = async (live: ReadonlyArray<Child>, n: number, tag: string) => {
  for (let attempt = 0; attempt < 5; attempt++) {
    const leader = await until(`a leader for ${tag}`, () => agreedLeader(live))
    const key = `${tag}.${attempt}`
    leader.process.stdin!.write(`apply ${n} ${tag} ${key}\n`)
    const result = await until(`apply ${tag} on ${leader.id}`, () => leader.done.get(key))
    if (result.ok) return leader
  }
  throw new Error(`apply ${tag} failed five times`)
}

export const converged = (live: ReadonlyArray<Child>, fsm: number) =>
  until(`${live.map((c) => c.id).join(",")} to apply ${fsm} entries`, () =>
    live.every((c) => c.status?.fsm === fsm) && new Set(live.map((c) => c.status!.digest)).size === 1 ? true : undefined)

/** Starts three nodes a, b, c (test/fixtures/tcp-node.ts) on free loopback ports; answers them and their ports. */
export const startCluster = async () => {
  const ports = [await freePort(), await freePort(), await freePort()]
  const ids = ["a", "b", "c"]
  const peers = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]}`).join(",")
  const started: Array<Child> = ids.map((id) => ({
    id,
    process: undefined as unknown as ChildProcess,
    status: undefined,
    done: new Map(),
    stderr: "",
    history: []
  }))
  children.push(...started)
  started.forEach((c, i) => start(c, ports[i]!, peers))
  return { nodes: started, ports, peers }
}

/** Kills every child started (after a test file). */
export const killAll = () => {
  for (const c of children) c.process.kill("SIGKILL")
}
