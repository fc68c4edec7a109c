/**
 * One replica OS process as its host sees it: spawn, the state it reports over
 * IPC, drain, kill, and how it ended.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { REPLICA_CONFIG_ENV, settingsKey, type ReplicaConfig } from "../actors/replica-config.js";
import type { HostToReplica, ReplicaToHost } from "../actors/replica-ipc.js";
import type { ReplicaState } from "../shared/records.js";

/** The replica entry next to this file: compiled JS, or TS when running from source under tsx. */
function replicaEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith(".ts")) return { file: fileURLToPath(new URL("../actors/replica-main.ts", here)), execArgv: ["--import", "tsx"] };
  return { file: fileURLToPath(new URL("../actors/replica-main.js", here)), execArgv: [] };
}

export interface ReplicaProcessEvents {
  onChange(proc: ReplicaProcess): void;
  onExit(proc: ReplicaProcess, code: number | null, signal: NodeJS.Signals | null): void;
}

export class ReplicaProcess {
  readonly child: ChildProcess;
  state: ReplicaState = "starting";
  configVersion: string | null;
  workerId: string | null = null;
  inflight = 0;
  error: string | undefined;
  readonly startedAt = Date.now();
  /** The host asked it to drain; an exit after that is expected. */
  drainRequested = false;
  /** The configVersion last sent with a reconfigure, and when. */
  reconfigureSent: { configVersion: string; at: number } | null = null;
  /** The settings the process runs with (as canonical JSON). */
  settingsKey: string;
  exited = false;
  private stderrTail = "";

  constructor(
    readonly config: ReplicaConfig,
    env: NodeJS.ProcessEnv,
    events: ReplicaProcessEvents,
  ) {
    this.configVersion = config.configVersion;
    this.settingsKey = settingsKey(config);
    const entry = replicaEntry();
    // FLOTILLA_REPLICA_EXEC_ARGV: extra node flags for replica processes (e.g. --cpu-prof, --max-old-space-size=512).
    const extra = (env.FLOTILLA_REPLICA_EXEC_ARGV ?? "").split(" ").filter(Boolean);
    this.child = spawn(process.execPath, [...extra, ...entry.execArgv, entry.file], {
      env: { ...env, [REPLICA_CONFIG_ENV]: JSON.stringify(config) },
      stdio: ["ignore", "inherit", "pipe", "ipc"],
      detached: true,
      serialization: "json",
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-2000);
    });
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "state") {
        this.state = message.state;
        this.configVersion = message.configVersion;
        this.workerId = message.workerId;
        this.inflight = message.inflight;
        this.error = message.error ?? undefined;
        events.onChange(this);
      } else if (message.type === "stats") {
        this.inflight = message.inflight;
      }
    });
    this.child.on("error", (err) => {
      this.error = `could not start the replica process: ${err.message}`;
    });
    this.child.on("exit", (code, signal) => {
      this.exited = true;
      if (this.state !== "stopped" && this.state !== "failed") {
        this.state = this.drainRequested && code === 0 ? "stopped" : "failed";
      }
      if (this.state === "failed" && !this.error) {
        this.error = `replica process exited (${signal ? `signal ${signal}` : `code ${code}`})${this.lastStderrLine()}`;
      }
      events.onExit(this, code, signal);
    });
  }

  get id(): string {
    return this.config.replicaId;
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  private lastStderrLine(): string {
    const lines = this.stderrTail.trim().split("\n");
    const last = lines.filter((l) => !l.startsWith("{")).pop() ?? "";
    return last ? `: ${last.slice(0, 300)}` : "";
  }

  send(message: HostToReplica): void {
    if (this.child.connected) this.child.send(message, (err) => err && undefined);
  }

  drain(): void {
    if (this.drainRequested || this.exited) return;
    this.drainRequested = true;
    this.send({ type: "drain" });
    if (!this.child.connected) this.child.kill("SIGTERM");
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}
