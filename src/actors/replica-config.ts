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
  maxRetries: number;
}

export function settingsOf(spec: DeploymentSpec): ReplicaSettings {
  return {
    maxConcurrentQueries: spec.maxConcurrentQueries,
    gracefulShutdownTimeoutS: spec.gracefulShutdownTimeoutS,
    ...(spec.requestTimeoutS !== undefined ? { requestTimeoutS: spec.requestTimeoutS } : {}),
    maxRetries: spec.maxRetries,
  };
}

/** Compares settings regardless of where they came from. */
export function settingsKey(s: ReplicaSettings): string {
  return JSON.stringify([s.maxConcurrentQueries, s.gracefulShutdownTimeoutS, s.requestTimeoutS ?? null, s.maxRetries]);
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
}

export function readReplicaConfig(env: NodeJS.ProcessEnv = process.env): ReplicaConfig {
  const raw = env[REPLICA_CONFIG_ENV];
  if (!raw) throw new Error(`${REPLICA_CONFIG_ENV} is not set: replica processes are started by 'flotilla host'`);
  return JSON.parse(raw) as ReplicaConfig;
}
