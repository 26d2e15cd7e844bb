/**
 * A key-value cluster of real processes on loopback, for the chaos test and
 * the end-to-end benchmark: each node is `kv node` started as `kv cluster` starts it (Node with
 * `Launcher.nodeFlags`; TCP transport with mutual
 * TLS unless told otherwise, WAL stores, file snapshots) in its own Node process, started with the same
 * peer list, `--bootstrap` and `--cluster-id` (which a node ignores once its data
 * directory was initialised), its output in `<dir>/<id>.log`. Nodes can be
 * killed with SIGKILL and started again on the same data directory, or with
 * other arguments (`start(node, { args })`, see `arguments`); `exited` says how
 * a node's last process ended.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { createWriteStream, mkdirSync } from "node:fs"
import { join } from "node:path"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Effect from "effect/Effect"
import * as Certificates from "../../src/kv/Certificates.js"
import { nodeArguments, nodeFlags } from "../../src/kv/Launcher.js"
import { freePort } from "./cluster.js"

export interface ProcessNode {
  readonly id: string
  readonly raft: string
  readonly http: string
  readonly dir: string
  child: ChildProcess | undefined
  /** How the node's last process ended, once it did. */
  exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }> | undefined
}

export interface ProcessCluster {
  readonly nodes: ReadonlyArray<ProcessNode>
  /** The arguments of `kv node` for `node` (TLS files included), with `--bootstrap` unless `bootstrap` is false. */
  readonly arguments: (node: ProcessNode, bootstrap?: boolean) => ReadonlyArray<string>
  /** Starts `node` (with `args` instead of the bootstrap arguments when given). */
  readonly start: (node: ProcessNode, options?: { readonly args?: ReadonlyArray<string> }) => void
  readonly kill: (node: ProcessNode, signal?: NodeJS.Signals) => Promise<void>
  readonly alive: (node: ProcessNode) => boolean
  /** Some node that says it leads, polled until `timeoutMillis`. */
  readonly leader: (timeoutMillis?: number) => Promise<ProcessNode | undefined>
  readonly stop: () => Promise<void>
}

const entry = join(import.meta.dirname, "../../src/kv/main.ts")

export const startProcessCluster = async (options: {
  readonly dir: string
  readonly nodes?: number
  readonly fast?: boolean
  readonly faults?: boolean
  /** Mutual TLS on the Raft transport with certificates made in `dir`, as `kv cluster` does (default), or plaintext. */
  readonly tls?: boolean
  /** Node's arguments that run `kv` (default: `src/kv/main.ts` through tsx; the benchmark passes a bundle). */
  readonly command?: ReadonlyArray<string>
  /** V8 flags before `command` (default: `kv cluster`'s, `Launcher.nodeFlags`). */
  readonly nodeFlags?: ReadonlyArray<string>
}): Promise<ProcessCluster> => {
  const nodes = await makeNodes(options.dir, options.nodes ?? 3, "n")
  const tls = options.tls === false ? "plaintext" as const : await Effect.runPromise(
    Certificates.ensureCluster(options.dir, nodes).pipe(Effect.map(({ files }) => files), Effect.provide(NodeContext.layer))
  )
  const clusterId = randomUUID()
  const argumentsOf = (node: ProcessNode, bootstrap = true) =>
    nodeArguments(node, nodes, {
      tls: tls === "plaintext" ? tls : tls.get(node.id)!,
      fast: options.fast,
      faults: options.faults,
      ...(bootstrap ? { bootstrap: { clusterId } } : {})
    })
  const start = (node: ProcessNode, startOptions?: { readonly args?: ReadonlyArray<string> }) => {
    mkdirSync(node.dir, { recursive: true })
    spawnLogged(node, options.dir, process.execPath, [
      ...(options.nodeFlags ?? nodeFlags),
      ...(options.command ?? ["--import", "tsx", entry]),
      ...(startOptions?.args ?? argumentsOf(node))
    ])
  }
  const isLeader = (node: ProcessNode) =>
    fetch(`http://${node.http}/status`, { signal: AbortSignal.timeout(1000) })
      .then((response) => response.json() as Promise<{ state: string }>)
      .then((status) => status.state === "Leader")
      .catch(() => false)
  for (const node of nodes) start(node)
  return { nodes, arguments: argumentsOf, start, ...controls(nodes, isLeader) }
}

/**
 * `n` nodes named `<prefix>1`, `<prefix>2`… with their data under `dir` and 2n distinct free ports on loopback (the
 * system may hand out again a port whose probe just closed: two nodes on one address fail to bootstrap).
 */
export const makeNodes = async (dir: string, n: number, prefix: string): Promise<Array<ProcessNode>> => {
  const taken = new Set<number>()
  const address = async (): Promise<string> => {
    for (;;) {
      const port = await freePort()
      if (taken.has(port)) continue
      taken.add(port)
      return `127.0.0.1:${port}`
    }
  }
  const nodes: Array<ProcessNode> = []
  for (let i = 0; i < n; i++) {
    const id = `${prefix}${i + 1}`
    nodes.push({ id, raft: await address(), http: await address(), dir: join(dir, id), child: undefined, exited: undefined })
  }
  return nodes
}

/** Runs `command args` as `node`'s process, its output appended to `<dir>/<id>.log`; `node.child` follows it. */
export const spawnLogged = (node: ProcessNode, dir: string, command: string, args: ReadonlyArray<string>): void => {
  const child = spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"] })
  node.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })))
  const log = createWriteStream(join(dir, `${node.id}.log`), { flags: "a" })
  child.stdout.pipe(log)
  child.stderr.pipe(log)
  node.child = child
  child.once("exit", () => {
    if (node.child === child) node.child = undefined
  })
}

/** `kill`, `alive`, `leader` (polling `isLeader`) and `stop` (SIGTERM, SIGKILL after 10 s) over `nodes`' processes. */
export const controls = (
  nodes: ReadonlyArray<ProcessNode>,
  isLeader: (node: ProcessNode) => Promise<boolean>
): Pick<ProcessCluster, "kill" | "alive" | "leader" | "stop"> => {
  const kill = (node: ProcessNode, signal: NodeJS.Signals = "SIGKILL") =>
    new Promise<void>((resolve) => {
      const child = node.child
      if (child === undefined || child.exitCode !== null) {
        node.child = undefined
        return resolve()
      }
      child.once("exit", () => resolve())
      child.kill(signal)
    })
  const alive = (node: ProcessNode) => node.child !== undefined
  const leader = async (timeoutMillis = 60_000) => {
    const deadline = Date.now() + timeoutMillis
    while (Date.now() < deadline) {
      for (const node of nodes) {
        if (alive(node) && await isLeader(node)) return node
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return undefined
  }
  const stop = async () => {
    await Promise.all(nodes.map(async (node) => {
      const child = node.child
      if (child === undefined) return
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
      await exited
      clearTimeout(timer)
    }))
  }
  return { kill, alive, leader, stop }
}
