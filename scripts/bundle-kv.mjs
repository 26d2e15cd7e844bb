#!/usr/bin/env node
/**
 * Writes `dist/kv/kv.mjs`: the `kv` command (src/kv/main.ts) with its packages bundled, what the `kv` bin and
 * `npm start` run and what `kv cluster` starts each node from (`Launcher.nodeEntry`). `npm run build` runs it after
 * tsc. A plain .mjs script calling esbuild's JS API, so that the build (also `prepare` on `npm install`/`npm ci`)
 * needs no TypeScript loader and the choices below sit in one place with their reasons (the options themselves are in
 * node-bundle.mjs, which the benchmark's bundle shares).
 *
 * Why bundled: V8 keeps the source text of every module a process loads, to compile its functions lazily; a node
 * loads about 700 modules from node_modules when its packages stay outside, and an idle node then holds about
 * 24 MiB more, 106 against 82 MiB (benchmarks/README.md, "A key-value node from one bundled file").
 *
 * - Outside the bundle: `lmdb` (a native addon it finds beside its own files) and `msgpackr` (lmdb imports it
 *   itself, so a bundled copy would be loaded twice; its optional native extension is found beside it).
 * - CommonJS packages inside it `require` Node's built-in modules, and optional packages inside a try/catch (ws:
 *   bufferutil): the banner gives each file a real `require`, resolving from its own directory.
 * - Split into chunks (`kv-chunk-<hash>.mjs` beside `kv.mjs`): a module the sources import on demand (the launcher,
 *   the node, Swagger UI's 1.9 MB page on the first `GET /docs`) stays out of the processes that never load it.
 *   Every file sits in dist/kv/, so `kv --version`'s `../../package.json` is the package's manifest from any of them.
 * - Whitespace and syntax minified, identifiers not (an idle node holds about 3 MiB less than unminified): names
 *   stay as written, for stack traces, profiles and the messages that print a class's name (Schema.instanceOf)
 *   without esbuild's `keepNames`, which wraps every function it names in a call and cost about 5 % more CPU per
 *   PUT in our measurements. A source map sits beside each file (`node --enable-source-maps`).
 *
 *   node scripts/bundle-kv.mjs [--outdir <dir>] [--packages-external] [--no-minify] [--one-file]
 * The options are for measuring the alternatives; the build passes none.
 */
import * as esbuild from "esbuild"
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { nodeBundleOptions } from "./node-bundle.mjs"

const root = path.resolve(import.meta.dirname, "..")
const { values } = parseArgs({
  options: {
    outdir: { type: "string", default: path.join(root, "dist", "kv") },
    "packages-external": { type: "boolean", default: false },
    "no-minify": { type: "boolean", default: false },
    "one-file": { type: "boolean", default: false }
  }
})

const outdir = path.resolve(values.outdir)
// A chunk's name holds its hash: the previous build's chunks go first, or they would pile up.
const ours = /^kv(-chunk-[A-Z0-9]+)?\.mjs(\.map|\.LEGAL\.txt)?$/
if (fs.existsSync(outdir)) {
  for (const file of fs.readdirSync(outdir)) if (ours.test(file)) fs.rmSync(path.join(outdir, file))
}

await esbuild.build({
  entryPoints: { kv: path.join(root, "src", "kv", "main.ts") },
  outdir,
  outExtension: { ".js": ".mjs" },
  chunkNames: "kv-chunk-[hash]",
  splitting: !values["one-file"],
  ...nodeBundleOptions,
  ...(values["packages-external"] ? { packages: "external" } : {}),
  minifyWhitespace: !values["no-minify"],
  minifySyntax: !values["no-minify"],
  sourcemap: "linked",
  sourcesContent: false,
  // Third-party license comments go to a file beside each bundle (kv.mjs.LEGAL.txt), not into the code V8 keeps;
  // the bundled packages are also installed as dependencies, with their own LICENSE files.
  legalComments: "linked",
  logLevel: "warning"
})
