/**
 * The shapes of a simulated run: its options, the faults of the nemesis, the workload, and what a run reports.
 * `src/testing/Simulator.ts` re-exports them; they live here so that the simulator's private modules can use them
 * without importing the public module that imports them.
 * @internal
 */
import type * as Effect from "effect/Effect"
import type * as Fsm from "../../Fsm.js"
import type { Bugs } from "../bugs.js"
import type * as RaftConfig from "../../RaftConfig.js"
import type * as Linearizability from "../../testing/Linearizability.js"
import type * as MemoryNetwork from "../../transport/MemoryNetwork.js"

/** How often and which faults the nemesis injects. */
export interface FaultOptions {
  /** Virtual time between two faults, drawn in [min, max] ms. */
  readonly intervalMillis: readonly [min: number, max: number]
  /** Relative weights of each fault; 0 disables it. */
  readonly weights: {
    readonly partition: number
    readonly isolateLeader: number
    readonly oneWay: number
    /** Cuts the link between two nodes both ways (the rest still reach both: a bridge). */
    readonly cutLink: number
    readonly crash: number
    readonly restart: number
    /** A crash followed at once by a restart on the same stores. */
    readonly reboot: number
    readonly heal: number
    readonly lossyLinks: number
    /**
     * The leader's connections close while it lives on (`MemoryNetwork.closeConnections`), and half the time it is
     * then cut off: its followers are told it may be gone, and may campaign after a lease of silence instead of a
     * heartbeat timeout. Absent: off.
     */
    readonly closeConnections?: number | undefined
    /**
     * Through the leader, removes a follower from the configuration (`removeServer`), or, when one is out, adds
     * it back (`addVoter`). Off (absent) in `defaultFaults`; after healing, every node is added back.
     */
    readonly membership?: number | undefined
    /**
     * Through the leader, a leadership transfer, to the most caught-up follower or to one named at random.
     * Off (absent) in `defaultFaults`.
     */
    readonly transfer?: number | undefined
    /**
     * A targeted schedule (the Raft paper's Figure 8): the leader is cut off with fewer than a quorum, appends
     * what its clients send for a few ms, and crashes before it can replicate; the others elect a new leader that
     * writes other entries at the same indexes; the old leader restarts later, with its stale entries. Off
     * (absent) in `defaultFaults`.
     */
    readonly appendCrash?: number | undefined
    /**
     * A targeted schedule: the leader is cut off alone while its clients keep appending, so its log grows longer
     * than the others' but stays in its old term; the others elect a leader of a newer term; then that leader is
     * cut off and the stale node is let back, to ask for votes with its longer, older log. Off (absent) in
     * `defaultFaults`.
     */
    readonly staleCandidate?: number | undefined
    /**
     * Sets one node's clock rate, drawn within `clockSkewBound` (the node skewed before, if another, runs in step
     * again): its timers and the time it reads run fast or slow against the others'. Off (absent) in
     * `defaultFaults`; every clock runs in step again after healing.
     */
    readonly clockSkew?: number | undefined
    /**
     * A targeted schedule (membership changes not waiting for each other): from a healed network and a leader L of
     * every server, L is cut off with the few followers that, once several removals are all in effect, make a
     * quorum with it (none of 3 servers, one of 5), and is asked at once to remove that many of the others (two).
     * Changes made one at a time commit nothing on L's side (the first removal alone still needs the other side);
     * the other side, a quorum of the old configuration, elects a leader; then the network heals. Off (absent) in
     * `defaultFaults`.
     */
    readonly membershipBurst?: number | undefined
    /**
     * A targeted schedule: the leader demotes followers to non-voters until the voters are the fewest that still
     * make a majority of the servers minus one (3 voters and 2 non-voters of 5), is cut off with the non-voters
     * only, appends what its clients send for a few dozen ms and crashes; the voters left out elect a leader.
     * Entries stored only by the old leader and non-voters were never committed. Off (absent) in `defaultFaults`.
     */
    readonly nonVoterQuorum?: number | undefined
    /**
     * A targeted schedule (voters removed from the configuration still counted): from a healed network and a leader
     * of every server, the leader removes followers one at a time, each committed before the next, down to a bare
     * quorum of the servers (3 of 5) or, at 3 servers, to itself alone. Then, with voters left besides the leader,
     * it adds the removed back as non-voters, is cut off with them, and the voters elect a leader; then the network
     * heals. Off (absent) in `defaultFaults`.
     */
    readonly removedVoters?: number | undefined
    /**
     * A targeted schedule (a leader that counts its own write before it is durable): from a healed network and a
     * leader, the leader is cut off with a quorum less one of the others. Once its state machine has applied a
     * command its own disk does not hold yet (up to 500 ms; without a bug, only what some server cut off
     * already acknowledged), it crashes, losing its write under way, those that acknowledged are cut off, and it
     * restarts 0–20 ms later among the others, a quorum; once they elect a leader (or after 600 ms), the network
     * heals. Without a bug, what it applied is on a quorum of disks, so one of them holds it. Off (absent) in
     * `defaultFaults`; odd sizes only.
     */
    readonly crashUnwritten?: number | undefined
    /**
     * A targeted schedule: heals the network, cuts a voter off for 20–60 ms while the clients write, then has the
     * leader transfer leadership to it at once, while it lags. When the transfer reports success, the first leader
     * of a newer term must be that target (the leader catches it up before it hands over). Off (absent) in
     * `defaultFaults`.
     */
    readonly transferToLagging?: number | undefined
    /**
     * A targeted schedule (with `lateCopyRate` above 0): everything the leader sends for 30 ms is delivered again
     * 150–400 ms later; the leader is cut off until the others elect a leader of a newer term, then let back, so
     * that its old requests reach nodes of the newer term. Off (absent) in `defaultFaults`.
     */
    readonly staleLeader?: number | undefined
    /**
     * A targeted schedule (a vote given twice in one term): heals, waits for a leader, then cuts every node off
     * alone, so that each campaigns, term after term, without winning. Once a node V is a candidate in its term T
     * (it voted for itself in T) and another, C, asked for votes in T and in an older term with a log at least as
     * up to date as V's, V reboots on its stores, and once its restart window (a heartbeat timeout) has passed,
     * C's request of the older term and then the one of T reach V again (a network may duplicate and delay
     * requests; after 500 ms without an older one, the one of T alone). V must refuse both: one is of an older
     * term, the other asks for a second vote in T. The votes V grants are checked (`one vote per term`). Off
     * (absent) in `defaultFaults`; needs every node a voter, and PreVote off (with it, nodes alone never campaign).
     */
    readonly doubleVote?: number | undefined
  }
  /**
   * How far `clockSkew` may skew a clock: its rate is drawn in [1 − bound, 1 ÷ (1 − bound)], so that a heartbeat
   * timeout lasts at most `bound` × itself less on one clock than on another. By default what lease reads assume,
   * `maxClockDrift` ÷ `heartbeatTimeout`; beyond it (at most 0.95), a test of the checker.
   */
  readonly clockSkewBound?: number | undefined
  /**
   * How many servers the `membership` fault may hold out of the configuration at once (1 by default: it adds the
   * one out back before removing another); above 1 it removes or adds back at random, so that several non-voters
   * and removed voters coexist.
   */
  readonly membershipOut?: number | undefined
  /** The link conditions `lossyLinks` switches on (off again on heal). */
  readonly lossy: MemoryNetwork.LinkConditions
  /** Probability that a node reboots right after granting a vote (a targeted crash); 0 by default. */
  readonly rebootAfterVote?: number | undefined
  /**
   * Probability that a leader crashes while a write of its own log is under way, before the disk's latency has
   * passed, and restarts 20–200 ms later (a targeted crash: what it counted as stored may be lost); 0 by default.
   */
  readonly crashLeaderMidWrite?: number | undefined
  /**
   * Probability that an AppendEntries or InstallSnapshot a node sends is delivered once more, `lateCopyDelayMillis`
   * later (its answer lost): an old leader's request may then reach a node of a newer term, an old snapshot a
   * follower that applied past it. 0 by default.
   */
  readonly lateCopyRate?: number | undefined
  /** How late a late copy arrives, drawn in [min, max] ms; [50, 300] by default. */
  readonly lateCopyDelayMillis?: readonly [min: number, max: number] | undefined
  /** Conditions of every link from the start (delays and reordering); none by default. */
  readonly baseline?: MemoryNetwork.LinkConditions | undefined
}

