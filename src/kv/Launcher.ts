/**
 * `kv cluster` (what `npm start` runs): a cluster on loopback as child
 * processes, one `kv node` each, with data and logs under one directory.
 * Their Raft transport speaks mutual TLS: the first start makes a cluster CA
 * and a certificate per node under the data directory (`Certificates.ts`),
 * later starts reuse them.
 * A new cluster (no node's data directory initialised) starts every node
 * with `--bootstrap`, the same peer list and one new `--cluster-id`; a later
 * start passes no `--bootstrap` and every node resumes from its stores (a
 * node whose data was lost refuses to start, and the launcher stops with its
 * log's path: bring it back with `kv node --rejoin`). The launcher waits for a leader, prints where
 * everything is and ready-to-paste `curl` lines, and runs until it is
 * interrupted (Ctrl-C): closing its scope sends SIGTERM to each child's
 * process group and waits for it to exit, and each node shuts down cleanly
 * on SIGTERM. Installed, each node runs from the one-file bundle the build
 * writes (`dist/kv/kv.mjs`, `nodeEntry`).
 */
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as Certificates from "./Certificates.js"
import * as Http from "./Http.js"
import { MARKER_FILE } from "./Identity.js"

/** What `kv cluster` was asked for. */
export interface Options {
  readonly nodes: number
  readonly dataDir: string
  readonly raftPort: number
  readonly httpPort: number
  readonly fast: boolean
}

/** The cluster did not come up: a node exited, or no leader was elected in time. */
export class LaunchError extends Data.TaggedError("LaunchError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

interface Planned {
  readonly id: string
  readonly raft: string
  readonly http: string
  readonly dir: string
  readonly log: string
}

/** What a node of a loopback cluster is started with: its id, addresses and data directory. */
export interface NodePlan {
  readonly id: string
  readonly raft: string
  readonly http: string
  readonly dir: string
}

/**
 * The arguments of `kv node` for `node` in a cluster of `all`; its transport speaks TLS with `tls`'s files, or
 * plaintext when `tls` is "plaintext". With `bootstrap`, the first start of a new cluster (every node with the same
 * `clusterId`); a node whose data directory was initialised ignores `--bootstrap`.
 */
export const nodeArguments = (
  node: NodePlan,
  all: ReadonlyArray<NodePlan>,
  options: {
    readonly tls: Certificates.TlsFiles | "plaintext"
    readonly fast?: boolean | undefined
    readonly faults?: boolean | undefined
    readonly bootstrap?: { readonly clusterId: string } | undefined
  }
): ReadonlyArray<string> => [
  "node",
  "--id",
  node.id,
  "--raft-addr",
  node.raft,
  "--http-addr",
  node.http,
  "--data-dir",
  node.dir,
  ...(options.bootstrap === undefined ? [] : ["--bootstrap", "--cluster-id", options.bootstrap.clusterId]),
  ...(options.tls === "plaintext"
    ? ["--insecure-transport"]
    : ["--tls-cert", options.tls.cert, "--tls-key", options.tls.key, "--tls-ca", options.tls.ca]),
  ...(options.fast === true ? ["--fast"] : []),
  ...(options.faults === true ? ["--faults"] : []),
  ...all.filter((peer) => peer.id !== node.id).flatMap((peer) => ["--peer", `${peer.id},${peer.raft},${peer.http}`])
]

/**
 * How to start the nodes whose data directories are `dirs`: a new cluster (a new cluster id, every node
 * bootstrapped) only if no node was ever initialised; otherwise nobody bootstraps (a node that lost its data then
 * refuses to start, instead of founding a cluster of its own).
 */
export const bootstrapOf = (
  dirs: ReadonlyArray<string>
): Effect.Effect<{ readonly clusterId: string } | undefined, PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    for (const dir of dirs) if (yield* fs.exists(path.join(dir, MARKER_FILE))) return undefined
    return { clusterId: yield* Effect.sync(() => randomUUID()) }
  })

