/**
 * One replica OS process as its host sees it: spawn, the state it reports over
 * IPC, drain, kill, and how it ended.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { REPLICA_CONFIG_ENV, REPLICA_PRESTART_ENV, settingsKey, type ReplicaConfig } from "../actors/replica-config.js";
import type { HandlerLoader } from "../actors/module-scope.js";
import type { HostToReplica, ReplicaToHost } from "../actors/replica-ipc.js";
import { replicaOutput } from "../shared/logger.js";
import type { ReplicaState } from "../shared/records.js";

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
  readonly child: ChildProcess;
  ready = false;
  exited = false;
  /** Resolves once the process is ready or has ended. */
  readonly settled: Promise<void>;
  private readonly onStderr = replicaOutput();

  /** `loader`: the process readies that module loader ahead too (tsx's hooks: ~150 ms less to start a .ts handler). */
  constructor(
    readonly loader: HandlerLoader,
    onExit: (p: PrestartedProcess) => void,
  ) {
    this.child = spawnReplicaChild({ ...process.env, [REPLICA_PRESTART_ENV]: loader });
    this.child.stderr?.on("data", this.onStderr);
    let settle: () => void = () => undefined;
    this.settled = new Promise((resolve) => (settle = resolve));
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "prestarted") {
        this.ready = true;
        settle();
      }
    });
    this.child.on("error", () => undefined);
    this.child.once("exit", () => {
      this.exited = true;
      settle();
      onExit(this);
    });
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
  adopt(): ChildProcess {
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
  /** Became this replica from a prestarted process rather than a new spawn. */
  readonly prestarted: boolean;
  private stderrTail = "";

  constructor(
    readonly config: ReplicaConfig,
    env: NodeJS.ProcessEnv,
    events: ReplicaProcessEvents,
    prestarted?: PrestartedProcess,
  ) {
    this.configVersion = config.configVersion;
    this.settingsKey = settingsKey(config);
    const replicaEnv = { ...env, FLOTILLA_LOG_PRETTY: "0", [REPLICA_CONFIG_ENV]: JSON.stringify(config) };
    this.child = prestarted ? prestarted.adopt() : spawnReplicaChild(replicaEnv);
    this.prestarted = prestarted !== undefined;
    const output = replicaOutput();
    this.child.stderr?.on("data", (chunk: Buffer) => {
      output(chunk);
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
