/**
 * Hears that a requester went away from a request (its HTTP client
 * disconnected, its handle's consumer stopped), and aborts that request's
 * signal if this replica runs it. A cancel is a message on the deployment's
 * cancel channel and a key beside the request's reply list. Only a request
 * still running after `listenAfterMs` needs the channel: the replica then
 * subscribes (once; most requests end long before) and reads the key of each
 * such request, so a cancel published before the subscription was live still
 * stops it. Costs a request one map entry.
 */
import type { Abortable } from "./request-abort.js";
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import type { CancelSubscriber } from "./cancel-subscriber.js";
import { StreamStopped } from "./stream-stopped.js";

/** How long a request runs before its cancels are heard over pub/sub. */
export const LISTEN_AFTER_MS = 100;

interface Watched {
  replyTo: string;
  requestId: string;
  abort: Abortable;
  since: number;
  /** Its cancel key was read (or is being read) with the subscription live. */
  checked: boolean;
}

const wentAway = (): StreamStopped => new StreamStopped("the requester went away", false);

export class CancelWatch {
  private readonly running = new Map<string, Watched>();
  private readonly channel: string;
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly subscriber: CancelSubscriber,
    /** Reads cancel keys (any connection that is not subscribed). */
    private readonly redis: Redis,
    private readonly keys: Keys,
    deployment: string,
    private readonly listenAfterMs = LISTEN_AFTER_MS,
  ) {
    this.channel = keys.cancels(deployment);
  }

  /** Watches one request while it runs; returns the function that stops watching it. */
  watch(replyTo: string, requestId: string, abort: Abortable): () => void {
    const key = `${replyTo}\n${requestId}`;
    const watched: Watched = { replyTo, requestId, abort, since: performance.now(), checked: false };
    this.running.set(key, watched);
    this.sweep ??= this.schedule(this.listenAfterMs);
    return () => {
      if (this.running.get(key) === watched) this.running.delete(key);
    };
  }

  private schedule(ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.onSweep(), ms);
    timer.unref();
    return timer;
  }

  /** Finds the requests that have run listenAfterMs and are not checked yet; comes back for the next one due. */
  private onSweep(): void {
    this.sweep = undefined;
    const now = performance.now();
    const due: Watched[] = [];
    let next = Infinity;
    for (const watched of this.running.values()) {
      if (watched.checked) continue;
      const wait = watched.since + this.listenAfterMs - now;
      if (wait <= 0) {
        watched.checked = true;
        due.push(watched);
      } else next = Math.min(next, wait);
    }
    if (next !== Infinity) this.sweep = this.schedule(next);
    if (due.length > 0) void this.check(due);
  }

  /** Subscribes, then reads the cancel keys of `due`: a cancel published before the subscription was live left one. */
  private async check(due: Watched[]): Promise<void> {
    try {
      await this.subscriber.listen(this.channel, (message) => this.running.get(message)?.abort.abort(wentAway()));
      await Promise.all(
        due.map(async (watched) => {
          if (watched.abort.signal.aborted || !this.isRunning(watched)) return;
          const { cancel } = this.keys.streamKeys(watched.replyTo, watched.requestId, "");
          if ((await this.redis.exists(cancel)) > 0) watched.abort.abort(wentAway());
        }),
      );
    } catch {
      if (this.subscriber.closed) return;
      // Redis is away: try again for those still running (ioredis reconnects meanwhile).
      for (const watched of due) if (this.isRunning(watched)) watched.checked = false;
      this.sweep ??= this.schedule(this.listenAfterMs);
    }
  }

  private isRunning(watched: Watched): boolean {
    return this.running.get(`${watched.replyTo}\n${watched.requestId}`) === watched;
  }
}
