// Boots a seed worker thread: TypeScript through tsx's loader, then the worker itself (seedWorker.ts).
import { workerData } from "node:worker_threads"
import { register } from "tsx/esm/api"

register()
await import(workerData.entry)
