/**
 * The package as a user gets it: built, packed, and installed from the tarball into an empty directory (npm's
 * cache makes the install quick). From there, plain Node imports every entry point; the core entry point runs a
 * cluster with the modules a native or Node-only package would bring made unresolvable; a TypeScript project with
 * strict flags type-checks against the .d.ts files alone; and the `kv` command answers --help and --version,
 * starts a cluster that elects a leader, and writes and reads a key in it. The time of each step is printed.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"

const root = path.join(import.meta.dirname, "..")
const fixtures = path.join(import.meta.dirname, "fixtures", "package")
const run = promisify(execFile)
const npm = process.platform === "win32" ? "npm.cmd" : "npm"
const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly version: string
  readonly devDependencies: Record<string, string>
}

const timings: Array<string> = []
const timed = async <A>(label: string, step: () => Promise<A>): Promise<A> => {
  const start = performance.now()
  const result = await step()
  timings.push(`${label} ${Math.round(performance.now() - start)} ms`)
  return result
}

/** Every file under `dir`, relative to it. */
const filesUnder = (dir: string, prefix = ""): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? filesUnder(path.join(dir, entry.name), `${prefix}${entry.name}/`)
      : [`${prefix}${entry.name}`]
  )

/** A free loopback port `base` such that `base .. base + count - 1` are all free. */
const freeRange = async (count: number): Promise<number> => {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer()
      server.once("error", () => resolve(false))
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
    })
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000)
    let all = true
    for (let i = 0; i < count && all; i++) all = await free(base + i)
    if (all) return base
  }
  throw new Error("no free range of loopback ports")
}

/**
 * Runs `kv cluster` until it prints its leader, then `whileUp` with the leader's HTTP address, and stops it;
 * answers the milliseconds from start to the leader.
 */
