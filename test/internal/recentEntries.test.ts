import { assert, describe, it } from "@effect/vitest"
import type * as Log from "../../src/Log.js"
import { keepRecent, takeCommitted } from "../../src/internal/recentEntries.js"
import type { NodeState } from "../../src/internal/state.js"

/** The fields of a follower that recentEntries.ts reads and writes. */
const follower = () =>
  ({ recentEntries: [], recentBytes: 0, dispatchedToFsm: 0, commitIndex: 0, lastSnapshotIndex: 0 }) as unknown as NodeState

const entries = (from: number, count: number, bytes: number): Array<Log.Log> =>
  Array.from({ length: count }, (_, i) => ({
    index: from + i,
    term: 1,
    type: "Command" as const,
    data: new Uint8Array(bytes),
    appendedAt: 0
  }) as unknown as Log.Log)

const indexes = (node: NodeState) => node.recentEntries.map((entry) => entry.index)
const bytesHeld = (node: NodeState) => node.recentEntries.reduce((n, entry) => n + entry.data.byteLength, 0)

describe("a follower's recent entries", () => {
  it("keep at most 64 entries, the newest, and count the bytes of those they keep", () => {
    const node = follower()
    for (let i = 0; i < 10; i++) keepRecent(node, entries(1 + 10 * i, 10, 100))
    assert.deepStrictEqual(indexes(node), Array.from({ length: 64 }, (_, i) => 37 + i))
    assert.strictEqual(node.recentBytes, 64 * 100)
    assert.strictEqual(node.recentBytes, bytesHeld(node))
  })

  it("keep at most 1 MiB of data, dropping the oldest first; an entry larger than that is not kept at all", () => {
    const node = follower()
    keepRecent(node, entries(1, 3, 400 * 1024))
    assert.deepStrictEqual(indexes(node), [2, 3])
    assert.strictEqual(node.recentBytes, 800 * 1024)
    keepRecent(node, entries(4, 1, 2 * 1024 * 1024))
    assert.deepStrictEqual(indexes(node), [])
    assert.strictEqual(node.recentBytes, 0)
    // Its commit is read from the store; the entries after it are kept again.
    node.commitIndex = 4
    assert.isUndefined(takeCommitted(node))
    keepRecent(node, entries(5, 2, 10))
    assert.deepStrictEqual(indexes(node), [5, 6])
    assert.strictEqual(node.recentBytes, 20)
  })

  it("drop what the FSM already has, and hand over exactly the committed ones that follow it", () => {
    const node = follower()
    keepRecent(node, entries(1, 5, 10))
    node.dispatchedToFsm = 2
    keepRecent(node, entries(6, 1, 10))
    assert.deepStrictEqual(indexes(node), [3, 4, 5, 6])
    assert.strictEqual(node.recentBytes, 40)
    node.commitIndex = 5
    assert.deepStrictEqual(takeCommitted(node)?.map((entry) => entry.index), [3, 4, 5])
    assert.deepStrictEqual(indexes(node), [6])
    assert.strictEqual(node.recentBytes, 10)
    // A commit past what they hold is read from the store.
    node.dispatchedToFsm = 5
    node.commitIndex = 7
    assert.isUndefined(takeCommitted(node))
  })
})
