/**
 * Where one client's PUT spends its time across the three nodes: runs `kv.ts --conc 1` and, a few seconds into
 * the measured phase, traces the nodes' system calls with `perf trace` (Linux, root), then matches them PUT by PUT
 * and prints the median and p90 of each step (benchmarks/README.md, "One client's PUT, traced").
 *
 *   npx tsx benchmarks/put-timeline.ts [--node-entry <bundle of src/kv/main.ts>] [--store lmdb|wal]
 *     [--seconds 1.5] [--after 10]
 *
 * A PUT's path, as the trace sees it: the leader reads the HTTP request (a read of 200–300 bytes on its event
 * loop's thread), writes the AppendEntries to each follower (a `writev` of more than 250 bytes), a follower reads
 * it, its store writes (`pwrite64`/`pwritev`) and syncs (`fdatasync`), the store's thread signals the event loop
 * (an 8-byte `write` to libuv's eventfd), the follower writes its answer (a `writev` under 100 bytes), the leader
 * reads it and writes the HTTP answer (150–200 bytes). The tracer slows every system call: compare steps and
 * builds traced the same way, not the sums with untraced runs.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"

const { values: argv } = parseArgs({
  options: {
    "node-entry": { type: "string" },
    store: { type: "string" },
    seconds: { type: "string", default: "1.5" },
    after: { type: "string", default: "10" }
  }
})

interface Event {
  readonly t: number // µs
  readonly pid: number | undefined
  readonly main: boolean // on the process's event loop's thread
  readonly call: string
  readonly fd: number | undefined
  readonly count: number | undefined
  readonly ret: number | undefined
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const childrenOf = (pid: number): Array<number> => {
  const out = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).stdout
  return out.split("\n").filter((line) => line !== "").map(Number)
}

/** Each thread of `pids`, mapped to its process. */
const threadsOf = (pids: ReadonlyArray<number>): Map<number, number> => {
  const map = new Map<number, number>()
  for (const pid of pids) {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) map.set(Number(tid), pid)
  }
  return map
}

/** perf trace's lines: `<ms> ( <dur> ms): node/<tid> call(args) = ret`; unfinished calls keep their start. */
const parse = (text: string, pidOf: Map<number, number>): Array<Event> => {
  const events: Array<Event> = []
  for (const line of text.split("\n")) {
    const m = line.match(/^\s*([\d.]+) \(\s*[\d.]*\s*(?:ms)?\s*\): [^/]+\/(\d+) (.*)$/)
    if (m === null || m[3]!.includes("[continued]")) continue
    const call = m[3]!.match(/^(\w+)\((.*?)\)\s*(?:= (-?\d+))?/)
    if (call === null) continue
    const tid = Number(m[2])
    const pid = pidOf.get(tid)
    const args = call[2]!
    const fd = args.match(/fd: (\d+)/)?.[1]
    const count = args.match(/count: (\d+)/)?.[1]
    events.push({
      t: Number(m[1]) * 1000,
      pid,
      main: pid === tid,
      call: call[1]!,
      fd: fd === undefined ? undefined : Number(fd),
      count: count === undefined ? undefined : Number(count),
      ret: call[3] === undefined ? undefined : Number(call[3])
    })
  }
  return events.sort((a, b) => a.t - b.t)
}

const steps = [
  "leader: HTTP request read -> AppendEntries written",
  "network: leader's writev -> follower's read",
  "follower: frame read -> the store's first write",
  "follower: first write -> fdatasync started",
  "follower: fdatasync started -> completion signalled",
  "follower: completion -> answer written",
  "network: first answer written -> read by the leader",
  "leader: first answer read -> HTTP answer written",
  "leader: HTTP request read -> its own store's first write",
  "leader: HTTP request read -> its own store's completion signalled",
  "leader: HTTP request read -> first follower's answer read",
  "leader: HTTP request read -> HTTP answer written"
] as const