/** One simulated run. */
export interface Options<State = Linearizability.KvState, Input = Linearizability.KvInput, Output = Linearizability.KvOutput> {
  readonly seed: number
  /** Nodes in the cluster, 1..7. */
  readonly nodes: number
  /** Virtual duration of the faulty phase, ms. */
  readonly durationMillis: number
  /** Concurrent clients of the workload. */
  readonly clients?: number | undefined
  /**
   * How long a client waits for an operation (the `timeout` of `apply` and `readIndex`) before it records an
   * unknown outcome and tries another node: 500 ms by default.
   */
  readonly clientTimeoutMillis?: number | undefined
  /** Keys the default key-value workload touches. */
  readonly keys?: number | undefined
  /** The clients' commands, state machine and model; the key-value workload by default. */
  readonly workload?: Workload<State, Input, Output> | undefined
  /** After healing and a first commit, virtual time during which every client operation must complete. */
  readonly calmMillis?: number | undefined
  readonly faults?: FaultOptions | undefined
  /** Raft tunables; the anchor's fast timers (÷10 of hashicorp's) by default. */
  readonly config?: Omit<RaftConfig.Input, "localId"> | undefined
  /** After healing, virtual time within which a leader must commit a write. */
  readonly livenessBoundMillis?: number | undefined
  /** Full log-matching scans every this many events (cheap checks run after every event). */
  readonly fullCheckEvery?: number | undefined
  /**
   * Virtual time a disk write takes, drawn in [min, max] ms per `storeLogs` and per term or vote write ([0, 2] by
   * default; [0, 0] for none).
   * A node that crashes while a write is under way loses it: the write fails and nothing reaches the store, as
   * an unsynced write is lost to a power cut. So a leader's write overlapping its followers' is exercised, and an
   * acknowledgement of a write that never became durable shows up as a lost entry.
   */
  readonly diskLatencyMillis?: readonly [min: number, max: number] | undefined
  /**
   * Whether the state machine's apply is synchronous (when the workload's is: `kvWorkload`'s), so that committed
   * entries are applied by whoever committed them while the FSM runner waits (fsm.ts `handToFsm`). Off by default:
   * each batch goes through the runner.
   */
  readonly syncFsm?: boolean | undefined
  /**
   * Opt-in: what a deployment varies, drawn per seed (see `Randomize`); overrides `nodes`, and is overridden by
   * what `config` and `diskLatencyMillis` set. Nothing is drawn by default.
   */
  readonly randomize?: Randomize | undefined
  /**
   * How the workload's reads run (those its `query` answers): `"log"` (the default), as commands through the log
   * like any write; `"readIndex"`, through `raft.readIndex` on a node drawn among the running ones, leader or
   * follower, in a mode drawn per read (`"readIndex"` or `"lease"`), then from that node's state machine once it
   * has applied the read index. Either way the history holds them and the checker judges them.
   */
  readonly reads?: "log" | "readIndex" | undefined
  /** With `reads: "readIndex"`: clients that only read, besides `clients` (0 by default). */
  readonly readers?: number | undefined
  /** Test-only: rules to break, to show the checks catch them. */
  readonly bugs?: Bugs | undefined
  /** Safety stop: most timer events in one run. */
  readonly maxEvents?: number | undefined
}

