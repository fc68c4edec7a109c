/**
 * One host tick as a pure function: from the assignments, the records of the
 * deployments they name and what the host knows of its own processes, the
 * actions that bring the processes in line with what the controller wants.
 * Level-triggered: the same state gives the same actions, and an action
 * already carried out (a drain asked for, a reconfigure sent) is not repeated.
 * The host agent reads the state, calls planHost and carries the actions out.
 *
 * It also decides when a live replica is replaced: after
 * healthCheckFailureThreshold consecutive failed health checks, or with
 * resident memory above actorOptions.memoryMiB for MEMORY_SAMPLES samples in
 * a row, it is drained (it takes no new jobs and finishes what it runs); with
 * a ping unanswered for healthCheckTimeoutS (a blocked event loop) it is
 * killed, and its jobs are retried as after a crash. Either way its status
 * says draining or failed, and the controller starts a successor.
 */
import { settingsKey, settingsOf, type ReplicaSettings } from "../actors/replica-config.js";
import type { ReplicaProcessState } from "../actors/replica-ipc.js";
import type { DeploymentRecord, ReplicaAssignment, ReplicaHealth, Replacement, ReplacementKind } from "../shared/records.js";

/** A reconfigure that got no answer (the configVersion did not change) is sent again after this long. */
export const RECONFIGURE_RETRY_MS = 5000;
/** A prestarted process that ends before it is ready pauses prestarting for this long. */
export const PRESTART_BACKOFF_MS = 30_000;
/** Consecutive memory samples (one per answered ping) above memoryMiB that make a replica too big. */
export const MEMORY_SAMPLES = 3;

/** What the host observed of a replica's health, and the limits it runs with. */
export interface ReplicaVitals {
  readonly health: ReplicaHealth;
  /** When the ping still unanswered was sent; null when every ping was answered. */
  readonly pingSentAt: number | null;
  /** Resident memory (MiB) at the last answered pings, oldest first, at most MEMORY_SAMPLES. */
  readonly rssMiB: readonly number[];
  readonly healthCheckFailureThreshold: number;
  readonly healthCheckTimeoutS: number;
  readonly memoryMiB: number | null;
  /** Why the host replaces it, once it decided to. */
  readonly replacement: Replacement | null;
}

/** A replica process of this host, as far as the plan needs it. */
export interface LocalReplica {
  readonly id: string;
  readonly state: ReplicaProcessState;
  /** The userConfig version it runs with. */
  readonly configVersion: string | null;
  /** The settings it runs with (see settingsKey). */
  readonly settingsKey: string;
  /** The configVersion last sent with a reconfigure, and when. */
  readonly reconfigureSent: { readonly configVersion: string; readonly at: number } | null;
  /** The host asked it to drain. */
  readonly drainRequested: boolean;
  readonly vitals: ReplicaVitals;
}

/** What the host knows of itself. */
export interface HostLocal {
  readonly hostId: string;
  /** The host is stopping: it drains every replica and starts nothing. */
  readonly stopping: boolean;
  /** Live replica processes by replica id. */
  readonly replicas: ReadonlyMap<string, LocalReplica>;
  /** Replica ids that ran here and ended: never started again under the same id. */
  readonly finished: ReadonlySet<string>;
  readonly prestart: {
    /** Processes to keep started ahead of need. */
    readonly target: number;
    /** Processes started ahead and not yet taken. */
    readonly pooled: number;
    /** When a prestarted process last ended before it was ready. */
    readonly earlyExitAt: number | null;
  };
  /** runtimeEnv packages on this host; omitted: none prepared and none being prepared. */
  readonly runtimeEnvs?: LocalRuntimeEnvs;
}

/** A replica whose runtimeEnv package is being prepared before its process starts. */
export interface PreparingReplica {
  /** `prepared`: ready to start from `appDir`; `failed`: the package could not be prepared. */
  readonly state: "preparing" | "prepared" | "failed";
  readonly appDir?: string;
}

