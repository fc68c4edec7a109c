/**
 * End-to-end clusters made of real `flotilla` CLI processes (controller,
 * router, hosts) in a namespace of their own, driven over HTTP. Only the
 * processes a cluster started are ever signalled.
 */
import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { applyDeployments, waitForRollout } from "../../src/client/deployment-store.js";
import { buildStatus, type DeploymentView, type StatusReport } from "../../src/client/cluster-status.js";
import { readClusterState } from "../../src/client/cluster-state.js";
import { Keys } from "../../src/shared/keys.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "./redis.js";
import { waitFor } from "./wait.js";


/**
 * How long a spawned process may take to listen or register. Not a contract:
 * with several test files starting processes on two cores, a start can take
 * seconds.
 */
export const PROCESS_START_MS = 30_000;
export const CLI = fileURLToPath(new URL("../../bin/flotilla.js", import.meta.url));
export const FIXTURE_APP = fileURLToPath(new URL("../fixtures/app", import.meta.url));

export interface ProcessHandle {
  name: string;
  child: ChildProcess;
  /** Everything it wrote to stderr (the JSON logs). */
  logs: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface HostSpec {
  id?: string;
  cpus?: number;
  gpus?: number;
  resources?: Record<string, number>;
  env?: Record<string, string>;
  heartbeatTimeoutS?: number;
  /** --memory-mib. @default 8192 (not the machine's, so that status is the same everywhere) */
  memoryMiB?: number;
  /** Extra arguments of `flotilla host`. */
  args?: string[];
  /** This host's app directory. @default the cluster's */
  appDir?: string;
  /** This host's runtimeEnv cache (`--cache-dir`). @default the user's cache directory */
  cacheDir?: string;
}

export interface ClusterOptions {
  label: string;
  hosts?: HostSpec[];
  controllers?: number;
  routers?: number;
  appDir?: string;
  redisUrl?: string;
  routerArgs?: string[];
}

export class TestCluster {
  readonly keys: Keys;
  readonly redis: Redis;
  readonly processes: ProcessHandle[] = [];
  routerPorts: number[] = [];
  private hostCount = 0;
  private controllerCount = 0;

  private constructor(
    readonly namespace: string,
    readonly options: ClusterOptions,
  ) {
    this.keys = new Keys(namespace);
    this.redis = testRedis(this.redisUrl);
  }

  get redisUrl(): string {
    return this.options.redisUrl ?? REDIS_URL;
  }

  get appDir(): string {
    return this.options.appDir ?? FIXTURE_APP;
  }

