/**
 * One host tick as a pure function: from the assignments, the records of the
 * deployments they name and what the host knows of its own processes, the
 * actions that bring the processes in line with what the controller wants.
 * Level-triggered: the same state gives the same actions, and an action
 * already carried out (a drain asked for, a reconfigure sent) is not repeated.
 * The host agent reads the state, calls planHost and carries the actions out.
 */
import { settingsKey, settingsOf, type ReplicaSettings } from "../actors/replica-config.js";
import type { ReplicaProcessState } from "../actors/replica-ipc.js";
import type { DeploymentRecord, ReplicaAssignment } from "../shared/records.js";

/** A reconfigure that got no answer (the configVersion did not change) is sent again after this long. */
export const RECONFIGURE_RETRY_MS = 5000;
/** A prestarted process that ends before it is ready pauses prestarting for this long. */
export const PRESTART_BACKOFF_MS = 30_000;

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
  | { type: "prestart"; count: number };

export function planHost(
  assignments: ReadonlyMap<string, ReplicaAssignment>,
  records: ReadonlyMap<string, DeploymentRecord>,
  local: HostLocal,
  now: number,
): HostAction[] {
  const actions: HostAction[] = [];
  for (const proc of local.replicas.values()) {
    const reason = drainReason(assignments.get(proc.id), local);
    if (reason && !proc.drainRequested) actions.push({ type: "drain", id: proc.id, reason });
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
      } else if (current) {
        actions.push(...updates(proc, current, now));
      }
    }
  }
  for (const id of local.finished) if (!assignments.has(id)) actions.push({ type: "forget", id });
  const prestart = prestartCount(local, actions, now);
  if (prestart > 0) actions.push({ type: "prestart", count: prestart });
  return actions;
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
