/**
 * The protocol between a host and its replica processes over the IPC channel:
 * the one home of these message types, used by both sides (the host's
 * ReplicaProcess and the replica's entry point).
 */
import type { ReplicaState } from "../shared/records.js";
import type { ReplicaConfig, ReplicaSettings } from "./replica-config.js";

/** The states a replica process goes through (`pending` is the controller's, before any process exists). */
export type ReplicaProcessState = Exclude<ReplicaState, "pending">;

/** What a replica process reports of itself on every change of state. */
export interface ReplicaReport {
  state: ReplicaProcessState;
  configVersion: string | null;
  error: string | null;
  workerId: string | null;
  inflight: number;
}

export type HostToReplica =
  | { type: "reconfigure"; userConfig: unknown; configVersion: string }
  | { type: "settings"; settings: ReplicaSettings }
  | { type: "drain" }
  /** Liveness: answered with `pong` by the replica's event loop. */
  | { type: "ping"; seq: number }
  /** To a prestarted process: become this replica, with this environment. */
  | { type: "assign"; config: ReplicaConfig; env: Record<string, string> };

export type ReplicaToHost =
  | ({ type: "state" } & ReplicaReport)
  | { type: "stats"; inflight: number }
  | { type: "exit"; code: number }
  /** A prestarted process has loaded the runtime and waits for `assign`. */
  | { type: "prestarted" }
  /** The answer to `ping`, with the process's resident memory. */
  | { type: "pong"; seq: number; rssBytes: number }
  /** The result of one call of the handler's checkHealth(). */
  | ({ type: "health" } & HealthCheckResult);

/** One health check: when it ended, and why it failed (null when it passed). */
export interface HealthCheckResult {
  at: number;
  error: string | null;
}
