/**
 * `reloadConfig` (hashicorp's ReloadConfig): new values for the settings a
 * running node may change — timers, snapshot settings, how reads are
 * confirmed — validated as a whole and put in force at once. The node's
 * configuration is one record, `NodeState.config`, replaced here by the run
 * loop; every timer that sleeps on a reloadable setting ends its sleep when
 * `configChanged` completes (`sleepOrReload`, or `reloadable` for the frequent
 * ones, which starts their loop over), and then reads the new value: a
 * follower's heartbeat timer checks at once whether the
 * new timeout has passed (and campaigns if so), a leader sends its heartbeats
 * and restarts their ticker, the snapshot loop checks its threshold.
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as RaftConfig from "../RaftConfig.js"
import type { RaftConfigError, RaftShutdown } from "../RaftError.js"
import { Future } from "./future.js"
import type { NodeState } from "./state.js"

/** The `Reload` event: validates `changes` over the configuration in force and, if valid, puts them in force. Run loop. */
export const handleReload = (
  node: NodeState,
  changes: RaftConfig.Reloadable,
  deferred: Future<void, RaftConfigError | RaftShutdown>
) =>
  Effect.map(Effect.either(RaftConfig.reload(node.config, changes)), (result) => {
    if (result._tag === "Left") {
      deferred.done(Exit.fail(result.left))
      return
    }
    const changed = node.configChanged
    node.config = result.right
    node.configChanged = new Future()
    changed.done(Exit.void)
    deferred.done(Exit.void)
  })
