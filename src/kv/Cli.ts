/**
 * The `kv` command line, on `@effect/cli`:
 *
 *   kv node --id n1 --raft-addr 127.0.0.1:7001 --http-addr 127.0.0.1:8001 --data-dir data/n1
 *           (--tls-cert FILE --tls-key FILE --tls-ca FILE | --insecure-transport)
 *           [--peer n2,127.0.0.1:7002,127.0.0.1:8002 ...] [--bootstrap [--cluster-id ID]] [--join 127.0.0.1:8001]
 *           [--rejoin] [--faults] [--fast]
 *   kv cluster [--nodes 3] [--data-dir data] [--raft-port 7001] [--http-port 8001]   (what `npm start` runs)
 *   kv certs --id n4 [--data-dir data]   (a certificate for one more node, from the cluster's CA)
 *   kv recover --data-dir data/n1 --peer n1,127.0.0.1:7001 [--peer ...]   (a stopped node, after a lost quorum)
 *   kv status --http-addr 127.0.0.1:8001
 *   kv put KEY VALUE | kv get KEY [--stale] | kv delete KEY   [--http-addr 127.0.0.1:8001]
 *
 * Options not given are read from the environment (`KV_ID`, `KV_RAFT_ADDR`, `KV_HTTP_ADDR`, `KV_DATA_DIR`,
 * `KV_PEERS`, `KV_BOOTSTRAP`, `KV_JOIN`, `KV_FAST`, `KV_TLS_CERT`, `KV_TLS_KEY`, `KV_TLS_CA`,
 * `KV_INSECURE_TRANSPORT`, `KV_LOG_FORMAT`) through Effect `Config`; `kv node --log-format json` logs one JSON
 * object per line. A command that fails prints one line (`kv: ...`) and exits with 1; `--verbose`, anywhere on the
 * line, prints the whole cause instead (main.ts).
 *
 * `node` runs until SIGINT or SIGTERM, then closes its HTTP server, shuts
 * its Raft node down and closes its stores; it fails (exit code 1, one line)
 * when it must not start on its data, or when its Raft shuts down on its own.
 * Its Raft transport speaks mutual
 * TLS with the three files given; it refuses to start without them unless
 * told `--insecure-transport` (see `insecureRefusal`). `cluster` runs `node` three times
 * as child processes (logs in each node's data directory), waits for a
 * leader, prints where everything is and how to try it, and stops the three
 * cleanly on Ctrl-C.
 *
 * A command loads only what it runs (`import()` in its handler): `kv --help`
 * and the client commands start without the node's storage, transport and
 * HTTP server.
 */
import * as Args from "@effect/cli/Args"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type { PlatformError } from "@effect/platform/Error"
import type * as HttpApiError from "@effect/platform/HttpApiError"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { createRequire } from "node:module"
import * as Configuration from "../Configuration.js"
import type {
  BindError,
  CantRecover,
  FsmError,
  IdentityMismatch,
  NotVoter,
  RaftConfigError,
  StorageError
} from "../RaftError.js"
import type * as Certificates from "./Certificates.js"
import type * as Http from "./Http.js"
import type * as Identity from "./Identity.js"
import type * as KvError from "./KvError.js"
import type * as KvNode from "./KvNode.js"
import type * as Launcher from "./Launcher.js"

/** A command-line value that does not parse. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

/** An option that, when not given, is read from the environment variable `name` through Effect `Config`. */
const fromEnv = <A>(config: Config.Config<A>) => <B>(option: Options.Options<B>) => Options.withFallbackConfig(option, config)

const httpAddr = Options.text("http-addr").pipe(
  Options.withDescription("HTTP address (host:port) of a node of the cluster (env KV_HTTP_ADDR)"),
  fromEnv(Config.string("KV_HTTP_ADDR")),
  Options.withDefault("127.0.0.1:8001")
)

/** The modules a command needs, loaded when it runs. */
const loadKvNode = Effect.promise(() => import("./KvNode.js"))
const loadLauncher = Effect.promise(() => import("./Launcher.js"))
const loadHttp = Effect.promise(() => import("./Http.js"))
const loadIdentity = Effect.promise(() => import("./Identity.js"))
const loadCertificates = Effect.promise(() => import("./Certificates.js"))

