/**
 * The shapes stored in Redis (as JSON in the hashes named in keys.ts). Desired
 * state is written by users (deployments) and by the leader controller
 * (replica assignments); observed state by hosts (replica status, host info).
 */
import type { DeploymentSpec } from "../spec/deployment-spec.js";

/** A named set of resource amounts: `CPU`, `GPU` and any custom resource. */
export type ResourceSet = Record<string, number>;

/** What a user deployed: the validated spec plus the ids derived from it. */
export interface DeploymentRecord {
  spec: DeploymentSpec;
  /**
   * Identifies the code a replica runs. Derived from `version`, `import` and
   * `actorOptions` when `version` is set; a fresh id on every deploy when not.
   * A replica with another codeVersion is replaced by a rolling update.
   */
  codeVersion: string;
  /** Hash of userConfig; a replica with another configVersion is reconfigured in place. */
  configVersion: string;
  /**
   * The package a spec with runtimeEnv runs: its sha256 and size, stored in Redis
   * (src/runtime-env/package-store.ts). Hosts prepare it and use its directory as
   * the replica's app directory. Kept from the previous record while the code
   * version is unchanged, so every replica of one codeVersion runs the same code.
   */
  runtimeEnv?: { hash: string; bytes: number };
  /**
   * The package the previous code version ran, kept referenced so garbage
   * collection leaves it for a rollback (until a revisions store keeps them).
   */
  previousRuntimeEnv?: { hash: string; bytes: number };
  /** Increments on every applied change. */
  generation: number;
  deployedAt: number;
  /** Set when the leader controller wrote this record to roll back a failed rollout (rollbackOnFailure). */
  rolledBack?: AutoRollbackNote;
}

/** What an automatic rollback undid, kept on the record it wrote and shown in its status. */
export interface AutoRollbackNote {
  /** The revision whose rollout failed (now `failed`), and its generation. */
  failedRevision: number;
  failedGeneration: number;
  /** The revision whose spec was applied again. */
  to: number;
  /** Why the rollout counted as failed. */
  error: string;
  at: number;
}

/** Replica lifecycle states, as the replica's state machine names them. */
export const REPLICA_STATES = ["pending", "starting", "running", "reconfiguring", "draining", "stopped", "failed"] as const;
export type ReplicaState = (typeof REPLICA_STATES)[number];

/**
 * Why a replica has no host. `resources`: no live host has, on its own, this
 * much free of each named resource; `combination`: each fits somewhere, not all
 * together on one host. Text for people comes from `describePending` (resources.ts).
 */
export type PendingReason =
  | { kind: "no-hosts" }
  | { kind: "resources"; needs: ResourceSet }
  | { kind: "combination"; needs: ResourceSet };

/** A replica the controller wants to exist, on a host (or pending without one). */
export interface ReplicaAssignment {
  id: string;
  deployment: string;
  codeVersion: string;
  /** The user-facing version (spec.version, or the code version without one): what its replies carry in x-flotilla-version. */
  version: string;
  /** Host id, or null while pending (no host has room). */
  host: string | null;
  /** `run` keeps it serving; `drain` asks the host to drain and stop it. */
  desired: "run" | "drain";
  /** What the replica reserves on its host: `CPU`, `GPU` and custom resources. */
  resources: ResourceSet;
  /** GPU device indices on the host, for CUDA_VISIBLE_DEVICES. */
  gpuIds: number[];
  /** Why it is pending, when host is null. */
  pendingReason?: PendingReason;
  createdAt: number;
}

/** The results of a replica's checkHealth() as its host saw them. */
export interface ReplicaHealth {
  /** When the last check ended (ms); null before the first. */
  lastCheckAt: number | null;
  consecutiveFailures: number;
  /** Why the last failed check failed, while the failures are consecutive. */
  lastError?: string;
}

/** Why a host replaces a replica that is alive: its health checks, its event loop, its memory. */
export type ReplacementKind = "health" | "liveness" | "memory";

export interface Replacement {
  kind: ReplacementKind;
  /** E.g. `health check failed: <message>`, `event loop blocked 31 s`, `memory 612 MiB over 512 MiB`. */
  reason: string;
  at: number;
}

/** A replacement as hosts record it (for `status` and metrics). */
export interface ReplacementEvent extends Replacement {
  deployment: string;
  replica: string;
  host: string;
}

