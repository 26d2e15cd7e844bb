import * as path from "node:path"
import { defineConfig } from "vitest/config"

const src = path.join(import.meta.dirname, "src")

export default defineConfig({
  resolve: {
    // The package's own name, as the README's examples import it, resolves to the sources (tsconfig.json's `paths`).
    alias: [
      { find: /^effect-raft$/, replacement: path.join(src, "index.ts") },
      { find: /^effect-raft\/(lmdb|tcp|file-snapshots)$/, replacement: path.join(src, "$1.ts") },
      { find: /^effect-raft\/(kv|testing)$/, replacement: path.join(src, "$1", "index.ts") }
    ]
  },
  test: {
    include: ["test/**/*.test.ts"],
    fakeTimers: { toFake: undefined },
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