/** Parses "id,raft-host:port,http-host:port". */
const parsePeer = (text: string, parseAddress: typeof KvNode.parseAddress): KvNode.Peer | undefined => {
  const [id, raftAddress, httpAddress, ...rest] = text.split(",")
  return id === undefined || raftAddress === undefined || httpAddress === undefined || rest.length > 0 ||
      parseAddress(raftAddress) === undefined || parseAddress(httpAddress) === undefined
    ? undefined
    : { id, raftAddress, httpAddress }
}

/** Why `kv node` will not start without transport security, or with two kinds of it. */
export const insecureRefusal: string =
  "the Raft transport needs mutual TLS: pass --tls-cert, --tls-key and --tls-ca (`kv cluster` makes them under its " +
  "data directory), or --insecure-transport to run it in plaintext, where anyone who can reach --raft-addr can " +
  "append entries to this node's log"

const insecureWarning =
  "the Raft transport runs in plaintext (--insecure-transport): anyone who can reach its address can act as a member"

/** The TLS files of `kv node`'s options, "plaintext" when told so, or why neither. */
const transportSecurity = (args: {
  readonly tlsCert: Option.Option<string>
  readonly tlsKey: Option.Option<string>
  readonly tlsCa: Option.Option<string>
  readonly insecureTransport: boolean
}): Certificates.TlsFiles | "plaintext" | UsageError => {
  const given = [args.tlsCert, args.tlsKey, args.tlsCa].filter(Option.isSome).length
  if (args.insecureTransport) {
    return given === 0 ? "plaintext" : new UsageError({ reason: "--insecure-transport cannot go with --tls-* files" })
  }
  if (Option.isSome(args.tlsCert) && Option.isSome(args.tlsKey) && Option.isSome(args.tlsCa)) {
    return { cert: args.tlsCert.value, key: args.tlsKey.value, ca: args.tlsCa.value }
  }
  return new UsageError({
    reason: given === 0 ? insecureRefusal : "--tls-cert, --tls-key and --tls-ca go together: pass all three"
  })
}

/** How `kv node` writes its log: Effect's logfmt lines, or one JSON object per line. */
export type LogFormat = "text" | "json"

/** The durable store of `kv node` and `kv recover` (docs/storage.md compares them). */
const storeOption = Options.choice("store", ["lmdb", "wal"]).pipe(
  Options.withDescription(
    "the log and stable store in <data-dir>/raft: wal (our write-ahead log) or lmdb; by default the kind the directory holds, wal for a new one (env KV_STORE)"
  ),
  fromEnv(Config.literal("lmdb", "wal")("KV_STORE")),
  Options.optional,
  Options.map(Option.getOrUndefined)
)

