/**
 * Collects the output lines of a host's replicas (and what the host says
 * about them) into each deployment's log stream in Redis. Lines are buffered
 * and written every FLUSH_MS, one pipeline per deployment (never one round
 * trip per line), each XADD capping the stream at about `maxLines`.
 * Credentials are blanked before a line leaves the host. While Redis does not
 * answer, at most `maxLines` lines wait; further ones are dropped and counted.
 */
import type { Redis } from "ioredis";
import { errorMessage } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import { logFields, type LogLine, type LogSource } from "../shared/log-stream.js";
import { redactLine, type Logger } from "../shared/logger.js";
import { Ticker } from "../shared/ticker.js";

const FLUSH_MS = 250;

type Pending = Omit<LogLine, "id">;

export class LogShipper {
  private pending = new Map<string, Pending[]>();
  private buffered = 0;
  /** Lines dropped per deployment since the last write that succeeded. */
  private dropped = new Map<string, number>();
  private warnedAt = 0;
  private readonly ticker = new Ticker(() => this.flush(), () => FLUSH_MS);

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly hostId: string,
    private readonly maxLines: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.ticker.start(FLUSH_MS);
  }

  add(deployment: string, replica: string, stream: LogSource, line: string): void {
    this.push(deployment, { at: this.now(), host: this.hostId, replica, stream, line: redactLine(line) });
  }

  private push(deployment: string, entry: Pending): void {
    if (this.buffered >= this.maxLines) {
      this.dropped.set(deployment, (this.dropped.get(deployment) ?? 0) + 1);
      return;
    }
    const list = this.pending.get(deployment);
    if (list) list.push(entry);
    else this.pending.set(deployment, [entry]);
    this.buffered++;
  }

  /** Writes what is buffered; on failure keeps it for the next flush. */
  async flush(): Promise<void> {
    if (this.buffered === 0) return;
    const batch = this.pending;
    const droppedBefore = this.dropped;
    this.pending = new Map();
    this.buffered = 0;
    this.dropped = new Map();
    const writes = [...batch].map(async ([deployment, lines]) => {
      const key = this.keys.logs(deployment);
      const pipeline = this.redis.pipeline();
      const dropped = droppedBefore.get(deployment) ?? 0;
      if (dropped > 0) {
        const note = { at: this.now(), host: this.hostId, replica: "-", stream: "host" as const, line: `${dropped} lines dropped while Redis did not answer` };
        pipeline.xadd(key, "MAXLEN", "~", String(this.maxLines), "*", ...logFields(note));
      }
      for (const l of lines) pipeline.xadd(key, "MAXLEN", "~", String(this.maxLines), "*", ...logFields(l));
      const res = await pipeline.exec();
      const failed = res?.find(([err]) => err)?.[0];
      if (failed) throw failed;
    });
    const results = await Promise.allSettled(writes);
    const deployments = [...batch.keys()];
    results.forEach((r, i) => {
      if (r.status === "fulfilled") return;
      const name = deployments[i]!;
      for (const l of batch.get(name) ?? []) this.push(name, l);
      const dropped = droppedBefore.get(name) ?? 0;
      if (dropped > 0) this.dropped.set(name, (this.dropped.get(name) ?? 0) + dropped);
      if (this.now() - this.warnedAt > 10_000) {
        this.warnedAt = this.now();
        this.log.warn({ err: errorMessage(r.reason) }, "could not write replica log lines; keeping them for the next try");
      }
    });
  }

  /** Stops the timer after a last flush. */
  async stop(): Promise<void> {
    await this.ticker.stop();
    await this.flush().catch(() => undefined);
  }
}
