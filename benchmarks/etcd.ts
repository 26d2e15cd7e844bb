/**
 * etcd as the key-value anchor of `npm run bench:kv -- --etcd`: a 3-member etcd
 * cluster on loopback, started from the `etcd` on PATH (Debian's
 * `etcd-server`, 3.4), with default settings (100 ms heartbeat, 1 s election,
 * fsync on), its data in a temporary directory, and the requests of its JSON
 * gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/maintenance/status`: keys and
 * values in base64, 64-bit integers as strings). `kv.ts --etcd` drives it with
 * the same HTTP clients as the `kv/` rows.
 *
 * The cluster has the shape of `test/kv/processes.ts`'s, so the scenario can
 * kill, poll and stop either: `raft` is a member's peer URL's address, `http`
 * its client URL's.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync } from "node:fs"
import { controls, makeNodes, type ProcessCluster, type ProcessNode, spawnLogged } from "../test/kv/processes.js"

/** `etcd --version`'s first line ("etcd Version: 3.4.23"), or undefined when no `etcd` is on PATH. */
export const etcdVersion = (): string | undefined => {
  const probe = spawnSync("etcd", ["--version"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) return undefined
  return probe.stdout.split("\n", 1)[0]?.trim()
}

/** Starts `nodes` etcd members on loopback, each with its data directory `<dir>/<id>` and its log `<dir>/<id>.log`. */
export const startEtcdCluster = async (options: { readonly dir: string; readonly nodes?: number }): Promise<ProcessCluster> => {
  const nodes = await makeNodes(options.dir, options.nodes ?? 3, "e")
  const initialCluster = nodes.map((node) => `${node.id}=http://${node.raft}`).join(",")
  const token = `bench-${process.pid}-${Date.now()}`
  const argumentsOf = (node: ProcessNode, bootstrap = true): ReadonlyArray<string> => [
    "--name", node.id,
    "--data-dir", node.dir,
    "--listen-client-urls", `http://${node.http}`,
    "--advertise-client-urls", `http://${node.http}`,
    "--listen-peer-urls", `http://${node.raft}`,
    "--initial-advertise-peer-urls", `http://${node.raft}`,
    "--initial-cluster", initialCluster,
    "--initial-cluster-token", token,
    "--initial-cluster-state", bootstrap ? "new" : "existing",
    "--logger", "zap",
    "--log-outputs", "stderr"
  ]
  const start = (node: ProcessNode, startOptions?: { readonly args?: ReadonlyArray<string> }) => {
    mkdirSync(options.dir, { recursive: true })
    spawnLogged(node, options.dir, "etcd", startOptions?.args ?? argumentsOf(node))
  }
  const isLeader = async (node: ProcessNode) => (await etcdStatus(node.http))?.state === "Leader"
  for (const node of nodes) start(node)
  return { nodes, arguments: argumentsOf, start, ...controls(nodes, isLeader) }
}

/** A member's view, in the terms of the kv service's `/status`: its role, term and applied index. */
export const etcdStatus = (address: string) =>
  fetch(`http://${address}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(2000) })
    .then((response) => response.ok ? response.json() as Promise<EtcdStatusResponse> : undefined)
    .then((status) =>
      status === undefined ? undefined : {
        id: status.header?.member_id ?? "?",
        state: status.leader !== undefined && status.leader === status.header?.member_id ? "Leader" : "Follower",
        term: Number(status.raftTerm ?? 0),
        commitIndex: Number(status.raftIndex ?? 0),
        appliedIndex: Number(status.raftAppliedIndex ?? status.raftIndex ?? 0)
      }
    )
    .catch(() => undefined)

interface EtcdStatusResponse {
  readonly header?: { readonly member_id?: string }
  readonly leader?: string
  readonly raftTerm?: string
  readonly raftIndex?: string
  readonly raftAppliedIndex?: string
}

const base64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

/** The gateway's request for a PUT of `value` at `key`: path and JSON body. */
export const etcdPut = (key: string, value: string) => ({
  path: "/v3/kv/put",
  body: JSON.stringify({ key: base64(key), value: base64(value) })
})

/** The gateway's request for a linearizable GET of `key` (a range of one key; `serializable` is false by default). */
export const etcdRange = (key: string) => ({
  path: "/v3/kv/range",
  body: JSON.stringify({ key: base64(key) })
})

/** The cause named by an etcd error body (`{"error": "etcdserver: leader changed", "code": 14}`). */
export const etcdErrorCause = (body: string): string => {
  try {
    const error = JSON.parse(body) as { error?: string; message?: string; code?: number }
    return `${error.code ?? "?"} ${error.error ?? error.message ?? "?"}`
  } catch {
    return body.slice(0, 60)
  }
}
