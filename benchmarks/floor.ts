/**
 * What the machine itself costs, with no Raft and no Effect: the floors under the one-client rows.
 *
 *  - `tcp-fanout`: in one Node process, a "leader" socket writes a 200-byte frame to each of two "followers" on
 *    loopback TCP and waits for both 40-byte answers, then the next round: the messages one apply needs in the
 *    anchor's tcp mode (three nodes in one process). Wall and CPU time per round.
 *  - `lmdb-commit`: one synced LMDB transaction of one 160-byte value, in one environment alone and in three
 *    environments at once (leader and two followers on one disk, as the durable tier runs): wall time per commit.
 *
 *   node --import tsx benchmarks/floor.ts [--rounds N]
 *
 * One JSON line per measurement on stdout.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import * as lmdb from "lmdb"

const { values: argv } = parseArgs({ options: { rounds: { type: "string", default: "20000" } } })
const rounds = Number(argv.rounds)

const emit = (row: Record<string, unknown>) => process.stdout.write(JSON.stringify({ impl: "floor", ...row }) + "\n")

const tcpFanout = async (): Promise<void> => {
  const servers: Array<net.Server> = []
  const connect = async (): Promise<net.Socket> => {
    const server = net.createServer({ noDelay: true }, (socket) => {
      const answer = Buffer.alloc(40, 2)
      socket.on("data", () => socket.write(answer))
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as net.AddressInfo
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true })
    await new Promise<void>((resolve) => socket.on("connect", resolve))
    return socket
  }
  const followers = [await connect(), await connect()]
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
  emit({ scenario: "tcp-fanout", rounds, wall_us_per_round: wallUs, cpu_us_per_round: (used.user + used.system) / rounds })
  for (const socket of followers) socket.destroy()
  for (const server of servers) server.close()
}

const lmdbCommits = async (environments: number, commits: number): Promise<void> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "floor-lmdb-"))
  const envs = Array.from({ length: environments }, (_, i) =>
    lmdb.open<Uint8Array, number>({
      path: path.join(dir, String(i)),
      encoding: "binary",
      overlappingSync: false,
      noSync: false
    }))
  const value = new Uint8Array(160).fill(3)
  const start = process.hrtime.bigint()
  await Promise.all(envs.map(async (env) => {
    for (let i = 0; i < commits; i++) await env.put(i, value)
  }))
  const wallUs = Number(process.hrtime.bigint() - start) / 1000 / commits
  emit({ scenario: "lmdb-commit", environments, commits, wall_us_per_commit: wallUs })
  for (const env of envs) await env.close()
  fs.rmSync(dir, { recursive: true, force: true })
}

await tcpFanout()
await lmdbCommits(1, 500)
await lmdbCommits(3, 500)
