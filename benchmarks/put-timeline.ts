/**
 * Where one client's PUT spends its time across the three nodes: runs `kv.ts --conc 1` and, a few seconds into
 * the measured phase, traces the nodes' system calls with `perf trace` (Linux, root), then matches them PUT by PUT
 * and prints the median and p90 of each step (benchmarks/README.md, "One client's PUT, traced").
 *
 *   npx tsx benchmarks/put-timeline.ts [--node-entry <bundle of src/kv/main.ts>] [--store lmdb|wal]
 *     [--seconds 1.5] [--after 10]
 *
 * A PUT's path, as the trace sees it: the leader reads the HTTP request (a read of 200–300 bytes on its event
 * loop's thread), writes the AppendEntries to each follower (a `write` or `writev` of more than 250 bytes), a
 * follower reads it, its store writes (`pwrite64`, `pwritev` or `writev` to the file it then syncs) and syncs
 * (`fdatasync`): a lone write on the event loop's thread, where the call's return completes it; a batch on another
 * thread, which then signals the event loop (an 8-byte `write` to libuv's eventfd). The follower writes its answer
 * (under 100 bytes), the leader reads it and writes the HTTP answer (150–200 bytes). Each step's p50 and p90 are
 * printed, and its p50 over the slowest tenth of the PUTs, to show where their time went. The tracer slows every
 * system call: compare steps and builds traced the same way, not the sums with untraced runs.
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
  readonly dur: number // µs, 0 when perf did not print it
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

/**
 * perf trace's lines: `<ms> ( <dur> ms): node/<tid> call(args) = ret`. A call that other threads' lines interrupted
 * is printed twice: its start without a duration, then `... [continued]: call()) = ret` with the same start and its
 * duration, which is given to the start's event.
 */
