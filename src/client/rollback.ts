/**
 * Rollback: applies an earlier revision's spec again, as a normal deploy (a
 * rolling update with the usual guarantees). The new revision names the one it
 * brought back; the one it replaces becomes `rolled back`.
 */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import { parseDeploymentSpec } from "../spec/deployment-spec.js";
import { applyDeployments, getDeployment, type ApplyResult } from "./deployment-store.js";
import type { RevisionSource } from "./revision-policy.js";
import { chooseRollbackTarget } from "./revision-policy.js";
import { readRevisions } from "./revisions.js";

export interface RollbackOptions {
  /** The revision to return to. @default the newest earlier revision that rolled out with another spec */
  to?: number;
  source?: RevisionSource;
  now?: number;
}

export interface RollbackResult extends ApplyResult {
  /** The revision whose spec was applied again. */
  rollbackOf: number;
  /** The revision that was current before (now `rolled back`). */
  from: number;
}

export async function rollbackDeployment(redis: Redis, keys: Keys, name: string, options: RollbackOptions = {}): Promise<RollbackResult> {
  if (options.to !== undefined && (!Number.isInteger(options.to) || options.to < 1)) {
    throw new FlotillaError("INVALID_REQUEST", `the revision to roll back to must be a whole number >= 1, got ${JSON.stringify(options.to)}`);
  }
  const record = await getDeployment(redis, keys, name);
  if (!record) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}'`);
  const revisions = await readRevisions(redis, keys, name);
  const target = chooseRollbackTarget(name, revisions, record.spec, options.to);
  const from = revisions[revisions.length - 1]?.revision ?? 0;
  // Parsed again: a spec stored by an older release gets today's defaults and checks.
  const spec = parseDeploymentSpec(target.spec, `revision ${target.revision}`);
  const [result] = await applyDeployments(redis, keys, [spec], options.now ?? Date.now(), {
    rollbackOf: { [name]: target.revision },
    ...(target.runtimeEnv ? { packages: new Map([[name, target.runtimeEnv]]) } : {}),
    ...(options.source ? { source: options.source } : {}),
  });
  if (!result) throw new FlotillaError("INTERNAL", "apply returned no result");
  return { ...result, rollbackOf: target.revision, from };
}
