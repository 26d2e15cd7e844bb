import { assert, describe, it } from "@effect/vitest"
import * as Hash from "effect/Hash"
import * as HashMap from "effect/HashMap"
import * as Linearizability from "../../src/testing/Linearizability.js"

type KvOperation = Linearizability.KvOperation
type KvInput = Linearizability.KvInput
type KvOutput = Linearizability.KvOutput
const { check, kvModel } = Linearizability

// --- building histories by hand -------------------------------------------

const put = (clientId: number, key: string, value: string, call: number, ret: number | undefined): KvOperation => ({
  clientId,
  input: { op: "put", key, value },
  call,
  return: ret,
  output: ret === undefined ? undefined : { ok: true }
})
const get = (clientId: number, key: string, value: string | undefined, call: number, ret: number): KvOperation => ({
  clientId,
  input: { op: "get", key },
  call,
  return: ret,
  output: { value }
})
const cas = (
  clientId: number,
  key: string,
  expected: string | undefined,
  value: string,
  ok: boolean,
  call: number,
  ret: number
): KvOperation => ({ clientId, input: { op: "cas", key, expected, value }, call, return: ret, output: { ok } })
const del = (clientId: number, key: string, call: number, ret: number): KvOperation => ({
  clientId,
  input: { op: "delete", key },
  call,
  return: ret,
  output: { ok: true }
})

/** Asserts `order` is a real linearization of `history`: complete, real-time respecting, and replaying on the model. */
const assertWitness = (history: ReadonlyArray<KvOperation>, order: ReadonlyArray<KvOperation>, context = ""): void => {
  const placed = new Set(order)
  assert.strictEqual(placed.size, order.length, `${context} no call placed twice`)
  const inHistory = new Set(history)
  assert.isTrue(order.every((operation) => inHistory.has(operation)), `${context} only calls of the history`)
  const missing = history.filter((operation) => operation.return !== undefined && !placed.has(operation))
  assert.deepStrictEqual(missing, [], `${context} every completed call placed`)
  // Real time: no call returns before a call placed ahead of it was invoked.
  let latestCall = Number.NEGATIVE_INFINITY
  let state = kvModel.init()
  order.forEach((operation, i) => {
    const ret = operation.return
    if (ret !== undefined && ret < latestCall) assert.fail(`${context} call ${i} returned before an earlier one was called`)
    latestCall = Math.max(latestCall, operation.call)
    const [ok, next] = kvModel.step(state, operation.input, operation.output)
    if (!ok) assert.fail(`${context} call ${i} of the witness does not replay`)
    state = next
  })
}

const assertLinearizable = (history: ReadonlyArray<KvOperation>): Linearizability.Linearizable<KvInput, KvOutput> => {
  const result = check(kvModel, history)
  assert.strictEqual(result._tag, "Linearizable")
  const linearizable = result as Linearizability.Linearizable<KvInput, KvOutput>
  assertWitness(history, linearizable.order)
  return linearizable
}

const assertNotLinearizable = (
  history: ReadonlyArray<KvOperation>
): Linearizability.NotLinearizable<Linearizability.KvState, KvInput, KvOutput> => {
  const result = check(kvModel, history)
  assert.strictEqual(result._tag, "NotLinearizable")
  return result as Linearizability.NotLinearizable<Linearizability.KvState, KvInput, KvOutput>
}

// --- simulating a real atomic register ------------------------------------

/** mulberry32: a seeded generator, so a failing seed can be replayed. */
const prng = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface SimulationOptions {
  readonly seed: number
  readonly operations: number
  readonly clients: number
  readonly keys: number
  /** Chance, per step of an in-flight call, that its client crashes and the outcome is never known. */
  readonly crashRate: number
}

/**
 * Runs random clients against a map whose calls each take effect atomically at
 * one instant between invocation and return, so every history it records is
 * linearizable. Every write writes a fresh value, so a value names its writer.
 */
