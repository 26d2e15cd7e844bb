#!/usr/bin/env node
/**
 * The `kv` executable: runs the command line of `Cli.ts` on Node, with
 * SIGINT/SIGTERM interrupting the running command (so a node or a launched
 * cluster shuts down cleanly). A failure prints one line and exits with 1;
 * `--verbose` (taken out before the command line is parsed) prints the whole
 * cause, stack traces included.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"

const verbose = process.argv.includes("--verbose")
const argv = process.argv.filter((arg) => arg !== "--verbose")

Cli.run(argv).pipe(
  Cli.reportFailure(verbose),
  Effect.scoped,
  Effect.provide(NodeContext.layer),
  (program) => NodeRuntime.runMain(program, { disableErrorReporting: true })
)
