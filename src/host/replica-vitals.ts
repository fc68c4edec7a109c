/**
 * What a host observes of one replica's health: its health check results,
 * the liveness ping in flight, its last memory samples, the limits it runs
 * with, and whether the host decided to replace it. The host plan reads it
 * as ReplicaVitals.
 */
import type { ReplicaSettings } from "../actors/replica-config.js";
import type { ReplicaHealth, Replacement, ReplacementKind } from "../shared/records.js";
import { MEMORY_SAMPLES, type ReplicaVitals } from "./host-plan.js";

export class VitalsTracker {
  private readonly health: ReplicaHealth = { lastCheckAt: null, consecutiveFailures: 0 };
  private ping: { seq: number; sentAt: number } | null = null;
  private seq = 0;
  private readonly rssMiB: number[] = [];
  private limits: Pick<ReplicaSettings, "healthCheckFailureThreshold" | "healthCheckTimeoutS">;
  private replacedFor: Replacement | null = null;

  constructor(
    settings: ReplicaSettings,
    private readonly memoryMiB: number | null,
  ) {
    this.limits = pickLimits(settings);
  }

  /** A ping to send now (its sequence number), or undefined while the last one is unanswered. */
  nextPing(now: number): number | undefined {
    if (this.ping) return undefined;
    this.ping = { seq: ++this.seq, sentAt: now };
    return this.ping.seq;
  }

  pong(seq: number, rssBytes: number): void {
    if (this.ping?.seq === seq) this.ping = null;
    this.rssMiB.push(rssBytes / 1024 / 1024);
    if (this.rssMiB.length > MEMORY_SAMPLES) this.rssMiB.shift();
  }

  healthCheck(at: number, error: string | null): void {
    this.health.lastCheckAt = at;
    this.health.consecutiveFailures = error === null ? 0 : this.health.consecutiveFailures + 1;
    if (error === null) delete this.health.lastError;
    else this.health.lastError = error;
  }

  applySettings(settings: ReplicaSettings): void {
    this.limits = pickLimits(settings);
  }

  replaced(kind: ReplacementKind, reason: string, at: number): void {
    this.replacedFor = { kind, reason, at };
  }

  get replacement(): Replacement | null {
    return this.replacedFor;
  }

  /** Its health for the status record, once a check has run. */
  get checks(): ReplicaHealth | undefined {
    return this.health.lastCheckAt === null ? undefined : { ...this.health };
  }

  snapshot(): ReplicaVitals {
    return {
      health: { ...this.health },
      pingSentAt: this.ping?.sentAt ?? null,
      rssMiB: [...this.rssMiB],
      ...this.limits,
      memoryMiB: this.memoryMiB,
      replacement: this.replacedFor,
    };
  }
}

function pickLimits(s: ReplicaSettings): Pick<ReplicaSettings, "healthCheckFailureThreshold" | "healthCheckTimeoutS"> {
  return { healthCheckFailureThreshold: s.healthCheckFailureThreshold, healthCheckTimeoutS: s.healthCheckTimeoutS };
}
