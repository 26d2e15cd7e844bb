import * as fs from "node:fs"

/** The version of this project, or of the installed package `pkg`; "?" when unreadable. Run from the project root. */
export const readVersion = (pkg?: string): string => {
  try {
    const file = pkg === undefined ? "package.json" : `node_modules/${pkg}/package.json`
    return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version
  } catch {
    return "?"
  }
}
