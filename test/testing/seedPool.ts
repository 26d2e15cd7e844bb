/**
 * Runs simulator seeds on every core: each of `size` worker threads runs whole seeds (`Simulator.run` is
 * synchronous and deterministic, so a seed gives the same `Result` in any thread, alone or after others), while the
 * calling thread only hands them out. `npm run sim`, `npm run sim:mutants`, `npm run sim:digest` and the simulation
 * tests share it.
 *
 * The options of a seed cross to a worker by structured clone, so they must be plain data: a custom `workload`
 * (functions) cannot go; run those with `Simulator.run` in the calling thread.
 *
 * The workers run one bundle of plain JavaScript (seedWorker.ts and all it imports, built with esbuild into a
 * temporary directory when the pool starts, a fraction of a second): a worker loads it in about 0.2 s of CPU,
 * where tsx's loader took 1.5 s to compile and resolve the several hundred modules one by one. The calling thread
 * runs no seed: under tsx every function it creates is also named at run time (`keepNames`), and 40 seeds there
 * took 17.5 s of CPU against 12.9 s on one worker (medians of three, interleaved). A worker gets a young
 * generation larger than V8's default (`youngGenerationMb`): a seed allocates mostly short-lived objects, and fewer
 * scavenges of a larger nursery cost less (the collector's share of a seed's profile fell from 11-13% to 8-9%).
 */
import { buildSync } from "esbuild"
import { mkdtempSync, rmSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"
import type * as Simulator from "../../src/testing/Simulator.js"

/** A seed's options without the seed, as plain data. */
export type SeedOptions = Omit<Simulator.Options, "seed" | "workload">

/** Set to stop a queued seed from starting (its `run` then resolves to undefined). */
export interface Cancel {
  cancelled: boolean
}

interface Task {
  readonly options: SeedOptions
  readonly seed: number
  readonly cancel: Cancel | undefined
  readonly resolve: (result: Simulator.Result | undefined) => void
  readonly reject: (error: unknown) => void
}

interface Slot {
  readonly worker: Worker
  /** Seeds sent to the worker, in the order it answers them. */
  readonly tasks: Array<Task>
}

/** One worker per core the machine reports, or `SIM_WORKERS` when set. */
export const defaultWorkers = (): number => {
  const fromEnv = Number(process.env.SIM_WORKERS)
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : Math.max(1, availableParallelism())
}

/** Seeds a worker thread holds at once: the next is there when it finishes one, while its answer travels. */
const backlog = 2

/** The young generation of a worker, in MB (V8's default on 64 bits is 48: three 16 MB semi-spaces). */
export const youngGenerationMb = Number(process.env.SIM_YOUNG_MB ?? 192)

/** `size` worker threads running seeds, first come first served (each loads the bundle once). */
export class SeedPool {
  private readonly queue: Array<Task> = []
  private readonly slots: Array<Slot> = []
  private broken: unknown = undefined
  private closing = false

  /** The temporary directory of the workers' bundle; `close` removes it. */
  readonly bundleDir: string
  private readonly bundle: string

  constructor(readonly size: number = defaultWorkers()) {
    this.bundleDir = mkdtempSync(join(tmpdir(), "effect-raft-seeds-"))
    const bundle = join(this.bundleDir, "seedWorker.mjs")
    this.bundle = bundle
    buildSync({
      entryPoints: [fileURLToPath(new URL("./seedWorker.ts", import.meta.url))],
      outfile: bundle,
      bundle: true,
      platform: "node",
      format: "esm",
      logLevel: "warning"
    })
    for (let i = 0; i < Math.max(1, size); i++) {
      const worker = new Worker(bundle, { resourceLimits: { maxYoungGenerationSizeMb: youngGenerationMb } })
      const slot: Slot = { worker, tasks: [] }
      slot.worker.on("message", (message: { readonly result: Simulator.Result }) => {
        slot.tasks.shift()?.resolve(message.result)
        this.dispatch()
      })
      slot.worker.on("error", (error) => this.fail(error))
      slot.worker.on("exit", (code) => {
        // Stopped by `close`: the seeds it was running are dropped, as the queued ones are.
        if (this.closing) for (const task of slot.tasks.splice(0)) task.resolve(undefined)
        else if (slot.tasks.length > 0) this.fail(new Error(`a seed worker exited (code ${code}) during seed ${slot.tasks[0]!.seed}`))
      })
      this.slots.push(slot)
    }
  }

  /**
   * The workers' bundle loaded in the calling thread, for what a launcher needs of the simulator (its options, the
   * mutant catalogue, the corners) without compiling the sources again.
   */
  load(): Promise<typeof import("./seedWorker.js")> {
    return import(pathToFileURL(this.bundle).href)
  }

  /** Runs one seed; undefined when `cancel` was set before it started. */
  run(options: SeedOptions, seed: number, cancel?: Cancel): Promise<Simulator.Result | undefined> {
    return new Promise((resolve, reject) => {
      if (this.broken !== undefined) return reject(this.broken)
      this.queue.push({ options, seed, cancel, resolve, reject })
      this.dispatch()
    })
  }

  /** Stops the workers; seeds still queued are dropped. */
  async close(): Promise<void> {
    this.closing = true
    this.queue.length = 0
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()))
    rmSync(this.bundleDir, { recursive: true, force: true })
  }

  private next(): Task | undefined {
    let task = this.queue.shift()
    while (task !== undefined && task.cancel?.cancelled === true) {
      task.resolve(undefined)
      task = this.queue.shift()
    }
    return task
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      while (slot.tasks.length < backlog) {
        const task = this.next()
        if (task === undefined) return
        slot.tasks.push(task)
        slot.worker.postMessage({ options: task.options, seed: task.seed })
      }
    }
  }

  private fail(error: unknown): void {
    this.broken = error
    for (const slot of this.slots) {
      for (const task of slot.tasks.splice(0)) task.reject(error)
    }
    for (const task of this.queue.splice(0)) task.reject(error)
  }
}

/**
 * Runs `seeds` in order on `pool` and returns their results in seed order, up to and including the first one
 * `stop` accepts (later seeds already started are discarded, queued ones never start). `onResult` sees each
 * result in seed order as soon as every earlier seed is done.
 */
export const runSeeds = async (
  pool: SeedPool,
  options: SeedOptions,
  seeds: ReadonlyArray<number>,
  hooks: {
    readonly stop?: ((result: Simulator.Result) => boolean) | undefined
    readonly onResult?: ((result: Simulator.Result) => void) | undefined
  } = {}
): Promise<Array<Simulator.Result>> => {
  const cancel: Cancel = { cancelled: false }
  // Enough seeds in flight to keep every worker busy while the earliest is awaited.
  const window = Math.max(2, 2 * pool.size)
  const inFlight: Array<Promise<Simulator.Result | undefined>> = []
  const results: Array<Simulator.Result> = []
  let next = 0
  while (next < seeds.length || inFlight.length > 0) {
    while (next < seeds.length && inFlight.length < window) inFlight.push(pool.run(options, seeds[next++]!, cancel))
    const result = await inFlight.shift()!
    if (result === undefined) continue
    results.push(result)
    hooks.onResult?.(result)
    if (hooks.stop?.(result) === true) {
      cancel.cancelled = true
      break
    }
  }
  return results
}
