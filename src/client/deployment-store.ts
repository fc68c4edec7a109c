/**
 * Writes desired state: applies validated specs as deployment records (all or
 * nothing), deletes deployments, and waits for a rollout to finish. Used by
 * the CLI, the programmatic API and the admin API alike.
 */
import { createHash, randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentRecord, DeploymentStatusRecord } from "../shared/records.js";
import type { DeploymentSpec } from "../spec/deployment-spec.js";
import { assertUnique } from "../spec/uniqueness.js";
import { recordStamp } from "../shared/record-stamp.js";
import { markFailed, markRolledOut, queueRevisions, type RevisionOptions } from "./revision-log.js";

/** JSON with object keys sorted, so equal values hash equally. */
export function canonicalJson(value: unknown): string {
  if (value === undefined) return "null";
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/**
 * The code version: stable for an explicit `version` with the same import,
 * actorOptions and way of shipping code (app directory or runtimeEnv package);
 * fresh on every deploy otherwise. With runtimeEnv it starts with the package
 * hash, so status shows which code a version runs. An explicit version is not
 * changed by new package contents: that deploy keeps the version's package
 * (and warns).
 */
export function codeVersionOf(spec: DeploymentSpec, packageHash?: string): string {
  if (spec.version === undefined) return `auto-${packageHash ? `${packageHash.slice(0, 8)}-` : ""}${randomUUID().slice(0, 8)}`;
  const shipped = spec.runtimeEnv ? { runtimeEnv: true } : {};
  return `${spec.version}-${shortHash(canonicalJson({ import: spec.import, actorOptions: spec.actorOptions, ...shipped }))}`.slice(0, 160);
}

export function configVersionOf(spec: DeploymentSpec): string {
  return shortHash(canonicalJson(spec.userConfig ?? null));
}

export interface ApplyResult {
  name: string;
  /** created: new deployment; updated: a change was applied; unchanged: same version and spec (no-op). */
  outcome: "created" | "updated" | "unchanged";
  generation: number;
  /** True when the change replaces replicas (a rolling update). */
  rollout: boolean;
  /** The package the deployment runs, for a spec with runtimeEnv. */
  runtimeEnv?: RuntimeEnvRef;
  /** Something the user should know, e.g. the code changed but the explicit version did not. */
  warning?: string;
  /** The revision this change recorded (none when unchanged). */
  revision?: number;
}

export interface RuntimeEnvRef {
  hash: string;
  bytes: number;
}

export interface ApplyOptions extends RevisionOptions {
  /** Deployment name → its package, already uploaded (see package-upload.ts): needed by every spec with runtimeEnv. */
  packages?: ReadonlyMap<string, RuntimeEnvRef>;
}

/**
 * Applies several specs atomically: either every record is written or none,
 * and each change is recorded as a revision in the same transaction.
 */
export async function applyDeployments(redis: Redis, keys: Keys, specs: readonly DeploymentSpec[], now = Date.now(), options: ApplyOptions = {}): Promise<ApplyResult[]> {
  const packages = options.packages ?? new Map<string, RuntimeEnvRef>();
  const unpacked = specs.filter((s) => s.runtimeEnv && !packages.has(s.name)).map((s) => s.name);
  if (unpacked.length > 0) {
    throw new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${unpacked.join(", ")}: runtimeEnv needs its workingDir packed and uploaded first; deploy with \`flotilla deploy\` or \`deployment().deploy()\``);
  }
  const existing = parseJsonHash<DeploymentRecord>(await redis.hgetall(keys.deployments));
  assertUnique(specs, [...existing.values()].map((r) => r.spec), (i) => specs[i]?.name ?? `deployments[${i}]`);
  const results: ApplyResult[] = [];
  const writes: string[] = [];
  const changed: DeploymentRecord[] = [];
  const stamps: string[] = [];
  for (const spec of specs) {
    const before = existing.get(spec.name);
    const pkg = spec.runtimeEnv ? packages.get(spec.name) : undefined;
    const codeVersion = codeVersionOf(spec, pkg?.hash);
    const sameCode = before !== undefined && before.codeVersion === codeVersion;
    // One code version runs one package: new contents under an unchanged explicit version are not deployed.
    const runtimeEnv = pkg && sameCode && before.runtimeEnv ? before.runtimeEnv : pkg ? { hash: pkg.hash, bytes: pkg.bytes } : undefined;
    const warning =
      pkg && runtimeEnv && runtimeEnv.hash !== pkg.hash
        ? `code changed but version did not: version '${spec.version ?? ""}' keeps running package ${runtimeEnv.hash.slice(0, 12)}; the new package ${pkg.hash.slice(0, 12)} is not deployed (change version to roll it out)`
        : undefined;
    const extras = { ...(runtimeEnv ? { runtimeEnv } : {}), ...(warning ? { warning } : {}) };
    if (sameCode && canonicalJson(before.spec) === canonicalJson(spec)) {
      results.push({ name: spec.name, outcome: "unchanged", generation: before.generation, rollout: false, ...extras });
      continue;
    }
    // The package the code ran before stays referenced (garbage collection keeps it for a rollback).
    const previousRuntimeEnv = before?.runtimeEnv && before.runtimeEnv.hash !== runtimeEnv?.hash ? before.runtimeEnv : before?.previousRuntimeEnv;
    const record: DeploymentRecord = {
      spec,
      codeVersion,
      configVersion: configVersionOf(spec),
      generation: (before?.generation ?? 0) + 1,
      deployedAt: now,
      ...(runtimeEnv ? { runtimeEnv } : {}),
      ...(previousRuntimeEnv && previousRuntimeEnv.hash !== runtimeEnv?.hash ? { previousRuntimeEnv } : {}),
    };
    writes.push(spec.name, JSON.stringify(record));
    changed.push(record);
    stamps.push(spec.name, recordStamp(record));
    results.push({ name: spec.name, outcome: before ? "updated" : "created", generation: record.generation, rollout: !before || before.codeVersion !== codeVersion, ...extras });
  }
  if (writes.length > 0) {
    // Every change is a revision, recorded in the same transaction as the records, their stamps and the version.
    // The revisions' replies must follow the record write (see queueRevisions), so the stamps and the version go after them.
    const tx = redis.multi().hset(keys.deployments, ...writes);
    const numbers = queueRevisions(tx, keys, changed, now, options);
    const revisions = numbers(await tx.hset(keys.deploymentGenerations, ...stamps).incr(keys.deploymentsVersion).publish(keys.changes, "deployments").exec());
    for (const r of results) if (revisions.has(r.name)) r.revision = revisions.get(r.name);
  }
  return results;
}

