/**
 * One replica OS process as its host sees it: spawn, the state it reports over
 * IPC, drain, kill, and how it ended.
 */
import { REPLICA_CONFIG_ENV, settingsKey, type ReplicaConfig, type ReplicaSettings } from "../actors/replica-config.js";
import type { HostToReplica, ReplicaProcessState, ReplicaReport, ReplicaToHost } from "../actors/replica-ipc.js";
import { replicaOutput } from "../shared/logger.js";
import type { ReplicaStatus, ReplacementKind } from "../shared/records.js";
import type { ReplicaVitals } from "./host-plan.js";
import { lineSplitter } from "./output-lines.js";
import { VitalsTracker } from "./replica-vitals.js";
import { forwardStdout, processLauncher, type PrestartedProcess } from "./prestarted-process.js";
import type { ReplicaChild, ReplicaLauncher } from "./replica-launcher.js";

export interface ReplicaProcessHooks {
  /** The host's clock. */
  now(): number;
  onChange(proc: ReplicaProcess): void;
  onExit(proc: ReplicaProcess, code: number | null, signal: NodeJS.Signals | null): void;
  /** A line the process wrote to stdout (`out`) or stderr (`err`). */
  onLine?(proc: ReplicaProcess, stream: "out" | "err", line: string): void;
  /** One of its health checks ended; `error` is null when it passed. */
  onHealthCheck?(proc: ReplicaProcess, error: string | null): void;
}

/**
 * A replica process: what it last reported, and what the host asked of it.
 * Only its own methods change it; the host reads it (it is the host plan's
 * LocalReplica) and acts through drain, applySettings, reconfigure and kill.
 */
export class ReplicaProcess {
  readonly child: ReplicaChild;
  readonly startedAt: number;
  /** Became this replica from a prestarted process rather than a new spawn. */
  readonly prestarted: boolean;
  private report: Omit<ReplicaReport, "error">;
  private failure: string | undefined;
  private drainAsked = false;
  private lastReconfigure: { readonly configVersion: string; readonly at: number } | null = null;
  private currentSettingsKey: string;
  private ended = false;
  private stderrTail = "";
  private readonly health: VitalsTracker;

