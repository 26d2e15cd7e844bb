/**
 * Who a TCP peer is (internal to the TCP transport): "host:port" addresses, the server ids a certificate names
 * (`raft://<id>` URIs and DNS names), the TLS material as `node:tls` takes it, and the check of a client's
 * certificate against the ids it may claim. See `src/transport/TcpTransport.ts`.
 */
import type * as tlsModule from "node:tls"

/** Splits "host:port" (or "[v6]:port") into its parts; undefined when it is not one. */
export const parseAddress = (address: string): { readonly host: string; readonly port: number } | undefined => {
  const colon = address.lastIndexOf(":")
  if (colon <= 0) return undefined
  let host = address.slice(0, colon)
  const port = Number(address.slice(colon + 1))
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  return { host, port }
}

/** The URI SubjectAltName that names server `id` in a certificate: `raft://` and the id, percent-encoded. */
export const serverIdUri = (id: string): string => `raft://${encodeURIComponent(id)}`

const uriPrefix = "raft://"

/**
 * The server ids a certificate names, from its SubjectAltName in Node's text form (`"DNS:a, URI:raft://b"`, values
 * with special characters JSON-quoted): each URI `raft://<id>` (percent-decoded) and each DNS name taken literally,
 * compared case-sensitively, wildcards ignored. The subject's CN is never used. Empty when there is none.
 */
export const serverIdsOf = (subjectAltName: string | undefined): ReadonlyArray<string> => {
  const ids: Array<string> = []
  if (subjectAltName === undefined) return ids
  const text = subjectAltName
  let at = 0
  while (at < text.length) {
    const colon = text.indexOf(":", at)
    if (colon < 0) break
    const kind = text.slice(at, colon)
    let value: string
    let next: number
    if (text[colon + 1] === "\"") {
      let end = colon + 2
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1
      const parsed = parseJsonString(text.slice(colon + 1, end + 1))
      if (parsed === undefined) break
      value = parsed
      next = end + 1
    } else {
      const comma = text.indexOf(", ", colon + 1)
      next = comma < 0 ? text.length : comma
      value = text.slice(colon + 1, next)
    }
    if (kind === "URI" && value.startsWith(uriPrefix)) {
      const id = decodeComponent(value.slice(uriPrefix.length))
      if (id !== undefined && id.length > 0) ids.push(id)
    } else if (kind === "DNS" && value.length > 0 && !value.includes("*")) {
      ids.push(value)
    }
    at = text.startsWith(", ", next) ? next + 2 : text.length
  }
  return ids
}

const parseJsonString = (literal: string): string | undefined => {
  try {
    const value: unknown = JSON.parse(literal)
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}

const decodeComponent = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}

/** How a refusal names what a certificate named. */
export const describeIds = (ids: ReadonlyArray<string>): string =>
  ids.length === 0 ? "no server id" : ids.map((id) => JSON.stringify(id)).join(", ")

export const formatAddress = (host: string, port: number): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

export const errorText = (error: unknown): string =>
  error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : "unknown error"

export type Material = string | Buffer
export const material = (value: string | Uint8Array): Material =>
  typeof value === "string" ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
export const materials = (
  value: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
): Material | Array<Material> | undefined =>
  value === undefined ? undefined : typeof value === "string" || value instanceof Uint8Array
  ? material(value)
  : value.map(material)

/** The TLS side of a transport, normalised: its material as `node:tls` takes it and how peers' ids are checked. */
export interface TlsMaterial {
  readonly cert: Material
  readonly key: Material
  readonly ca: Material | Array<Material> | undefined
  readonly serverName: string | undefined
  readonly verifyPeerId: boolean
  readonly requireClientCert: boolean
  /** Accepts a server id a client certificate names (`allowedPeerIds`); undefined accepts any. */
  readonly isAllowed: ((id: string) => boolean) | undefined
}

/** With TLS, what a client's certificate allows: a refusal, or the ids its requests must claim (or any). */
export const checkClient = (
  tls: TlsMaterial,
  socket: tlsModule.TLSSocket
): { readonly refused: string } | { readonly ids: ReadonlyArray<string> | undefined } => {
  const { isAllowed, requireClientCert, verifyPeerId } = tls
  const cert = socket.authorized ? socket.getPeerCertificate() : undefined
  if (cert === undefined || cert.raw === undefined) {
    // Without a certificate (only possible when client certificates are not required) ids are unknown: fail
    // closed whenever ids are to be checked.
    return isAllowed === undefined && !(verifyPeerId && requireClientCert)
      ? { ids: undefined }
      : { refused: "no client certificate" }
  }
  const named = serverIdsOf(cert.subjectaltname)
  if (verifyPeerId && named.length === 0) return { refused: "client certificate names no server id" }
  const usable = isAllowed === undefined ? named : named.filter(isAllowed)
  if (isAllowed !== undefined && usable.length === 0) return { refused: `client certificate names ${describeIds(named)}, none in allowedPeerIds` }
  return { ids: verifyPeerId ? usable : undefined }
}
