/**
 * A host process's runtimeEnv cache: one per process, shared by every host
 * agent in it (`flotilla up --hosts N`). It knows which packages the
 * process's replicas use, so eviction, which runs from time to time and
 * never on the agents' ticks, spares them; and which packages it has
 * prepared, so a replica of a package prepared moments ago starts at once.
 */
import { existsSync } from "node:fs";
import { errorMessage } from "../errors.js";
import { RuntimeEnvCache } from "../runtime-env/package-cache.js";
import type { Logger } from "../shared/logger.js";
import { Ticker } from "../shared/ticker.js";

/** Eviction runs this often (and soon after a new package is unpacked). */
export const EVICT_INTERVAL_MS = 5 * 60_000;

export class HostPackageCache {
  readonly cache: RuntimeEnvCache;
  /** sha256 → replicas of this process holding it (preparing or running). */
  private readonly uses = new Map<string, number>();
  /** Packages prepared by this process: sha256 → app directory. */
  private readonly prepared = new Map<string, string>();
  private readonly ticker: Ticker;
  private attached = 0;

  constructor(
    options: { cacheDir: string; cacheMaxGiB: number },
    private readonly log: Logger,
    intervalMs = EVICT_INTERVAL_MS,
  ) {
    this.cache = new RuntimeEnvCache({ cacheDir: options.cacheDir, cacheMaxGiB: options.cacheMaxGiB });
    this.ticker = new Ticker(() => this.evict(), () => intervalMs);
  }

  /** An agent starts using the cache: eviction runs while any does. */
  attach(): void {
    if (this.attached++ === 0) this.ticker.start(EVICT_INTERVAL_MS);
  }

  async detach(): Promise<void> {
    if (this.attached > 0 && --this.attached === 0) await this.ticker.stop();
  }

  /** A replica holds `hash` until the returned release is called (once is enough; more are harmless). */
  use(hash: string): () => void {
    this.uses.set(hash, (this.uses.get(hash) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.uses.get(hash) ?? 1) - 1;
      if (left > 0) this.uses.set(hash, left);
      else this.uses.delete(hash);
    };
  }

  inUse(): Set<string> {
    return new Set(this.uses.keys());
  }

  markPrepared(hash: string, appDir: string, fetched: boolean): void {
    this.prepared.set(hash, appDir);
    // A new package grew the cache: see soon whether it is over its limit.
    if (fetched) this.ticker.nudge();
  }

  /** Packages prepared here whose directory is still there: sha256 → app directory. */
  ready(): Map<string, string> {
    for (const [hash, dir] of this.prepared) if (!existsSync(dir)) this.prepared.delete(hash);
    return new Map(this.prepared);
  }

  /** A replica of `hash` failed: its next start prepares it again (checking what is on disk) first. */
  forget(hash: string): void {
    this.prepared.delete(hash);
  }

  /** Runs one eviction now (for tests); resolves when it has run. */
  evictNow(): Promise<void> {
    return this.ticker.runNow();
  }

  private async evict(): Promise<void> {
    try {
      const inUse = this.inUse();
      const result = await this.cache.evict(inUse);
      if (result.removed.length > 0) {
        // An unused package may have lost its directory or its dependencies: prepare it again when needed.
        for (const hash of this.prepared.keys()) if (!inUse.has(hash)) this.prepared.delete(hash);
        this.log.info({ removed: result.removed, bytes: result.bytes, cacheDir: this.cache.options.cacheDir }, "runtimeEnv cache: evicted unused packages");
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err), cacheDir: this.cache.options.cacheDir }, "runtimeEnv cache eviction failed; retrying later");
    }
  }
}