/** What a host observes of one replica process. */
export interface ReplicaStatus {
  id: string;
  deployment: string;
  host: string;
  state: ReplicaState;
  codeVersion: string;
  configVersion: string | null;
  pid: number | null;
  /** The BullMQ worker id of the replica: its job locks start with it. */
  workerId: string | null;
  /** Requests the replica is running now. */
  inflight: number;
  /** Why it failed, or the last reconfigure error. */
  error?: string;
  /** Its health checks, when its handler has checkHealth(). */
  health?: ReplicaHealth;
  /** Set once its host decided to replace it (it drains, or is killed when its event loop is blocked). */
  replacement?: Replacement;
  /** What a starting replica is doing before its process starts, e.g. "fetching package 1a2b3c4d5e6f (12.3 KiB)". */
  note?: string;
  startedAt: number;
  updatedAt: number;
}

export interface HostInfo {
  id: string;
  hostname: string;
  pid: number;
  /** Total capacity declared at start (`CPU`, `GPU`, custom). */
  resources: ResourceSet;
  /** Number of GPU devices (their indices are 0..gpuDevices-1). */
  gpuDevices: number;
  startedAt: number;
  /** Time of the last heartbeat (ms, the host's clock). */
  lastHeartbeatAt: number;
  /** A draining host takes no new replicas; the controller moves its replicas away. */
  draining: boolean;
  /** Since when (ms) it has run no replica; null while it runs some. An empty host can be removed. */
  emptySince: number | null;
}

export type DeploymentHealth = "UPDATING" | "HEALTHY" | "UNHEALTHY" | "DELETING";

/**
 * What the leader controller reports for each deployment. Written for users and
 * clients only: the controller never reads it back (its memory is ControllerRecord).
 */
export interface DeploymentStatusRecord {
  name: string;
  status: DeploymentHealth;
  message: string;
  targetReplicas: number;
  /** Replicas serving requests, of any version. */
  runningReplicas: number;
  /** Replicas of the current version serving requests: the rollout's progress towards targetReplicas. */
  updatedReplicas: number;
  codeVersion: string;
  generation: number;
  /** Consecutive failed replica starts of the current version. */
  failures: number;
  /** Earliest time (ms) the next replica of this version may be started after failures. */
  retryAt: number;
  /** The last replica failure of this version (constructor, module load, crash). */
  lastError?: string;
  /** Why replicas are pending, when some are (no host has room). */
  pendingReasons?: string[];
  autoscaling?: {
    demand: number;
    desired: number;
    lastDecision?: { at: number; from: number; to: number; reason: string };
  };
  /** The automatic rollback that wrote the current generation, when one did (the message says it too). */
  rolledBack?: AutoRollbackNote;
  /** Set when the current generation's rollout failed and is not rolled back automatically: why not. */
  rolloutFailed?: string;
  updatedAt: number;
}

/** The autoscaler's view of a deployment, as reported in its status. */
export type AutoscalingView = NonNullable<DeploymentStatusRecord["autoscaling"]>;

/**
 * What the leader controller remembers of one deployment from tick to tick, so
 * a new leader resumes where the last one stopped. Not shown to users.
 */
export interface ControllerRecord {
  /** The code version the failure count is about: a new version starts with a clean slate. */
  codeVersion: string;
  /** Consecutive failed replica starts of that version; drives back-off. */
  failures: number;
  /** Earliest time (ms) the next replica of that version may be started. */
  retryAt: number;
  lastError?: string;
  /** The replica count last aimed at (what the autoscaler moves from). */
  target: number;
  /** The autoscaler's last demand, desired count and decision, carried between samples. */
  autoscaling?: AutoscalingView;
}

/**
 * The leader controller's memory of a deployment's latest rollout (one per
 * deployment, see Keys.rollouts): how long it has run, how it went, and what
 * it has settled on the revision, so the revisions are read only when that
 * changes. Not shown to users.
 */
export interface RolloutRecord {
  /** The deployment record's generation it is about: a new generation starts a new rollout. */
  generation: number;
  /** When the leader first saw that generation (ms). */
  since: number;
  /** The deployment's health after the leader's last tick. */
  health: DeploymentHealth;
  /** Set once it was HEALTHY: the rollout is over, and later trouble is not its failure. */
  done?: true;
  /** The health whose outcome was settled on the revision (HEALTHY or UNHEALTHY). */
  settled?: DeploymentHealth;
  /** Replicas of the new version replaced (health, liveness, memory) while it rolled out; at most the threshold. */
  replaced?: string[];
  /** Why the rollout counts as failed (only with rollbackOnFailure). */
  failure?: string;
  /** Why a failed rollout is not rolled back (no earlier revision rolled out, …): it is not tried again. */
  noRollback?: string;
}

export interface ControllerInfo {
  id: string;
  hostname: string;
  pid: number;
  startedAt: number;
}

export interface RouterInfo {
  id: string;
  hostname: string;
  pid: number;
  port: number;
  startedAt: number;
}