export interface LocalRuntimeEnvs {
  /** Packages prepared on this host, whose replicas start at once: sha256 → app directory. */
  readonly ready: ReadonlyMap<string, string>;
  /** Replicas whose package is being prepared, or whose preparation ended, by replica id. */
  readonly preparing: ReadonlyMap<string, PreparingReplica>;
}

export type DrainReason = "desired" | "stopping" | "unassigned";

export type HostAction =
  /** Start a replica process (from a prestarted one when one fits); `appDir`: its prepared runtimeEnv package. */
  | { type: "spawn"; assignment: ReplicaAssignment; record: DeploymentRecord; appDir?: string }
  /** Fetch, unpack and install the record's runtimeEnv package, then plan again. */
  | { type: "prepare"; assignment: ReplicaAssignment; record: DeploymentRecord }
  /** The replica's package could not be prepared: it failed to start. */
  | { type: "fail-prepare"; id: string }
  /** A replica being prepared is no longer wanted here: it ends stopped, never started. */
  | { type: "abandon"; id: string; reason: DrainReason }
  | { type: "drain"; id: string; reason: DrainReason }
  /** Spec fields a running replica picks up in place. */
  | { type: "settings"; id: string; settings: ReplicaSettings }
  /** A new userConfig, applied in place. */
  | { type: "reconfigure"; id: string; userConfig: unknown; configVersion: string }
  /** Drop an ended replica's memory once its assignment is gone. */
  | { type: "forget"; id: string }
  /** Start this many processes ahead of need. */
  | { type: "prestart"; count: number }
  /** Replace a live replica: drain it, or kill it when its event loop is blocked (`liveness`). */
  | { type: "replace"; id: string; kind: ReplacementKind; reason: string };

export function planHost(
  assignments: ReadonlyMap<string, ReplicaAssignment>,
  records: ReadonlyMap<string, DeploymentRecord>,
  local: HostLocal,
  now: number,
): HostAction[] {
  const actions: HostAction[] = [];
  /** Replicas killed this tick: they get nothing else. */
  const killing = new Set<string>();
  for (const proc of local.replicas.values()) {
    const replace = replacement(proc, now);
    if (replace) actions.push({ type: "replace", id: proc.id, ...replace });
    if (replace?.kind === "liveness") killing.add(proc.id);
    const reason = drainReason(assignments.get(proc.id), local);
    if (reason && !proc.drainRequested && !replace) actions.push({ type: "drain", id: proc.id, reason });
  }
  const preparing = local.runtimeEnvs?.preparing ?? new Map<string, PreparingReplica>();
  for (const id of preparing.keys()) {
    const reason = drainReason(assignments.get(id), local);
    if (reason) actions.push({ type: "abandon", id, reason });
  }
  if (!local.stopping) {
    for (const a of assignments.values()) {
      if (a.host !== local.hostId || a.desired !== "run") continue;
      const record = records.get(a.deployment);
      // A replica runs the code its assignment names: until the record says so too, it waits.
      const current = record?.codeVersion === a.codeVersion ? record : undefined;
      const proc = local.replicas.get(a.id);
      if (!proc) {
        if (current && !local.finished.has(a.id)) actions.push(...start(a, current, local));
      } else if (current && !killing.has(proc.id)) {
        actions.push(...updates(proc, current, now));
      }
    }
  }
  for (const id of local.finished) if (!assignments.has(id)) actions.push({ type: "forget", id });
  const prestart = prestartCount(local, actions, now);
  if (prestart > 0) actions.push({ type: "prestart", count: prestart });
  return actions;
}

/** The states in which a replica answers pings (a starting one may be loading its module, synchronously). */
const ANSWERS_PINGS: ReadonlySet<string> = new Set(["running", "reconfiguring", "draining"]);

/**
 * Why a live replica must be replaced now, if it must and is not already: a
 * blocked event loop at any time (even while draining: it would never finish),
 * failed health checks or too much memory while it still takes jobs.
 */