/** Deletes a deployment: its replicas drain, queued requests are answered 404, its queue and its request total go. */
export async function deleteDeployment(redis: Redis, keys: Keys, name: string): Promise<boolean> {
  const results = await redis
    .multi()
    .hdel(keys.deployments, name)
    .hdel(keys.deploymentGenerations, name)
    .incr(keys.deploymentsVersion)
    .publish(keys.changes, "deployments")
    .del(keys.revisions(name))
    // Its running request total goes with it: a later deployment of the name starts from 0, and the hash does not keep every name ever deleted.
    .hdel(keys.requestsTotal, name)
    .exec();
  return Number(results?.[0]?.[1] ?? 0) === 1;
}

export async function getDeployment(redis: Redis, keys: Keys, name: string): Promise<DeploymentRecord | undefined> {
  const raw = await redis.hget(keys.deployments, name);
  return raw ? (JSON.parse(raw) as DeploymentRecord) : undefined;
}

export interface RolloutProgress {
  name: string;
  status: DeploymentStatusRecord | undefined;
  generation: number;
}

/**
 * Waits until every named deployment at its applied generation is HEALTHY.
 * Rejects with the status message when one turns UNHEALTHY, or on timeout.
 */
export async function waitForRollout(
  redis: Redis,
  keys: Keys,
  targets: ReadonlyArray<{ name: string; generation: number; revision?: number | undefined }>,
  options: { timeoutMs: number; onProgress?: (progress: RolloutProgress[]) => void; pollMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastSeen: RolloutProgress[] = [];
  const rollsBack = new Map<string, boolean>();
  for (;;) {
    const raw = await redis.hmget(keys.deploymentStatus, ...targets.map((t) => t.name));
    lastSeen = targets.map((t, i) => ({ name: t.name, generation: t.generation, status: raw[i] ? (JSON.parse(raw[i] as string) as DeploymentStatusRecord) : undefined }));
    options.onProgress?.(lastSeen);
    const current = (p: RolloutProgress): boolean => p.status !== undefined && p.status.generation >= p.generation;
    const undone = lastSeen.find((p) => p.status?.rolledBack !== undefined && p.status.generation > p.generation && p.status.rolledBack.failedGeneration >= p.generation);
    if (undone?.status?.rolledBack) {
      const { to, failedRevision, error } = undone.status.rolledBack;
      throw new FlotillaError("ROLLOUT_FAILED", `rollout of '${undone.name}' failed and was rolled back to revision ${to}: revision ${failedRevision} failed: ${error}`, { details: { deployment: undone.name, status: undone.status } });
    }
    const failed = await firstFailed(redis, keys, lastSeen.filter((p) => current(p) && p.status?.status === "UNHEALTHY"), rollsBack);
    const revisionOf = (p: RolloutProgress): number | undefined => targets.find((t) => t.name === p.name && t.generation === p.generation)?.revision;
    if (failed?.status) {
      const revision = revisionOf(failed);
      if (revision !== undefined) await markFailed(redis, keys, failed.name, revision, failed.status.lastError ?? failed.status.message);
      throw new FlotillaError("ROLLOUT_FAILED", `rollout of '${failed.name}' failed: ${failed.status.message}`, { details: { deployment: failed.name, status: failed.status } });
    }
    if (lastSeen.every((p) => current(p) && p.status?.status === "HEALTHY")) {
      for (const p of lastSeen) {
        const revision = revisionOf(p);
        if (revision !== undefined && p.status?.generation === p.generation) await markRolledOut(redis, keys, p.name, revision);
      }
      return;
    }
    if (Date.now() >= deadline) {
      const waiting = lastSeen.filter((p) => !(current(p) && p.status?.status === "HEALTHY"));
      const detail = waiting.map((p) => `${p.name}: ${p.status && current(p) ? `${p.status.status}, ${p.status.message}` : "not yet picked up by a controller (is one running?)"}`).join("; ");
      throw new FlotillaError("TIMEOUT", `rollout did not finish within ${Math.round(options.timeoutMs / 1000)} s: ${detail}`);
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}

/**
 * The first UNHEALTHY rollout that has failed for good. One whose deployment
 * has rollbackOnFailure is still deciding (the controller retries it, then
 * rolls it back) unless its status says it will not be rolled back.
 * `rollsBack` caches, per deployment, whether its record has rollbackOnFailure.
 */
async function firstFailed(redis: Redis, keys: Keys, unhealthy: readonly RolloutProgress[], rollsBack: Map<string, boolean>): Promise<RolloutProgress | undefined> {
  for (const p of unhealthy) {
    if (p.status?.rolloutFailed !== undefined) return p;
    if (!rollsBack.has(p.name)) {
      const record = await getDeployment(redis, keys, p.name);
      rollsBack.set(p.name, record?.generation === p.generation && record.spec.rollbackOnFailure === true);
    }
    if (rollsBack.get(p.name) !== true) return p;
  }
  return undefined;
}