const clusterToLeader = async (
  kv: string,
  dir: string,
  whileUp: (leaderHttp: string, launcher: number) => Promise<void>
): Promise<number> => {
  const raftPort = await freeRange(3)
  const httpPort = await freeRange(3)
  const start = performance.now()
  const child: ChildProcess = spawn(kv, [
    "cluster",
    "--data-dir",
    path.join(dir, "data"),
    "--raft-port",
    String(raftPort),
    "--http-port",
    String(httpPort)
  ], { cwd: dir, detached: true, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  try {
    const [millis, leaderHttp] = await new Promise<readonly [number, string]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no leader within 90 s:\n${output}`)), 90_000)
      const watch = (chunk: Buffer) => {
        output += chunk.toString()
        const leader = /^Leader: n\d \(term \d+\), HTTP (\S+)$/m.exec(output)
        if (leader !== null) {
          clearTimeout(timer)
          resolve([performance.now() - start, leader[1]!])
        }
      }
      child.stdout?.on("data", watch)
      child.stderr?.on("data", watch)
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`kv cluster exited with ${code}:\n${output}`))
      })
    })
    await whileUp(leaderHttp, child.pid!)
    return millis
  } finally {
    // The launcher stops its nodes on SIGTERM; its process group goes down with it either way.
    if (child.exitCode === null && child.pid !== undefined) {
      process.kill(-child.pid, "SIGTERM")
      const stopped = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 20_000))])
      if (!stopped) process.kill(-child.pid, "SIGKILL")
    }
  }
}

/** `parent`'s child processes, from /proc: each one's command line (arguments) and the files it has mapped. */
const children = (parent: number): Array<{ readonly args: Array<string>; readonly maps: string }> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((pid) => {
    try {
      // The parent's pid is the field after the command's name, which is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== parent) return []
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((arg) => arg !== "")
      return [{ args, maps: readFileSync(`/proc/${pid}/maps`, "utf8") }]
    } catch {
      return [] // it exited meanwhile
    }
  })

/** A program's last line of output: its result, after the lines the nodes log at Info (elections, leaders). */
const lastLine = (stdout: string): string => stdout.trimEnd().split("\n").at(-1) ?? ""

describe("the package, packed and installed", () => {
  it("installs from its tarball and works from plain Node, a strict TypeScript project and the kv command", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "effect-raft-package-"))
    try {
      await timed("build", () => run(npm, ["run", "build", "--silent"], { cwd: root }))
      const packed = await timed("pack", () =>
        run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], { cwd: root }))
      const [info] = JSON.parse(packed.stdout) as ReadonlyArray<
        { readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }
      >
      assert.isDefined(info)
      const shipped = info.files.map((file) => file.path)
      const stray = shipped.filter((file) =>
        !file.startsWith("dist/") && !["package.json", "README.md", "LICENSE", "CHANGELOG.md"].includes(file)
      )
      assert.deepStrictEqual(stray, [], "files outside dist/ and the four top-level ones")
      for (const file of ["LICENSE", "CHANGELOG.md", "README.md", "dist/index.d.ts", "dist/kv/main.js", "dist/kv/kv.mjs"]) {
        assert.include(shipped, file)
      }
      assert.isFalse(shipped.some((file) => file.startsWith("dist/demo")), "the demo runs on import: not shipped")

      // An empty project that installs the tarball, with @types/node for its own TypeScript check.
      const app = path.join(dir, "app")
      mkdirSync(app)
      writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }))
      await timed("install", () =>
        run(npm, [
          "install",
          "--prefer-offline",
          "--no-audit",
          "--no-fund",
          path.join(dir, info.filename),
          `@types/node@${manifest.devDependencies["@types/node"]}`
        ], { cwd: app }))
      const installed = path.join(app, "node_modules", manifest.name)
      const sources = filesUnder(installed).filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts"))
      assert.deepStrictEqual(sources, [], "TypeScript sources in the installed package")
      cpSync(fixtures, app, { recursive: true })

      // Plain Node: the core runs a cluster with lmdb, msgpackr and platform-node unresolvable.
      const core = await timed("core under forbid", () => run(process.execPath, ["--import", "./forbid.mjs", "core.mjs"], { cwd: app }))
      assert.deepStrictEqual(JSON.parse(lastLine(core.stdout)), { response: 5, testing: true })
      // The guard bites: the LMDB entry point cannot load under it.
      const refused = await run(process.execPath, ["--import", "./forbid.mjs", "-e", `await import("${manifest.name}/lmdb")`], {
        cwd: app
      }).then(() => "loaded", (error: { readonly stderr: string }) => error.stderr)
      assert.include(refused, "forbidden module loaded")
      const subpaths = await timed("subpaths", () => run(process.execPath, ["subpaths.mjs"], { cwd: app }))
      assert.deepStrictEqual(JSON.parse(lastLine(subpaths.stdout)), {
        fileSnapshots: "function",
        kv: "function,object,function,function,function",
        lmdb: "function",
        tcp: "function",
        wal: "function"
      })

      // A strict TypeScript project, checked with this repository's compiler against the installed .d.ts files.
      const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc")
      await timed("strict tsc", () =>
        run(process.execPath, [tsc, "-p", "tsconfig.strict.json"], { cwd: app }).catch((error: { readonly stdout: string }) => {
          throw new Error(`the strict project does not type-check:\n${error.stdout}`)
        }))

      // The kv command, through npm's bin link and the shebang.
      const kv = path.join(app, "node_modules", ".bin", "kv")
      assert.isTrue(existsSync(kv))
      const help = await timed("kv --help", () => run(kv, ["--help"], { cwd: app }))
      assert.include(help.stdout.replace(/\x1b\[[0-9;]*m/g, ""), "- cluster [--nodes integer]")
      const version = await timed("kv --version", () => run(kv, ["--version"], { cwd: app }))
      assert.strictEqual(version.stdout.trim(), manifest.version)
      const toLeader = await clusterToLeader(kv, app, async (leaderHttp, launcher) => {
        // The launcher (the bin: the bundle) started every node from the bundle too.
        const bundle = path.join(installed, "dist", "kv", "kv.mjs")
        const nodes = children(launcher)
        assert.strictEqual(nodes.length, 3, nodes.map((node) => node.args.join(" ")).join("\n"))
        for (const { args, maps } of nodes) {
          assert.strictEqual(args[args.indexOf("node") - 1], bundle, args.join(" "))
          // New data directories get the WAL, and a node on the WAL does not load lmdb's native addon.
          assert.notInclude(maps, "lmdb", `${args.join(" ")} mapped lmdb`)
        }
        // The client commands, against the cluster the launcher started.
        const put = await run(kv, ["put", "hello", "world", "--http-addr", leaderHttp], { cwd: app })
        assert.match(put.stdout, /^ok \(index \d+\)/)
        const get = await run(kv, ["get", "hello", "--http-addr", leaderHttp], { cwd: app })
        assert.strictEqual(get.stdout.trim(), "world")
      })
      timings.push(`kv cluster to a leader ${Math.round(toLeader)} ms`)
    } finally {
      console.log(`package test: ${timings.join(", ")}`)
      rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