  constructor(
    readonly config: ReplicaConfig,
    env: NodeJS.ProcessEnv,
    hooks: ReplicaProcessHooks,
    prestarted?: PrestartedProcess,
    launcher: ReplicaLauncher = processLauncher,
  ) {
    this.startedAt = hooks.now();
    this.report = { state: "starting", configVersion: config.configVersion, workerId: null, inflight: 0 };
    this.currentSettingsKey = settingsKey(config);
    this.health = new VitalsTracker(config, config.memoryMiB ?? null);
    const replicaEnv = { ...env, FLOTILLA_LOG_PRETTY: "0", [REPLICA_CONFIG_ENV]: JSON.stringify(config) };
    this.child = prestarted ? prestarted.adopt() : launcher.spawn(replicaEnv);
    this.prestarted = prestarted !== undefined;
    const output = replicaOutput();
    const errLines = lineSplitter((line) => hooks.onLine?.(this, "err", line));
    const outLines = lineSplitter((line) => hooks.onLine?.(this, "out", line));
    this.child.stderr?.on("data", (chunk: Buffer) => {
      output(chunk);
      errLines(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-2000);
    });
    this.child.stdout?.on("data", (chunk: Buffer) => {
      forwardStdout(chunk);
      outLines(chunk);
    });
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "state") {
        const { type: _type, error, ...report } = message;
        this.report = report;
        this.failure = error ?? undefined;
        hooks.onChange(this);
      } else if (message.type === "stats") {
        this.report = { ...this.report, inflight: message.inflight };
      } else if (message.type === "pong") {
        this.health.pong(message.seq, message.rssBytes);
      } else if (message.type === "health") {
        this.health.healthCheck(message.at, message.error);
        hooks.onHealthCheck?.(this, message.error);
        hooks.onChange(this);
      }
    });
    this.child.on("error", (err) => {
      this.failure = `could not start the replica process: ${err.message}`;
    });
    this.child.on("exit", (code, signal) => {
      this.ended = true;
      if (this.report.state !== "stopped" && this.report.state !== "failed") {
        this.report = { ...this.report, state: this.drainAsked && code === 0 ? "stopped" : "failed" };
      }
      if (this.report.state === "failed" && !this.failure) {
        this.failure = `replica process exited (${signal ? `signal ${signal}` : `code ${code}`})${this.lastStderrLine()}`;
      }
      hooks.onExit(this, code, signal);
    });
    if (prestarted) {
      const env: Record<string, string> = {};
      for (const [name, value] of Object.entries(replicaEnv)) if (value !== undefined) env[name] = value;
      // A process still loading listens for its assignment once it says it is ready.
      if (prestarted.ready) this.send({ type: "assign", config, env });
      else this.child.on("message", (message: ReplicaToHost) => message.type === "prestarted" && this.send({ type: "assign", config, env }));
    }
  }

  get id(): string {
    return this.config.replicaId;
  }

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  get state(): ReplicaProcessState {
    return this.report.state;
  }

  get configVersion(): string | null {
    return this.report.configVersion;
  }

  get workerId(): string | null {
    return this.report.workerId;
  }

  get inflight(): number {
    return this.report.inflight;
  }

  get error(): string | undefined {
    return this.failure;
  }

  /** The host asked it to drain; an exit after that is expected. */
  get drainRequested(): boolean {
    return this.drainAsked;
  }

  /** The configVersion last sent with a reconfigure, and when. */
  get reconfigureSent(): { readonly configVersion: string; readonly at: number } | null {
    return this.lastReconfigure;
  }

  /** The settings the process runs with (as canonical JSON). */
  get settingsKey(): string {
    return this.currentSettingsKey;
  }

  get exited(): boolean {
    return this.ended;
  }

  /** What the host plan needs of its health. */
  get vitals(): ReplicaVitals {
    return this.health.snapshot();
  }

  /**
   * Sends a liveness ping unless one is still unanswered (its age is how long
   * the event loop has been blocked). Only once it runs: a starting replica
   * may be loading its module synchronously, and listens for pings only then.
   */
  sendPing(now: number): void {
    if (this.ended || !this.child.connected || this.state === "starting") return;
    const seq = this.health.nextPing(now);
    if (seq !== undefined) this.send({ type: "ping", seq });
  }

  /** The host replaces it: drained, or killed for a blocked event loop (its jobs are then retried as after a crash). */
  replace(kind: ReplacementKind, reason: string, now: number): void {
    this.health.replaced(kind, reason, now);
    if (kind === "liveness") {
      this.failure = reason;
      this.kill();
    } else {
      this.drain();
    }
  }

  /** Its status record, as the host writes it for the controller. */
  status(hostId: string, updatedAt: number): ReplicaStatus {
    return {
      id: this.id,
      deployment: this.config.deployment,
      host: hostId,
      state: this.state,
      codeVersion: this.config.codeVersion,
      configVersion: this.configVersion,
      pid: this.pid,
      workerId: this.workerId,
      inflight: this.inflight,
      ...(this.failure ? { error: this.failure } : {}),
      ...(this.health.checks ? { health: this.health.checks } : {}),
      ...(this.health.replacement ? { replacement: this.health.replacement } : {}),
      startedAt: this.startedAt,
      updatedAt,
    };
  }

  private lastStderrLine(): string {
    const lines = this.stderrTail.trim().split("\n");
    const last = lines.filter((l) => !l.startsWith("{")).pop() ?? "";
    return last ? `: ${last.slice(0, 300)}` : "";
  }

  private send(message: HostToReplica): void {
    if (this.child.connected) this.child.send(message, (err) => err && undefined);
  }

  /** Spec fields it picks up in place. */
  applySettings(settings: ReplicaSettings): void {
    this.currentSettingsKey = settingsKey(settings);
    this.health.applySettings(settings);
    this.send({ type: "settings", settings });
  }

  /** A new userConfig; `at` is remembered so that a lost one is sent again later. */
  reconfigure(userConfig: unknown, configVersion: string, at: number): void {
    this.lastReconfigure = { configVersion, at };
    this.send({ type: "reconfigure", userConfig, configVersion });
  }

  drain(): void {
    if (this.drainAsked || this.ended) return;
    this.drainAsked = true;
    this.send({ type: "drain" });
    if (!this.child.connected) this.child.kill("SIGTERM");
  }

  kill(): void {
    if (!this.ended) this.child.kill("SIGKILL");
  }
}
