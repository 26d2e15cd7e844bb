/**
 * What the machine itself costs, with no Raft and no Effect: the floors under the one-client rows.
 *
 *  - `tcp-fanout`: in one Node process, a "leader" socket writes a 200-byte frame to each of two "followers" on
 *    loopback TCP and waits for both 40-byte answers, then the next round: the messages one apply needs in the
 *    anchor's tcp mode (three nodes in one process). Wall and CPU time per round.
 *  - `tcp-fanout-processes`: the same round with each follower in a process of its own (the issue's other way
 *    of running three nodes), so the followers answer on the other core. Wall time per round.
 *  - `lmdb-commit`: one synced LMDB transaction of one 160-byte value, in one, two and three environments at once
 *    on one disk: wall time per commit. Hashicorp's leader commits before it replicates (one environment alone,
 *    then two followers at once); ours commits while it replicates (three at once). Hence `lmdb-ideal-ratio`:
 *    (one alone + two at once) / (three at once), the one-client durable ratio if neither implementation spent
 *    anything but its synced commits.
 *  - `wal-commit`: the same 160-byte record written in place into a preallocated file and fdatasync'ed, alone and
 *    three files at once: one flush per commit where LMDB's commit takes two (its data pages, then its meta page),
 *    what a write-ahead log of our own would pay instead of LMDB.
 *  - `effect-handoff`: what Effect itself costs where no socket is involved: two fibers that wake each other in
 *    turn, each through `Effect.async` resumed by the other (as the engine's futures and mailboxes wake the fiber
 *    that waits on them). Wall and CPU time per hand-off: an apply over TCP with one client makes six of them
 *    (the client, three FSM runners, two followers' run loops: `tasks_per_apply`).
 *  - `node-rss`: the resident memory of a bare Node process (`node -e`, the same executable), and how
 *    much of it is mapped from files (Node's executable, its libraries): what any Node process holds before its
 *    code, against which a key-value node's RSS is set (Linux only).
 *
 *   node --import tsx benchmarks/floor.ts [--rounds N] [--only tcp-fanout ...]
 *
 * `--only` (repeated) runs only the measurements named (`node-rss`, `effect-handoff`, `tcp-fanout`,
 * `tcp-fanout-processes`, `lmdb-commit`, `wal-commit`); `npm run bench` runs `tcp-fanout` beside its TCP rows.
 *
 * One JSON line per measurement on stdout.
 */
import { fork, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import * as Effect from "effect/Effect"
import * as lmdb from "lmdb"

const { values: argv } = parseArgs({
  options: {
    rounds: { type: "string", default: "20000" },
    follower: { type: "boolean", default: false },
    only: { type: "string", multiple: true }
  }
})
const rounds = Number(argv.rounds)

const emit = (row: Record<string, unknown>) => process.stdout.write(JSON.stringify({ impl: "floor", ...row }) + "\n")

/** A follower's server: answers every read with 40 bytes. */
const listen = async (): Promise<net.Server> => {
  const server = net.createServer({ noDelay: true }, (socket) => {
    const answer = Buffer.alloc(40, 2)
    socket.on("data", () => socket.write(answer))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return server
}

const connectTo = async (port: number): Promise<net.Socket> => {
  const socket = net.connect({ port, host: "127.0.0.1", noDelay: true })
  await new Promise<void>((resolve) => socket.on("connect", resolve))
  return socket
}

/** `--follower`: a child process serving one follower, its port sent to the parent. */
if (argv.follower) {
  // Only as the child of a floor run: without its parent's channel it would serve forever.
  if (process.send === undefined) process.exit(2)
  const server = await listen()
  process.send((server.address() as net.AddressInfo).port)
  process.on("disconnect", () => process.exit(0))
}

/** A follower in a child process of its own: its socket, and a way to stop it. */
const followerProcess = async (): Promise<{ socket: net.Socket; stop: () => void }> => {
  const child = fork(new URL(import.meta.url), ["--follower"], { execArgv: process.execArgv, stdio: ["ignore", "ignore", "inherit", "ipc"] })
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (message) => resolve(Number(message)))
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`a follower process exited (${code}) before it listened`)))
  }).catch((error: unknown) => {
    child.kill()
    throw error
  })
  return { socket: await connectTo(port), stop: () => child.kill() }
}

const tcpFanout = async (inProcesses: boolean): Promise<void> => {
  const servers: Array<net.Server> = []
  const stops: Array<() => void> = []
  const connect = async (): Promise<net.Socket> => {
    if (inProcesses) {
      const { socket, stop } = await followerProcess()
      stops.push(stop)
      return socket
    }
    const server = await listen()
    servers.push(server)
    return connectTo((server.address() as net.AddressInfo).port)
  }
  const followers = await (async () => {
    try {
      return [await connect(), await connect()]
    } catch (error) {
      for (const stop of stops) stop()
      throw error
    }
  })()
  const frame = Buffer.alloc(200, 1)
  const run = (n: number) =>
    new Promise<void>((resolve) => {
      let done = 0
      let answers = 0
      const onAnswer = () => {
        if (++answers < followers.length) return
        answers = 0
        if (++done === n) return resolve()
        for (const socket of followers) socket.write(frame)
      }
      for (const socket of followers) socket.on("data", onAnswer)
      for (const socket of followers) socket.write(frame)
    }).finally(() => {
      for (const socket of followers) socket.removeAllListeners("data")
    })
  await run(Math.min(2000, rounds))
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  await run(rounds)
  const wallUs = Number(process.hrtime.bigint() - start) / 1000 / rounds
  const used = process.cpuUsage(cpu)
  // In processes, the CPU of this process is the leader's alone.
  emit({
    scenario: inProcesses ? "tcp-fanout-processes" : "tcp-fanout",
    rounds,
    wall_us_per_round: wallUs,
    [inProcesses ? "leader_cpu_us_per_round" : "cpu_us_per_round"]: (used.user + used.system) / rounds
  })
  for (const socket of followers) socket.destroy()
  for (const server of servers) server.close()
  for (const stop of stops) stop()
}

