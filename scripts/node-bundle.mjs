/**
 * The esbuild options of a Node process bundled with its packages, shared by `dist/kv/kv.mjs` (scripts/bundle-kv.mjs,
 * whose comment gives the reasons for each) and the benchmark's scenario process (benchmarks/run.ts), so that the
 * benchmark measures a process built as the shipped one is:
 * - ESM for Node 20, packages resolved to their ESM builds first;
 * - `lmdb` (a native addon found beside its own files) and `msgpackr` (which lmdb imports itself) left outside;
 * - a real `require` in every file, for the CommonJS packages inside;
 * - whitespace and syntax minified, names kept.
 */
export const nodeBundleOptions = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  mainFields: ["module", "main"],
  external: ["lmdb", "msgpackr"],
  banner: {
    js: `import { createRequire as __bundleCreateRequire } from "node:module";\nconst require = __bundleCreateRequire(import.meta.url);`
  },
  minifyWhitespace: true,
  minifySyntax: true
}