const simulate = (options: SimulationOptions): Array<KvOperation> => {
  const random = prng(options.seed)
  const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!
  const store = new Map<string, string>()
  const written = new Map<string, Array<string>>()
  const history: Array<KvOperation> = []
  type Client = {
    id: number
    phase: "idle" | "invoked" | "applied"
    input: KvInput
    call: number
    output: KvOutput | undefined
  }
  let nextClientId = 0
  const clients: Array<Client> = Array.from({ length: options.clients }, () => ({
    id: nextClientId++,
    phase: "idle" as const,
    input: { op: "get", key: "k0" } as KvInput,
    call: 0,
    output: undefined
  }))
  let started = 0
  let nextValue = 0
  let time = 0
  const finish = (client: Client, ret: number | undefined): void => {
    history.push({
      clientId: client.id,
      input: client.input,
      call: client.call,
      return: ret,
      output: ret === undefined ? undefined : client.output
    })
    client.phase = "idle"
    // A crashed client is gone; its slot is taken by a new one.
    if (ret === undefined) client.id = nextClientId++
  }
  while (started < options.operations || clients.some((client) => client.phase !== "idle")) {
    const client = pick(clients)
    time++
    switch (client.phase) {
      case "idle": {
        if (started >= options.operations) break
        started++
        const key = `k${Math.floor(random() * options.keys)}`
        const roll = random()
        const value = `v${nextValue++}`
        const previous = written.get(key) ?? []
        client.input = roll < 0.4
          ? { op: "get", key }
          : roll < 0.7
          ? { op: "put", key, value }
          : roll < 0.9
          ? {
            op: "cas",
            key,
            expected: random() < 0.6 ? store.get(key) : previous.length > 0 ? pick(previous) : undefined,
            value
          }
          : { op: "delete", key }
        client.call = time
        client.phase = "invoked"
        break
      }
      case "invoked": {
        if (random() < options.crashRate) {
          finish(client, undefined)
          break
        }
        const input = client.input
        const current = store.get(input.key)
        const write = (value: string): void => {
          store.set(input.key, value)
          written.set(input.key, [...(written.get(input.key) ?? []), value])
        }
        switch (input.op) {
          case "get":
            client.output = { value: current }
            break
          case "put":
            write(input.value)
            client.output = { ok: true }
            break
          case "delete":
            store.delete(input.key)
            client.output = { ok: true }
            break
          case "cas":
            if (current === input.expected) write(input.value)
            client.output = { ok: current === input.expected }
        }
        client.phase = "applied"
        break
      }
      case "applied":
        finish(client, random() < options.crashRate ? undefined : time)
    }
  }
  return history
}

/**
 * Replaces one get's output with a value no linearization can let it see:
 * one first written after the get returned, or one whose writer finished
 * before a certain overwrite (put, delete or successful cas) that itself
 * finished before the get began. Undefined when the history has no such get.
 */
const corrupt = (
  history: ReadonlyArray<KvOperation>,
  random: () => number
): { readonly history: Array<KvOperation>; readonly key: string } | undefined => {
  const writerOf = (operation: KvOperation): string | undefined =>
    operation.input.op === "put" || operation.input.op === "cas" ? operation.input.value : undefined
  const overwrites = (operation: KvOperation): boolean =>
    operation.return !== undefined &&
    (operation.input.op === "put" || operation.input.op === "delete" ||
      (operation.input.op === "cas" && operation.output !== undefined && "ok" in operation.output &&
        operation.output.ok))
  const choices: Array<{ readonly index: number; readonly value: string }> = []
  history.forEach((read, index) => {
    if (read.input.op !== "get" || read.return === undefined) return
    const readReturn = read.return
    const sameKey = history.filter((operation) => operation.input.key === read.input.key)
    for (const writer of sameKey) {
      const value = writerOf(writer)
      if (value === undefined) continue
      const fromTheFuture = writer.call > readReturn
      const writerReturn = writer.return
      const overwritten = writerReturn !== undefined && sameKey.some((other) =>
        other !== writer && overwrites(other) && other.call > writerReturn && other.return! < read.call
      )
      if (fromTheFuture || overwritten) choices.push({ index, value })
    }
  })
  if (choices.length === 0) return undefined
  const choice = choices[Math.floor(random() * choices.length)]!
  const read = history[choice.index]!
  const mutated = history.slice()
  mutated[choice.index] = { ...read, output: { value: choice.value } }
  return { history: mutated, key: read.input.key }
}

// --- tests ------------------------------------------------------------------