/**
 * Wall time per commit (µs) of `writers` writers at once, each making `commits` commits one after the other in a
 * temporary directory of its own: `open` makes a writer there, `commit` makes its i-th commit durable.
 */
const concurrentCommits = async <W>(
  prefix: string,
  writers: number,
  commits: number,
  open: (dir: string) => W,
  commit: (writer: W, i: number) => Promise<unknown>,
  close: (writer: W) => Promise<void> | void
): Promise<number> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const opened = Array.from({ length: writers }, (_, i) => open(path.join(dir, String(i))))
  const start = process.hrtime.bigint()
  await Promise.all(opened.map(async (writer) => {
    for (let i = 0; i < commits; i++) await commit(writer, i)
  }))
  const wallUs = Number(process.hrtime.bigint() - start) / 1000 / commits
  for (const writer of opened) await close(writer)
  fs.rmSync(dir, { recursive: true, force: true })
  return wallUs
}

const lmdbCommits = async (environments: number, commits: number): Promise<number> => {
  const value = new Uint8Array(160).fill(3)
  const wallUs = await concurrentCommits(
    "floor-lmdb-",
    environments,
    commits,
    (dir) => lmdb.open<Uint8Array, number>({ path: dir, encoding: "binary", overlappingSync: false, noSync: false }),
    (env, i) => env.put(i, value),
    (env) => env.close()
  )
  emit({ scenario: "lmdb-commit", environments, commits, wall_us_per_commit: wallUs })
  return wallUs
}

const walCommits = async (files: number, commits: number): Promise<void> => {
  const record = Buffer.alloc(160, 3)
  const wallUs = await concurrentCommits(
    "floor-wal-",
    files,
    commits,
    (file) => {
      const fd = fs.openSync(file, "w+")
      fs.writeSync(fd, Buffer.alloc(record.length * commits))
      fs.fsyncSync(fd)
      return fd
    },
    (fd, i) =>
      new Promise<void>((resolve, reject) =>
        fs.write(fd, record, 0, record.length, i * record.length, (error) =>
          error !== null ? reject(error) : fs.fdatasync(fd, (synced) => synced !== null ? reject(synced) : resolve()))),
    (fd) => fs.closeSync(fd)
  )
  emit({ scenario: "wal-commit", files, commits, wall_us_per_commit: wallUs })
}

/**
 * A signal between two fibers: `wake` resumes the fiber waiting in `wait` (or lets the next `wait` pass at once),
 * the way the engine's `Future` and inbox resume their waiter.
 */
const signal = () => {
  let waiter: ((effect: Effect.Effect<void>) => void) | undefined
  let ready = false
  return {
    wake: () => {
      const resume = waiter
      if (resume === undefined) ready = true
      else {
        waiter = undefined
        resume(Effect.void)
      }
    },
    wait: Effect.async<void>((resume) => {
      if (ready) {
        ready = false
        resume(Effect.void)
      } else waiter = resume
    })
  }
}

const effectHandoffs = async (turns: number): Promise<void> => {
  const run = (n: number) => {
    const toA = signal()
    const toB = signal()
    const a = Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        toB.wake()
        yield* toA.wait
      }
    })
    const b = Effect.gen(function*() {
      for (let i = 0; i < n; i++) {
        yield* toB.wait
        toA.wake()
      }
    })
    return Effect.runPromise(Effect.all([a, b], { concurrency: 2, discard: true }))
  }
  await run(Math.min(20_000, turns))
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  await run(turns)
  const handoffs = 2 * turns
  const wallUs = Number(process.hrtime.bigint() - start) / 1000 / handoffs
  const used = process.cpuUsage(cpu)
  emit({ scenario: "effect-handoff", handoffs, wall_us_per_handoff: wallUs, cpu_us_per_handoff: (used.user + used.system) / handoffs })
}

/** `VmRSS` and `RssFile` of a bare Node process, in MiB, read by the process itself. */
const bareNodeRss = (): void => {
  if (!fs.existsSync("/proc/self/status")) return
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(require('fs').readFileSync('/proc/self/status', 'utf8'))"], {
    encoding: "utf8"
  })
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(child.stdout ?? "")?.[1] ?? NaN)
  emit({ scenario: "node-rss", rss_mib: kib("VmRSS") / 1024, file_backed_mib: kib("RssFile") / 1024 })
}

/** Whether `--only` (if given) names `scenario`. */
const selected = (scenario: string) => argv.only === undefined || argv.only.includes(scenario)

if (!argv.follower) {
  if (selected("node-rss")) bareNodeRss()
  if (selected("effect-handoff")) await effectHandoffs(200_000)
  if (selected("tcp-fanout")) await tcpFanout(false)
  if (selected("tcp-fanout-processes")) await tcpFanout(true)
  if (selected("lmdb-commit")) {
    const alone = await lmdbCommits(1, 500)
    const two = await lmdbCommits(2, 500)
    const three = await lmdbCommits(3, 500)
    emit({ scenario: "lmdb-ideal-ratio", ratio: (alone + two) / three })
  }
  if (selected("wal-commit")) {
    await walCommits(1, 500)
    await walCommits(3, 500)
  }
}
