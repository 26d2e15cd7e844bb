/**
 * The errors a client of the key-value service can receive. They are
 * `Schema.TaggedError`s because they cross HTTP: the body of an error answer
 * is the error encoded as JSON (`{"_tag": "NotLeader", ...}`), and the
 * `HttpApi` declares each with its status. For a write, the tag tells the
 * client what it may assume: `NotLeader`, `NoLeader` and `Unavailable` mean
 * nothing was done; `OutcomeUnknown` means the write may or may not take
 * effect (retrying a put is safe, retrying a compare-and-set is not).
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as Schema from "effect/Schema"

/** This node is not the leader; `leaderHttp` is the leader's HTTP address when known (then the answer is a 307 redirect to it, else a 421). */
export class NotLeader extends Schema.TaggedError<NotLeader>()("NotLeader", {
  leaderId: Schema.optional(Schema.String),
  leaderHttp: Schema.optional(Schema.String)
}, HttpApiSchema.annotations({ status: 421 })) {
  override get message(): string {
    return this.leaderHttp === undefined
      ? `not the leader (leader ${this.leaderId ?? "unknown"}, its HTTP address unknown)`
      : `not the leader; the leader ${this.leaderId ?? ""} is at ${this.leaderHttp}`
  }
}

/** No leader is known right now (an election is under way, or this node is cut off); nothing was done. */
export class NoLeader extends Schema.TaggedError<NoLeader>()("NoLeader", {}, HttpApiSchema.annotations({ status: 503 })) {
  override get message(): string {
    return "no leader known; retry shortly"
  }
}

/** The request could not be served now and nothing was done (`reason` says why); retrying is safe. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  reason: Schema.String
}, HttpApiSchema.annotations({ status: 503 })) {
  override get message(): string {
    return `unavailable: ${this.reason}`
  }
}

/** A write was handed to Raft but its outcome is unknown (leadership lost, timeout, shutdown): it may still apply. */
export class OutcomeUnknown extends Schema.TaggedError<OutcomeUnknown>()("OutcomeUnknown", {
  reason: Schema.String
}, HttpApiSchema.annotations({ status: 504 })) {
  override get message(): string {
    return `outcome unknown: ${this.reason}`
  }
}

/** The key is absent. */
export class KeyNotFound extends Schema.TaggedError<KeyNotFound>()("KeyNotFound", {
  key: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {
  override get message(): string {
    return `no key ${this.key}`
  }
}

/** A compare-and-set found another value (`current`, absent when the key was absent); nothing was changed. */
export class CasFailed extends Schema.TaggedError<CasFailed>()("CasFailed", {
  key: Schema.String,
  current: Schema.optional(Schema.String)
}, HttpApiSchema.annotations({ status: 409 })) {
  override get message(): string {
    return `compare-and-set of ${this.key} failed: the value is ${this.current ?? "absent"}`
  }
}

/** A membership change or leadership transfer was refused or failed (`reason` says why). */
export class ClusterChangeFailed extends Schema.TaggedError<ClusterChangeFailed>()("ClusterChangeFailed", {
  reason: Schema.String
}, HttpApiSchema.annotations({ status: 409 })) {
  override get message(): string {
    return `cluster change failed: ${this.reason}`
  }
}

/** The fault switch was used on a node started without `--faults` (it exists for tests only). */
export class FaultsDisabled extends Schema.TaggedError<FaultsDisabled>()(
  "FaultsDisabled",
  {},
  HttpApiSchema.annotations({ status: 403 })
) {
  override get message(): string {
    return "fault injection is disabled on this node"
  }
}

/** Every error of the key-value service. */
export type KvError =
  | NotLeader
  | NoLeader
  | Unavailable
  | OutcomeUnknown
  | KeyNotFound
  | CasFailed
  | ClusterChangeFailed
  | FaultsDisabled
