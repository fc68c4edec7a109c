/**
 * Replica processes that live in memory: what the fleet simulation gives its
 * host agents instead of OS processes. Each speaks the host/replica IPC
 * protocol (replica-ipc.ts) the way replica-main does, without loading a
 * handler or consuming a queue: it reports `running` a moment after it is
 * started, applies a reconfigure, answers the host's liveness pings (with a
 * steady resident size, well under any memory limit), and on drain reports
 * `draining`, `stopped` and exits. It has no checkHealth(), so it sends no
 * health check results, as a real replica of such a handler does not. The launcher also counts what runs, so the benchmark can tell
 * when a rollout has converged without asking Redis (which would add to the
 * traffic it measures).
 */
import { EventEmitter } from "node:events";
import { REPLICA_CONFIG_ENV, REPLICA_PRESTART_ENV, type ReplicaConfig } from "../../src/actors/replica-config.js";
import type { HostToReplica, ReplicaProcessState, ReplicaToHost } from "../../src/actors/replica-ipc.js";
import type { ReplicaChild, ReplicaLauncher } from "../../src/host/replica-launcher.js";

export interface SimTiming {
  /** From spawn (or assign) to `running`. */
  startMs: number;
  /** From drain to exit. */
  drainMs: number;
}

let nextPid = 1_000_000;

/** The resident memory a simulated replica reports in its pongs. */
const SIM_RSS_BYTES = 60 * 1024 * 1024;

export class SimChild extends EventEmitter implements ReplicaChild {
  readonly pid = nextPid++;
  /** Date.now() when the host started it. */
  readonly spawnedAt = Date.now();
  connected = true;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stderr = null;
  readonly stdout = null;
  config: ReplicaConfig | undefined;
  state: ReplicaProcessState = "starting";
  private configVersion: string | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    env: NodeJS.ProcessEnv,
    private readonly timing: SimTiming,
    private readonly onEnd: (child: SimChild) => void,
  ) {
    super();
    const raw = env[REPLICA_CONFIG_ENV];
    if (raw) this.begin(JSON.parse(raw) as ReplicaConfig);
    else if (env[REPLICA_PRESTART_ENV]) setImmediate(() => this.emit("message", { type: "prestarted" } satisfies ReplicaToHost));
  }

  private begin(config: ReplicaConfig): void {
    this.config = config;
    this.configVersion = config.configVersion;
    this.timer = setTimeout(() => this.report("running"), this.timing.startMs);
  }

  private report(state: ReplicaProcessState): void {
    if (!this.connected) return;
    this.state = state;
    const workerId = this.config ? `sim-${this.config.replicaId}` : null;
    this.emit("message", { type: "state", state, configVersion: this.configVersion, error: null, workerId, inflight: 0 } satisfies ReplicaToHost);
  }

  send(message: HostToReplica, callback: (error: Error | null) => void): boolean {
    setImmediate(() => {
      callback(null);
      this.receive(message);
    });
    return true;
  }

  private receive(message: HostToReplica): void {
    if (!this.connected) return;
    switch (message.type) {
      case "assign":
        this.begin(message.config);
        break;
      case "reconfigure":
        this.configVersion = message.configVersion;
        if (this.state === "running") this.report("running");
        break;
      case "drain":
        clearTimeout(this.timer);
        this.report("draining");
        this.timer = setTimeout(() => {
          this.report("stopped");
          this.exit(0, null);
        }, this.timing.drainMs);
        break;
      case "ping":
        this.emit("message", { type: "pong", seq: message.seq, rssBytes: SIM_RSS_BYTES } satisfies ReplicaToHost);
        break;
      case "settings":
        break;
    }
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    if (!this.connected) return false;
    clearTimeout(this.timer);
    setImmediate(() => this.exit(null, signal));
    return true;
  }

  private exit(code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.connected) return;
    this.connected = false;
    this.exitCode = code;
    this.signalCode = signal;
    this.state = code === 0 ? "stopped" : "failed";
    this.onEnd(this);
    this.emit("exit", code, signal);
  }
}

/** Starts SimChild processes and knows which are alive. */
export class SimLauncher implements ReplicaLauncher {
  readonly live = new Set<SimChild>();

  constructor(private readonly timing: SimTiming) {}

  spawn(env: NodeJS.ProcessEnv): ReplicaChild {
    const child = new SimChild(env, this.timing, (ended) => this.live.delete(ended));
    this.live.add(child);
    return child;
  }

  /**
   * Per deployment: replicas running `codeVersions.get(deployment)`, and
   * replicas of any other version still alive.
   */
  census(codeVersions: ReadonlyMap<string, string>): { current: Map<string, number>; other: number } {
    const current = new Map<string, number>();
    let other = 0;
    for (const child of this.live) {
      const config = child.config;
      if (!config) continue;
      if (config.codeVersion !== codeVersions.get(config.deployment)) other++;
      else if (child.state === "running") current.set(config.deployment, (current.get(config.deployment) ?? 0) + 1);
    }
    return { current, other };
  }
}
