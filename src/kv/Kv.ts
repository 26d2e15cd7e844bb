/**
 * The key-value service of one node, over its `Raft` and its `KvState`:
 * writes go through `Raft.apply`, reads are served from the local state
 * machine on any node, linearizable by default (`Raft.readIndex`: a follower
 * asks its leader for the read index and waits until it has applied it) or
 * stale on request. Raft's errors become the service's typed errors, which say
 * whether a write may have happened (`KvError.ts`). It also keeps the member
 * directory (raft id → HTTP address) current: a leader registers its own HTTP
 * address through the log, and a join registers the joiner's, so every node
 * can send a client to the leader. The HTTP API (`Http.ts`) is a thin layer
 * over this service.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constVoid } from "effect/Function"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Configuration from "../Configuration.js"
import { directReadOf } from "../internal/directRead.js"
import * as Raft from "../Raft.js"
import type * as RaftConfig from "../RaftConfig.js"
import * as RaftError from "../RaftError.js"
import * as KvError from "./KvError.js"
import * as KvFsm from "./KvFsm.js"
import * as PutBatch from "./PutBatch.js"

/** How a node's key-value service is set up. */
export interface Options {
  /** This node's HTTP address ("host:port"), registered in the member directory when it leads. */
  readonly httpAddress: string
  /** HTTP addresses known from the command line (raft id → "host:port"), used when the directory has none. */
  readonly peers?: ReadonlyMap<string, string> | undefined
  /** How long a write waits for its outcome. Default 5 s. */
  readonly writeTimeout?: Duration.DurationInput | undefined
  /** How long a linearizable read may take. Default 5 s. */
  readonly readTimeout?: Duration.DurationInput | undefined
  /** How linearizable reads are confirmed (`Raft.ReadOptions.mode`). Default: the node's `readMode`. */
  readonly readMode?: RaftConfig.ReadMode | undefined
  /** The cluster's id, when known: shown in `GET /status` and handed to the nodes this one adds. */
  readonly clusterId?: string | undefined
}

/** One server of the configuration, with its HTTP address when known. */
export interface Member {
  readonly id: string
  readonly raftAddress: string
  readonly suffrage: Configuration.Suffrage
  readonly http: string | undefined
}

/** How the leader replicates to one other member, as `GET /status` on the leader shows it. */
export interface PeerStatus {
  readonly id: string
  readonly suffrage: Configuration.Suffrage
  readonly http: string | undefined
  /** The highest index the member is known to hold. */
  readonly matchIndex: number
  /** The index the leader sends it next. */
  readonly nextIndex: number
  /** Milliseconds since it last answered the leader; undefined if it has not during this leader's term. */
  readonly lastContactMillisAgo: number | undefined
  /** Failed exchanges since its last answer: above 0, replication to it is failing and backing off. */
  readonly failures: number
}

/** What `GET /status` answers. */
export interface Status {
  readonly id: string
  readonly clusterId: string | undefined
  readonly http: string
  readonly state: Raft.RaftState
  readonly term: number
  readonly leader: { readonly id: string; readonly http: string | undefined } | undefined
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  /** Milliseconds since this node last heard from a leader (0 on the leader itself); undefined if never. */
  readonly lastContactMillisAgo: number | undefined
  readonly configurationIndex: number
  readonly members: ReadonlyArray<Member>
  /** On the leader, its replication to each other member (last contact per peer); empty on any other node. */
  readonly peers: ReadonlyArray<PeerStatus>
  /** Number of keys in this node's state machine. */
  readonly keys: number
  /** The latest leader changes this node saw (at most `leaderChangesKept`), newest first. */
  readonly leaderChanges: ReadonlyArray<LeaderChange>
}

/** A change of leader a node saw: when (`Clock` ms), in which term, and who leads now (undefined: nobody known). */
export interface LeaderChange {
  readonly atMillis: number
  readonly term: number
  readonly leader: string | undefined
}

/** How many leader changes `Status` keeps. */
export const leaderChangesKept: number = 16

/** Errors of a read. */
export type ReadError = KvError.NotLeader | KvError.NoLeader | KvError.Unavailable
/** Errors of a write: `OutcomeUnknown` is the only one after which the write may still apply. */
export type WriteError =
  | KvError.NotLeader
  | KvError.NoLeader
  | KvError.Unavailable
  | KvError.OutcomeUnknown
  | KvError.PayloadTooLarge
/** Errors of a membership change or a leadership transfer. */
export type ClusterError = WriteError | KvError.ClusterChangeFailed

