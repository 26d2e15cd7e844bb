/**
 * effect-raft/kv: the replicated key-value service built on effect-raft, as
 * `npm start` runs it. Each module is exported as a namespace.
 */
export * as Certificates from "./Certificates.js"
export * as Cli from "./Cli.js"
export * as FaultSwitch from "./FaultSwitch.js"
export * as Http from "./Http.js"
export * as HttpLimits from "./HttpLimits.js"
export * as Kv from "./Kv.js"
export * as KvError from "./KvError.js"
export * as KvFsm from "./KvFsm.js"
export * as KvNode from "./KvNode.js"
export * as Launcher from "./Launcher.js"
