/**
 * Reading a deployment's revision history (`flotilla history`, the admin API,
 * the dashboard). Reading settles the current revision's outcome from the
 * deployment's status when it has one to reach, so a deploy made with
 * `--no-wait` still shows how it ended.
 */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentStatusRecord } from "../shared/records.js";
import { applyOutcome } from "./revision-log.js";
import { settledOutcome, type Revision, type RevisionBody, type RevisionState } from "./revision-policy.js";

export interface History {
  deployment: string;
  /** Whether the deployment exists now. */
  exists: boolean;
  /** The number of the newest revision (0 when none was recorded). */
  current: number;
  /** Oldest first. */
  revisions: Revision[];
}

/** Parses the revisions hash: complete revisions only, oldest first. */
export function parseRevisions(hash: Record<string, string>): Revision[] {
  const out: Revision[] = [];
  for (const [field, raw] of Object.entries(hash)) {
    const match = /^r:(\d+)$/.exec(field);
    if (!match) continue;
    const stateRaw = hash[`o:${match[1]}`];
    if (stateRaw === undefined) continue;
    const body = JSON.parse(raw) as RevisionBody;
    const state = JSON.parse(stateRaw) as RevisionState;
    out.push({ revision: Number(match[1]), ...body, ...state });
  }
  return out.sort((a, b) => a.revision - b.revision);
}

export async function readRevisions(redis: Redis, keys: Keys, name: string): Promise<Revision[]> {
  return parseRevisions(await redis.hgetall(keys.revisions(name)));
}

/**
 * The history of one deployment, with its current revision's outcome settled from the status.
 * NOT_FOUND when the deployment neither exists nor has revisions.
 */
export async function readHistory(redis: Redis, keys: Keys, name: string, now = Date.now()): Promise<History> {
  const replies = (await redis.multi().hgetall(keys.revisions(name)).hexists(keys.deployments, name).hget(keys.deploymentStatus, name).exec()) ?? [];
  for (const [err] of replies) if (err) throw err;
  const revisions = parseRevisions((replies[0]?.[1] ?? {}) as Record<string, string>);
  const exists = Number(replies[1]?.[1]) === 1;
  const statusRaw = replies[2]?.[1];
  if (!exists && revisions.length === 0) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}'`);
  const latest = revisions[revisions.length - 1];
  if (latest && exists && typeof statusRaw === "string") {
    const change = settledOutcome(JSON.parse(statusRaw) as DeploymentStatusRecord, latest);
    if (change && (await applyOutcome(redis, keys, name, latest.revision, change, now))) {
      latest.outcome = change.outcome;
      latest.at = now;
      if (change.outcome === "rolled out") {
        latest.rolledOutAt = now;
        delete latest.error;
      } else if (change.error !== undefined) latest.error = change.error;
    }
  }
  return { deployment: name, exists, current: latest?.revision ?? 0, revisions };
}