/** The key-value service of a node. */
export interface Kv {
  /** The value of `key`; linearizable unless `stale` (then this node's state as it is). */
  readonly get: (
    key: string,
    options?: { readonly stale?: boolean | undefined }
  ) => Effect.Effect<{ readonly value: string; readonly index: number }, ReadError | KeyNotFound>
  /** Keys starting with `prefix` in key order, at most `limit` (default 1000); linearizable unless `stale`. */
  readonly list: (options?: {
    readonly prefix?: string | undefined
    readonly limit?: number | undefined
    readonly stale?: boolean | undefined
  }) => Effect.Effect<
    { readonly entries: ReadonlyArray<{ readonly key: string; readonly value: string }>; readonly index: number },
    ReadError
  >
  /** Sets `key`; succeeds with the log index of the write once it is committed and applied. */
  readonly put: (key: string, value: string) => Effect.Effect<{ readonly index: number }, WriteError>
  /** Removes `key`; says whether it existed. */
  readonly delete: (key: string) => Effect.Effect<{ readonly index: number; readonly existed: boolean }, WriteError>
  /** Sets `key` to `value` if it holds `expected` (undefined: if it is absent). */
  readonly cas: (
    key: string,
    expected: string | undefined,
    value: string
  ) => Effect.Effect<{ readonly index: number }, WriteError | KvError.CasFailed>
  /**
   * Adds a server (as a voter unless `voter` is false) and registers its HTTP address; answers the change's index
   * and the cluster's id. With `rejoin`, the server lost its data: it is removed (if it is a member) and added back
   * as a non-voter, so that nothing it acknowledged before counts any more; it asks again, as a voter, once caught up.
   */
  readonly join: (server: {
    readonly id: string
    readonly raftAddress: string
    readonly httpAddress: string
    readonly voter?: boolean | undefined
    readonly rejoin?: boolean | undefined
  }) => Effect.Effect<{ readonly index: number; readonly clusterId?: string | undefined }, ClusterError>
  /** Removes a server and its HTTP address. */
  readonly remove: (id: string) => Effect.Effect<{ readonly index: number }, ClusterError>
  /** Hands leadership to `id`, or to the most up-to-date voter; answers who leads afterwards. */
  readonly transferLeadership: (
    id: string | undefined
  ) => Effect.Effect<{ readonly leader: string | undefined }, ClusterError>
  /** This node's view of the cluster. */
  readonly status: Effect.Effect<Status>
  /** The HTTP address of the server `id`, from the directory or the command line. */
  readonly httpOf: (id: string) => string | undefined
  /**
   * `get` and `put` without their timeouts, for a caller that keeps the deadlines itself (`HttpFront.ts`, with
   * `internal/deadlineLanes.ts`: `Effect.timeout` forks two fibers and arms a timer per call): it interrupts a call at its deadline
   * (a write not yet sent to Raft is then dropped, as on a timeout) and answers what the timed call fails
   * with then. PUTs that arrive while another is being committed share a log entry (`PutBatch.ts`).
   */
  readonly untimed: {
    readonly get: Kv["get"]
    readonly put: Kv["put"]
    readonly readTimeoutMillis: number
    readonly writeTimeoutMillis: number
    /**
     * `get` without a fiber, where this node can serve it so (a stale read; a linearizable one on the leader, or on a
     * follower whose ReadIndex request to the leader is in flight, which the read joins): `callback` gets what `get`
     * would answer, and the function returned drops the wait (the caller's deadline passed). Returns undefined, having
     * done nothing, otherwise (the first read of a follower's burst, a node shut down, a `Raft` not built by
     * `Raft.make`): the caller takes `get`.
     */
    readonly getNow: (
      key: string,
      options: { readonly stale?: boolean | undefined } | undefined,
      callback: (exit: Exit.Exit<{ readonly value: string; readonly index: number }, ReadError | KeyNotFound>) => void
    ) => (() => void) | undefined
    /** What `get` fails with when its read index does not come within `readTimeoutMillis`. */
    readonly readTimedOut: () => ReadError
    /** What `put` fails with when its outcome does not come within `writeTimeoutMillis`. */
    readonly writeTimedOut: () => WriteError
  }
}

type KeyNotFound = KvError.KeyNotFound

/** The front's writes in Raft at once; more PUTs wait and go out together (`PutBatch.ts`). */
const putsInFlight = 1

/** The tag of a node's key-value service. */
export class KvService extends Context.Tag("effect-raft/kv/Kv")<KvService, Kv>() {}

