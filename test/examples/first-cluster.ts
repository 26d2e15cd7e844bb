import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Configuration, LogStore, MemoryNetwork, Raft, SnapshotStore, StableStore } from "effect-raft"
import { Counter } from "./counter.js"

// A node: Raft over a state machine, three stores and a transport, each a Layer.
const node = (id: string) =>
  Raft.layer({ localId: id }).pipe(
    Layer.provide([
      Counter.layer,
      LogStore.layerMemory,
      StableStore.layerMemory,
      SnapshotStore.layerMemory,
      MemoryNetwork.layerTransport(id) // reachable at mem://<id>
    ])
  )

const program = Effect.gen(function*() {
  // Three nodes in this process on one memory network; they run until the scope closes.
  const network = Layer.succeed(MemoryNetwork.MemoryNetwork, MemoryNetwork.make())
  const nodes = yield* Effect.forEach(["a", "b", "c"], (id) =>
    Effect.map(Layer.build(node(id).pipe(Layer.provide(network))), Context.get(Raft.Raft)))

  // New nodes have no configuration: give all three the same first one.
  const configuration = Configuration.voters([["a", "mem://a"], ["b", "mem://b"], ["c", "mem://c"]])
  yield* Effect.forEach(nodes, (raft) => raft.bootstrapCluster(configuration))

  const { id } = yield* nodes[0]!.awaitLeader
  const counter = Raft.makeClient(nodes.find((raft) => raft.id === id)!, Counter)
  yield* counter.apply({ add: 2 })
  const { index, response } = yield* counter.apply({ add: 3 }) // response: number
  return `leader ${id}, entry ${index}: the counter is ${response}`
})

Effect.runPromise(Effect.scoped(program)).then(console.log)