  static async start(options: ClusterOptions): Promise<TestCluster> {
    const cluster = new TestCluster(testNamespace(options.label), options);
    try {
      for (let i = 0; i < (options.controllers ?? 1); i++) cluster.spawnController();
      for (const host of options.hosts ?? [{ cpus: 4 }]) cluster.spawnHost(host);
      for (let i = 0; i < (options.routers ?? 1); i++) await cluster.spawnRouter(options.routerArgs ?? []);
      await cluster.waitForHosts((options.hosts ?? [{}]).length);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  spawn(name: string, args: string[], env: Record<string, string> = {}, appDir = this.appDir): ProcessHandle {
    const child = spawn(process.execPath, [CLI, "--redis", this.redisUrl, "--namespace", this.namespace, "--app-dir", appDir, ...args], {
      env: { ...process.env, FLOTILLA_LOG_PRETTY: "0", FLOTILLA_LOG_LEVEL: process.env.FLOTILLA_LOG_LEVEL ?? "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const logs: string[] = [];
    let partial = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      const text = partial + chunk.toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      logs.push(...lines);
      if (process.env.FLOTILLA_TEST_LOGS) for (const l of lines) process.stderr.write(`[${name}] ${l}\n`);
    });
    child.stdout?.on("data", () => undefined);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const handle = { name, child, logs, exited };
    this.processes.push(handle);
    return handle;
  }

  spawnController(id = `c${++this.controllerCount}`): ProcessHandle {
    return this.spawn(`controller-${id}`, ["controller", "--id", id, "--admin-port", "0"]);
  }

  spawnHost(spec: HostSpec = {}): ProcessHandle {
    const id = spec.id ?? `h${++this.hostCount}`;
    const args = ["host", "--id", id, "--cpus", String(spec.cpus ?? 4)];
    if (spec.gpus !== undefined) args.push("--gpus", String(spec.gpus));
    if (spec.resources) args.push("--resources", JSON.stringify(spec.resources));
    if (spec.heartbeatTimeoutS !== undefined) args.push("--heartbeat-timeout", String(spec.heartbeatTimeoutS));
    args.push("--memory-mib", String(spec.memoryMiB ?? 8192), ...(spec.args ?? []));
    if (spec.cacheDir !== undefined) args.push("--cache-dir", spec.cacheDir);
    return this.spawn(`host-${id}`, args, spec.env ?? {}, spec.appDir);
  }

  async spawnRouter(extra: string[] = []): Promise<number> {
    const handle = this.spawn(`router-${this.routerPorts.length + 1}`, ["router", "--port", "0", "--bind", "127.0.0.1", ...extra]);
    const port = await loggedPort(handle, "router listening");
    this.routerPorts.push(port);
    return port;
  }

  /** The last lines each process logged, for a failure message. */
  logTail(lines = 12): string {
    return this.processes.map((p) => `--- ${p.name} (exit ${p.child.exitCode ?? p.child.signalCode ?? "none"})\n${p.logs.slice(-lines).join("\n")}`).join("\n");
  }

  /**
   * When (the log line's `time`, epoch ms) a process of this cluster first
   * logged `msg` about `replica`: a replica's own lines reach its host's
   * stderr. Undefined until it has.
   */
  loggedAt(msg: string, replica: string): number | undefined {
    for (const p of this.processes) {
      for (const line of p.logs) {
        if (!line.includes(`"msg":"${msg}"`) || !line.includes(`"replica":"${replica}"`)) continue;
        try {
          const entry = JSON.parse(line) as { msg?: unknown; replica?: unknown; time?: unknown };
          if (entry.msg === msg && entry.replica === replica && typeof entry.time === "number") return entry.time;
        } catch {
          // a line interleaved with another process's output
        }
      }
    }
    return undefined;
  }

  url(path: string, router = 0): string {
    return `http://127.0.0.1:${this.routerPorts[router]}${path}`;
  }

  async waitForHosts(n: number): Promise<void> {
    await waitFor(`${n} live hosts`, async () => (await this.status()).hosts.filter((h) => h.alive).length >= n, {
      timeoutMs: PROCESS_START_MS,
      describe: async () => (await this.status()).hosts,
    });
  }

  /** Applies specs (validated like the CLI does) and, by default, waits until HEALTHY. */
  async deploy(specs: DeploymentSpecInput[], options: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const parsed = specs.map((s) => parseDeploymentSpec(s));
    const results = await applyDeployments(this.redis, this.keys, parsed);
    if (options.wait !== false) {
      await waitForRollout(this.redis, this.keys, results, { timeoutMs: options.timeoutMs ?? 30_000 });
    }
  }

  async status(): Promise<StatusReport> {
    return buildStatus(this.namespace, await readClusterState(this.redis, this.keys));
  }

  async deployment(name: string): Promise<DeploymentView | undefined> {
    return (await this.status()).deployments.find((d) => d.name === name);
  }

  /** Waits until `name` has exactly `n` running replicas and nothing else left. */
  async waitForReplicas(name: string, n: number, timeoutMs = 15_000): Promise<DeploymentView> {
    return waitFor(
      `deployment ${name} to have exactly ${n} running replicas`,
      async () => {
        const d = await this.deployment(name);
        if (!d) return undefined;
        const running = d.replicas.filter((r) => r.state === "running");
        return running.length === n && d.replicas.length === n ? d : undefined;
      },
      {
        timeoutMs,
        // The host's log says which replicas it started and when; the load average says whether the machine was saturated.
        describe: async () => ({ deployment: await this.deployment(name), loadavg: os.loadavg().map((l) => l.toFixed(1)), logs: this.logTail(20) }),
      },
    );
  }

  /** Runs a CLI command to completion. */
  async cli(args: string[], env: Record<string, string> = {}, options: { cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [CLI, "--redis", this.redisUrl, "--namespace", this.namespace, "--app-dir", this.appDir, ...args], {
      env: { ...process.env, FLOTILLA_LOG_PRETTY: "0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    return { code, stdout, stderr };
  }

  /** Sends a signal to one of this cluster's processes and waits for it to exit. */
  async kill(handle: ProcessHandle, signal: NodeJS.Signals = "SIGTERM", timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (handle.child.exitCode === null && handle.child.signalCode === null) handle.child.kill(signal);
    const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${handle.name} did not exit within ${timeoutMs} ms of ${signal}`)), timeoutMs).unref());
    return Promise.race([handle.exited, timer]);
  }

  /** Stops every process it started (SIGTERM, then SIGKILL after a deadline), kills their replicas, removes the namespace. */
  async stop(): Promise<void> {
    const status = await this.status().catch(() => undefined);
    const replicaPids = status?.deployments.flatMap((d) => d.replicas.map((r) => r.pid)).filter((p): p is number => p !== null) ?? [];
    // Routers first, then every host at once (with nowhere to move to, their replicas drain in place), then controllers.
    for (const group of [0, 1, 2]) {
      await Promise.all(
        this.processes
          .filter((handle) => rank(handle.name) === group)
          .map((handle) => this.kill(handle, "SIGTERM", 15_000).catch(() => handle.child.kill("SIGKILL"))),
      );
    }
    for (const pid of replicaPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    this.redis.disconnect();
    await cleanupNamespace(this.namespace, this.redisUrl);
  }
}

function rank(name: string): number {
  if (name.startsWith("router")) return 0;
  if (name.startsWith("host")) return 1;
  return 2;
}

/** Waits for a process to log `message` (e.g. "router listening") and returns the port logged with it. */
export async function loggedPort(handle: ProcessHandle, message: string): Promise<number> {
  return waitFor(`${handle.name} to log "${message}"`, () => {
    for (const line of handle.logs) {
      if (line.includes(`"${message}"`)) return (JSON.parse(line) as { port: number }).port;
    }
    return undefined;
  }, { timeoutMs: PROCESS_START_MS });
}

/** Sends one HTTP request; never throws for a non-2xx status. */
export async function httpRequest(url: string, init: RequestInit = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(30_000) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}
