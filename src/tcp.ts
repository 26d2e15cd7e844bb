/**
 * effect-raft/tcp: the `Transport` over TCP, with optional mutual TLS, for
 * nodes in different processes or machines (Node's `net` and `tls`).
 */
export * as TcpTransport from "./transport/TcpTransport.js"
