/**
 * Health inside a replica process: calls the handler's checkHealth() every
 * healthCheckPeriodS (never two at once), each bounded by
 * healthCheckTimeoutS, and reports every result to the host, which decides
 * when the replica is unhealthy (host-plan.ts). The first check runs before
 * the replica takes jobs: a replica counts as running only once it passed.
 * Also answers the host's liveness pings from this process's event loop.
 */
import { FlotillaError, errorMessage } from "../errors.js";
import type { LoadedHandler } from "./handler-loader.js";
import type { HealthCheckResult, HostToReplica, ReplicaToHost } from "./replica-ipc.js";

export interface HealthCheckSettings {
  healthCheckPeriodS: number;
  healthCheckTimeoutS: number;
}

/** Calls `check` once; resolves with why it failed, or null when it passed in time. */
export async function runHealthCheck(check: () => unknown, timeoutS: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // A synchronous throw becomes a rejection.
      Promise.resolve().then(check),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`checkHealth() did not finish within ${timeoutS} s`)), timeoutS * 1000);
      }),
    ]);
    return null;
  } catch (err) {
    return errorMessage(err) || "checkHealth() failed";
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export class HealthChecks {
  private check: (() => unknown) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private settings: HealthCheckSettings,
    private readonly report: (result: HealthCheckResult) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** The first check, before the replica takes jobs: a failure fails the replica's start. Then checks periodically. */
  async first(handler: LoadedHandler): Promise<void> {
    const checkHealth = handler.checkHealth;
    if (!checkHealth) return;
    this.check = checkHealth;
    const error = await this.runOnce();
    if (error !== null) throw new FlotillaError("HEALTH_CHECK_FAILED", `health check failed: ${error}`);
    this.schedule();
  }

  /** New period and timeout, from the next check on. */
  applySettings(settings: HealthCheckSettings): void {
    this.settings = settings;
  }

  /** No more checks (the replica drains or ended). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async runOnce(): Promise<string | null> {
    const check = this.check;
    if (!check) return null;
    const error = await runHealthCheck(check, this.settings.healthCheckTimeoutS);
    if (!this.stopped) this.report({ at: this.now(), error });
    return error;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.runOnce().then(() => this.schedule());
    }, this.settings.healthCheckPeriodS * 1000);
    this.timer.unref();
  }
}

/** Answers the host's pings with this process's resident memory: a ping left unanswered means a blocked event loop. */
export function answerPings(send: (message: ReplicaToHost) => unknown): void {
  process.on("message", (message: HostToReplica) => {
    if (message.type === "ping") send({ type: "pong", seq: message.seq, rssBytes: process.memoryUsage.rss() });
  });
}
