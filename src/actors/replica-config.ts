/**
 * What a host tells a replica process at spawn (one JSON environment
 * variable).
 */
import type { DeploymentSpec } from "../spec/deployment-spec.js";

export const REPLICA_CONFIG_ENV = "FLOTILLA_REPLICA_CONFIG";
/** Set on a prestarted replica process, which gets its config over IPC instead. */
export const REPLICA_PRESTART_ENV = "FLOTILLA_REPLICA_PRESTART";

/** Spec fields a running replica picks up without a restart. */
export interface ReplicaSettings {
  maxConcurrentQueries: number;
  gracefulShutdownTimeoutS: number;
  requestTimeoutS?: number;
  streamTimeoutS?: number;
  maxRetries: number;
  healthCheckPeriodS: number;
  healthCheckTimeoutS: number;
  healthCheckFailureThreshold: number;
}

export function settingsOf(spec: DeploymentSpec): ReplicaSettings {
  return {
    maxConcurrentQueries: spec.maxConcurrentQueries,
    gracefulShutdownTimeoutS: spec.gracefulShutdownTimeoutS,
    ...(spec.requestTimeoutS !== undefined ? { requestTimeoutS: spec.requestTimeoutS } : {}),
    ...(spec.streamTimeoutS !== undefined ? { streamTimeoutS: spec.streamTimeoutS } : {}),
    maxRetries: spec.maxRetries,
    healthCheckPeriodS: spec.healthCheckPeriodS,
    healthCheckTimeoutS: spec.healthCheckTimeoutS,
    healthCheckFailureThreshold: spec.healthCheckFailureThreshold,
  };
}

/** Compares settings regardless of where they came from. */
export function settingsKey(s: ReplicaSettings): string {
  return JSON.stringify([
    s.maxConcurrentQueries,
    s.gracefulShutdownTimeoutS,
    s.requestTimeoutS ?? null,
    s.maxRetries,
    s.healthCheckPeriodS,
    s.healthCheckTimeoutS,
    s.healthCheckFailureThreshold,
    // Only when set, so settings from before streamTimeoutS existed compare equal.
    ...(s.streamTimeoutS !== undefined ? [s.streamTimeoutS] : []),
  ]);
}

export interface ReplicaConfig extends ReplicaSettings {
  replicaId: string;
  deployment: string;
  hostId: string;
  namespace: string;
  redisUrl: string;
  appDir: string;
  importRef: string;
  codeVersion: string;
  /** What replies and status show: the spec's `version`, or the code version when it has none. */
  version: string;
  configVersion: string | null;
  userConfig: unknown;
  /** actorOptions.memoryMiB: the resident memory above which its host replaces it. */
  memoryMiB?: number;
}

export function readReplicaConfig(env: NodeJS.ProcessEnv = process.env): ReplicaConfig {
  const raw = env[REPLICA_CONFIG_ENV];
  if (!raw) throw new Error(`${REPLICA_CONFIG_ENV} is not set: replica processes are started by 'flotilla host'`);
  return JSON.parse(raw) as ReplicaConfig;
}
