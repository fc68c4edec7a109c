/**
 * The client side of runtime environments: pack every spec's `workingDir`,
 * refuse any problem (a symlink out, a package over the limit, an import
 * that is not in the package) before anything is uploaded, then upload each
 * distinct package once (skipped when Redis holds it already).
 */
import path from "node:path";
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import { DEFAULT_MAX_PACKAGE_BYTES, packWorkingDir, type PackedPackage } from "../runtime-env/pack.js";
import { PackageStore } from "../runtime-env/package-store.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentSpec } from "../spec/deployment-spec.js";

export interface PackagingOptions {
  /** What a relative workingDir is relative to: the deploy file's directory, or the cwd for the API. */
  baseDir: string;
  /** @default 100 MiB */
  maxBytes?: number;
}

export interface UploadedPackage {
  hash: string;
  bytes: number;
  /** The directory packed (after symlinks). */
  workingDir: string;
  /** Entries in the package. */
  entries: number;
  /** False when Redis held this hash already and nothing was sent. */
  uploaded: boolean;
}

function modulePathOf(ref: string): string {
  const hash = ref.lastIndexOf("#");
  return hash === -1 ? ref : ref.slice(0, hash);
}

/** Packs every spec with a runtimeEnv; nothing is uploaded. Errors name the deployment. */
export async function packRuntimeEnvs(specs: readonly DeploymentSpec[], options: PackagingOptions): Promise<Map<string, PackedPackage>> {
  const packed = new Map<string, PackedPackage>();
  const byDir = new Map<string, PackedPackage>();
  for (const spec of specs) {
    if (!spec.runtimeEnv) continue;
    const dir = path.resolve(options.baseDir, spec.runtimeEnv.workingDir);
    const key = JSON.stringify([dir, spec.runtimeEnv.excludes]);
    let pkg = byDir.get(key);
    if (!pkg) {
      try {
        pkg = await packWorkingDir(dir, { excludes: spec.runtimeEnv.excludes, maxBytes: options.maxBytes ?? DEFAULT_MAX_PACKAGE_BYTES });
      } catch (err) {
        if (err instanceof FlotillaError) throw new FlotillaError(err.code, `${spec.name}: ${err.message}`, { details: { deployment: spec.name, ...err.details } });
        throw err;
      }
      byDir.set(key, pkg);
    }
    const modulePath = modulePathOf(spec.import);
    if (!pkg.paths.includes(modulePath)) {
      throw new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${spec.name}.import: '${modulePath}' is not a file in the package of runtimeEnv.workingDir ${pkg.workingDir} (missing, or left out by the excludes)`);
    }
    packed.set(spec.name, pkg);
  }
  return packed;
}

/** Uploads packed packages, each distinct hash once. */
export async function uploadPackages(redis: Redis, keys: Keys, packed: ReadonlyMap<string, PackedPackage>): Promise<Map<string, UploadedPackage>> {
  const store = new PackageStore(redis, keys);
  const byHash = new Map<string, boolean>();
  const out = new Map<string, UploadedPackage>();
  for (const [name, pkg] of packed) {
    let uploaded = byHash.get(pkg.hash);
    if (uploaded === undefined) {
      uploaded = (await store.upload(pkg.data)).uploaded;
      byHash.set(pkg.hash, uploaded);
    }
    out.set(name, { hash: pkg.hash, bytes: pkg.bytes, workingDir: pkg.workingDir, entries: pkg.paths.length, uploaded });
  }
  return out;
}

/** Packs, checks, then uploads: what `deploy` does before it writes any record. */
export async function packAndUpload(redis: Redis, keys: Keys, specs: readonly DeploymentSpec[], options: PackagingOptions): Promise<Map<string, UploadedPackage>> {
  return uploadPackages(redis, keys, await packRuntimeEnvs(specs, options));
}
