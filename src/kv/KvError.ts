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

/**
 * A request over one of the service's size limits (`what` names it: the body, or the command a write became), refused
 * unread or unapplied: nothing was done. `limit` is in bytes; `size` when known.
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  what: Schema.String,
  size: Schema.optional(Schema.Number),
  limit: Schema.Number
}, HttpApiSchema.annotations({ status: 413 })) {
  override get message(): string {
    return `${this.what}${this.size === undefined ? "" : ` of ${this.size} bytes`} exceeds the limit of ${this.limit} bytes`
  }
}

/** The request line is longer than the service takes (a key or prefix too long): nothing was done. */
export class UriTooLong extends Schema.TaggedError<UriTooLong>()("UriTooLong", {
  size: Schema.Number,
  limit: Schema.Number
}, HttpApiSchema.annotations({ status: 414 })) {
  override get message(): string {
    return `request target of ${this.size} bytes exceeds the limit of ${this.limit} bytes`
  }
}

/** The request's head (request line and headers) is larger than the HTTP parser takes: nothing was done. */
export class HeadersTooLarge extends Schema.TaggedError<HeadersTooLarge>()("HeadersTooLarge", {
  limit: Schema.Number
}, HttpApiSchema.annotations({ status: 431 })) {
  override get message(): string {
    return `request line and headers exceed the limit of ${this.limit} bytes`
  }
}

/** The request could not be read (`reason` says why: not HTTP, JSON nested too deep, ...): nothing was done. */
export class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", {
  reason: Schema.String
}, HttpApiSchema.annotations({ status: 400 })) {
  override get message(): string {
    return `bad request: ${this.reason}`
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
  | PayloadTooLarge
  | UriTooLong
  | HeadersTooLarge
  | BadRequest
