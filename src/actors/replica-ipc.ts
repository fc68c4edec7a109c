/** Messages between a host and its replica processes over the IPC channel. */
import type { ReplicaSettings } from "./replica-config.js";
import type { ReplicaReport } from "./replica-runner.js";

export type HostToReplica =
  | { type: "reconfigure"; userConfig: unknown; configVersion: string }
  | { type: "settings"; settings: ReplicaSettings }
  | { type: "drain" };

export type ReplicaToHost = ({ type: "state" } & ReplicaReport) | { type: "stats"; inflight: number } | { type: "exit"; code: number };
