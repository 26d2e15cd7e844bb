#!/usr/bin/env node
/**
 * The `kv` executable: runs the command line of `Cli.ts` on Node, with
 * SIGINT/SIGTERM interrupting the running command (so a node or a launched
 * cluster shuts down cleanly). A failure exits with code 1 after one line on
 * stderr, `kv: <what went wrong>` (a bad command line is explained by the
 * command-line parser itself); only an unexpected defect prints its trace.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Cli from "./Cli.js"

/** What to print for a failed run: one line for a typed error, the whole cause for anything else. */
const report = (cause: Cause.Cause<Cli.CliError>): Effect.Effect<void> => {
  if (Cause.isInterruptedOnly(cause)) return Effect.void
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    return ValidationError.isValidationError(failure.value)
      ? Effect.void
      : Console.error(`kv: ${failure.value.message.replaceAll("\n", " ")}`)
  }
  return Console.error(Cause.pretty(cause))
}

Cli.run(process.argv).pipe(
  Effect.scoped,
  Effect.provide(NodeContext.layer),
  Effect.tapErrorCause(report),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
