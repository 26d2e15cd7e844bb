#!/usr/bin/env node
/**
 * The `kv` executable: runs the command line of `Cli.ts` on Node, with
 * SIGINT/SIGTERM interrupting the running command (so a node or a launched
 * cluster shuts down cleanly) and a failure printed with exit code 1.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"

Cli.run(process.argv).pipe(Effect.scoped, Effect.provide(NodeContext.layer), NodeRuntime.runMain)
