/**
 * Crash tests with real processes: a child (test/fixtures/crash-store-child.ts)
 * writes through the LMDB store or the write-ahead log store (WalStore), or (crash-raft-child.ts) runs a single-node
 * Raft on it, and prints every write whose effect succeeded; this test SIGKILLs
 * it after a random number of reported writes plus 0-9 ms (so at a random point
 * of the next write), reopens the directory, and checks that every reported write is there and the
 * store reads back cleanly (checksums included). The same directory goes
 * through every kill of a chain, so each run also recovers from the previous
 * crash; the store writer's kills run as two chains at once (a child mostly
 * waits for fsync).
 *
 * What SIGKILL can show: that a write is reported only once it is in a file
 * the next open reads back (no lost acknowledged write in user-space buffers
 * or queues, no torn tail that fails the open, recovery after every kind of
 * interrupted write). What it cannot show: that the write reached the disk.
 * The kernel's page cache survives the killed process, so a store that skips
 * its fdatasync passes here too; only a power cut (or a VM snapshot) tests that.
 *
 * Kills: STORE_KILLS of the store writer (and WAL_KILLS of the WAL store writer) + RAFT_KILLS of the Raft node
 * + SNAPSHOT_KILLS of the Raft node on file snapshots with a compacted log,
 * restarted in-process after each kill (65 in all). The seed is printed; `CRASH_SEED=n` replays its choices (the exact
 * kill points also depend on timing).
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { LogStore } from "../../src/LogStore.js"
import * as Raft from "../../src/Raft.js"
import { SnapshotStore } from "../../src/SnapshotStore.js"
import { StableStore } from "../../src/StableStore.js"
import * as LmdbStore from "../../src/storage/LmdbStore.js"
import * as WalStore from "../../src/storage/WalStore.js"
import { bundleChildren, root } from "../fixtures/bundle.js"
import { generator } from "../fixtures/prng.js"
import { listFsm, snapshotNode } from "../fixtures/snapshot-node.js"

const STORE_KILLS = 50
const WAL_KILLS = 24
const RAFT_KILLS = 12
const SNAPSHOT_KILLS = 3
const KEEP = 500 // the store child compacts to its last KEEP entries
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 1_000_000))

let storeChild = ""
let raftChild = ""

beforeAll(async () => {
  const children = await bundleChildren("effect-raft-crash", [
    "test/fixtures/crash-store-child.ts",
    "test/fixtures/crash-raft-child.ts"
  ])
  storeChild = children["crash-store-child"]!
  raftChild = children["crash-raft-child"]!
})

/**
 * Starts the child, waits for READY and then for `writes` reported writes (lines starting with `tag`) and, with
 * `after`, for a line starting with that tag too, lets it go on for `delayMillis`, kills it with SIGKILL and returns
 * every complete line it printed (a line cut by the kill is not counted: its write was not reported). Counting
 * writes and waiting for events, not time, keeps the work per kill the same on a busy machine.
 */
const runAndKill = (
  file: string,
  args: ReadonlyArray<string>,
  kill: { readonly tag: string; readonly writes: number; readonly delayMillis: number; readonly after?: string }
): Promise<Array<string>> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], { cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let ready = false
    let seen = 0
    let happened = kill.after === undefined
    let killTimer: NodeJS.Timeout | undefined
    const deadline = setTimeout(() => {
      child.kill("SIGKILL")
      const awaited = kill.after === undefined ? "" : ` and a line ${kill.after}`
      reject(new Error(`child ${args.join(" ")}: READY, ${kill.writes} writes${awaited} not seen within 60 s; stderr: ${err}`))
    }, 60_000)
    child.stdout.on("data", (chunk: Buffer) => {
      const text = chunk.toString("utf8")
      out += text
      if (killTimer !== undefined) return
      for (const line of text.split("\n")) {
        if (line === "READY") ready = true
        else if (line.startsWith(`${kill.tag} `)) seen++
        else if (kill.after !== undefined && line.startsWith(`${kill.after} `)) happened = true
      }
      if (ready && seen >= kill.writes && happened) killTimer = setTimeout(() => child.kill("SIGKILL"), kill.delayMillis)
    })
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")))
    child.on("exit", (code, signal) => {
      clearTimeout(deadline)
      if (killTimer !== undefined) clearTimeout(killTimer)
      if (signal !== "SIGKILL") {
        reject(new Error(`child ${args.join(" ")} exited by itself (code ${code}); stderr: ${err}`))
        return
      }
      const lines = out.split("\n")
      lines.pop() // the last piece has no newline: cut by the kill, or empty
      resolve(lines)
    })
  })