const nodeCommand = Command.make("node", {
  id: Options.text("id").pipe(Options.withDescription("this server's unique id (env KV_ID)"), fromEnv(Config.string("KV_ID"))),
  raftAddr: Options.text("raft-addr").pipe(
    Options.withDescription("host:port of the Raft transport (env KV_RAFT_ADDR)"),
    fromEnv(Config.string("KV_RAFT_ADDR"))
  ),
  httpAddr: Options.text("http-addr").pipe(
    Options.withDescription("host:port of the HTTP API (env KV_HTTP_ADDR)"),
    fromEnv(Config.string("KV_HTTP_ADDR"))
  ),
  dataDir: Options.directory("data-dir").pipe(
    Options.withDescription("where the log, stable store and snapshots live (env KV_DATA_DIR)"),
    fromEnv(Config.string("KV_DATA_DIR"))
  ),
  peers: Options.text("peer").pipe(
    Options.withDescription(
      "another initial member as id,raft-addr,http-addr (repeat for each; env KV_PEERS, separated by spaces)"
    ),
    Options.repeated,
    fromEnv(Config.map(Config.string("KV_PEERS"), (text) => text.split(/\s+/).filter((peer) => peer.length > 0)))
  ),
  bootstrap: Options.boolean("bootstrap").pipe(
    Options.withDescription(
      "write the first configuration (this node and its --peer list) if the data dir was never initialised (env KV_BOOTSTRAP)"
    ),
    fromEnv(Config.boolean("KV_BOOTSTRAP"))
  ),
  clusterId: Options.text("cluster-id").pipe(
    Options.withDescription(
      "the id a bootstrap records (give every initial member the same); default: derived from them (env KV_CLUSTER_ID)"
    ),
    fromEnv(Config.string("KV_CLUSTER_ID")),
    Options.optional
  ),
  join: Options.text("join").pipe(
    Options.withDescription("HTTP address of a member to ask to add this node (env KV_JOIN)"),
    fromEnv(Config.string("KV_JOIN")),
    Options.optional
  ),
  rejoin: Options.boolean("rejoin").pipe(
    Options.withDescription(
      "this member lost its data: move its stores aside, rejoin as a non-voter, become a voter once caught up"
    )
  ),
  faults: Options.boolean("faults").pipe(Options.withDescription("enable POST /admin/faults (tests only)")),
  fast: Options.boolean("fast").pipe(
    Options.withDescription("timers ten times shorter than hashicorp's defaults (env KV_FAST)"),
    fromEnv(Config.boolean("KV_FAST"))
  ),
  tlsCert: Options.file("tls-cert").pipe(
    Options.withDescription(
      "PEM certificate of this node, naming its id as URI raft://<id> (kv cluster makes one; env KV_TLS_CERT)"
    ),
    fromEnv(Config.string("KV_TLS_CERT")),
    Options.optional
  ),
  tlsKey: Options.file("tls-key").pipe(
    Options.withDescription("PEM private key of --tls-cert (env KV_TLS_KEY)"),
    fromEnv(Config.string("KV_TLS_KEY")),
    Options.optional
  ),
  tlsCa: Options.file("tls-ca").pipe(
    Options.withDescription("PEM certificate of the CA that signs every member's certificate (env KV_TLS_CA)"),
    fromEnv(Config.string("KV_TLS_CA")),
    Options.optional
  ),
  insecureTransport: Options.boolean("insecure-transport").pipe(
    Options.withDescription(
      "run the Raft transport in plaintext: anyone who can reach --raft-addr can act as a member (env KV_INSECURE_TRANSPORT)"
    ),
    fromEnv(Config.boolean("KV_INSECURE_TRANSPORT"))
  ),
  logFormat: Options.choice("log-format", ["text", "json"]).pipe(
    Options.withDescription("text: one logfmt line per event; json: one JSON object per line (env KV_LOG_FORMAT)"),
    fromEnv(Config.literal("text", "json")("KV_LOG_FORMAT")),
    Options.withDefault("text" as const)
  ),
  store: storeOption
}, (args) =>
  Effect.gen(function*() {
    const tls = transportSecurity(args)
    if (tls instanceof UsageError) return yield* tls
    const KvNode = yield* loadKvNode
    const peers: Array<KvNode.Peer> = []
    for (const text of args.peers) {
      const peer = parsePeer(text, KvNode.parseAddress)
      if (peer === undefined) return yield* new UsageError({ reason: `--peer ${text}: expected id,raft-host:port,http-host:port` })
      peers.push(peer)
    }
    if (KvNode.parseAddress(args.raftAddr) === undefined) return yield* new UsageError({ reason: `--raft-addr ${args.raftAddr}: expected host:port` })
    if (KvNode.parseAddress(args.httpAddr) === undefined) return yield* new UsageError({ reason: `--http-addr ${args.httpAddr}: expected host:port` })
    const options: KvNode.Options = {
      id: args.id,
      raftAddress: args.raftAddr,
      httpAddress: args.httpAddr,
      peers,
      bootstrap: args.bootstrap,
      clusterId: Option.getOrUndefined(args.clusterId),
      join: Option.getOrUndefined(args.join),
      rejoin: args.rejoin,
      dataDir: args.dataDir,
      faults: args.faults,
      raft: args.fast ? KvNode.fastTimers : undefined
    }
    yield* Effect.gen(function*() {
      yield* Effect.logInfo(`node ${args.id}: raft ${args.raftAddr}, http ${args.httpAddr}, data ${args.dataDir}`)
      if (args.rejoin) {
        if (Option.isNone(args.join) && peers.length === 0) {
          return yield* new UsageError({ reason: "--rejoin needs --join (or --peer) to reach the cluster" })
        }
        const Identity = yield* loadIdentity
        const marker = yield* Identity.readMarker(args.dataDir)
        if (Option.isSome(marker) && marker.value.nodeId !== args.id) {
          return yield* new Identity.StartRefused({
            reason: `data directory ${args.dataDir} belongs to node ${marker.value.nodeId} (${Identity.MARKER_FILE}), ` +
              `not ${args.id}: nothing was moved`
          })
        }
        const moved = yield* Identity.moveStoresAside(args.dataDir)
        if (moved !== undefined) yield* Effect.logInfo(`moved the old stores to ${moved} (nothing was deleted)`)
      }
      if (tls === "plaintext") yield* Effect.logWarning(insecureWarning)
      yield* KvNode.run(options, KvNode.durable({ dataDir: args.dataDir, raftAddress: args.raftAddr, tls, store: args.store })).pipe(
        Effect.onInterrupt(() => Effect.logInfo(`node ${args.id} stopped: HTTP server closed, Raft shut down, stores closed`))
      )
    }).pipe(Effect.provide(logger(args.logFormat)))
  })).pipe(Command.withDescription("run one node of the key-value service until SIGINT/SIGTERM"))