/** A broken property. */
export interface Violation {
  readonly property:
    | "election safety"
    /** A server granted votes to two candidates in one term (Raft Figure 2: votedFor, one vote per term). */
    | "one vote per term"
    | "log matching"
    | "leader completeness"
    | "state-machine safety"
    | "monotonic commit"
    | "monotonic apply"
    /** A leadership transfer reported done, but a server other than its target took over (Raft thesis §3.10). */
    | "leadership transfer"
    /** A node replaced or deleted an entry it had committed, or compacted what no snapshot of it holds. */
    | "durability"
    | "liveness"
    | "linearizability"
    | "deadlock"
    | "crash"
  readonly atMillis: number
  readonly detail: string
}

/** What a run did and found. */
export interface Result {
  readonly seed: number
  readonly ok: boolean
  readonly violation: Violation | undefined
  /** The last lines of the run's trace (faults, leader changes, the violation). */
  readonly trace: ReadonlyArray<string>
  readonly events: number
  readonly virtualMillis: number
  readonly faults: Readonly<Record<string, number>>
  readonly operations: { readonly ok: number; readonly unknown: number; readonly refused: number }
  /**
   * With `reads: "readIndex"`: the reads served, by the node's role when it was asked and by mode, and those that
   * failed (no effect: not in the history).
   */
  readonly reads?: ReadCounts | undefined
  readonly leadersElected: number
  /** Snapshots the state machines took, restored when their node started, and installed from a leader while running. */
  readonly snapshots: { readonly taken: number; readonly restoredAtStart: number; readonly installed: number }
  readonly linearizability: "Linearizable" | "NotLinearizable" | "Unknown" | "skipped"
  /** What the run drew, when `randomize` drew anything. */
  readonly deployment?: Deployment | undefined
}

