/**
 * Packs a runtimeEnv's `workingDir` into a deterministic gzipped tar and
 * hashes it. Deterministic: entries sorted by path, every mtime the epoch,
 * modes 0755 for directories and executables and 0644 for other files, no
 * owner, group or user names; so the same tree gives the same bytes and the
 * same sha256 on every run (with the same Node, whose zlib compresses).
 */
import { createHash } from "node:crypto";
import type { Stats } from "node:fs";
import path from "node:path";
import { create as createTar, type WriteEntry } from "tar";
import { FlotillaError } from "../errors.js";
import { collectPackageEntries, type PackageEntry } from "./collect-files.js";

/** @default 100 MiB */
export const DEFAULT_MAX_PACKAGE_BYTES = 100 * 1024 * 1024;

export interface PackOptions {
  /** gitignore-style patterns left out of the package (node_modules and .git always are). @default [] */
  excludes?: readonly string[];
  /** Archives larger than this are refused before anything is uploaded. @default 100 MiB */
  maxBytes?: number;
}

export interface PackedPackage {
  /** sha256 of the archive bytes, lower-case hex. */
  hash: string;
  bytes: number;
  data: Buffer;
  /** Paths of the entries (files, directories, symlinks) in the archive, sorted. */
  paths: string[];
  /** The directory that was packed, after symlinks. */
  workingDir: string;
}

const EPOCH = new Date(0);

/** The mode stored for an entry: only "is it a directory or executable" survives packing. */
function normalisedStats(entry: PackageEntry): Stats {
  const stats = entry.stats;
  const executable = entry.type === "dir" || (entry.type === "file" && (stats.mode & 0o111) !== 0);
  const permissions = entry.type === "symlink" ? 0o777 : executable ? 0o755 : 0o644;
  stats.mode = (stats.mode & ~0o7777) | permissions;
  // One hard link each: every file is stored with its content, never as a link to another entry.
  stats.nlink = 1;
  stats.mtime = EPOCH;
  return stats;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Packs `workingDir`; refuses a symlink out of it (PACKAGE_INVALID) or an archive over `maxBytes` (PACKAGE_TOO_LARGE). */
export async function packWorkingDir(workingDir: string, options: PackOptions = {}): Promise<PackedPackage> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_PACKAGE_BYTES;
  const { root: realRoot, entries } = await collectPackageEntries(workingDir, options.excludes ?? []);
  const statCache = new Map<string, Stats>();
  const linkTargets = new Map<string, string>();
  for (const entry of entries) {
    statCache.set(path.resolve(realRoot, entry.rel), normalisedStats(entry));
    if (entry.linkTarget !== undefined) linkTargets.set(entry.rel, entry.linkTarget);
  }
  const pack = createTar(
    {
      cwd: realRoot,
      gzip: { level: 9 },
      portable: true,
      mtime: EPOCH,
      noDirRecurse: true,
      statCache,
      onWriteEntry: (entry: WriteEntry) => {
        const target = linkTargets.get(entry.path);
        if (target !== undefined) entry.linkpath = target;
      },
    },
    entries.map((e) => e.rel),
  );
  const hash = createHash("sha256");
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of pack as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    // Past the limit keep counting (the error gives the real size) but keep nothing.
    if (bytes <= maxBytes) chunks.push(chunk);
  }
  if (bytes > maxBytes) {
    throw new FlotillaError(
      "PACKAGE_TOO_LARGE",
      `runtimeEnv.workingDir ${realRoot} packs to ${formatBytes(bytes)}, over the limit of ${formatBytes(maxBytes)}; leave large files out with runtimeEnv.excludes or raise --max-package-mib`,
      { details: { workingDir: realRoot, bytes, maxBytes } },
    );
  }
  return { hash: hash.digest("hex"), bytes, data: Buffer.concat(chunks, bytes), paths: entries.map((e) => e.rel), workingDir: realRoot };
}