const parse = (text: string, pidOf: Map<number, number>): Array<Event> => {
  const events: Array<Event> = []
  const unfinished = new Map<number, number>() // tid → index in `events` of its call printed without a duration
  for (const line of text.split("\n")) {
    const m = line.match(/^\s*([\d.]+) \(\s*([\d.]*)\s*(?:ms)?\s*\): [^/]+\/(\d+) (.*)$/)
    if (m === null) continue
    if (m[4]!.includes("[continued]")) {
      const at = unfinished.get(Number(m[3]))
      if (at !== undefined && m[2] !== "") events[at] = { ...events[at]!, dur: Number(m[2]) * 1000 }
      unfinished.delete(Number(m[3]))
      continue
    }
    const call = m[4]!.match(/^(\w+)\((.*?)\)\s*(?:= (-?\d+))?/)
    if (call === null) continue
    const tid = Number(m[3])
    const pid = pidOf.get(tid)
    const args = call[2]!
    const fd = args.match(/fd: (\d+)/)?.[1]
    const count = args.match(/count: (\d+)/)?.[1]
    if (m[2] === "") unfinished.set(tid, events.length)
    events.push({
      t: Number(m[1]) * 1000,
      dur: m[2] === "" ? 0 : Number(m[2]) * 1000,
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
  "network: AppendEntries written -> read by the follower",
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
type Step = typeof steps[number]

/** One record per PUT traced: each step's duration in µs (a step missing where its events were not found). */
const timeline = (events: ReadonlyArray<Event>): Array<Map<Step, number>> => {
  const puts: Array<Map<Step, number>> = []
  const after = (t: number, test: (e: Event) => boolean) => events.find((e) => e.t >= t && test(e))
  const requests = events.filter((e) => e.main && e.call === "read" && e.ret !== undefined && e.ret > 200 && e.ret < 300)
  if (requests.length === 0) return puts
  const leader = requests[0]!.pid
  const followers = [...new Set(events.map((e) => e.pid))].filter((pid) => pid !== undefined && pid !== leader)
  const isSignal = (e: Event) => !e.main && e.call === "write" && e.count === 8
  // The transport writes a frame with `write` (one per frame) or `writev`; the HTTP server with `writev`.
  const isSocketWrite = (e: Event) => (e.call === "write" && e.count !== 8) || e.call === "writev"
  /**
   * A store's write and its completion after `t` on `pid`: the write is to the file the next `fdatasync` syncs. A
   * sync on the event loop's thread (a lone write flushed there) completes when the call returns; one on another
   * thread when that thread signals the event loop.
   */
  const storeWrite = (pid: number | undefined, t: number) => {
    const sync = after(t, (e) => e.pid === pid && e.call === "fdatasync")
    const write = after(t, (e) =>
      e.pid === pid && (e.call === "pwrite64" || e.call === "pwritev" || e.call === "writev") &&
      (sync?.fd === undefined ? !e.main : e.fd === sync.fd))
    // A call whose duration perf did not print (the trace ended inside it): that completion is unknown.
    const done = sync === undefined
      ? undefined
      : sync.main
      ? sync.dur === 0 ? undefined : { ...sync, t: sync.t + sync.dur }
      : after(sync.t, (e) => e.pid === pid && isSignal(e))
    return { write, sync, done }
  }
  for (let i = 0; i + 1 < requests.length; i++) {
    const request = requests[i]!
    const answer = after(request.t, (e) => e.pid === leader && e.main && isSocketWrite(e) && e.ret! > 150 && e.ret! < 200)
    // One PUT at a time: its answer comes before the next request.
    if (answer === undefined || answer.t > requests[i + 1]!.t) continue
    const sent = after(request.t, (e) => e.pid === leader && e.main && isSocketWrite(e) && e.ret! > 250)
    if (sent === undefined) continue
    const put = new Map<Step, number>()
    const add = (step: Step, from: Event | undefined, to: Event | undefined) => {
      if (from !== undefined && to !== undefined && to.t >= from.t && !put.has(step)) put.set(step, to.t - from.t)
    }
    add("leader: HTTP request read -> AppendEntries written", request, sent)
    const own = storeWrite(leader, request.t)
    add("leader: HTTP request read -> its own store's first write", request, own.write)
    add("leader: HTTP request read -> its own store's completion signalled", request, own.done)
    let first: Event | undefined
    let firstSteps: Array<[Step, Event | undefined, Event | undefined]> = []
    for (const follower of followers) {
      const read = after(sent.t, (e) => e.pid === follower && e.main && e.call === "read" && e.ret! > 250)
      if (read === undefined || read.t > answer.t) continue
      const { write, sync, done } = storeWrite(follower, read.t)
      const reply = after(read.t, (e) => e.pid === follower && e.main && isSocketWrite(e) && e.ret! < 100)
      if (reply !== undefined && (first === undefined || reply.t < first.t)) {
        first = reply
        // The follower that answered first is the one on the PUT's path.
        firstSteps = [
          ["network: AppendEntries written -> read by the follower", sent, read],
          ["follower: frame read -> the store's first write", read, write],
          ["follower: first write -> fdatasync started", write, sync],
          ["follower: fdatasync started -> completion signalled", sync, done],
          ["follower: completion -> answer written", done, reply]
        ]
      }
    }
    for (const [step, from, to] of firstSteps) add(step, from, to)
    if (first !== undefined) {
      const ack = after(first.t, (e) => e.pid === leader && e.main && e.call === "read" && e.ret! < 100)
      add("network: first answer written -> read by the leader", first, ack)
      add("leader: HTTP request read -> first follower's answer read", request, ack)
      add("leader: first answer read -> HTTP answer written", ack, answer)
    }
    add("leader: HTTP request read -> HTTP answer written", request, answer)
    puts.push(put)
  }
  return puts
}

const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(q * (sorted.length - 1))] ?? NaN
}

const main = async () => {
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..")
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "put-timeline-"))
  const args = ["--import", "tsx", "benchmarks/kv.ts", "--conc", "1", "--ops", "12000", "--failover", "false"]
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
  const puts = timeline(parse(fs.readFileSync(traceFile, "utf8"), pidOf))
  fs.rmSync(dir, { recursive: true, force: true })
  const total = "leader: HTTP request read -> HTTP answer written"
  const slowest = quantile(puts.map((put) => put.get(total)!), 0.9)
  const slow = puts.filter((put) => put.get(total)! >= slowest)
  process.stdout.write(`${puts.length} PUTs traced; the slowest tenth (${slow.length}) took ${slowest.toFixed(0)} µs or more\n`)
  process.stdout.write(`${"step".padEnd(62)}   p50     p90  slowest tenth's p50\n`)
  for (const step of steps) {
    const all = puts.flatMap((put) => put.has(step) ? [put.get(step)!] : [])
    const tail = slow.flatMap((put) => put.has(step) ? [put.get(step)!] : [])
    const cell = (value: number) => value.toFixed(0).padStart(6)
    process.stdout.write(
      `${step.padEnd(62)} ${cell(quantile(all, 0.5))}  ${cell(quantile(all, 0.9))}  ${cell(quantile(tail, 0.5))}   (${all.length})\n`
    )
  }
  const json = row.split("\n").reverse().find((line) => line.startsWith("{"))
  if (json !== undefined) {
    const result = JSON.parse(json) as Record<string, unknown>
    process.stdout.write(`the run: ${String(result.ops_per_sec)} PUT/s, bg_cpu_cores ${String(result.bg_cpu_cores)}\n`)
  }
}

void main()
