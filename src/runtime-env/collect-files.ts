/**
 * Lists what a runtimeEnv package holds: every file, directory and symlink
 * under `workingDir`, minus the excludes (gitignore syntax) and, always,
 * `node_modules` and `.git` at any depth. Symlinks are kept as links; one that
 * points outside `workingDir` (directly or through another link) is refused,
 * and one with an absolute target inside it is stored relative, so it works
 * wherever the package is unpacked.
 */
import { lstat, readdir, readlink, realpath } from "node:fs/promises";
import type { Stats } from "node:fs";
import path from "node:path";
import ignore from "ignore";
import { FlotillaError } from "../errors.js";

/** Always left out of a package, whatever the excludes say. */
export const ALWAYS_EXCLUDED = ["node_modules", ".git"] as const;

export interface PackageEntry {
  /** Path inside the package, with `/` separators. */
  rel: string;
  absolute: string;
  type: "file" | "dir" | "symlink";
  stats: Stats;
  /** For symlinks: the target to store (relative when the link's own target was absolute). */
  linkTarget?: string;
}

function inside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === "" || (!rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel));
}

async function checkSymlink(root: string, absolute: string, rel: string): Promise<string> {
  const target = await readlink(absolute);
  const resolved = path.resolve(path.dirname(absolute), target);
  const refuse = (why: string): never => {
    throw new FlotillaError("PACKAGE_INVALID", `runtimeEnv.workingDir: symlink '${rel}' points outside ${root} (${why}); copy the file in or remove the link`, {
      details: { symlink: rel, target },
    });
  };
  if (!inside(root, resolved)) refuse(`to ${target}`);
  // A target reached through another link may still leave the directory; a dangling link is kept as it is.
  const real = await realpath(absolute).catch(() => undefined);
  if (real !== undefined && !inside(root, real)) refuse(`to ${target}, which resolves to ${real}`);
  return path.isAbsolute(target) ? path.relative(path.dirname(absolute), resolved).split(path.sep).join("/") || "." : target;
}

/**
 * Walks `workingDir` and returns its real path and its entries sorted by path
 * (byte order), so the same tree always lists the same way.
 */
export async function collectPackageEntries(workingDir: string, excludes: readonly string[] = []): Promise<{ root: string; entries: PackageEntry[] }> {
  // Walk the real directory, so a workingDir reached through a symlink judges links by where they really are.
  const root = await realpath(path.resolve(workingDir)).catch((err: NodeJS.ErrnoException) => {
    throw new FlotillaError("INVALID_SPEC", `runtimeEnv.workingDir: cannot read ${path.resolve(workingDir)} (${err.code ?? String(err)})`);
  });
  if (!(await stat(root, "runtimeEnv.workingDir")).isDirectory()) throw new FlotillaError("INVALID_SPEC", `runtimeEnv.workingDir: ${root} is not a directory`);
  const filter = ignore().add([...ALWAYS_EXCLUDED]).add([...excludes]);
  const entries: PackageEntry[] = [];
  const pending: string[] = [""];
  while (pending.length > 0) {
    const dirRel = pending.pop() as string;
    const names = await readdir(path.join(root, dirRel));
    for (const name of names) {
      const rel = dirRel === "" ? name : `${dirRel}/${name}`;
      const absolute = path.join(root, rel);
      const stats = await stat(absolute, rel);
      if (stats.isDirectory()) {
        if (filter.ignores(`${rel}/`)) continue;
        entries.push({ rel, absolute, type: "dir", stats });
        pending.push(rel);
      } else if (filter.ignores(rel)) {
        continue;
      } else if (stats.isFile()) {
        entries.push({ rel, absolute, type: "file", stats });
      } else if (stats.isSymbolicLink()) {
        entries.push({ rel, absolute, type: "symlink", stats, linkTarget: await checkSymlink(root, absolute, rel) });
      } else {
        throw new FlotillaError("PACKAGE_INVALID", `runtimeEnv.workingDir: '${rel}' is not a regular file, directory or symlink (a socket, fifo or device); exclude it`, { details: { entry: rel } });
      }
    }
  }
  return { root, entries: entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0)) };
}

async function stat(file: string, label: string): Promise<Stats> {
  try {
    return await lstat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FlotillaError("INVALID_SPEC", `${label}: cannot read ${file} (${code ?? String(err)})`);
  }
}