/** The logger of `format`, in place of Effect's default one. */
export const logger = (format: LogFormat): Layer.Layer<never> => format === "json" ? Logger.json : Logger.logFmt

const clusterCommand = Command.make("cluster", {
  nodes: Options.integer("nodes").pipe(Options.withDefault(3), Options.withDescription("how many nodes")),
  dataDir: Options.text("data-dir").pipe(Options.withDefault("data"), Options.withDescription("parent of the nodes' data")),
  raftPort: Options.integer("raft-port").pipe(Options.withDefault(7001), Options.withDescription("first Raft port")),
  httpPort: Options.integer("http-port").pipe(Options.withDefault(8001), Options.withDescription("first HTTP port")),
  fast: Options.boolean("fast").pipe(Options.withDescription("timers ten times shorter than hashicorp's defaults"))
}, (args) => Effect.flatMap(loadLauncher, (Launcher) => Launcher.run(args))).pipe(
  Command.withDescription("start a cluster on loopback as child processes; Ctrl-C stops them all")
)

const certsCommand = Command.make("certs", {
  id: Options.text("id").pipe(Options.withDescription("the server id the certificate names")),
  dataDir: Options.text("data-dir").pipe(
    Options.withDefault("data"),
    Options.withDescription("the cluster's data directory (its CA is in <data-dir>/tls)")
  )
}, ({ dataDir, id }) =>
  Effect.gen(function*() {
    const dir = `${dataDir}/${id}`
    const Certificates = yield* loadCertificates
    const { files, made } = yield* Certificates.ensureCluster(dataDir, [{ id, dir }])
    const own = files.get(id)!
    yield* Console.log(made.length === 0 ? `${id} already has a certificate:` : `made ${made.join(", ")}:`)
    yield* Console.log(`  --tls-cert ${own.cert} --tls-key ${own.key} --tls-ca ${own.ca}`)
  })).pipe(Command.withDescription("make the certificate of one more node (in <data-dir>/<id>/tls) with the cluster's CA"))

/** Parses "id,raft-host:port" (an HTTP address after it, as `kv node --peer` takes, is allowed and ignored). */
const parseMember = (text: string, parseAddress: typeof KvNode.parseAddress): readonly [string, string] | undefined => {
  const [id, raftAddress, httpAddress, ...rest] = text.split(",")
  return id === undefined || id === "" || raftAddress === undefined || parseAddress(raftAddress) === undefined ||
      rest.length > 0 || (httpAddress !== undefined && parseAddress(httpAddress) === undefined)
    ? undefined
    : [id, raftAddress]
}

const recoverCommand = Command.make("recover", {
  dataDir: Options.directory("data-dir").pipe(Options.withDescription("the data directory of the stopped node")),
  peers: Options.text("peer").pipe(
    Options.withDescription("a voter of the new configuration as id,raft-addr (repeat for each; this node included)"),
    Options.repeated
  ),
  store: storeOption
}, ({ dataDir, peers, store }) =>
  Effect.gen(function*() {
    const KvNode = yield* loadKvNode
    const members: Array<readonly [string, string]> = []
    for (const text of peers) {
      const member = parseMember(text, KvNode.parseAddress)
      if (member === undefined) return yield* new UsageError({ reason: `--peer ${text}: expected id,raft-host:port` })
      members.push(member)
    }
    if (members.length === 0) return yield* new UsageError({ reason: "name the voters of the new configuration with --peer" })
    const meta = yield* KvNode.recover(dataDir, Configuration.voters(members), store)
    yield* Console.log(
      `recovered ${dataDir}: a snapshot at index ${meta.index} (term ${meta.term}) holds every write; its voters are ` +
        `${members.map(([id]) => id).join(", ")}. Start the node as before; add new servers with --join.`
    )
  })).pipe(
    Command.withDescription(
      "rewrite a stopped node's stores after the loss of a quorum: it starts as a member of the --peer voters only"
    )
  )