const timeline = (events: ReadonlyArray<Event>): Map<string, Array<number>> => {
  const found = new Map<string, Array<number>>(steps.map((step) => [step, []]))
  const add = (step: typeof steps[number], from: Event | undefined, to: Event | undefined) => {
    if (from !== undefined && to !== undefined && to.t >= from.t) found.get(step)!.push(to.t - from.t)
  }
  const after = (t: number, test: (e: Event) => boolean) => events.find((e) => e.t >= t && test(e))
  const requests = events.filter((e) => e.main && e.call === "read" && e.ret !== undefined && e.ret > 200 && e.ret < 300)
  if (requests.length === 0) return found
  const leader = requests[0]!.pid
  const followers = [...new Set(events.map((e) => e.pid))].filter((pid) => pid !== undefined && pid !== leader)
  const isStoreWrite = (e: Event) => e.call === "pwrite64" || e.call === "pwritev" || (!e.main && e.call === "writev")
  const isSignal = (e: Event) => !e.main && e.call === "write" && e.count === 8
  for (let i = 0; i + 1 < requests.length; i++) {
    const request = requests[i]!
    const answer = after(request.t, (e) => e.pid === leader && e.main && e.call === "writev" && e.ret! > 150 && e.ret! < 200)
    // One PUT at a time: its answer comes before the next request.
    if (answer === undefined || answer.t > requests[i + 1]!.t) continue
    const sent = after(request.t, (e) => e.pid === leader && e.main && e.call === "writev" && e.ret! > 250)
    if (sent === undefined) continue
    add("leader: HTTP request read -> AppendEntries written", request, sent)
    add("leader: HTTP request read -> its own store's first write", request, after(request.t, (e) => e.pid === leader && isStoreWrite(e)))
    const ownSync = after(request.t, (e) => e.pid === leader && e.call === "fdatasync")
    const ownDone = ownSync === undefined ? undefined : after(ownSync.t, (e) => e.pid === leader && isSignal(e))
    add("leader: HTTP request read -> its own store's completion signalled", request, ownDone)
    let first: Event | undefined
    for (const follower of followers) {
      const read = after(sent.t, (e) => e.pid === follower && e.main && e.call === "read" && e.ret! > 250)
      if (read === undefined || read.t > answer.t) continue
      add("network: leader's writev -> follower's read", sent, read)
      const write = after(read.t, (e) => e.pid === follower && isStoreWrite(e))
      const sync = after(read.t, (e) => e.pid === follower && e.call === "fdatasync")
      const done = sync === undefined ? undefined : after(sync.t, (e) => e.pid === follower && isSignal(e))
      const reply = after(read.t, (e) => e.pid === follower && e.main && e.call === "writev" && e.ret! < 100)
      add("follower: frame read -> the store's first write", read, write)
      add("follower: first write -> fdatasync started", write, sync)
      add("follower: fdatasync started -> completion signalled", sync, done)
      add("follower: completion -> answer written", done, reply)
      if (reply !== undefined && (first === undefined || reply.t < first.t)) first = reply
    }
    if (first !== undefined) {
      const ack = after(first.t, (e) => e.pid === leader && e.main && e.call === "read" && e.ret! < 100)
      add("network: first answer written -> read by the leader", first, ack)
      add("leader: HTTP request read -> first follower's answer read", request, ack)
      add("leader: first answer read -> HTTP answer written", ack, answer)
    }
    add("leader: HTTP request read -> HTTP answer written", request, answer)
  }
  return found
}

const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(q * (sorted.length - 1))] ?? NaN
}

const main = async () => {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..")
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "put-timeline-"))
  const args = ["--import", "tsx", "benchmarks/kv.ts", "--conc", "1", "--ops", "6000", "--failover", "false"]
  if (argv["node-entry"] !== undefined) args.push("--node-entry", argv["node-entry"])
  if (argv.store !== undefined) args.push("--store", argv.store)
  const bench = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
  let row = ""
  bench.stdout.on("data", (chunk: Buffer) => (row += chunk.toString()))
  const ended = new Promise<void>((resolve) => bench.on("exit", () => resolve()))
  await sleep(Number(argv.after) * 1000)
  const nodes = childrenOf(bench.pid!)
  if (nodes.length !== 3) {
    process.stderr.write(`expected 3 node processes under kv.ts, found ${nodes.length}\n`)
    bench.kill()
    process.exitCode = 1
    return
  }
  const pidOf = threadsOf(nodes)
  const traceFile = path.join(dir, "trace.txt")
  spawnSync("timeout", [
    argv.seconds,
    "perf",
    "trace",
    "-T",
    "-p",
    nodes.join(","),
    "-e",
    "read,writev,pwrite64,pwritev,fdatasync,write",
    "-o",
    traceFile
  ])
  await ended
  const found = timeline(parse(fs.readFileSync(traceFile, "utf8"), pidOf))
  fs.rmSync(dir, { recursive: true, force: true })
  const puts = found.get("leader: HTTP request read -> HTTP answer written")!.length
  process.stdout.write(`${puts} PUTs traced\n`)
  for (const [step, values] of found) {
    const p50 = quantile(values, 0.5).toFixed(0).padStart(6)
    const p90 = quantile(values, 0.9).toFixed(0).padStart(6)
    process.stdout.write(`${step.padEnd(58)} p50 ${p50} µs  p90 ${p90} µs  (${values.length})\n`)
  }
  const json = row.split("\n").reverse().find((line) => line.startsWith("{"))
  if (json !== undefined) {
    const result = JSON.parse(json) as Record<string, unknown>
    process.stdout.write(`the run: ${String(result.ops_per_sec)} PUT/s, bg_cpu_cores ${String(result.bg_cpu_cores)}\n`)
  }
}

void main()
