/**
 * Unpacks a package archive a host fetched, refusing anything that could
 * write or point outside its directory. Every entry is checked before a byte
 * is written: only files, directories and symlinks; no absolute paths, no
 * `..`, no link whose target leaves the package, no entry written through a
 * link, no path twice. After extraction each link is resolved once more.
 * Every refusal is PACKAGE_INVALID naming the entry.
 */
import { mkdir, readlink, realpath } from "node:fs/promises";
import path from "node:path";
import { Parser, Unpack, type ReadEntry } from "tar";
import { FlotillaError } from "../errors.js";

export interface UnpackLimits {
  /** Sum of the entries' sizes. @default 4 GiB */
  maxUnpackedBytes?: number;
  /** @default 200000 */
  maxEntries?: number;
}

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);

function refuse(entry: string, why: string): never {
  throw new FlotillaError("PACKAGE_INVALID", `package entry '${entry.slice(0, 200)}' is refused: ${why}`, { details: { entry } });
}

/** The entry's path inside the package (`a/b`), or a refusal. */
function entryPath(raw: string): string {
  if (raw.includes("\0")) refuse(raw, "its path contains a NUL byte");
  if (raw.startsWith("/") || /^[A-Za-z]:/.test(raw) || raw.startsWith("\\")) refuse(raw, "it is an absolute path");
  if (raw.includes("\\")) refuse(raw, "its path contains a backslash");
  const segments = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) refuse(raw, "its path contains '..'");
  if (segments.length === 0) refuse(raw, "its path is empty");
  return segments.join("/");
}

interface Listing {
  symlinks: string[];
  entries: number;
  bytes: number;
}

/** Checks every entry of a gzipped tar without writing anything. */
export async function checkArchive(data: Buffer, limits: UnpackLimits = {}): Promise<Listing> {
  const maxBytes = limits.maxUnpackedBytes ?? 4 * 1024 ** 3;
  const maxEntries = limits.maxEntries ?? 200_000;
  const seen = new Set<string>();
  const links = new Set<string>();
  const listing: Listing = { symlinks: [], entries: 0, bytes: 0 };
  let problem: unknown;
  const check = (entry: ReadEntry): void => {
    const rel = entryPath(entry.path);
    const type = entry.type;
    if (!FILE_TYPES.has(type) && type !== "Directory" && type !== "SymbolicLink") {
      refuse(entry.path, type === "Link" ? "it is a hard link" : `it is a ${type} entry; only files, directories and symlinks are allowed`);
    }
    if (seen.has(rel)) refuse(entry.path, "the archive holds this path twice");
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (links.has(parts.slice(0, i).join("/"))) refuse(entry.path, `it would be written through the symlink '${parts.slice(0, i).join("/")}'`);
    }
    if (type === "SymbolicLink") {
      const target = entry.linkpath ?? "";
      if (target === "" || target.includes("\0")) refuse(entry.path, "its link target is empty or has a NUL byte");
      if (path.posix.isAbsolute(target) || /^[A-Za-z]:/.test(target) || target.includes("\\")) refuse(entry.path, `it links to the absolute path ${target}`);
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(rel), target));
      if (resolved === ".." || resolved.startsWith("../")) refuse(entry.path, `it links to ${target}, outside the package`);
      links.add(rel);
      listing.symlinks.push(rel);
    }
    seen.add(rel);
    listing.entries += 1;
    listing.bytes += entry.size;
    if (listing.entries > maxEntries) refuse(entry.path, `the archive holds more than ${maxEntries} entries`);
    if (listing.bytes > maxBytes) refuse(entry.path, `the archive unpacks to more than ${maxBytes} bytes`);
  };
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (problem === undefined) {
          try {
            check(entry);
          } catch (err) {
            problem = err;
          }
        }
        entry.resume();
      },
    });
    parser.on("error", (err: Error) => reject(new FlotillaError("PACKAGE_INVALID", `package archive is not a valid gzipped tar: ${err.message}`)));
    parser.on("end", () => resolve());
    parser.end(data);
  });
  if (problem !== undefined) throw problem;
  return listing;
}

/**
 * Unpacks a checked archive into `dir` (created; it must not exist yet), then
 * verifies that no symlink resolves outside it. Returns the entry count.
 */
export async function unpackArchive(data: Buffer, dir: string, limits: UnpackLimits = {}): Promise<number> {
  const listing = await checkArchive(data, limits);
  await mkdir(dir, { recursive: false });
  await new Promise<void>((resolve, reject) => {
    const unpack = new Unpack({ cwd: dir, strict: true, noMtime: true, preserveOwner: false });
    unpack.on("error", (err: Error) => reject(new FlotillaError("PACKAGE_INVALID", `package archive could not be unpacked: ${err.message}`)));
    unpack.on("close", () => resolve());
    unpack.end(data);
  });
  const root = await realpath(dir);
  for (const link of listing.symlinks) {
    const real = await realpath(path.join(root, link)).catch(() => undefined);
    if (real === undefined) continue;
    const rel = path.relative(root, real);
    if (rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) refuse(link, `it links to ${await readlink(path.join(root, link))}, which resolves to ${real}, outside the package`);
  }
  return listing.entries;
}
