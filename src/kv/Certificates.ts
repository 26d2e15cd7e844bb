/**
 * The certificates of a key-value cluster's mutual TLS, made by `kv cluster` on first start: a cluster CA
 * (`<dataDir>/tls/ca.crt`, its key `ca.key` readable by the owner only) and, per node, a certificate naming the node's
 * server id as the SubjectAltName URI the TCP transport checks (`raft://<id>`, see `TcpTransport.serverIdUri`) in
 * `<node dir>/tls/node.crt` with `node.key` and a copy of `ca.crt`. Keys are ECDSA P-256, made and used through
 * Node's WebCrypto; certificates are built by `@peculiar/x509`, loaded only when one has to be made.
 *
 * Later starts reuse what is there. A node certificate that is missing, not issued by the CA, not naming its id, or
 * expiring within 30 days is issued again with the CA's key; without the CA's key, everything is made anew.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { X509Certificate } from "node:crypto"
import { serverIdUri } from "../transport/TcpTransport.js"

/** Where a node's TLS material lives: PEM files. */
export interface TlsFiles {
  readonly cert: string
  readonly key: string
  readonly ca: string
}

/** A certificate and its private key, PEM-encoded. */
export interface Pem {
  readonly cert: string
  readonly key: string
}

/** Certificates could not be made, read or written. */
export class CertificateError extends Data.TaggedError("CertificateError")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `certificates: ${this.reason}`
  }
}

const day = 24 * 60 * 60 * 1000
const caValidity = 10 * 365 * day
const nodeValidity = 2 * 365 * day
const renewWithin = 30 * day
const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const

/** The X.509 library with Node's WebCrypto as its provider (tsyringe, which it uses, needs `reflect-metadata`). */
const library = Effect.tryPromise({
  try: async () => {
    await import("reflect-metadata")
    const x509 = await import("@peculiar/x509")
    x509.cryptoProvider.set(globalThis.crypto)
    return x509
  },
  catch: (cause) => new CertificateError({ reason: "cannot load @peculiar/x509", cause })
}).pipe(Effect.cached, Effect.runSync)

const attempt = <A>(what: string, run: () => Promise<A>) =>
  Effect.tryPromise({ try: run, catch: (cause) => new CertificateError({ reason: what, cause }) })

const serial = (): string => Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^[89a-f]/, "1")

/** A new cluster CA, valid for ten years from `nowMillis`. */
export const makeCa = (nowMillis: number): Effect.Effect<Pem, CertificateError> =>
  Effect.gen(function*() {
    const x509 = yield* library
    const keys = yield* attempt("cannot make the CA's key", () =>
      globalThis.crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]))
    const cert = yield* attempt("cannot make the CA's certificate", () =>
      x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: serial(),
        name: "CN=effect-raft kv cluster CA",
        notBefore: new Date(nowMillis - 60 * 60 * 1000),
        notAfter: new Date(nowMillis + caValidity),
        keys,
        signingAlgorithm: algorithm,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)
        ]
      }))
    const key = yield* attempt("cannot export the CA's key", () => globalThis.crypto.subtle.exportKey("pkcs8", keys.privateKey))
    return { cert: cert.toString("pem"), key: x509.PemConverter.encode(key, "PRIVATE KEY") }
  })

/** A certificate for server `id` signed by `ca`, for both ends of a connection, valid for two years. */
export const issue = (ca: Pem, id: string, nowMillis: number): Effect.Effect<Pem, CertificateError> =>
  Effect.gen(function*() {
    const x509 = yield* library
    const caCert = new x509.X509Certificate(ca.cert)
    const caKey = yield* attempt("cannot read the CA's key", () =>
      globalThis.crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(ca.key), algorithm, false, ["sign"]))
    const keys = yield* attempt(`cannot make ${id}'s key`, () =>
      globalThis.crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]))
    const cert = yield* attempt(`cannot make ${id}'s certificate`, () =>
      x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: [{ CN: [id] }],
        issuer: caCert.subject,
        notBefore: new Date(nowMillis - 60 * 60 * 1000),
        notAfter: new Date(nowMillis + nodeValidity),
        publicKey: keys.publicKey,
        signingKey: caKey,
        signingAlgorithm: algorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: serverIdUri(id) }])
        ]
      }))
    const key = yield* attempt(`cannot export ${id}'s key`, () => globalThis.crypto.subtle.exportKey("pkcs8", keys.privateKey))
    return { cert: cert.toString("pem"), key: x509.PemConverter.encode(key, "PRIVATE KEY") }
  })

