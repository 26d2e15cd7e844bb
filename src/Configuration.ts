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