const client = (address: string) =>
  Effect.flatMap(loadHttp, (Http) => Http.client(address).pipe(Effect.provide(Http.layerFetch)))

const pad = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>): string =>
  cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ").trimEnd()

/** Prints rows as a table with a header. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? "").length)))
  return [pad(header, widths), ...rows.map((row) => pad(row, widths))].join("\n")
}

/**
 * The table `kv status` prints: a row per member with its own view (state, term, indexes, how long since it heard
 * from a leader) beside the leader's view of it (match index, how long since it answered, failed exchanges), so a
 * follower that is cut off or lagging shows in the leader's columns even when it cannot be asked itself.
 */
export const statusTable = (
  first: typeof Http.Status.Type,
  own: ReadonlyMap<string, typeof Http.Status.Type>
): string => {
  const leader = [first, ...own.values()].find((status) => status.state === "Leader")
  const millis = (value: number | undefined) => value === undefined ? "" : `${value} ms`
  const rows = [...first.members].sort((a, b) => a.id.localeCompare(b.id)).map((member) => {
    const status = own.get(member.id)
    const seen = leader?.peers.find((peer) => peer.id === member.id)
    const isLeader = leader !== undefined && leader.id === member.id
    return [
      member.id,
      status?.state ?? "unreachable",
      member.suffrage,
      member.raftAddress,
      member.http ?? "?",
      status === undefined ? "" : String(status.term),
      status === undefined ? "" : String(status.commitIndex),
      status === undefined ? "" : String(status.appliedIndex),
      millis(status?.lastContactMillisAgo),
      isLeader ? String(leader.lastIndex) : seen === undefined ? "" : String(seen.matchIndex),
      isLeader ? "-" : seen === undefined ? "" : seen.lastContactMillisAgo === undefined ? "never" : millis(seen.lastContactMillisAgo),
      isLeader ? "-" : seen === undefined ? "" : seen.failures === 0 ? "ok" : `failing (${seen.failures})`,
      status === undefined ? "" : String(status.keys)
    ]
  })
  return [
    `leader: ${first.leader?.id ?? "none known"}   configuration index ${first.configurationIndex}`,
    table([
      "id",
      "state",
      "suffrage",
      "raft",
      "http",
      "term",
      "commit",
      "applied",
      "heard leader",
      "match",
      "answered leader",
      "replication",
      "keys"
    ], rows)
  ].join("\n")
}

const statusCommand = Command.make("status", { httpAddr }, ({ httpAddr }) =>
  Effect.gen(function*() {
    const first = yield* Effect.flatMap(client(httpAddr), (api) => api.cluster.status())
    const own = new Map<string, typeof Http.Status.Type>()
    for (const member of first.members) {
      if (member.http === undefined) continue
      const status = yield* Effect.flatMap(client(member.http), (api) => api.cluster.status()).pipe(
        Effect.timeout("2 seconds"),
        Effect.option
      )
      if (Option.isSome(status)) own.set(member.id, status.value)
    }
    yield* Console.log(statusTable(first, own))
  })).pipe(Command.withDescription("print the cluster as a table: each member's own view and the leader's view of it"))

const putCommand = Command.make("put", {
  httpAddr,
  key: Args.text({ name: "key" }),
  value: Args.text({ name: "value" })
}, ({ httpAddr, key, value }) =>
  Effect.flatMap(client(httpAddr), (api) => api.kv.put({ path: { key }, payload: { value } })).pipe(
    Effect.flatMap(({ index }) => Console.log(`ok (index ${index})`))
  )).pipe(Command.withDescription("set a key (followers redirect to the leader)"))

const getCommand = Command.make("get", {
  httpAddr,
  key: Args.text({ name: "key" }),
  stale: Options.boolean("stale").pipe(Options.withDescription("read this node's state without asking the leader"))
}, ({ httpAddr, key, stale }) =>
  Effect.flatMap(client(httpAddr), (api) => api.kv.get({ path: { key }, urlParams: { stale } })).pipe(
    Effect.flatMap(({ value }) => Console.log(value))
  )).pipe(Command.withDescription("read a key, linearizable unless --stale"))

