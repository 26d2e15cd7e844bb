/**
 * Where a pipeline's answers go, for the transports that offer `AppendPipeline.listen` (memory and TCP): to the
 * listener once one is registered, else into the pipeline's `results` Mailbox. Each answer goes to exactly one of
 * them, nothing is delivered after the end, and the end is told once (to the listener, and to `results`, which
 * stays empty once someone listens).
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import type * as Scope from "effect/Scope"
import type { TransportError } from "../RaftError.js"
import type { PipelineResult } from "../Transport.js"

export class PipelineResults {
  private onResult: ((result: PipelineResult) => void) | undefined
  private onEnd: ((error: TransportError | undefined) => void) | undefined
  private listened = false
  private ended = false
  private endedWith: TransportError | undefined

  constructor(
    /** The answers of a pipeline nobody listens to. */
    readonly mailbox: Mailbox.Mailbox<PipelineResult, TransportError>
  ) {}

  /** The next answer, in request order; dropped once the pipeline has ended. */
  offer(result: PipelineResult): void {
    if (this.ended) return
    if (this.onResult !== undefined) this.onResult(result)
    else this.mailbox.unsafeOffer(result)
  }

  /** The pipeline broke (`error`) or closed (`undefined`); only the first call counts. */
  end(error: TransportError | undefined): void {
    if (this.ended) return
    this.ended = true
    this.endedWith = error
    const onEnd = this.onEnd
    this.onResult = undefined
    this.onEnd = undefined
    this.mailbox.unsafeDone(error === undefined ? Exit.void : Exit.fail(error))
    onEnd?.(error)
  }

  /** `AppendPipeline.listen`: a second listener is ignored. */
  readonly listen = (
    onResult: (result: PipelineResult) => void,
    onEnd: (error: TransportError | undefined) => void
  ): void => {
    if (this.listened) return
    this.listened = true
    if (this.ended) return onEnd(this.endedWith)
    this.onResult = onResult
    this.onEnd = onEnd
  }
}

/** A pipeline's answers, ended (closed) with the scope if nothing broke it before. */
export const make: Effect.Effect<PipelineResults, never, Scope.Scope> = Effect.flatMap(
  Mailbox.make<PipelineResult, TransportError>(),
  (mailbox) => {
    const results = new PipelineResults(mailbox)
    return Effect.as(Effect.addFinalizer(() => Effect.sync(() => results.end(undefined))), results)
  }
)