describe("Linearizability", () => {
  describe("linearizable histories pass", () => {
    it("a sequential history of every kind of call", () => {
      const history = [
        get(1, "a", undefined, 0, 1),
        put(1, "a", "x", 2, 3),
        get(2, "a", "x", 4, 5),
        cas(1, "a", "x", "y", true, 6, 7),
        cas(2, "a", "x", "z", false, 8, 9),
        get(1, "a", "y", 10, 11),
        del(2, "a", 12, 13),
        get(1, "a", undefined, 14, 15),
        cas(1, "a", undefined, "w", true, 16, 17),
        get(2, "a", "w", 18, 19)
      ]
      const result = assertLinearizable(history)
      assert.deepStrictEqual(result.order, history)
    })

    it("a get overlapping a put may see the value before it or after it", () => {
      for (const seen of [undefined, "x"]) {
        assertLinearizable([put(1, "a", "x", 0, 10), get(2, "a", seen, 1, 9)])
      }
    })

    it("a read may see a value written by a put that has not returned yet", () => {
      const history = [put(0, "a", "old", 0, 1), put(1, "a", "new", 2, 20), get(2, "a", "new", 5, 8), get(3, "a", "new", 9, 10)]
      const result = assertLinearizable(history)
      assert.strictEqual(result.order[1], history[1])
    })

    it("an empty history is linearizable", () => {
      const result = check(kvModel, [])
      assert.strictEqual(result._tag, "Linearizable")
    })

    it("a call returning at the instant another is invoked counts as concurrent with it", () => {
      assertLinearizable([put(1, "a", "x", 0, 5), get(2, "a", undefined, 5, 6)])
    })
  })

  describe("non-linearizable histories fail", () => {
    it("a stale read after a completed write", () => {
      const result = assertNotLinearizable([put(1, "a", "x", 0, 1), put(1, "a", "y", 2, 3), get(2, "a", "x", 4, 5)])
      assert.strictEqual(result.partition, "a")
      assert.deepStrictEqual(result.prefix.map((operation) => operation.input.op), ["put", "put"])
      assert.deepStrictEqual(result.unplaced.map((operation) => operation.input.op), ["get"])
    })

    it("two clients reading the same two writes in opposite orders", () => {
      assertNotLinearizable([
        put(1, "a", "x", 0, 100),
        put(2, "a", "y", 0, 100),
        get(3, "a", "x", 10, 20),
        get(3, "a", "y", 30, 40),
        get(4, "a", "y", 10, 20),
        get(4, "a", "x", 30, 40)
      ])
    })

    it("a cas that succeeds twice from the same expected value", () => {
      const history = [put(1, "a", "0", 0, 1), cas(2, "a", "0", "1", true, 2, 10), cas(3, "a", "0", "2", true, 3, 9)]
      assertNotLinearizable(history)
      // When the second one fails instead, either order explains it.
      assertLinearizable([...history.slice(0, 2), cas(3, "a", "0", "2", false, 3, 9)])
    })

    it("a get returning a value that was never written", () => {
      const result = assertNotLinearizable([put(1, "a", "x", 0, 1), get(2, "a", "ghost", 2, 3)])
      assert.deepStrictEqual(HashMap.toEntries(result.state), [["a", "x"]])
    })

    it("a delete followed by a read of the deleted value", () => {
      assertNotLinearizable([put(1, "a", "x", 0, 1), del(1, "a", 2, 3), get(2, "a", "x", 4, 5)])
    })
  })

  describe("calls with an unknown outcome", () => {
    it("a crashed put whose value is read later took effect", () => {
      const history = [put(1, "a", "x", 0, undefined), get(2, "a", "x", 5, 6)]
      const result = assertLinearizable(history)
      assert.deepStrictEqual(result.order, history)
    })

    it("a crashed put never observed did not take effect", () => {
      const history = [put(1, "a", "x", 0, undefined), get(2, "a", undefined, 5, 6), get(2, "a", undefined, 7, 8)]
      const result = assertLinearizable(history)
      assert.deepStrictEqual(result.order, history.slice(1))
    })

    it("a crashed put may take effect long after its client stopped waiting", () => {
      assertLinearizable([
        put(1, "a", "x", 0, undefined),
        get(2, "a", undefined, 5, 6),
        put(2, "a", "y", 7, 8),
        get(2, "a", "x", 9, 10)
      ])
    })

    it("a crashed put's value seen and then unseen without another write is not linearizable", () => {
      assertNotLinearizable([put(1, "a", "x", 0, undefined), get(2, "a", "x", 5, 6), get(2, "a", undefined, 7, 8)])
      assertNotLinearizable([
        put(0, "a", "w", 0, 1),
        put(1, "a", "x", 2, undefined),
        get(2, "a", "x", 5, 6),
        get(2, "a", "w", 7, 8)
      ])
    })

    it("a crashed cas's outcome follows from where it is placed", () => {
      const crashed: KvOperation = {
        clientId: 1,
        input: { op: "cas", key: "a", expected: "w", value: "x" },
        call: 2,
        return: undefined,
        output: undefined
      }
      assertLinearizable([put(0, "a", "w", 0, 1), crashed, get(2, "a", "x", 5, 6)])
      // From "v" it can never swap, so the read of "x" has no explanation.
      assertNotLinearizable([put(0, "a", "v", 0, 1), crashed, get(2, "a", "x", 5, 6)])
    })
  })

  describe("partitioning by key", () => {
    it("a violation in one key is reported with that key", () => {
      const result = assertNotLinearizable([
        put(1, "a", "x", 0, 1),
        get(2, "a", "x", 2, 3),
        put(1, "b", "x", 4, 5),
        put(1, "b", "y", 6, 7),
        get(2, "b", "x", 8, 9),
        put(3, "c", "z", 0, 9)
      ])
      assert.strictEqual(result.partition, "b")
      for (const operation of [...result.prefix, ...result.unplaced]) assert.strictEqual(operation.input.key, "b")
    })

    it("independent keys each linearize and merge into one real-time order", () => {
      const history = [
        put(1, "a", "x", 0, 10),
        put(2, "b", "y", 1, 2),
        get(3, "b", "y", 3, 4),
        get(3, "a", "x", 11, 12),
        get(2, "b", "y", 5, 13)
      ]
      assertLinearizable(history)
    })

    it("a model without a partition function checks the history as one, with no key", () => {
      const { partition: _partition, ...unpartitioned } = kvModel
      const result = check(unpartitioned, [put(1, "a", "x", 0, 1), put(1, "b", "y", 2, 3), get(2, "a", undefined, 4, 5)])
      assert.strictEqual(result._tag, "NotLinearizable")
      assert.isUndefined(result._tag === "NotLinearizable" ? result.partition : "")
    })
  })

  describe("the model is generic", () => {
    type QueueInput = { readonly op: "enqueue"; readonly value: number } | { readonly op: "dequeue" }
    const queue: Linearizability.Model<ReadonlyArray<number>, QueueInput, number | null> = {
      init: () => [],
      step: (state, input, output) => {
        if (input.op === "enqueue") return [true, [...state, input.value]]
        const head = state.length > 0 ? state[0]! : null
        return [output === undefined || output === head, state.slice(1)]
      },
      equal: (self, that) => self.length === that.length && self.every((value, i) => value === that[i]),
      hash: (state) => Hash.array(state)
    }
    const op = (input: QueueInput, output: number | null | undefined, call: number, ret: number) => ({
      clientId: 0,
      input,
      call,
      return: ret,
      output
    })

    it("a FIFO queue: concurrent enqueues may dequeue in either order, sequential ones may not", () => {
      const concurrent = [
        op({ op: "enqueue", value: 1 }, undefined, 0, 10),
        op({ op: "enqueue", value: 2 }, undefined, 1, 10),
        op({ op: "dequeue" }, 2, 11, 12),
        op({ op: "dequeue" }, 1, 13, 14)
      ]
      assert.strictEqual(check(queue, concurrent)._tag, "Linearizable")
      const sequential = [
        op({ op: "enqueue", value: 1 }, undefined, 0, 1),
        op({ op: "enqueue", value: 2 }, undefined, 2, 3),
        op({ op: "dequeue" }, 2, 4, 5)
      ]
      assert.strictEqual(check(queue, sequential)._tag, "NotLinearizable")
    })
  })

  describe("budget", () => {
    it("a search that runs out of steps answers Unknown, not a verdict", () => {
      const history = simulate({ seed: 7, operations: 200, clients: 5, keys: 1, crashRate: 0 })
      const result = check(kvModel, history, { maxSteps: 10 })
      assert.strictEqual(result._tag, "Unknown")
      assert.strictEqual(result._tag === "Unknown" ? result.partition : undefined, "k0")
      assert.isAtMost(result.steps, 10)
    })
  })

  describe("randomized histories of a real atomic register", () => {
    const seeds = Array.from({ length: 40 }, (_, i) => 1000 + i)

    it("are linearizable, with a valid witness, and fail once one read is corrupted", () => {
      let corrupted = 0
      for (const seed of seeds) {
        const random = prng(seed * 7919)
        const options: SimulationOptions = {
          seed,
          operations: 100 + Math.floor(random() * 400),
          clients: 2 + Math.floor(random() * 9),
          keys: 1 + Math.floor(random() * 4),
          crashRate: random() < 0.5 ? 0 : 0.005
        }
        const context = `seed ${seed} ${JSON.stringify(options)}:`
        const history = simulate(options)
        const result = check(kvModel, history)
        assert.strictEqual(result._tag, "Linearizable", context)
        if (result._tag === "Linearizable") assertWitness(history, result.order, context)

        const mutation = corrupt(history, random)
        if (mutation === undefined) continue
        corrupted++
        const broken = check(kvModel, mutation.history)
        assert.strictEqual(broken._tag, "NotLinearizable", context)
        assert.strictEqual(broken._tag === "NotLinearizable" ? broken.partition : undefined, mutation.key, context)
      }
      assert.isAtLeast(corrupted, seeds.length * 0.9)
    })

    it("a 2,000-call history of 5 clients over 10 keys is checked within 20,000 steps", () => {
      const history = simulate({ seed: 42, operations: 2000, clients: 5, keys: 10, crashRate: 0.002 })
      assert.strictEqual(history.length, 2000)
      const result = check(kvModel, history, { maxSteps: 20_000 })
      assert.strictEqual(result._tag, "Linearizable", `steps: ${result.steps}`)
      const mutation = corrupt(history, prng(43))!
      const broken = check(kvModel, mutation.history, { maxSteps: 20_000 })
      assert.strictEqual(broken._tag, "NotLinearizable", `steps: ${broken.steps}`)
    })
  })
})
