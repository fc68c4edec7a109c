/**
 * Production dependencies of runtimeEnv packages: `npm ci --omit=dev
 * --ignore-scripts` once per distinct lockfile on a host, into
 * `<cache>/deps/<lockhash>/node_modules`, shared by every package with that
 * lockfile. Concurrent requests in one process wait for the one install;
 * across processes each installs into a temporary directory and renames it
 * into place, and a loser of that race uses the winner's result.
 *
 * `node_modules/flotilla` is always a link to this runtime's package root, so
 * `import "flotilla"` reaches the runtime the replica runs, whatever the
 * lockfile holds.
 */
import { spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, symlink } from "node:fs/promises";
import path from "node:path";
import { FlotillaError } from "../errors.js";

/** Lockfiles npm ci reads, in the order npm prefers them. */
const LOCKFILES = ["npm-shrinkwrap.json", "package-lock.json"] as const;
/** The deps set of packages without a lockfile: only the runtime link. */
export const NO_LOCKFILE = "none";

export interface Lockfile {
  name: (typeof LOCKFILES)[number];
  /** sha256 of the lockfile's bytes: the key its install is shared under. */
  hash: string;
}

/** The lockfile of a package that has package.json and one, or undefined. */
export async function findLockfile(packageDir: string): Promise<Lockfile | undefined> {
  if (!existsSync(path.join(packageDir, "package.json"))) return undefined;
  for (const name of LOCKFILES) {
    const file = path.join(packageDir, name);
    const stats = await lstat(file).catch(() => undefined);
    if (!stats?.isFile()) continue;
    return { name, hash: createHash("sha256").update(name).update("\0").update(await readFile(file)).digest("hex") };
  }
  return undefined;
}

/** Replaces `linkPath` with a symlink to `target` in one rename, so no reader sees it missing. */
export async function replaceWithLink(target: string, linkPath: string): Promise<void> {
  const current = await readlink(linkPath).catch(() => undefined);
  if (current === target) return;
  const existing = await lstat(linkPath).catch(() => undefined);
  if (existing && !existing.isSymbolicLink()) await rm(linkPath, { recursive: true, force: true });
  const temp = path.join(path.dirname(linkPath), `.${path.basename(linkPath)}-${randomUUID().slice(0, 8)}`);
  await symlink(target, temp, "dir");
  await rename(temp, linkPath);
}

export interface DepsInstallerOptions {
  /** `<cache>/deps`. */
  depsDir: string;
  /** Temporary directories, on the same file system as depsDir. */
  tmpDir: string;
  runtimeRoot: string;
  npmCommand: string;
  timeoutMs: number;
}

/** The last lines of a process's output, for an error message. */
function tail(text: string, lines = 20, chars = 2000): string {
  const kept = text.trimEnd().split("\n").slice(-lines).join("\n");
  return kept.length > chars ? `…${kept.slice(-chars)}` : kept;
}

export class DepsInstaller {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(private readonly options: DepsInstallerOptions) {}

  /** `<cache>/deps/<key>`: a deps set's directory (its node_modules is inside). */
  dirOf(key: string): string {
    return path.join(this.options.depsDir, key);
  }

  /** True when the deps set of `lockfile` is installed on this host. */
  isInstalled(lockfile: Lockfile | undefined): boolean {
    return existsSync(path.join(this.dirOf(lockfile?.hash ?? NO_LOCKFILE), "node_modules"));
  }

  /**
   * The node_modules for `lockfile` (installed from `sourceDir`, which holds
   * package.json, the lockfile and any `file:` dependencies), installing it
   * first if this host has not; `undefined` lockfile: only the runtime link.
   */
  ensure(sourceDir: string, lockfile: Lockfile | undefined, onInstalling?: () => void): Promise<string> {
    const key = lockfile?.hash ?? NO_LOCKFILE;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.ensureOnce(key, sourceDir, lockfile, onInstalling).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async ensureOnce(key: string, sourceDir: string, lockfile: Lockfile | undefined, onInstalling?: () => void): Promise<string> {
    const modules = path.join(this.dirOf(key), "node_modules");
    if (!existsSync(modules)) {
      await mkdir(this.options.depsDir, { recursive: true });
      await mkdir(this.options.tmpDir, { recursive: true });
      const work = await mkdtemp(path.join(this.options.tmpDir, `deps-${key.slice(0, 12)}-`));
      try {
        const result = path.join(work, "result");
        await mkdir(path.join(result, "node_modules"), { recursive: true });
        if (lockfile) {
          onInstalling?.();
          await this.npmCi(sourceDir, path.join(work, "project"), path.join(result, "node_modules"));
        }
        await replaceWithLink(this.options.runtimeRoot, path.join(result, "node_modules", "flotilla"));
        await rename(result, this.dirOf(key)).catch((err: NodeJS.ErrnoException) => {
          // Another process installed the same lockfile first: its result is as good as ours.
          if (!existsSync(modules)) throw err;
        });
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }
    // A cache kept across a runtime upgrade still points at the runtime this process is.
    await replaceWithLink(this.options.runtimeRoot, path.join(modules, "flotilla"));
    return modules;
  }

  /** Runs npm ci in `project` (the source's files, linked) and moves the node_modules it made to `into`. */
  private async npmCi(sourceDir: string, project: string, into: string): Promise<void> {
    await mkdir(project);
    for (const name of await readdir(sourceDir)) {
      if (name !== "node_modules") await symlink(path.join(sourceDir, name), path.join(project, name));
    }
    const args = ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"];
    const output = await new Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string; timedOut: boolean }>((resolve, reject) => {
      const child = spawn(this.options.npmCommand, args, { cwd: project, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, npm_config_loglevel: "warn" } });
      let stdout = "";
      let stderr = "";
      let timedOut = false;
      const keep = (text: string, more: Buffer): string => (text + more.toString()).slice(-65_536);
      child.stdout.on("data", (b: Buffer) => (stdout = keep(stdout, b)));
      child.stderr.on("data", (b: Buffer) => (stderr = keep(stderr, b)));
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, this.options.timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(new FlotillaError("INSTALL_FAILED", `cannot run '${this.options.npmCommand}': ${err.message}`, { cause: err }));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, timedOut });
      });
    });
    if (output.code !== 0) {
      const why = output.timedOut ? `did not finish within ${Math.round(this.options.timeoutMs / 1000)} s` : output.signal ? `was killed by ${output.signal}` : `exited with code ${output.code}`;
      const text = tail(output.stderr) || tail(output.stdout);
      throw new FlotillaError("INSTALL_FAILED", `npm ${args.join(" ")} ${why}${text ? `:\n${text}` : ""}`, { details: { exitCode: output.code } });
    }
    await rm(into, { recursive: true, force: true });
    await rename(path.join(project, "node_modules"), into).catch(async (err: NodeJS.ErrnoException) => {
      // A lockfile without dependencies leaves no node_modules behind.
      if (err.code !== "ENOENT") throw err;
      await mkdir(into);
    });
  }
}