/**
 * The V8 flags each node process starts with, to bound its memory: a young generation of 2 × 4 MiB instead of
 * Node's 2 × 16 MiB, and an old generation allowed to grow by half its live size between full collections instead
 * of up to four times (docs/operations.md, "Memory"). Start `kv node` by hand with the same on Node's command line
 * (`NODE_OPTIONS` refuses `--heap-growing-percent`).
 */
export const nodeFlags: ReadonlyArray<string> = ["--max-semi-space-size=4", "--heap-growing-percent=50"]

/** The command line that runs `kv node` for `node` in a child process: Node with `nodeFlags`, then `entry`. */
export const nodeCommand = (
  entry: string,
  loader: ReadonlyArray<string>,
  node: NodePlan,
  all: ReadonlyArray<NodePlan>,
  options: {
    readonly tls: Certificates.TlsFiles | "plaintext"
    readonly fast: boolean
    readonly bootstrap: { readonly clusterId: string } | undefined
  }
): Command.Command => Command.make(process.execPath, ...nodeFlags, ...loader, entry, ...nodeArguments(node, all, options))

/** The bundle `npm run build` writes beside the compiled modules: `kv` and its packages in one file and its chunks. */
export const BUNDLE_FILE = "kv.mjs"

/**
 * What a node of `kv cluster` runs, found from `moduleUrl` (this module's own URL): from sources (a `.ts` URL),
 * `main.ts` through tsx; compiled or installed, the bundle beside this module when the build wrote it
 * (`dist/kv/kv.mjs`, the launcher's own chunk sits beside it too), else the compiled `main.js`. A node started from
 * the bundle loads a few dozen files instead of about 700 modules, and holds about a fifth less memory
 * (benchmarks/README.md, "A key-value node from one bundled file").
 */
export const nodeEntry = (moduleUrl: string): Effect.Effect<
  { readonly entry: string; readonly loader: ReadonlyArray<string> },
  PlatformError,
  FileSystem.FileSystem | Path.Path
> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    if (moduleUrl.endsWith(".ts")) {
      return {
        entry: yield* path.fromFileUrl(new URL("./main.ts", moduleUrl)),
        loader: ["--import", import.meta.resolve("tsx")]
      }
    }
    const bundle = yield* path.fromFileUrl(new URL(`./${BUNDLE_FILE}`, moduleUrl))
    if (yield* fs.exists(bundle)) return { entry: bundle, loader: [] }
    return { entry: yield* path.fromFileUrl(new URL("./main.js", moduleUrl)), loader: [] }
  })

/** Waits until some node reports itself leader; answers its id, term and HTTP address. */
const awaitLeader = (nodes: ReadonlyArray<Planned>) =>
  Effect.gen(function*() {
    const clients = yield* Effect.forEach(nodes, (node) => Http.client(node.http))
    const probe = Effect.gen(function*() {
      for (const api of clients) {
        const status = yield* api.cluster.status().pipe(Effect.timeout("1 second"), Effect.option)
        if (Option.isSome(status) && status.value.state === "Leader") return Option.some(status.value)
      }
      return Option.none()
    })
    const loop: Effect.Effect<typeof Http.Status.Type> = Effect.flatMap(
      probe,
      (found) => Option.isSome(found) ? Effect.succeed(found.value) : Effect.delay(Effect.suspend(() => loop), "200 millis")
    )
    return yield* loop
  }).pipe(Effect.provide(Http.layerFetch))

/** Starts the cluster and runs until interrupted. */
export const run = (options: Options): Effect.Effect<
  void,
  LaunchError | PlatformError,
  FileSystem.FileSystem | Path.Path | CommandExecutor.CommandExecutor | Scope.Scope
> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const { entry, loader } = yield* nodeEntry(import.meta.url)
    const dataDir = path.resolve(options.dataDir)
    const planned: Array<Planned> = []
    for (let i = 0; i < Math.max(1, options.nodes); i++) {
      const id = `n${i + 1}`
      const dir = path.join(dataDir, id)
      planned.push({
        id,
        raft: `127.0.0.1:${options.raftPort + i}`,
        http: `127.0.0.1:${options.httpPort + i}`,
        dir,
        log: path.join(dir, "node.log")
      })
    }
    const bootstrap = yield* bootstrapOf(planned.map((node) => node.dir))
    const resuming = bootstrap === undefined
    yield* Console.log(
      `${resuming ? "Resuming" : "Starting"} a ${planned.length}-node cluster on loopback (data in ${dataDir})...`
    )
    const certificates = yield* Certificates.ensureCluster(dataDir, planned).pipe(
      Effect.mapError((error) => new LaunchError({ reason: error.message }))
    )
    if (certificates.made.length > 0) {
      yield* Console.log(
        `Made TLS certificates for the Raft transport: ${certificates.made.join(", ")} ` +
          `(the CA's key is ${path.join(dataDir, "tls", "ca.key")}: keep it private)`
      )
    }
    // The children's output is copied until they exit: this scope closes after theirs (finalizers run in reverse).
    const logs = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(logs, Exit.void))
    const exited = yield* Effect.forEach(planned, (node) =>
      Effect.gen(function*() {
        yield* fs.makeDirectory(node.dir, { recursive: true })
        const child = yield* Command.start(
          nodeCommand(entry, loader, node, planned, {
            tls: certificates.files.get(node.id)!,
            fast: options.fast,
            bootstrap
          })
        )
        // Both output streams go to the node's log file.
        yield* Stream.merge(child.stdout, child.stderr).pipe(
          Stream.run(fs.sink(node.log, { flag: "a" })),
          Effect.ignore,
          Effect.forkIn(logs)
        )
        return Effect.flatMap(
          child.exitCode,
          (code) => Effect.fail(new LaunchError({ reason: `node ${node.id} exited with code ${code}; see ${node.log}` }))
        )
      }))
    const anyExit = Effect.raceAll(exited).pipe(
      Effect.mapError((error) =>
        error._tag === "LaunchError" ? error : new LaunchError({ reason: `a node could not be watched: ${error.message}` })
      )
    )

    const leader = yield* awaitLeader(planned).pipe(
      Effect.raceFirst(Effect.zipRight(anyExit, Effect.never)),
      Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () =>
          new LaunchError({ reason: `no leader within 60 s; see the logs in ${planned.map((n) => n.log).join(", ")}` })
      })
    )
    const leaderHttp = planned.find((node) => node.id === leader.id)?.http ?? planned[0]!.http
    const follower = planned.find((node) => node.id !== leader.id)?.http ?? leaderHttp
    const lines = [
      "",
      `Leader: ${leader.id} (term ${leader.term}), HTTP ${leaderHttp}`,
      "",
      ...planned.map((node) =>
        `  ${node.id}  http ${node.http}  raft ${node.raft}  ${node.id === leader.id ? "leader" : "follower"}  log ${node.log}`
      ),
      "",
      "Try (followers answer writes with a redirect to the leader: add -L):",
      `  curl -X PUT http://${leaderHttp}/kv/hello -d value=world`,
      `  curl http://${leaderHttp}/kv/hello`,
      `  curl -X POST http://${leaderHttp}/kv/hello/cas -d expected=world -d value=there`,
      `  curl -L -X PUT http://${follower}/kv/other -d value=via-a-follower`,
      `  curl "http://${follower}/kv/hello?stale=true"`,
      `  curl "http://${leaderHttp}/kv?prefix="`,
      `  curl -X DELETE http://${leaderHttp}/kv/hello`,
      `  curl http://${leaderHttp}/status`,
      `  npx kv status --http-addr ${leaderHttp}`,
      "",
      "Ctrl-C stops all nodes; `npm start` again resumes the same cluster from its data."
    ]
    yield* Console.log(lines.join("\n"))
    // Runs until interrupted; a node that dies meanwhile ends the launcher (and so the others).
    yield* anyExit.pipe(
      Effect.onInterrupt(() => Console.log("\nStopping the nodes (SIGTERM, then waiting for each to exit)..."))
    )
  })
