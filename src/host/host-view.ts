/**
 * What a host knows of the cluster: its own assignments and the records of
 * the deployments they name, read only when they changed. On every heartbeat
 * the host checks two small things: its generation (the leader bumps it in
 * the write that changes the host's assignments) and the stamps of the
 * records it holds (deployment-generations, written with each record). A
 * change message on the host's channel makes the check come sooner; a missed
 * message only delays it to the next heartbeat.
 */
import type { ChainableCommander, Redis } from "ioredis";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentRecord, ReplicaAssignment } from "../shared/records.js";

/** Everything is read again after this long even without a change: a safety net, not the way changes arrive. */
export const HOST_RESYNC_MS = 5 * 60_000;

/** The heartbeat's answer to the check. */
export interface HostCheck {
  generation: string | null;
  /** Stamp of each record held, in the order of `names`. */
  stamps: ReadonlyArray<string | null>;
  names: readonly string[];
}

type PipelineResult = Array<[Error | null, unknown]>;

function valueAt(results: PipelineResult, i: number): unknown {
  const entry = results[i];
  if (!entry) throw new Error(`no reply at ${i} of the pipeline`);
  if (entry[0]) throw entry[0];
  return entry[1];
}

export class HostView {
  private assignmentMap = new Map<string, ReplicaAssignment>();
  private recordMap = new Map<string, DeploymentRecord>();
  /** The generation the assignments were read at; undefined before the first read. */
  private generation: string | null | undefined;
  /** Stamp of each record in recordMap (null: none was stored with it). */
  private stamps = new Map<string, string | null>();
  private readAt = -Infinity;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly hostId: string,
  ) {}

  get assignments(): ReadonlyMap<string, ReplicaAssignment> {
    return this.assignmentMap;
  }

  get records(): ReadonlyMap<string, DeploymentRecord> {
    return this.recordMap;
  }

  /** Appends the check to a pipeline (the heartbeat's); `read` takes it from the pipeline's results. */
  appendCheck(pipeline: ChainableCommander, offset: number): { read: (results: PipelineResult) => HostCheck } {
    const names = [...this.stamps.keys()];
    pipeline.hget(this.keys.hostGenerations, this.hostId);
    if (names.length > 0) pipeline.hmget(this.keys.deploymentGenerations, ...names);
    return {
      read: (results) => ({
        generation: valueAt(results, offset) as string | null,
        stamps: names.length > 0 ? (valueAt(results, offset + 1) as Array<string | null>) : [],
        names,
      }),
    };
  }

  /** Reads what the check says changed; true when anything was read. */
  async catchUp(check: HostCheck, now: number): Promise<boolean> {
    if (check.generation !== this.generation || now - this.readAt > HOST_RESYNC_MS) {
      await this.readAll(check.generation, now);
      return true;
    }
    const changed = check.names.filter((name, i) => (check.stamps[i] ?? null) !== this.stamps.get(name));
    if (changed.length === 0) return false;
    const raw = await this.redis.hmget(this.keys.deployments, ...changed);
    changed.forEach((name, i) => {
      this.stamps.set(name, check.stamps[check.names.indexOf(name)] ?? null);
      this.setRecord(name, raw[i] ?? null);
    });
    return true;
  }

  /** The host's assignments, then the records (and their stamps) of the deployments they name. */
  private async readAll(generation: string | null, now: number): Promise<void> {
    const assignments = parseJsonHash<ReplicaAssignment>(await this.redis.hgetall(this.keys.hostAssignments(this.hostId)));
    const names = [...new Set([...assignments.values()].map((a) => a.deployment))];
    const stamps = new Map<string, string | null>();
    const records = new Map<string, DeploymentRecord>();
    if (names.length > 0) {
      // Stamps before records: a record written in between is read again at the next check, never missed.
      const results = ((await this.redis.pipeline().hmget(this.keys.deploymentGenerations, ...names).hmget(this.keys.deployments, ...names).exec()) ?? []) as PipelineResult;
      const stampValues = valueAt(results, 0) as Array<string | null>;
      const recordValues = valueAt(results, 1) as Array<string | null>;
      names.forEach((name, i) => {
        stamps.set(name, stampValues[i] ?? null);
        const record = parseRecord(recordValues[i] ?? null);
        if (record) records.set(name, record);
      });
    }
    this.assignmentMap = assignments;
    this.recordMap = records;
    this.stamps = stamps;
    this.generation = generation;
    this.readAt = now;
  }

  private setRecord(name: string, raw: string | null): void {
    const record = parseRecord(raw);
    if (record) this.recordMap.set(name, record);
    else this.recordMap.delete(name);
  }
}

function parseRecord(raw: string | null): DeploymentRecord | undefined {
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as DeploymentRecord;
  } catch {
    return undefined;
  }
}
