/**
 * The replicas of one host agent whose runtimeEnv package is being prepared
 * (fetched, unpacked, its dependencies installed) before their process
 * starts. Preparation is asynchronous and never blocks the agent's tick: the
 * replica shows as `starting` with a note meanwhile, and once it ends the
 * agent is nudged and the host plan decides (start it, mark it failed, or
 * drop it when it is no longer wanted).
 */
import { errorMessage, FlotillaError } from "../errors.js";
import { formatBytes } from "../runtime-env/pack.js";
import type { PackageStore } from "../runtime-env/package-store.js";
import { prepareRuntimeEnv, type RuntimeEnvPhase } from "../runtime-env/prepare.js";
import type { Logger } from "../shared/logger.js";
import type { DeploymentRecord, ReplicaAssignment, ReplicaState, ReplicaStatus } from "../shared/records.js";
import type { PreparingReplica } from "./host-plan.js";
import type { HostPackageCache } from "./host-package-cache.js";

interface Job extends PreparingReplica {
  readonly id: string;
  readonly deployment: string;
  readonly hash: string;
  readonly codeVersion: string;
  readonly configVersion: string;
  readonly startedAt: number;
  state: PreparingReplica["state"];
  appDir?: string;
  note: string;
  error?: string;
}

export interface PreparerHooks {
  now(): number;
  /** The note of a replica changed: write the statuses. */
  onChange(): void;
  /** A preparation ended: plan again. */
  onSettled(): void;
}

export function phaseNote(phase: RuntimeEnvPhase | "checking", hash: string, bytes: number): string {
  const short = hash.slice(0, 12);
  if (phase === "fetching") return `fetching package ${short} (${formatBytes(bytes)})`;
  if (phase === "installing") return `installing dependencies of package ${short} (npm ci)`;
  return `preparing package ${short}`;
}

export class RuntimeEnvPreparer {
  private readonly jobs = new Map<string, Job>();
  /** Replica id → its package and the release of its hold on it (from preparation until its process ends). */
  private readonly holds = new Map<string, { hash: string; release: () => void }>();

  constructor(
    private readonly packages: HostPackageCache,
    private readonly store: PackageStore,
    private readonly log: Logger,
    private readonly hooks: PreparerHooks,
  ) {}

  /** Starts preparing the package of a replica's record. */
  begin(a: ReplicaAssignment, record: DeploymentRecord): void {
    const ref = record.runtimeEnv;
    if (!ref || this.jobs.has(a.id)) return;
    this.hold(a.id, ref.hash);
    const job: Job = {
      id: a.id,
      deployment: a.deployment,
      hash: ref.hash,
      codeVersion: a.codeVersion,
      configVersion: record.configVersion,
      startedAt: this.hooks.now(),
      state: "preparing",
      note: phaseNote("checking", ref.hash, ref.bytes),
    };
    this.jobs.set(a.id, job);
    let fetched = false;
    const onPhase = (phase: RuntimeEnvPhase): void => {
      if (phase === "fetching") fetched = true;
      job.note = phaseNote(phase, ref.hash, ref.bytes);
      this.log.info({ replica: a.id, deployment: a.deployment, hash: ref.hash, bytes: ref.bytes }, job.note);
      this.hooks.onChange();
    };
    prepareRuntimeEnv(this.packages.cache, this.store, ref, { onPhase }).then(
      (prepared) => {
        this.packages.markPrepared(ref.hash, prepared.appDir, fetched);
        if (this.jobs.get(a.id) !== job) return;
        job.state = "prepared";
        job.appDir = prepared.appDir;
        if (fetched) this.log.info({ replica: a.id, hash: ref.hash, ms: this.hooks.now() - job.startedAt }, "runtimeEnv package ready");
        this.hooks.onSettled();
      },
      (err: unknown) => {
        if (this.jobs.get(a.id) !== job) return;
        job.state = "failed";
        job.error = err instanceof FlotillaError ? `${err.code}: ${err.message}` : `preparing package ${ref.hash.slice(0, 12)} failed: ${errorMessage(err)}`;
        this.log.warn({ replica: a.id, deployment: a.deployment, hash: ref.hash, err: job.error }, "runtimeEnv package could not be prepared");
        this.hooks.onSettled();
      },
    );
  }

  /** What the host plan sees of the replicas being prepared. */
  view(): ReadonlyMap<string, PreparingReplica> {
    return this.jobs;
  }

  get size(): number {
    return this.jobs.size;
  }

  /** A replica's package is held (spared by eviction) until release(id). */
  hold(id: string, hash: string): void {
    if (!this.holds.has(id)) this.holds.set(id, { hash, release: this.packages.use(hash) });
  }

  /**
   * The replica's process ended. One that failed makes the next start of its
   * package prepare it again, which repairs what another process sharing
   * the cache may have evicted under it.
   */
  release(id: string, failed = false): void {
    const held = this.holds.get(id);
    if (!held) return;
    if (failed) this.packages.forget(held.hash);
    held.release();
    this.holds.delete(id);
  }

  /**
   * Ends a replica's preparation as the plan decided: `start` hands it over
   * (its hold stays with the process); `failed` and `stopped` give the status
   * it ended with, and release the package.
   */
  finish(id: string, outcome: "start"): void;
  finish(id: string, outcome: "failed" | "stopped", hostId: string): ReplicaStatus | undefined;
  finish(id: string, outcome: "start" | "failed" | "stopped", hostId?: string): ReplicaStatus | undefined {
    const job = this.jobs.get(id);
    this.jobs.delete(id);
    if (outcome === "start" || !job) return undefined;
    this.release(id, outcome === "failed");
    return this.statusOf(job, hostId ?? "", outcome, this.hooks.now());
  }

  /** Every replica being prepared ends stopped (the host stops). */
  stopAll(hostId: string): ReplicaStatus[] {
    return [...this.jobs.keys()].map((id) => this.finish(id, "stopped", hostId)).filter((s): s is ReplicaStatus => s !== undefined);
  }

  /** The statuses of the replicas being prepared: `starting`, with what they are doing as the note. */
  statuses(hostId: string, now: number): ReplicaStatus[] {
    return [...this.jobs.values()].map((job) => this.statusOf(job, hostId, "starting", now));
  }

  private statusOf(job: Job, hostId: string, state: ReplicaState, now: number): ReplicaStatus {
    return {
      id: job.id,
      deployment: job.deployment,
      host: hostId,
      state,
      codeVersion: job.codeVersion,
      configVersion: job.configVersion,
      pid: null,
      workerId: null,
      inflight: 0,
      ...(state === "failed" && job.error ? { error: job.error } : {}),
      ...(state === "starting" ? { note: job.note } : {}),
      startedAt: job.startedAt,
      updatedAt: now,
    };
  }
}
