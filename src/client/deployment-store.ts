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
import { assertUnique } from "../spec/deployment-spec.js";

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

/** The code version: stable for an explicit `version` with the same import and actorOptions; fresh otherwise. */
export function codeVersionOf(spec: DeploymentSpec): string {
  if (spec.version === undefined) return `auto-${randomUUID().slice(0, 8)}`;
  return `${spec.version}-${shortHash(canonicalJson({ import: spec.import, actorOptions: spec.actorOptions }))}`.slice(0, 160);
}

export function configVersionOf(spec: DeploymentSpec): string {
  return shortHash(canonicalJson(spec.userConfig ?? null));
}

/**
 * What readers compare to see that a record changed (deployment-generations):
 * unique per write, also after a deployment is deleted and created again.
 */
function recordStamp(record: DeploymentRecord): string {
  return `${record.generation}-${randomUUID().slice(0, 8)}`;
}

export interface ApplyResult {
  name: string;
  /** created: new deployment; updated: a change was applied; unchanged: same version and spec (no-op). */
  outcome: "created" | "updated" | "unchanged";
  generation: number;
  /** True when the change replaces replicas (a rolling update). */
  rollout: boolean;
}

/** Applies several specs atomically: either every record is written or none. */
export async function applyDeployments(redis: Redis, keys: Keys, specs: readonly DeploymentSpec[], now = Date.now()): Promise<ApplyResult[]> {
  assertUnique(specs);
  const existing = parseJsonHash<DeploymentRecord>(await redis.hgetall(keys.deployments));
  const applying = new Set(specs.map((s) => s.name));
  const routes = new Map<string, string>();
  for (const record of existing.values()) {
    if (record.spec.routePrefix !== null && !applying.has(record.spec.name)) routes.set(record.spec.routePrefix, record.spec.name);
  }
  const results: ApplyResult[] = [];
  const writes: string[] = [];
  const stamps: string[] = [];
  for (const spec of specs) {
    if (spec.routePrefix !== null) {
      const owner = routes.get(spec.routePrefix);
      if (owner !== undefined) {
        throw new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${spec.name}.routePrefix: '${spec.routePrefix}' is already the route of deployment '${owner}'`);
      }
    }
    const before = existing.get(spec.name);
    const codeVersion = codeVersionOf(spec);
    if (before && before.codeVersion === codeVersion && canonicalJson(before.spec) === canonicalJson(spec)) {
      results.push({ name: spec.name, outcome: "unchanged", generation: before.generation, rollout: false });
      continue;
    }
    const record: DeploymentRecord = {
      spec,
      codeVersion,
      configVersion: configVersionOf(spec),
      generation: (before?.generation ?? 0) + 1,
      deployedAt: now,
    };
    writes.push(spec.name, JSON.stringify(record));
    stamps.push(spec.name, recordStamp(record));
    results.push({ name: spec.name, outcome: before ? "updated" : "created", generation: record.generation, rollout: !before || before.codeVersion !== codeVersion });
  }
  if (writes.length > 0) {
    await redis
      .multi()
      .hset(keys.deployments, ...writes)
      .hset(keys.deploymentGenerations, ...stamps)
      .incr(keys.deploymentsVersion)
      .publish(keys.changes, "deployments")
      .exec();
  }
  return results;
}

/** Deletes a deployment: its replicas drain, queued requests are answered 404, its queue goes. */
export async function deleteDeployment(redis: Redis, keys: Keys, name: string): Promise<boolean> {
  const results = await redis
    .multi()
    .hdel(keys.deployments, name)
    .hdel(keys.deploymentGenerations, name)
    .incr(keys.deploymentsVersion)
    .publish(keys.changes, "deployments")
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
  targets: ReadonlyArray<{ name: string; generation: number }>,
  options: { timeoutMs: number; onProgress?: (progress: RolloutProgress[]) => void; pollMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastSeen: RolloutProgress[] = [];
  for (;;) {
    const raw = await redis.hmget(keys.deploymentStatus, ...targets.map((t) => t.name));
    lastSeen = targets.map((t, i) => ({ name: t.name, generation: t.generation, status: raw[i] ? (JSON.parse(raw[i] as string) as DeploymentStatusRecord) : undefined }));
    options.onProgress?.(lastSeen);
    const current = (p: RolloutProgress): boolean => p.status !== undefined && p.status.generation >= p.generation;
    const failed = lastSeen.find((p) => current(p) && p.status?.status === "UNHEALTHY");
    if (failed?.status) {
      throw new FlotillaError("ROLLOUT_FAILED", `rollout of '${failed.name}' failed: ${failed.status.message}`, { details: { deployment: failed.name, status: failed.status } });
    }
    if (lastSeen.every((p) => current(p) && p.status?.status === "HEALTHY")) return;
    if (Date.now() >= deadline) {
      const waiting = lastSeen.filter((p) => !(current(p) && p.status?.status === "HEALTHY"));
      const detail = waiting.map((p) => `${p.name}: ${p.status && current(p) ? `${p.status.status}, ${p.status.message}` : "not yet picked up by a controller (is one running?)"}`).join("; ");
      throw new FlotillaError("TIMEOUT", `rollout did not finish within ${Math.round(options.timeoutMs / 1000)} s: ${detail}`);
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}
