/** Messages between a host and its replica processes over the IPC channel. */
import type { ReplicaConfig, ReplicaSettings } from "./replica-config.js";
import type { ReplicaReport } from "./replica-runner.js";

export type HostToReplica =
  | { type: "reconfigure"; userConfig: unknown; configVersion: string }
  | { type: "settings"; settings: ReplicaSettings }
  | { type: "drain" }
  /** To a prestarted process: become this replica, with this environment. */
  | { type: "assign"; config: ReplicaConfig; env: Record<string, string> };

export type ReplicaToHost =
  | ({ type: "state" } & ReplicaReport)
  | { type: "stats"; inflight: number }
  | { type: "exit"; code: number }
  /** A prestarted process has loaded the runtime and waits for `assign`. */
  | { type: "prestarted" };