/** What the reads of a run with `reads: "readIndex"` did. */
export interface ReadCounts {
  readonly leader: number
  readonly follower: number
  readonly lease: number
  readonly readIndex: number
  readonly failed: number
}

/** The dimensions of a deployment a run draws from its seed; each is off unless set. */
export interface Randomize {
  /** 3, 4, 5 or 7 nodes. */
  readonly nodes?: boolean | undefined
  /** PreVote on or off. */
  readonly preVote?: boolean | undefined
  /**
   * Heartbeat (50–200 ms), election (1–2 heartbeats), lease (¼–1 heartbeat, but long enough for two disk writes
   * and 10 ms) and commit (1–20 ms) timeouts.
   */
  readonly timers?: boolean | undefined
  /** 1, 2, 4, 8 or 64 entries per AppendEntries. */
  readonly maxAppendEntries?: boolean | undefined
  /** Half the seeds snapshot every 4–64 entries (checked every 5–50 ms) and keep 0–16 entries behind. */
  readonly snapshots?: boolean | undefined
  /** Disk writes of 0, 0–2, 0–10 or 2–20 ms. */
  readonly diskLatency?: boolean | undefined
  /** Half the seeds apply committed entries without the FSM runner when it waits (`Options.syncFsm`). */
  readonly syncFsm?: boolean | undefined
}

/** A run's cluster, as drawn or set. */
export interface Deployment {
  readonly nodes: number
  readonly config: Omit<RaftConfig.Input, "localId">
  readonly diskLatencyMillis: readonly [min: number, max: number]
  readonly syncFsm: boolean
}

/**
 * What the clients of a run do and how their history is judged: bring your
 * own state machine and a sequential model of it, and the simulator runs it
 * under the same faults and checks (safety of the log, then linearizability
 * of the history against `model`).
 */
export interface Workload<State, Input, Output> {
  /**
   * A fresh state machine, for every start and restart of a node. If it takes snapshots, equal states must give
   * equal bytes: the simulator compares the states of nodes that applied the same commands (through snapshots).
   */
  readonly fsm: () => Fsm.Fsm
  /** The sequential specification the history must be linearizable against. */
  readonly model: Linearizability.Model<State, Input, Output>
  /** A client's next command, drawn with `Random`; `history` holds what was recorded so far. */
  readonly next: (context: {
    readonly client: number
    readonly step: number
    readonly history: ReadonlyArray<Linearizability.Operation<Input, Output>>
  }) => Effect.Effect<Input>
  /** The bytes `apply` carries for a command. */
  readonly encode: (input: Input) => Uint8Array
  /** The model's output for what the FSM answered. */
  readonly output: (response: unknown) => Output
  /**
   * For a read-only input, how to answer it from a state machine (one `fsm` made) without the log; undefined for
   * the others. Used with `reads: "readIndex"`; without it every input goes through the log.
   */
  readonly query?: ((input: Input) => ((fsm: Fsm.Fsm) => Output) | undefined) | undefined
}