const deleteCommand = Command.make("delete", { httpAddr, key: Args.text({ name: "key" }) }, ({ httpAddr, key }) =>
  Effect.flatMap(client(httpAddr), (api) => api.kv.delete({ path: { key } })).pipe(
    Effect.flatMap(({ existed }) => Console.log(existed ? "deleted" : "absent"))
  )).pipe(Command.withDescription("remove a key"))

/** What a `kv` command can fail with: bad options, a node that cannot start, a client call the cluster refused. */
export type CliError =
  | ValidationError.ValidationError
  | UsageError
  | ParseError
  | RaftConfigError
  | StorageError
  | IdentityMismatch
  | NotVoter
  | CantRecover
  | FsmError
  | BindError
  | ServeError
  | KvError.KvError
  | HttpApiError.HttpApiDecodeError
  | HttpClientError.HttpClientError
  | Launcher.LaunchError
  | Identity.StartRefused
  | KvNode.NodeStopped
  | Certificates.CertificateError
  | PlatformError

/** The `kv` command and its subcommands. */
const command = Command.make("kv").pipe(
  Command.withDescription("a replicated key-value store on effect-raft"),
  Command.withSubcommands([
    nodeCommand,
    clusterCommand,
    certsCommand,
    recoverCommand,
    statusCommand,
    putCommand,
    getCommand,
    deleteCommand
  ])
)

/**
 * This package's version, read from its package.json: two directories up, from `src/kv/` as from `dist/kv/` (the
 * compiled modules, and the bundle `dist/kv/kv.mjs` with its chunks beside it).
 */
export const version: Effect.Effect<string> = Effect.try(() => createRequire(import.meta.url)("../../package.json")).pipe(
  Effect.flatMap(Schema.decodeUnknown(Schema.Struct({ version: Schema.String }))),
  Effect.map((found) => found.version),
  Effect.orDie
)

/**
 * One line saying what went wrong, for an ordinary failure of a command: the error's own message (the service's
 * errors say what happened and whether a write may have applied), or where a request could not go.
 */
export const describeFailure = (error: unknown): string => {
  if (typeof error !== "object" || error === null) return String(error)
  const tag = "_tag" in error && typeof error._tag === "string" ? error._tag : undefined
  if (tag === "RequestError" && "request" in error) {
    const request = error.request as { readonly method: string; readonly url: string }
    const cause = "cause" in error ? innermost(error.cause) : undefined
    return `cannot reach ${request.method} ${request.url}${cause === undefined ? "" : `: ${cause}`}`
  }
  const message = "message" in error && typeof error.message === "string" ? error.message : ""
  return message.length > 0 ? message.replaceAll("\n", " ") : tag ?? "failed"
}

/** The message at the bottom of a chain of causes (fetch's "fetch failed" hides "connect ECONNREFUSED ..."). */
const innermost = (cause: unknown): string | undefined => {
  let current = cause
  let message: string | undefined
  for (let depth = 0; depth < 8 && typeof current === "object" && current !== null; depth++) {
    if ("message" in current && typeof current.message === "string" && current.message.length > 0) message = current.message
    current = "cause" in current ? current.cause : undefined
  }
  return message
}

/**
 * Reports a failed command on stderr: one line (`kv: ...`), or with `verbose` the whole cause with its stack
 * traces. A usage error was already explained by the command line parser with the command's help: nothing is
 * added. Interruption (Ctrl-C) is not a failure.
 */
export const reportFailure = (verbose: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.tapErrorCause(effect, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.void
    if (verbose) return Console.error(Cause.pretty(cause))
    const failure = Cause.failureOption(cause)
    if (failure._tag === "Some") {
      return ValidationError.isValidationError(failure.value) ? Effect.void : Console.error(`kv: ${describeFailure(failure.value)}`)
    }
    const defect = Cause.dieOption(cause)
    return Console.error(
      `kv: internal error: ${defect._tag === "Some" ? describeFailure(defect.value) : "interrupted"} (--verbose shows the cause)`
    )
  })

/** Runs the command line on `argv` (as `process.argv`). */
export const run = (
  argv: ReadonlyArray<string>
): Effect.Effect<void, CliError, Scope.Scope | CommandExecutor.CommandExecutor | CliApp.CliApp.Environment> =>
  Effect.flatMap(version, (version) => Command.run(command, { name: "kv", version })(argv))
