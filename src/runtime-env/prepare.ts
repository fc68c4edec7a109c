/**
 * What a host does before a replica of a runtimeEnv deployment starts: make
 * sure the package is fetched, verified and unpacked in the cache, its
 * lockfile's dependencies are installed, and its node_modules links to them
 * (with `flotilla` reaching this runtime). The directory returned is the
 * replica's app directory.
 */
import path from "node:path";
import { FlotillaError } from "../errors.js";
import { findLockfile, replaceWithLink } from "./deps-install.js";
import type { RuntimeEnvCache } from "./package-cache.js";
import type { PackageStore } from "./package-store.js";

/** What a deployment record carries about its package. */
export interface RuntimeEnvRef {
  /** sha256 of the package archive. */
  hash: string;
  /** Size of the archive. */
  bytes: number;
}

/** Slow steps a replica's status can show while it starts. */
export type RuntimeEnvPhase = "fetching" | "installing";

export interface PrepareRuntimeEnvOptions {
  /** Called when a slow step begins (only when it has work to do). */
  onPhase?: (phase: RuntimeEnvPhase) => void;
}

export interface PreparedRuntimeEnv {
  /** The unpacked package: the replica's app directory (`import` is relative to it). */
  appDir: string;
  hash: string;
  /** sha256 key of the lockfile's deps set, or null when the package has no package.json + lockfile. */
  lockHash: string | null;
}

const SHA256 = /^[0-9a-f]{64}$/;

/**
 * Fetches (if missing), verifies, unpacks and installs one package. Errors are
 * FlotillaErrors: PACKAGE_FETCH_FAILED, PACKAGE_INVALID or INSTALL_FAILED,
 * with the cause in the message, for the replica's status.
 */
export async function prepareRuntimeEnv(cache: RuntimeEnvCache, store: PackageStore, ref: RuntimeEnvRef, options: PrepareRuntimeEnvOptions = {}): Promise<PreparedRuntimeEnv> {
  if (!SHA256.test(ref.hash)) throw new FlotillaError("PACKAGE_FETCH_FAILED", `runtimeEnv hash '${ref.hash.slice(0, 80)}' is not a sha256`);
  if (!cache.hasPackage(ref.hash)) options.onPhase?.("fetching");
  const appDir = await cache.ensurePackage(ref.hash, () => store.download(ref.hash, ref.bytes));
  const lockfile = await findLockfile(appDir);
  if (lockfile && !cache.deps.isInstalled(lockfile)) options.onPhase?.("installing");
  const modules = await cache.deps.ensure(appDir, lockfile);
  await replaceWithLink(modules, path.join(appDir, "node_modules"));
  await cache.touch(ref.hash);
  return { appDir, hash: ref.hash, lockHash: lockfile?.hash ?? null };
}
