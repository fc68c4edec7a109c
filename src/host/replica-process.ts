/**
 * One replica OS process as its host sees it: spawn, the state it reports over
 * IPC, drain, kill, and how it ended.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { REPLICA_CONFIG_ENV, REPLICA_PRESTART_ENV, settingsKey, type ReplicaConfig, type ReplicaSettings } from "../actors/replica-config.js";
import type { HandlerLoader } from "../actors/module-scope.js";
import type { HostToReplica, ReplicaProcessState, ReplicaReport, ReplicaToHost } from "../actors/replica-ipc.js";
import { replicaOutput } from "../shared/logger.js";
import type { ReplicaStatus } from "../shared/records.js";
import type { ReplicaChild, ReplicaLauncher } from "./replica-launcher.js";

/** The replica entry next to this file: compiled JS, or TS when running from source under tsx. */
function replicaEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith(".ts")) return { file: fileURLToPath(new URL("../actors/replica-main.ts", here)), execArgv: ["--import", "tsx"] };
  return { file: fileURLToPath(new URL("../actors/replica-main.js", here)), execArgv: [] };
}

/**
 * Node flags of replica processes. A 1 MiB young generation keeps an idle
 * replica under 80 MiB resident (V8 grows it to 16 MiB under allocation
 * pressure otherwise). FLOTILLA_REPLICA_EXEC_ARGV adds flags after these, so
 * it can override them (e.g. --max-semi-space-size=16, --cpu-prof,
 * --max-old-space-size=512).
 */
function execArgv(env: NodeJS.ProcessEnv): string[] {
  return ["--max-semi-space-size=1", ...(env.FLOTILLA_REPLICA_EXEC_ARGV ?? "").split(" ").filter(Boolean), ...replicaEntry().execArgv];
}

/**
 * glibc malloc arenas of a replica process (MALLOC_ARENA_MAX). By default
 * each of its threads (the main one, the TypeScript loader's, V8's and
 * libuv's helpers) may get an arena of its own, up to 8 per core, each
 * holding on to what it freed. With two, a replica is 4–7 MiB smaller 20 s
 * after a load at 256 connections (72–77 instead of 79–82 MiB), and its
 * throughput did not change measurably. The host's or the deployment's
 * MALLOC_ARENA_MAX wins.
 */
export const REPLICA_MALLOC_ARENAS = "2";

function spawnReplicaChild(env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [...execArgv(env), replicaEntry().file], {
    // JSON logs: the host prints them (see replicaOutput).
    env: { MALLOC_ARENA_MAX: REPLICA_MALLOC_ARENAS, ...env, FLOTILLA_LOG_PRETTY: "0" },
    stdio: ["ignore", "inherit", "pipe", "ipc"],
    detached: true,
    serialization: "json",
  });
}

/** Replica processes as OS processes: what every host uses outside the fleet simulation. */
export const processLauncher: ReplicaLauncher = { spawn: spawnReplicaChild };

/**
 * Environment variables read only while a process starts (by Node, libuv, the
 * dynamic loader, the C library's allocator, OpenSSL): a replica whose
 * deployment sets one of these needs a process of its own.
 */
const START_UP_ENV = /^(NODE_|UV_|LD_|MALLOC_|GLIBC_|OPENSSL_|SSL_CERT_|FLOTILLA_REPLICA_EXEC_ARGV$)/;

/**
 * A replica process started ahead of need: it has loaded the runtime and waits
 * for its assignment. The host keeps it ready so that a new replica starts in
 * the time its handler takes to load.
 */
export class PrestartedProcess {
  readonly child: ReplicaChild;
  /** Resolves once the process is ready or has ended. */
  readonly settled: Promise<void>;
  private readonly onStderr = replicaOutput();
  private isReady = false;
  private ended = false;

  /** `loader`: the process readies that module loader ahead too (tsx's hooks: ~150 ms less to start a .ts handler). */
  constructor(
    readonly loader: HandlerLoader,
    onExit: (p: PrestartedProcess) => void,
    launcher: ReplicaLauncher = processLauncher,
  ) {
    this.child = launcher.spawn({ ...process.env, [REPLICA_PRESTART_ENV]: loader });
    this.child.stderr?.on("data", this.onStderr);
    let settle: () => void = () => undefined;
    this.settled = new Promise((resolve) => (settle = resolve));
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "prestarted") {
        this.isReady = true;
        settle();
      }
    });
    this.child.on("error", () => undefined);
    this.child.once("exit", () => {
      this.ended = true;
      settle();
      onExit(this);
    });
  }

  /** It has loaded the runtime and waits for its assignment. */
  get ready(): boolean {
    return this.isReady;
  }

  get exited(): boolean {
    return this.ended;
  }

  /**
   * Whether it can become a replica with this environment (the host's plus the
   * deployment's). One still loading fits too: it is further along than a new
   * spawn would be, and a second process would compete with it for the cores.
   */
  fits(deploymentEnv: Record<string, string>): boolean {
    return !this.exited && this.child.connected && !Object.keys(deploymentEnv).some((name) => START_UP_ENV.test(name));
  }

  /** Hands the process over to a ReplicaProcess: its listeners go with it. */
  adopt(): ReplicaChild {
    this.child.stderr?.off("data", this.onStderr);
    this.child.removeAllListeners("message");
    this.child.removeAllListeners("exit");
    this.child.removeAllListeners("error");
    return this.child;
  }

  stop(): void {
    if (!this.exited) this.child.kill("SIGTERM");
  }
}

export interface ReplicaProcessHooks {
  /** The host's clock. */
  now(): number;
  onChange(proc: ReplicaProcess): void;
  onExit(proc: ReplicaProcess, code: number | null, signal: NodeJS.Signals | null): void;
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
    const replicaEnv = { ...env, FLOTILLA_LOG_PRETTY: "0", [REPLICA_CONFIG_ENV]: JSON.stringify(config) };
    this.child = prestarted ? prestarted.adopt() : launcher.spawn(replicaEnv);
    this.prestarted = prestarted !== undefined;
    const output = replicaOutput();
    this.child.stderr?.on("data", (chunk: Buffer) => {
      output(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-2000);
    });
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "state") {
        const { type: _type, error, ...report } = message;
        this.report = report;
        this.failure = error ?? undefined;
        hooks.onChange(this);
      } else if (message.type === "stats") {
        this.report = { ...this.report, inflight: message.inflight };
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
