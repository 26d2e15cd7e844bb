/**
 * Checks an LMDB data file (`data.mdb`) before LMDB maps it. LMDB trusts its
 * file: it reads the newest of its two meta pages and follows the page numbers
 * in it through a memory map, so a zeroed or scribbled meta page ends the
 * process with SIGSEGV and a truncated file with SIGBUS, with no message. This
 * module reads the two meta pages with plain reads and compares them with the
 * file's length, so such a file fails with a `StorageError` that names it and
 * says what is wrong instead.
 *
 * The layout read here is liblmdb's as lmdb-js builds it (its bundled
 * `mdb.c`): page 0 and page 1 are meta pages, each a page header (`MDB_page`:
 * page number, txnid, pad, flags with `P_META`, 24 bytes on a 64-bit build)
 * followed by `MDB_meta` (magic `0xBEEFC0DE`, data version 2, map address and
 * size, the free-page and main databases' records with the page size in the
 * first one's `md_pad`, the last page used, the txnid that wrote it). Numbers
 * are in the machine's byte order; the check runs on 64-bit builds, the only
 * ones lmdb-js ships prebuilt for Node 20.
 *
 * What it cannot see: a scribbled data page further in the file (LMDB has no
 * page checksums). Values in this project's stores carry their own CRC, so such
 * damage reads as a `StorageError`, or as LMDB's `MDB_PAGE_NOTFOUND`/`MDB_CORRUPTED`.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { endianness } from "node:os"
import { StorageError } from "../RaftError.js"

/** What the data file holds, once it passed the check. */
export type DataFile =
  /** No data file yet: LMDB creates one. */
  | { readonly _tag: "Absent" }
  /** A file of 0 bytes: LMDB treats it as a new environment (every earlier write is gone, if there were any). */
  | { readonly _tag: "Empty" }
  /** A file whose meta pages and length agree. */
  | { readonly _tag: "Valid"; readonly pageSize: number; readonly lastPage: number; readonly txnid: number }

const MAGIC = 0xbeefc0de
const DATA_VERSION = 2
const P_META = 0x08
/** `sizeof(MDB_page_header)` on a 64-bit build. */
const PAGE_HEADER = 24
/** Offsets of `MDB_meta`'s fields from the start of its page (64-bit build). */
const META = {
  magic: PAGE_HEADER + 0,
  version: PAGE_HEADER + 4,
  pageSize: PAGE_HEADER + 24, // mm_dbs[FREE_DBI].md_pad
  freeRoot: PAGE_HEADER + 64, // mm_dbs[FREE_DBI].md_root
  mainRoot: PAGE_HEADER + 112, // mm_dbs[MAIN_DBI].md_root
  lastPage: PAGE_HEADER + 120,
  txnid: PAGE_HEADER + 128,
  end: PAGE_HEADER + 144
} as const
/** `P_INVALID`: the root of an empty database. */
const NO_PAGE = 0xffff_ffff_ffff_ffffn
const MIN_PAGE_SIZE = 256
const MAX_PAGE_SIZE = 0x10000

interface Meta {
  readonly txnid: bigint
  readonly lastPage: bigint
  readonly pageSize: number
}

/** One meta page's fields, or what is wrong with it. */
const readMeta = (page: Uint8Array, number: 0 | 1, pageSize: number | undefined): Meta | string => {
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength)
  const little = endianness() === "LE"
  const u16 = (at: number) => view.getUint16(at, little)
  const u32 = (at: number) => view.getUint32(at, little)
  const u64 = (at: number) => view.getBigUint64(at, little)
  const name = `meta page ${number}`
  if (page.every((byte) => byte === 0)) return `${name} is all zeros`
  if (u64(0) !== BigInt(number) || (u16(18) & P_META) === 0) return `${name} is not a meta page`
  if (u32(META.magic) !== MAGIC) return `${name} has a bad magic number (not an LMDB file, or another byte order)`
  const version = u32(META.version) & 0xffff
  if (version !== DATA_VERSION) return `${name} has data format version ${version}, LMDB here reads version ${DATA_VERSION}`
  const size = u32(META.pageSize)
  if (size < MIN_PAGE_SIZE || size > MAX_PAGE_SIZE || (size & (size - 1)) !== 0) {
    return `${name} names an impossible page size ${size}`
  }
  if (pageSize !== undefined && size !== pageSize) return `${name} names page size ${size}, meta page 0 ${pageSize}`
  const lastPage = u64(META.lastPage)
  if (lastPage < 1n) return `${name} names last page ${lastPage}`
  for (const [label, at] of [["free-page", META.freeRoot], ["main", META.mainRoot]] as const) {
    const root = u64(at)
    if (root !== NO_PAGE && (root < 2n || root > lastPage)) {
      return `${name} puts the ${label} database's root at page ${root}, outside pages 2..${lastPage}`
    }
  }
  return { txnid: u64(META.txnid), lastPage, pageSize: size }
}

/** Reads `length` bytes at `position`, fewer at the end of the file. */
const readAt = (fd: number, position: number, length: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  const read = fs.readSync(fd, bytes, 0, length, position)
  return bytes.subarray(0, read)
}

/** The check itself, on an open file: the reason it fails, or what it holds. */
const inspect = (fd: number): DataFile | string => {
  const size = fs.fstatSync(fd).size
  if (size === 0) return { _tag: "Empty" }
  const first = readAt(fd, 0, META.end)
  if (first.length < META.end) return `the file is truncated: ${size} bytes, shorter than one meta page`
  const meta0 = readMeta(first, 0, undefined)
  if (typeof meta0 === "string") return meta0
  const { pageSize } = meta0
  if (size < 2 * pageSize) return `the file is truncated: ${size} bytes, shorter than its two meta pages of ${pageSize}`
  const meta1 = readMeta(readAt(fd, pageSize, META.end), 1, pageSize)
  if (typeof meta1 === "string") return meta1
  // LMDB opens the meta page of the newer transaction; every page up to its last page must be in the file.
  const newest = meta1.txnid > meta0.txnid ? meta1 : meta0
  const needed = (newest.lastPage + 1n) * BigInt(pageSize)
  if (BigInt(size) < needed) {
    return `the file is truncated: ${size} bytes, its meta page records ${newest.lastPage + 1n} pages of ${pageSize} (${needed} bytes)`
  }
  return { _tag: "Valid", pageSize, lastPage: Number(newest.lastPage), txnid: Number(newest.txnid) }
}

/**
 * Checks the data file at `file` (LMDB's `data.mdb`) without mapping it. Fails with a `StorageError` (operation
 * `open`) that names the file and what is wrong when its meta pages are damaged or it is shorter than they say.
 */
export const check = (file: string): Effect.Effect<DataFile, StorageError> =>
  Effect.try({
    try: (): DataFile | string => {
      let fd: number
      try {
        fd = fs.openSync(file, "r")
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return { _tag: "Absent" }
        return `cannot read it: ${(error as Error).message}`
      }
      try {
        return inspect(fd)
      } finally {
        fs.closeSync(fd)
      }
    },
    catch: (cause) => new StorageError({ operation: "open", reason: `${file}: cannot read it: ${String(cause)}`, cause })
  }).pipe(
    Effect.flatMap((result) =>
      typeof result === "string"
        ? Effect.fail(new StorageError({ operation: "open", reason: `${file}: ${result}` }))
        : Effect.succeed(result)
    )
  )
