/**
 * A key-value cluster in one process for tests: N nodes on a memory network,
 * each with its own memory stores and a real HTTP server on a free loopback
 * port, so tests talk to it with `fetch` as a client would.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { createServer } from "node:net"
import * as Raft from "../../src/Raft.js"
import * as KvFsm from "../../src/kv/KvFsm.js"
import * as KvNode from "../../src/kv/KvNode.js"
import * as MemoryNetwork from "../../src/transport/MemoryNetwork.js"
import { Transport } from "../../src/Transport.js"

/** Timers a fifth of hashicorp's defaults: elections in about a second, without spurious ones on a busy machine. */
export const testTimers = {
  heartbeatTimeout: "200 millis",
  electionTimeout: "200 millis",
  leaderLeaseTimeout: "100 millis",
  commitTimeout: "5 millis"
} as const

/** A loopback port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export interface KvTestNode {
  readonly id: string
  readonly http: string
  readonly raft: Raft.Raft
  readonly kv: KvFsm.KvFsm
  readonly scope: Scope.CloseableScope
}

export interface KvTestCluster {
  readonly network: MemoryNetwork.MemoryNetwork
  readonly nodes: ReadonlyArray<KvTestNode>
  /** The node that leads, once one does and the others follow it. */
  readonly leader: Effect.Effect<KvTestNode>
  /** Starts one more node, without bootstrap, that asks `join` (an HTTP address) to add it. */
  readonly addNode: (id: string, join: string) => Effect.Effect<KvTestNode, unknown>
  readonly close: Effect.Effect<void>
}

/** Starts `n` bootstrapped nodes; `faults` puts each transport behind a fault switch. */
export const makeCluster = (n: number, options: { readonly faults?: boolean } = {}) =>
  Effect.gen(function*() {
    const network = MemoryNetwork.make()
    const ports = yield* Effect.promise(() => Promise.all(Array.from({ length: n }, () => freePort())))
    const peers: Array<KvNode.Peer> = ports.map((port, i) => ({
      id: `n${i + 1}`,
      raftAddress: `mem://n${i + 1}`,
      httpAddress: `127.0.0.1:${port}`
    }))
    const nodes: Array<KvTestNode> = []
    const start = (self: KvNode.Peer, others: ReadonlyArray<KvNode.Peer>, join: string | undefined) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const infrastructure = KvNode.inMemory(Layer.sync(Transport, () => network.transport(self.id, self.raftAddress)))
        const layer = KvNode.layer({
          id: self.id,
          raftAddress: self.raftAddress,
          httpAddress: self.httpAddress,
          peers: others,
          bootstrap: join === undefined,
          join,
          faults: options.faults,
          raft: testTimers
        }, infrastructure)
        const context = yield* Layer.buildWithScope(layer, scope)
        const node: KvTestNode = {
          id: self.id,
          http: self.httpAddress,
          raft: Context.get(context, Raft.Raft),
          kv: Context.get(context, KvFsm.KvState),
          scope
        }
        nodes.push(node)
        return node
      })
    for (const self of peers) yield* start(self, peers.filter((peer) => peer.id !== self.id), undefined)
    const addNode = (id: string, join: string) =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(() => freePort())
        return yield* start({ id, raftAddress: `mem://${id}`, httpAddress: `127.0.0.1:${port}` }, [], join)
      })
    const leader = Effect.gen(function*() {
      for (;;) {
        for (const node of nodes) {
          const stats = yield* node.raft.stats
          if (stats.state === "Leader") return node
        }
        yield* Effect.sleep("20 millis")
      }
    })
    const close = Effect.forEach(nodes, (node) => Scope.close(node.scope, Exit.void), { discard: true })
    return { network, nodes, leader, addNode, close } satisfies KvTestCluster
  })

/** A request to a node; answers status, headers and the parsed JSON body (or undefined). */
export const request = async (
  http: string,
  method: string,
  path: string,
  body?: unknown,
  redirect: "follow" | "manual" = "manual"
): Promise<{ status: number; location: string | null; body: any }> => {
  const response = await fetch(`http://${http}${path}`, {
    method,
    redirect,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  let parsed: unknown = undefined
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined
  } catch {
    parsed = text
  }
  return { status: response.status, location: response.headers.get("location"), body: parsed }
}
