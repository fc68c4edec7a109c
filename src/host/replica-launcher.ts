/**
 * How a host gets a replica's OS process. The real launcher spawns Node with
 * the replica entry point; the fleet simulation (bench/fleet) passes one whose
 * processes live in memory and speak the same IPC protocol, so the rest of the
 * host (ReplicaProcess, PrestartedProcess, the agent) runs unchanged.
 */
import type { Readable } from "node:stream";
import type { HostToReplica } from "../actors/replica-ipc.js";

/** What the host uses of a replica's child process: a ChildProcess has all of it. */
export interface ReplicaChild {
  readonly pid?: number | undefined;
  readonly connected: boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  readonly stderr: Readable | null;
  /** A handler's console output, which the host forwards and ships with its logs. */
  readonly stdout: Readable | null;
  send(message: HostToReplica, callback: (error: Error | null) => void): boolean;
  kill(signal?: NodeJS.Signals): boolean;
  /** Events: `message` (ReplicaToHost), `error`, `exit` (code, signal). */
  on(event: string, listener: (...args: any[]) => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
  removeAllListeners(event?: string): this;
}

export interface ReplicaLauncher {
  /** Starts a replica process with this environment (its config or prestart marker is in it). */
  spawn(env: NodeJS.ProcessEnv): ReplicaChild;
}