/** Builds the service over the node's `Raft` and `KvState`; its directory-keeping fiber ends with the scope. */
export const make = (
  options: Options
): Effect.Effect<Kv, never, Raft.Raft | KvFsm.KvState | Scope.Scope> =>
  Effect.gen(function*() {
    const raft = yield* Raft.Raft
    const kv = yield* KvFsm.KvState
    const writeTimeoutMillis = Duration.toMillis(Duration.decode(options.writeTimeout ?? "5 seconds"))
    const readTimeoutMillis = Duration.toMillis(Duration.decode(options.readTimeout ?? "5 seconds"))
    const writeTimeout = Duration.millis(writeTimeoutMillis)
    const readOptions: Raft.ReadOptions = { timeout: readTimeoutMillis, mode: options.readMode }
    const untimedReadOptions: Raft.ReadOptions = { mode: options.readMode }

    const httpOf = (id: string): string | undefined =>
      Option.getOrUndefined(HashMap.get(kv.current().members, id)) ?? options.peers?.get(id) ??
        (id === raft.id ? options.httpAddress : undefined)

    const redirect = (error: RaftError.NotLeader): KvError.NotLeader | KvError.NoLeader | KvError.Unavailable => {
      if (error.leaderId === undefined) return new KvError.NoLeader()
      // A node that believes itself leader but is not (it shut down, or is stepping down) never sends a client to itself.
      if (error.leaderId === raft.id) return new KvError.Unavailable({ reason: "leadership is changing on this node" })
      const leaderHttp = httpOf(error.leaderId)
      if (leaderHttp === options.httpAddress) {
        return new KvError.Unavailable({ reason: "leadership is changing on this node" })
      }
      return leaderHttp === undefined
        ? new KvError.NotLeader({ leaderId: error.leaderId })
        : new KvError.NotLeader({ leaderId: error.leaderId, leaderHttp })
    }

    /** Raft's failure of an apply, as the client must understand it. */
    const writeError = (error: Raft.ApplyError | RaftError.ApplyTimeout): WriteError => {
      switch (error._tag) {
        case "NotLeader":
          return redirect(error)
        case "LeadershipTransferInProgress":
          return new KvError.Unavailable({ reason: error.message })
        case "EntryTooLarge":
          return new KvError.PayloadTooLarge({ what: "command", size: error.size, limit: error.limit })
        case "LeadershipLost":
        case "ApplyTimeout":
        case "RaftShutdown":
        case "StorageError":
          return new KvError.OutcomeUnknown({ reason: error.message })
      }
    }

    const readError = (error: Raft.ReadError): ReadError =>
      error._tag === "NotLeader" ? redirect(error) : new KvError.Unavailable({ reason: error.message })

    /** A node whose Raft shut down (a fatal error) serves nothing: its state is no longer kept current. */
    const running = Effect.flatMap(
      raft.state,
      (state) => state === "Shutdown" ? Effect.fail(new KvError.Unavailable({ reason: "this node is shut down" })) : Effect.void
    )

    /** Makes sure a linearizable read may be served here; a stale one may unless the node is shut down. */
    const fence = (stale: boolean | undefined, read: Raft.ReadOptions): Effect.Effect<number, ReadError> =>
      Effect.zipRight(
        running,
        stale === true
          ? Effect.sync(() => kv.current().index)
          : Effect.mapError(raft.readIndex(read), readError)
      )

    const client = Raft.makeClient(raft, KvFsm.machine)
    const apply = (command: KvFsm.Command, timed = true) =>
      Effect.zipRight(running, client.apply(command, timed ? { timeout: writeTimeout } : undefined)).pipe(
        // The commands are plain strings and tags: they always encode.
        Effect.catchTag("ParseError", Effect.die),
        Effect.mapError((error) =>
          error._tag === "Unavailable"
            ? error
            : error._tag === "CommandRejected"
            ? new KvError.OutcomeUnknown({ reason: error.message })
            : writeError(error)
        )
      )

    const rejected = (response: KvFsm.Response) =>
      new KvError.OutcomeUnknown({ reason: `unexpected answer of the state machine: ${response._tag}` })

    // The front's PUTs share log entries when they arrive together (`PutBatch.ts`).
    const runCallback = Runtime.runCallback(yield* Effect.runtime<never>())
    const putTogether = PutBatch.make<WriteError>({
      apply: (command) => apply(command),
      rejected,
      run: (effect, onExit) => void runCallback(effect, { onExit }),
      maxEntryBytes: (yield* raft.currentConfig).maxEntryBytes,
      maxInFlight: putsInFlight
    })

    const clusterError = (error: Raft.MembershipError | Raft.TransferError): ClusterError => {
      switch (error._tag) {
        case "NotLeader":
          return redirect(error)
        case "LeadershipLost":
        case "ApplyTimeout":
        case "RaftShutdown":
        case "StorageError":
          return new KvError.OutcomeUnknown({ reason: error.message })
        case "LeadershipTransferInProgress":
          return new KvError.Unavailable({ reason: error.message })
        case "ConfigurationChanged":
        case "InvalidOperation":
        case "LeadershipTransferFailed":
          return new KvError.ClusterChangeFailed({ reason: error.message })
      }
    }

    // The leader changes this node sees, newest first, for the status page.
    let leaderChanges: ReadonlyArray<LeaderChange> = []
    yield* raft.observe.pipe(
      Stream.runForEach((observation) =>
        observation._tag !== "LeaderChange" ? Effect.void : Effect.clockWith((clock) =>
          Effect.sync(() => {
            const change = { atMillis: clock.unsafeCurrentTimeMillis(), term: observation.term, leader: observation.leaderId }
            leaderChanges = [change, ...leaderChanges.slice(0, leaderChangesKept - 1)]
          })
        )
      ),
      Effect.interruptible,
      Effect.forkScoped
    )

    // A leader whose HTTP address is missing from the directory (or outdated) registers it through the log.
    yield* Effect.gen(function*() {
      if ((yield* raft.state) !== "Leader") return
      if (Option.getOrUndefined(HashMap.get(kv.current().members, raft.id)) === options.httpAddress) return
      yield* Effect.ignore(apply({ _tag: "Register", id: raft.id, http: options.httpAddress }))
    }).pipe(Effect.repeat(Schedule.spaced("250 millis")), Effect.interruptible, Effect.forkScoped)

    /** The value of `key` in this node's state, as a read at `index` answers it. */
    const lookup = (key: string, index: number): Exit.Exit<{ value: string; index: number }, KeyNotFound> => {
      const value = Option.getOrUndefined(HashMap.get(kv.current().entries, key))
      return value === undefined ? Exit.fail(new KvError.KeyNotFound({ key })) : Exit.succeed({ value, index })
    }
    const get = (read: Raft.ReadOptions): Kv["get"] => (key, opts) =>
      Effect.flatMap(fence(opts?.stale, read), (index) => lookup(key, index))

    const direct = directReadOf(raft)
    const getNow: Kv["untimed"]["getNow"] = (key, opts, callback) => {
      if (direct === undefined || direct.isShutdown()) return undefined
      if (opts?.stale === true) {
        callback(lookup(key, kv.current().index))
        return constVoid
      }
      return direct.read(options.readMode, (exit) =>
        callback(Exit.isSuccess(exit) ? lookup(key, exit.value) : Exit.failCause(Cause.map(exit.cause, readError))))
    }
    const put = (timed: boolean): Kv["put"] => (key, value) =>
      Effect.flatMap(apply({ _tag: "Put", key, value }, timed), ({ index, response }) =>
        response._tag === "Written" ? Effect.succeed({ index }) : Effect.fail(rejected(response)))

    const service: Kv = {
      get: get(readOptions),
      list: (opts) =>
        Effect.map(fence(opts?.stale, readOptions), (index) => {
          const prefix = opts?.prefix ?? ""
          const limit = Math.max(0, opts?.limit ?? 1000)
          const entries: Array<{ readonly key: string; readonly value: string }> = []
          for (const [key, value] of kv.current().entries) if (key.startsWith(prefix)) entries.push({ key, value })
          entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
          return { index, entries: entries.slice(0, limit) }
        }),
      put: put(true),
      delete: (key) =>
        Effect.flatMap(apply({ _tag: "Delete", key }), ({ index, response }) =>
          response._tag === "Deleted"
            ? Effect.succeed({ index, existed: response.existed })
            : Effect.fail(rejected(response))),
      cas: (key, expected, value) =>
        Effect.flatMap(
          apply(expected === undefined ? { _tag: "Cas", key, value } : { _tag: "Cas", key, expected, value }),
          ({ index, response }): Effect.Effect<{ readonly index: number }, KvError.CasFailed | KvError.OutcomeUnknown> => {
            switch (response._tag) {
              case "Swapped":
                return Effect.succeed({ index })
              case "CasFailed":
                return Effect.fail(
                  response.current === undefined
                    ? new KvError.CasFailed({ key })
                    : new KvError.CasFailed({ key, current: response.current })
                )
              default:
                return Effect.fail(rejected(response))
            }
          }
        ),
      join: (server) =>
        Effect.gen(function*() {
          yield* apply({ _tag: "Register", id: server.id, http: server.httpAddress })
          if (server.rejoin === true) {
            const { configuration } = yield* raft.getConfiguration
            if (Configuration.find(configuration, server.id) !== undefined) {
              yield* Effect.mapError(raft.removeServer(server.id, { timeout: writeTimeout }), clusterError)
            }
          }
          const index = yield* (server.voter === false || server.rejoin === true
            ? raft.addNonvoter(server.id, server.raftAddress, { timeout: writeTimeout })
            : raft.addVoter(server.id, server.raftAddress, { timeout: writeTimeout })).pipe(
              Effect.mapError(clusterError)
            )
          return { index, clusterId: options.clusterId }
        }),
      remove: (id) =>
        Effect.gen(function*() {
          yield* running
          const index = yield* Effect.mapError(raft.removeServer(id, { timeout: writeTimeout }), clusterError)
          // A leader that removed itself is no longer leader: the directory entry then stays, harmlessly.
          yield* Effect.ignore(apply({ _tag: "Unregister", id }))
          return { index }
        }),
      transferLeadership: (id) =>
        Effect.gen(function*() {
          yield* running
          if (id === undefined) {
            yield* Effect.mapError(raft.leadershipTransfer, clusterError)
          } else {
            const { configuration } = yield* raft.getConfiguration
            const server = Configuration.find(configuration, id)
            if (server === undefined) {
              return yield* new KvError.ClusterChangeFailed({ reason: `${id} is not a member` })
            }
            yield* Effect.mapError(raft.leadershipTransferToServer(id, server.address), clusterError)
          }
          // This node learns who leads from the new leader's first heartbeat; wait a little for it.
          const leader = yield* raft.leader.pipe(
            Effect.repeat({
              schedule: Schedule.spaced("10 millis"),
              until: (known) => Option.isSome(known) && known.value.id !== raft.id
            }),
            Effect.zipRight(raft.leader),
            Effect.timeout("2 seconds"),
            Effect.orElseSucceed(() => Option.none<{ readonly id: string }>())
          )
          return { leader: Option.getOrUndefined(Option.map(leader, (l) => l.id)) }
        }),
      status: Effect.gen(function*() {
        const stats = yield* raft.stats
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        const leaderId = stats.state === "Leader" ? raft.id : stats.leaderId
        return {
          id: raft.id,
          clusterId: options.clusterId,
          http: options.httpAddress,
          state: stats.state,
          term: stats.term,
          leader: leaderId === undefined ? undefined : { id: leaderId, http: httpOf(leaderId) },
          commitIndex: stats.commitIndex,
          appliedIndex: stats.appliedIndex,
          lastIndex: stats.lastLogIndex,
          lastContactMillisAgo: stats.state === "Leader"
            ? 0
            : stats.lastContactMillis === undefined
            ? undefined
            : Math.max(0, now - stats.lastContactMillis),
          configurationIndex: stats.latestConfigurationIndex,
          members: stats.latestConfiguration.servers.map((server) => ({
            id: server.id,
            raftAddress: server.address,
            suffrage: server.suffrage,
            http: httpOf(server.id)
          })),
          peers: stats.replication.map((peer) => ({
            id: peer.id,
            suffrage: peer.suffrage,
            http: httpOf(peer.id),
            matchIndex: peer.matchIndex,
            nextIndex: peer.nextIndex,
            lastContactMillisAgo: peer.lastContactMillis === undefined
              ? undefined
              : Math.max(0, now - peer.lastContactMillis),
            failures: peer.failures
          })),
          keys: HashMap.size(kv.current().entries),
          leaderChanges
        }
      }),
      httpOf,
      untimed: {
        get: get(untimedReadOptions),
        getNow,
        put: putTogether,
        readTimeoutMillis,
        writeTimeoutMillis,
        readTimedOut: () => readError(new RaftError.ReadTimeout({ timeoutMillis: readTimeoutMillis })),
        writeTimedOut: () => writeError(new RaftError.ApplyTimeout({ timeoutMillis: writeTimeoutMillis }))
      }
    }
    return service
  })

/** The key-value service of the node in context (its `Raft` and `KvState`). */
export const layer = (options: Options): Layer.Layer<KvService, never, Raft.Raft | KvFsm.KvState> =>
  Layer.scoped(KvService, make(options))