function replacement(proc: LocalReplica, now: number): { kind: ReplacementKind; reason: string } | undefined {
  if (!ANSWERS_PINGS.has(proc.state)) return undefined;
  const v = proc.vitals;
  if (v.replacement?.kind === "liveness") return undefined;
  if (v.pingSentAt !== null && now - v.pingSentAt > v.healthCheckTimeoutS * 1000) {
    return { kind: "liveness", reason: `event loop blocked ${Math.round((now - v.pingSentAt) / 1000)} s` };
  }
  if (v.replacement || proc.drainRequested) return undefined;
  if (v.health.consecutiveFailures >= v.healthCheckFailureThreshold) {
    return { kind: "health", reason: `health check failed: ${v.health.lastError ?? "unknown error"}` };
  }
  const limit = v.memoryMiB;
  if (limit !== null && v.rssMiB.length >= MEMORY_SAMPLES && v.rssMiB.every((mib) => mib > limit)) {
    return { kind: "memory", reason: `memory ${Math.round(v.rssMiB[v.rssMiB.length - 1] ?? 0)} MiB over ${limit} MiB` };
  }
  return undefined;
}

/** Starts a replica: at once, or once its runtimeEnv package is prepared here. */
function start(a: ReplicaAssignment, record: DeploymentRecord, local: HostLocal): HostAction[] {
  if (!record.runtimeEnv) return [{ type: "spawn", assignment: a, record }];
  const job = local.runtimeEnvs?.preparing.get(a.id);
  if (job?.state === "failed") return [{ type: "fail-prepare", id: a.id }];
  if (job?.state === "prepared" && job.appDir !== undefined) return [{ type: "spawn", assignment: a, record, appDir: job.appDir }];
  if (job) return [];
  const appDir = local.runtimeEnvs?.ready.get(record.runtimeEnv.hash);
  return appDir !== undefined ? [{ type: "spawn", assignment: a, record, appDir }] : [{ type: "prepare", assignment: a, record }];
}

function drainReason(a: ReplicaAssignment | undefined, local: HostLocal): DrainReason | undefined {
  if (local.stopping) return "stopping";
  if (!a || a.host !== local.hostId) return "unassigned";
  return a.desired === "drain" ? "desired" : undefined;
}

/** New settings and a new userConfig for a replica that runs the record's code. */
function updates(proc: LocalReplica, record: DeploymentRecord, now: number): HostAction[] {
  const actions: HostAction[] = [];
  if (proc.state === "running" || proc.state === "reconfiguring") {
    const settings = settingsOf(record.spec);
    if (settingsKey(settings) !== proc.settingsKey) actions.push({ type: "settings", id: proc.id, settings });
  }
  const sent = proc.reconfigureSent;
  if (
    proc.state === "running" &&
    record.configVersion !== proc.configVersion &&
    (sent?.configVersion !== record.configVersion || now - sent.at > RECONFIGURE_RETRY_MS)
  ) {
    actions.push({ type: "reconfigure", id: proc.id, userConfig: record.spec.userConfig, configVersion: record.configVersion });
  }
  return actions;
}

/**
 * Tops up the prestarted processes, but only while no replica here is
 * starting (they would compete with it for the same cores), and not for a
 * while after one ended before it was ready.
 */
function prestartCount(local: HostLocal, actions: readonly HostAction[], now: number): number {
  if (local.stopping) return 0;
  const { target, pooled, earlyExitAt } = local.prestart;
  if (earlyExitAt !== null && now < earlyExitAt + PRESTART_BACKOFF_MS) return 0;
  if (actions.some((a) => a.type === "spawn" || a.type === "prepare")) return 0;
  for (const proc of local.replicas.values()) if (proc.state === "starting") return 0;
  for (const job of local.runtimeEnvs?.preparing.values() ?? []) if (job.state === "preparing") return 0;
  return Math.max(0, target - pooled);
}
