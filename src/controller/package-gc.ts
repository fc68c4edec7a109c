/**
 * The leader's garbage collection of runtimeEnv packages: from time to time
 * (never on every tick) it deletes from Redis the packages that no deployment
 * record references, neither as its current package nor as the one its
 * previous code version ran, nor any of its kept revisions (a rollback
 * brings back that revision's package). A package uploaded or
 * reused within the grace period stays, so a deploy between its upload and
 * its record's write never loses its package.
 */
import type { Redis } from "ioredis";
import { errorMessage } from "../errors.js";
import { readRevisions } from "../client/revisions.js";
import { collectPackageGarbage, DEFAULT_GC_GRACE_MS, packageHashesOf } from "../runtime-env/package-store.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { DeploymentRecord } from "../shared/records.js";
import { Ticker } from "../shared/ticker.js";

/** @default one minute */
export const PACKAGE_GC_INTERVAL_MS = 60_000;

export class PackageGarbageCollector {
  private readonly ticker: Ticker;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly log: Logger,
    private readonly isLeader: () => boolean,
    private readonly options: { intervalMs?: number; graceMs?: number } = {},
  ) {
    this.ticker = new Ticker(() => this.collect(), () => options.intervalMs ?? PACKAGE_GC_INTERVAL_MS);
  }

  start(): void {
    this.ticker.start(this.options.intervalMs ?? PACKAGE_GC_INTERVAL_MS);
  }

  stop(): Promise<void> {
    return this.ticker.stop();
  }

  /** Collects once now, when leader (for tests); resolves after it has run. */
  runNow(): Promise<void> {
    return this.ticker.runNow();
  }

  private async collect(): Promise<void> {
    if (!this.isLeader()) return;
    try {
      // Records first, then packages: one a deploy has just uploaded or touched is spared by the grace period, even if its record is written after this read.
      const records = parseJsonHash<DeploymentRecord>(await this.redis.hgetall(this.keys.deployments));
      const referenced = packageHashesOf(records.values());
      for (const name of records.keys()) {
        for (const r of await readRevisions(this.redis, this.keys, name)) if (r.runtimeEnv) referenced.add(r.runtimeEnv.hash);
      }
      const deleted = await collectPackageGarbage(this.redis, this.keys, referenced, { graceMs: this.options.graceMs ?? DEFAULT_GC_GRACE_MS });
      if (deleted.length > 0) this.log.info({ deleted }, "removed runtimeEnv packages no deployment references");
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "runtimeEnv package garbage collection failed; retrying later");
    }
  }
}
