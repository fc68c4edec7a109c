/**
 * A host's runtimeEnv cache on disk:
 *
 *   <cacheDir>/packages/<hash>/        an unpacked, verified package (the replica's app directory)
 *   <cacheDir>/deps/<lockhash>/node_modules   dependencies shared by packages with that lockfile
 *   <cacheDir>/tmp/                    unpacks and installs in progress
 *
 * Everything appears by one rename from tmp/, so a reader (in this process
 * or another sharing the cache) sees a whole directory or none. Use marks an
 * entry's directory mtime; eviction removes the least recently used entries
 * not in use until the cache fits `cacheMaxGiB`.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readlink, rename, rm, utimes } from "node:fs/promises";
import path from "node:path";
import { parseRuntimeEnvCacheOptions, type RuntimeEnvCacheOptions, type RuntimeEnvCacheOptionsInput } from "./cache-options.js";
import { DepsInstaller } from "./deps-install.js";
import { runtimePackageRoot } from "./runtime-root.js";
import { unpackArchive } from "./unpack.js";

export interface EvictionResult {
  /** Directories removed (`packages/<hash>` or `deps/<lockhash>`, relative to the cache). */
  removed: string[];
  /** Bytes the cache holds after eviction. */
  bytes: number;
}

interface CacheEntry {
  rel: string;
  dir: string;
  bytes: number;
  lastUsedMs: number;
}

async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const stats = await lstat(path.join(entry.parentPath ?? (entry as { path?: string }).path ?? dir, entry.name)).catch(() => undefined);
    if (stats) total += stats.isDirectory() ? 0 : stats.size;
  }
  return total;
}

export class RuntimeEnvCache {
  readonly options: RuntimeEnvCacheOptions;
  readonly deps: DepsInstaller;
  private readonly packagesDir: string;
  private readonly depsDir: string;
  private readonly tmpDir: string;
  private readonly unpacking = new Map<string, Promise<string>>();

  constructor(options: RuntimeEnvCacheOptionsInput = {}, runtimeRoot = runtimePackageRoot()) {
    this.options = parseRuntimeEnvCacheOptions(options);
    this.packagesDir = path.join(this.options.cacheDir, "packages");
    this.depsDir = path.join(this.options.cacheDir, "deps");
    this.tmpDir = path.join(this.options.cacheDir, "tmp");
    this.deps = new DepsInstaller({ depsDir: this.depsDir, tmpDir: this.tmpDir, runtimeRoot, npmCommand: this.options.npmCommand, timeoutMs: this.options.installTimeoutS * 1000 });
  }

  packageDir(hash: string): string {
    return path.join(this.packagesDir, hash);
  }

  hasPackage(hash: string): boolean {
    return existsSync(this.packageDir(hash));
  }

  /**
   * The unpacked directory of `hash`; when it is not cached, `fetch()` gives the
   * verified archive, which is unpacked into tmp/ and renamed into place.
   * Concurrent calls for one hash share one fetch.
   */
  ensurePackage(hash: string, fetch: () => Promise<Buffer>): Promise<string> {
    let pending = this.unpacking.get(hash);
    if (!pending) {
      pending = this.unpackOnce(hash, fetch).finally(() => this.unpacking.delete(hash));
      this.unpacking.set(hash, pending);
    }
    return pending;
  }

  private async unpackOnce(hash: string, fetch: () => Promise<Buffer>): Promise<string> {
    const dir = this.packageDir(hash);
    if (existsSync(dir)) return dir;
    const data = await fetch();
    await mkdir(this.packagesDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    const work = await mkdtemp(path.join(this.tmpDir, `pkg-${hash.slice(0, 12)}-`));
    try {
      const target = path.join(work, "package");
      await unpackArchive(data, target);
      await rename(target, dir).catch((err: NodeJS.ErrnoException) => {
        // Another process unpacked the same verified package first.
        if (!existsSync(dir)) throw err;
      });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    return dir;
  }

  /** Marks a package (and the deps set its node_modules links to) as just used. */
  async touch(hash: string): Promise<void> {
    const now = new Date();
    const dir = this.packageDir(hash);
    await utimes(dir, now, now).catch(() => undefined);
    const deps = await this.depsKeyOf(dir);
    if (deps) await utimes(path.join(this.depsDir, deps), now, now).catch(() => undefined);
  }

  /** The deps set a package's node_modules links to, if any. */
  private async depsKeyOf(packageDir: string): Promise<string | undefined> {
    const target = await readlink(path.join(packageDir, "node_modules")).catch(() => undefined);
    if (!target) return undefined;
    const rel = path.relative(this.depsDir, path.dirname(target));
    return rel && !rel.includes(path.sep) && !rel.startsWith("..") ? rel : undefined;
  }

  /**
   * Removes the least recently used packages and deps sets until the cache
   * holds at most `cacheMaxGiB`, sparing the packages in `inUse` (and the deps
   * sets they use), which it touches, and anything used within `minIdleS`.
   * Also removes leftovers of unpacks and installs that died.
   */
  async evict(inUse: ReadonlySet<string>, now = Date.now()): Promise<EvictionResult> {
    for (const hash of inUse) await this.touch(hash);
    const busyDeps = new Set<string>();
    for (const hash of inUse) {
      const key = await this.depsKeyOf(this.packageDir(hash));
      if (key) busyDeps.add(key);
    }
    const entries: CacheEntry[] = [];
    for (const [parent, kind] of [
      [this.packagesDir, "packages"],
      [this.depsDir, "deps"],
    ] as const) {
      for (const name of await readdir(parent).catch(() => [] as string[])) {
        if ((kind === "packages" && inUse.has(name)) || (kind === "deps" && busyDeps.has(name))) continue;
        const dir = path.join(parent, name);
        const stats = await lstat(dir).catch(() => undefined);
        if (stats?.isDirectory()) entries.push({ rel: `${kind}/${name}`, dir, bytes: await sizeOf(dir), lastUsedMs: stats.mtimeMs });
      }
    }
    await this.removeStaleTemps(now);
    let total = 0;
    for (const hash of inUse) total += await sizeOf(this.packageDir(hash));
    for (const key of busyDeps) total += await sizeOf(path.join(this.depsDir, key));
    for (const entry of entries) total += entry.bytes;
    const limit = this.options.cacheMaxGiB * 1024 ** 3;
    const removed: string[] = [];
    const idleBefore = now - this.options.minIdleS * 1000;
    for (const entry of entries.sort((a, b) => a.lastUsedMs - b.lastUsedMs)) {
      if (total <= limit) break;
      if (entry.lastUsedMs > idleBefore) continue;
      await this.remove(entry.dir);
      removed.push(entry.rel);
      total -= entry.bytes;
    }
    return { removed, bytes: total };
  }

  /** Renames a directory out of the way first, so a reader never sees it half deleted. */
  private async remove(dir: string): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    const doomed = path.join(this.tmpDir, `evict-${randomUUID().slice(0, 8)}`);
    await rename(dir, doomed);
    await rm(doomed, { recursive: true, force: true });
  }

  private async removeStaleTemps(now: number): Promise<void> {
    const staleBefore = now - 2 * this.options.installTimeoutS * 1000;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const dir = path.join(this.tmpDir, name);
      const stats = await lstat(dir).catch(() => undefined);
      if (stats && (name.startsWith("evict-") || stats.mtimeMs < staleBefore)) await rm(dir, { recursive: true, force: true });
    }
  }
}
