/** A system under test: a URL to load, whether it runs on Redis, and how to stop it and clean up after it. */
export interface Target {
  name: string;
  url: string;
  /** Redis-backed targets get Redis cost per request. */
  usesRedis: boolean;
  /** SCAN patterns of every key this target may have written. */
  keyPatterns: string[];
  /** The target's own processes by role (front first), for their CPU per request. */
  processes?(): Promise<Record<string, number | undefined>>;
  /** Stops every process of the target (SIGTERM, then SIGKILL after a deadline). */
  stop(): Promise<void>;
}

/** Timeouts shared by the targets. */
export const START_TIMEOUT_MS = 30_000;
export const STOP_GRACE_MS = 10_000;