const numbers = (lines: ReadonlyArray<string>, tag: string): Array<number> =>
  lines.filter((line) => line.startsWith(`${tag} `)).map((line) => Number(line.split(" ")[1]))

const decoder = new TextDecoder()

describe("crash tests: SIGKILL at random points", () => {
  /** One directory killed `kills` times; after each kill every reported write is checked. Returns what was reported. */
  const storeChain = async (chain: number, kills: number, kind: "lmdb" | "wal" = "lmdb") => {
    const random = generator(seed + chain * 7777)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-raft-crash-"))
    let durableLast = 0
    let compactedTo = 0
    let maxTerm = 0
    let reportedWrites = 0
    try {
      for (let run = 1; run <= kills; run++) {
        const childSeed = String(Math.floor(random() * 2 ** 31))
        const lines = await runAndKill(storeChild, [dir, String(run), childSeed, kind], {
          tag: "L",
          writes: Math.floor(random() * 40),
          delayMillis: Math.floor(random() * 10)
        })
        const last = numbers(lines, "L")
        reportedWrites += last.length
        durableLast = Math.max(durableLast, ...last)
        compactedTo = Math.max(compactedTo, ...numbers(lines, "D"))
        maxTerm = Math.max(maxTerm, ...numbers(lines, "T"))
        await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const store = kind === "wal" ? yield* WalStore.make({ path: dir }) : yield* LmdbStore.make({ path: dir })
          const first = yield* store.logs.firstIndex
          const lastIndex = yield* store.logs.lastIndex
          const where = `${kind}, seed ${seed}, chain ${chain}, after kill ${run}`
          assert.isAtLeast(lastIndex, durableLast, `lastIndex below the last reported write (${where})`)
          if (compactedTo > 0) assert.isAbove(first, compactedTo, `a reported compaction was undone (${where})`)
          if (durableLast > 0) {
            assert.isAtMost(first, Math.max(1, durableLast - KEEP + 1), `reported entries are missing at the front (${where})`)
            // Every entry held reads back: no hole, checksums hold, each payload is the one its run wrote.
            const logs = yield* store.logs.getLogs(first, lastIndex)
            for (const log of logs) {
              const text = decoder.decode(log.data.subarray(0, 24))
              assert.isTrue(text.startsWith(`${log.index}:${log.term}:`), `entry ${log.index} holds "${text}" (${where})`)
            }
          }
          assert.isAtLeast(yield* store.stable.getUint64("CurrentTerm"), maxTerm, `a reported term was lost (${where})`)
          const vote = yield* store.stable.get("LastVote")
          if (Option.isSome(vote)) assert.isNumber(JSON.parse(decoder.decode(vote.value)).term)
        })))
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
    return { reportedWrites, compactedTo }
  }

  it(`every write the LMDB store reported durable survives ${STORE_KILLS} kills, and the store reopens cleanly (seed ${seed})`, async () => {
    const chains = await Promise.all([storeChain(1, STORE_KILLS / 2), storeChain(2, STORE_KILLS / 2)])
    const reportedWrites = chains.reduce((n, chain) => n + chain.reportedWrites, 0)
    assert.isAbove(reportedWrites, STORE_KILLS, "the children reported too few writes for the test to mean something")
    assert.isTrue(chains.some((chain) => chain.compactedTo > 0), "no compaction was reported: the kills never followed a deleteRange")
  }, 240_000)

  it(`every write the WAL store reported durable survives ${WAL_KILLS} kills, and the store reopens cleanly (seed ${seed})`, async () => {
    const chains = await Promise.all([storeChain(3, WAL_KILLS / 2, "wal"), storeChain(4, WAL_KILLS / 2, "wal")])
    const reportedWrites = chains.reduce((n, chain) => n + chain.reportedWrites, 0)
    assert.isAbove(reportedWrites, WAL_KILLS, "the children reported too few writes for the test to mean something")
    assert.isTrue(chains.some((chain) => chain.compactedTo > 0), "no compaction was reported: the kills never followed a deleteRange")
  }, 240_000)

  it(`every apply a single-node Raft on LMDB acknowledged survives ${RAFT_KILLS} kills, and the node restarts each time (seed ${seed})`, async () => {
    const random = generator(seed + 1)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-raft-crash-raft-"))
    const acknowledged = new Map<number, string>()
    let maxTerm = 0
    try {
      for (let run = 1; run <= RAFT_KILLS; run++) {
        const lines = await runAndKill(raftChild, [dir, String(run)], {
          tag: "A",
          writes: Math.floor(random() * 200),
          delayMillis: Math.floor(random() * 10)
        })
        maxTerm = Math.max(maxTerm, ...numbers(lines, "TERM"))
        for (const line of lines) {
          const [tag, index, command] = line.split(" ")
          if (tag === "A") acknowledged.set(Number(index), command!)
        }
        await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const store = yield* LmdbStore.make({ path: dir })
          const where = `seed ${seed}, after kill ${run}`
          assert.isAtLeast(yield* store.stable.getUint64("CurrentTerm"), maxTerm, `the term went back (${where})`)
          const first = yield* store.logs.firstIndex
          const last = yield* store.logs.lastIndex
          yield* store.logs.getLogs(first, last) // every entry held reads back with a valid checksum
          for (const [index, command] of acknowledged) {
            const log = yield* store.logs.getLog(index)
            assert.strictEqual(decoder.decode(log.data), command, `entry ${index} (${where})`)
          }
        })))
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
    assert.isAbove(acknowledged.size, RAFT_KILLS, "the nodes acknowledged too few applies for the test to mean something")
    // Each restart campaigned again on the stored term, so the term grew with the runs.
    assert.isAtLeast(maxTerm, RAFT_KILLS)
  }, 240_000)

  it(`a node on LMDB and file snapshots killed ${SNAPSHOT_KILLS} times after compaction restarts with every acknowledged command in its FSM (seed ${seed})`, async () => {
    const random = generator(seed + 2)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "effect-raft-crash-snap-"))
    const acknowledged = new Map<number, string>() // index → command
    let maxTerm = 0
    try {
      for (let run = 1; run <= SNAPSHOT_KILLS; run++) {
        // Killed once the child has compacted its log at least once (a busy machine can hold its snapshot back
        // past the writes counted here), so that every restart starts from a snapshot and a compacted log.
        const lines = await runAndKill(raftChild, [dir, String(run), "snapshots"], {
          tag: "A",
          writes: 150 + Math.floor(random() * 150),
          delayMillis: Math.floor(random() * 10),
          after: "C"
        })
        maxTerm = Math.max(maxTerm, ...numbers(lines, "TERM"))
        for (const line of lines) {
          const [tag, index, command] = line.split(" ")
          if (tag === "A") acknowledged.set(Number(index), command!)
        }
        // Restart the node in this process on the same directories; check before it leads, then after a barrier.
        const fsm = listFsm()
        const where = `seed ${seed}, after kill ${run}`
        await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
          const context = yield* Layer.build(snapshotNode(dir, fsm))
          const raft = Context.get(context, Raft.Raft)
          assert.isAtLeast(yield* Context.get(context, StableStore).getUint64("CurrentTerm"), maxTerm, `the term went back (${where})`)
          assert.isAbove(yield* Context.get(context, LogStore).firstIndex, 1, `the log was never compacted (${where})`)
          assert.isAbove((yield* Context.get(context, SnapshotStore).list).length, 0, `no snapshot on disk (${where})`)
          assert.strictEqual(fsm.restores(), 1, `the FSM was not restored from the snapshot (${where})`)
          while ((yield* raft.state) !== "Leader") yield* Effect.sleep("5 millis")
          yield* raft.barrier({ timeout: "10 seconds" })
          // Every acknowledged command is in the state, in index order (commands are unique: `<run>-<n>`).
          const expected = [...acknowledged].sort(([a], [b]) => a - b).map(([, command]) => command)
          const known = new Set(expected)
          assert.deepStrictEqual(fsm.commands().filter((command) => known.has(command)), expected, `FSM state (${where})`)
          const check = `check-${run}`
          const { index } = yield* raft.apply(new TextEncoder().encode(check), { timeout: "10 seconds" })
          assert.strictEqual(fsm.commands().at(-1), check, `an apply after the restart (${where})`)
          acknowledged.set(index, check)
          maxTerm = Math.max(maxTerm, yield* raft.currentTerm)
        })))
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
    assert.isAbove(acknowledged.size, SNAPSHOT_KILLS * 150)
  }, 120_000)
})
