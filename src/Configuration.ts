/**
 * Cluster membership: the servers, their addresses and whether they vote.
 * Configurations live in the log as `Configuration` entries (encoded as JSON
 * bytes) and take effect when appended, as in hashicorp/raft; a node tracks the
 * latest one and the latest committed one.
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/** Whether a server's vote counts in elections and commitment. */
export const Suffrage = Schema.Literal("Voter", "Nonvoter")
/** Whether a server's vote counts in elections and commitment. */
export type Suffrage = typeof Suffrage.Type

/** One member of the cluster. */
export const Server = Schema.Struct({
  id: Schema.NonEmptyString,
  address: Schema.String,
  suffrage: Suffrage
})
/** One member of the cluster. */
export interface Server {
  readonly id: string
  readonly address: string
  readonly suffrage: Suffrage
}

/** The set of servers of a cluster. */
export const Configuration = Schema.Struct({
  servers: Schema.Array(Server)
})
/** The set of servers of a cluster. */
export interface Configuration {
  readonly servers: ReadonlyArray<Server>
}

/** A configuration with no servers (a node that was never bootstrapped). */
export const empty: Configuration = { servers: [] }

/** Builds a configuration of voters from `[id, address]` pairs. */
export const voters = (servers: ReadonlyArray<readonly [id: string, address: string]>): Configuration => ({
  servers: servers.map(([id, address]) => ({ id, address, suffrage: "Voter" as const }))
})

/** The voting members. */
export const votersOf = (configuration: Configuration): ReadonlyArray<Server> =>
  configuration.servers.filter((server) => server.suffrage === "Voter")

/** Votes needed for a majority of the voters. */
export const quorumSize = (configuration: Configuration): number => Math.floor(votersOf(configuration).length / 2) + 1

/** Whether `id` is a voter of `configuration`. */
export const isVoter = (configuration: Configuration, id: string): boolean =>
  configuration.servers.some((server) => server.id === id && server.suffrage === "Voter")

/** The server with id `id`, if it is a member. */
export const find = (configuration: Configuration, id: string): Server | undefined =>
  configuration.servers.find((server) => server.id === id)

/** Problems that make a configuration unusable: duplicate ids or addresses, or no voter. */
export const check = (configuration: Configuration): string | undefined => {
  const ids = new Set<string>()
  const addresses = new Set<string>()
  for (const server of configuration.servers) {
    if (server.id.length === 0) return "a server has an empty id"
    if (ids.has(server.id)) return `duplicate server id ${server.id}`
    if (addresses.has(server.address)) return `duplicate server address ${server.address}`
    ids.add(server.id)
    addresses.add(server.address)
  }
  return votersOf(configuration).length === 0 ? "the configuration has no voter" : undefined
}

const json = Schema.parseJson(Configuration)
const encodeJson = Schema.encodeSync(json)
const decodeJson = Schema.decodeUnknownEither(json)
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

/** The bytes a `Configuration` log entry carries. */
export const encode = (configuration: Configuration): Uint8Array => textEncoder.encode(encodeJson(configuration))

/** Decodes the bytes of a `Configuration` log entry; `undefined` when they are malformed. */
export const decode = (bytes: Uint8Array): Configuration | undefined => {
  const result = decodeJson(textDecoder.decode(bytes))
  return Either.isRight(result) ? result.right : undefined
}

/** A membership change, one server at a time (as hashicorp/raft). */
export type Change =
  | { readonly _tag: "AddVoter"; readonly id: string; readonly address: string }
  | { readonly _tag: "AddNonvoter"; readonly id: string; readonly address: string }
  | { readonly _tag: "DemoteVoter"; readonly id: string }
  | { readonly _tag: "RemoveServer"; readonly id: string }

/**
 * The configuration after `change` (hashicorp's `nextConfiguration`): adding a voter that exists updates its
 * address; adding a non-voter never demotes a voter; demoting or removing an unknown server changes nothing.
 * Returns a reason string when the change is invalid (an address taken by another server, no voter left).
 */
export const applyChange = (configuration: Configuration, change: Change): Configuration | string => {
  const servers = [...configuration.servers]
  const at = servers.findIndex((server) => server.id === change.id)
  switch (change._tag) {
    case "AddVoter":
    case "AddNonvoter": {
      if (change.id.length === 0) return "a server id must not be empty"
      const taken = servers.find((server) => server.address === change.address && server.id !== change.id)
      if (taken !== undefined) return `address ${change.address} is already used by ${taken.id}`
      const existing = at >= 0 ? servers[at] : undefined
      const suffrage: Suffrage = change._tag === "AddVoter" || existing?.suffrage === "Voter" ? "Voter" : "Nonvoter"
      const server: Server = { id: change.id, address: change.address, suffrage }
      if (at >= 0) servers[at] = server
      else servers.push(server)
      break
    }
    case "DemoteVoter": {
      if (at >= 0) servers[at] = { ...servers[at]!, suffrage: "Nonvoter" }
      break
    }
    case "RemoveServer": {
      if (at >= 0) servers.splice(at, 1)
      break
    }
  }
  const next = { servers }
  return votersOf(next).length === 0 ? "the change would leave no voter" : next
}

/** Whether two configurations hold the same servers, in the same order. */
export const equals = (a: Configuration, b: Configuration): boolean =>
  a.servers.length === b.servers.length &&
  a.servers.every((server, i) => {
    const other = b.servers[i]!
    return server.id === other.id && server.address === other.address && server.suffrage === other.suffrage
  })
