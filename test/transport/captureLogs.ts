import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"

/**
 * A log that keeps every message with its peer annotation (`"message" peer=<peer>`), to assert on what the
 * transport logs; `run` provides it to an effect.
 */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, message }) => {
    let peer = ""
    for (const [k, v] of annotations) if (k === "peer") peer = String(v)
    lines.push(`${JSON.stringify(message)} peer=${peer}`)
  })
  const layer = Logger.replace(Logger.defaultLogger, logger)
  const run = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, layer)
  return { lines, layer, run }
}
