import type { BuildOptions } from "esbuild"

/** The esbuild options of a Node process bundled with its packages (node-bundle.mjs). */
export declare const nodeBundleOptions: BuildOptions