const parse = (pem: string): X509Certificate | undefined => {
  try {
    return new X509Certificate(pem)
  } catch {
    return undefined
  }
}

/** Whether `pem` parses and stays valid for at least `renewWithin` more. */
const lasts = (pem: string, nowMillis: number): boolean => {
  const cert = parse(pem)
  return cert !== undefined && Date.parse(cert.validTo) - nowMillis > renewWithin
}

/** Whether `certPem` is usable for `id` under `caPem` for at least `renewWithin` more. */
const stillGood = (certPem: string, caPem: string, id: string, nowMillis: number): boolean => {
  const cert = parse(certPem)
  const ca = parse(caPem)
  return cert !== undefined && ca !== undefined && cert.checkIssued(ca) && cert.verify(ca.publicKey) &&
    Date.parse(cert.validTo) - nowMillis > renewWithin &&
    (cert.subjectAltName ?? "").split(", ").includes(`URI:${serverIdUri(id)}`)
}

/**
 * Makes sure `dataDir` holds a cluster CA and each node (`id` with its directory `dir`) a certificate of it;
 * answers each node's files and what had to be made.
 */
export const ensureCluster = (
  dataDir: string,
  nodes: ReadonlyArray<{ readonly id: string; readonly dir: string }>
): Effect.Effect<
  { readonly files: ReadonlyMap<string, TlsFiles>; readonly made: ReadonlyArray<string> },
  CertificateError,
  FileSystem.FileSystem | Path.Path
> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const now = yield* Clock.currentTimeMillis
    const failed = (what: string) => (cause: unknown) => new CertificateError({ reason: what, cause })
    const read = (file: string) =>
      fs.exists(file).pipe(
        Effect.flatMap((exists) => exists ? fs.readFileString(file) : Effect.succeed(undefined)),
        Effect.mapError(failed(`cannot read ${file}`))
      )
    const write = (file: string, text: string, secret: boolean) =>
      fs.makeDirectory(path.dirname(file), { recursive: true, mode: 0o700 }).pipe(
        Effect.zipRight(fs.writeFileString(file, text, { mode: secret ? 0o600 : 0o644 })),
        Effect.zipRight(secret ? fs.chmod(file, 0o600) : Effect.void),
        Effect.mapError(failed(`cannot write ${file}`))
      )
    const made: Array<string> = []
    const caFiles = { cert: path.join(dataDir, "tls", "ca.crt"), key: path.join(dataDir, "tls", "ca.key") }
    const caCert = yield* read(caFiles.cert)
    const caKey = yield* read(caFiles.key)
    let ca: Pem
    if (caCert !== undefined && caKey !== undefined && lasts(caCert, now)) {
      ca = { cert: caCert, key: caKey }
    } else {
      ca = yield* makeCa(now)
      yield* write(caFiles.key, ca.key, true)
      yield* write(caFiles.cert, ca.cert, false)
      made.push(caFiles.cert)
    }
    const files = new Map<string, TlsFiles>()
    for (const node of nodes) {
      const own: TlsFiles = {
        cert: path.join(node.dir, "tls", "node.crt"),
        key: path.join(node.dir, "tls", "node.key"),
        ca: path.join(node.dir, "tls", "ca.crt")
      }
      const cert = yield* read(own.cert)
      const key = yield* read(own.key)
      if (cert === undefined || key === undefined || !stillGood(cert, ca.cert, node.id, now)) {
        const issued = yield* issue(ca, node.id, now)
        yield* write(own.key, issued.key, true)
        yield* write(own.cert, issued.cert, false)
        made.push(own.cert)
      }
      if ((yield* read(own.ca)) !== ca.cert) yield* write(own.ca, ca.cert, false)
      files.set(node.id, own)
    }
    return { files, made }
  })
