/**
 * Blocking waits sent ahead, for a replica that may run several jobs at once.
 *
 * A replica that waits for one job at a time sends its next wait after each
 * job, so Redis wakes twice per request: for the requester's add, and for
 * the replica's finish and next wait. Here the replica keeps several waits
 * queued on its blocking connection, each a blocking pop of the queue's
 * marker followed by a lean take (lean-scripts.ts). Redis runs them one
 * after another, without reading anything more from the replica: each
 * request's add ends the wait at the head, its take moves the job to the
 * active list and locks it, and the next wait blocks at once. The replica
 * tops the queue up, and sends the finishes it held back (see leanFinish's
 * `queuedAhead`), in one write every few requests. Only for jobs that take
 * under ARMED_BELOW_MS: a burst that queued waits take together lands on
 * one replica, which slow jobs would pile onto while another is free.
 *
 * Taking a job is still BullMQ's take: active list, lock with the worker's
 * token, stalled check. A replica never has more waits queued than it has
 * free slots, so every job a wait takes starts at once, and a replica that
 * dies holds only jobs it was running (the host releases their locks).
 * Requests one at a time still go to the replicas in turn (Redis serves
 * blocked connections in order); a burst goes to the queued waits of one.
 */
import type { Logger } from "../shared/logger.js";
import { inOneWrite, type RedisClientish, type TakeSender } from "./tuned-worker.js";

/** BullMQ's raw moveToActive answer, decoded: job data (none when nothing was taken), id, rate-limit delay, next delayed timestamp. */
export type NextJobData = [unknown, ...unknown[]];

/** A connection the waits are sent on (an ioredis client). */
export interface WaitClient extends RedisClientish {
  bzpopmin(key: string, timeout: number): Promise<unknown>;
}

/** What an armed wait gave: the token its take locked with, and what it took (undefined: nothing). */
export interface Taken {
  token: string;
  data: NextJobData | undefined;
}

export interface ArmedWaitsOptions {
  /** The worker's blocking connection (it may be replaced on reconnect: asked for each time). */
  blockingClient: () => Promise<WaitClient> | undefined;
  /** Where a take goes in full when Redis does not know its script (see LuaScript.run). */
  client: () => Promise<RedisClientish> | undefined;
  marker: string;
  take: TakeSender;
  /** Seconds each wait blocks (BullMQ's drainDelay). */
  blockTimeoutS: () => number;
  /** Drops the blocking connection's pending commands and connects again (BullMQ's own, for a wait that never ends). */
  reconnect: () => Promise<void>;
  log?: Logger;
}

interface Armed {
  token: string;
  result: Promise<NextJobData | undefined>;
}

export class ArmedWaits {
  private queue: Armed[] = [];
  /** The wait next() is waiting for: out on the blocking connection still, though no longer queued. */
  private inFlight = 0;

  constructor(private readonly options: ArmedWaitsOptions) {}

  /**
   * Waits sent and not yet answered, the one next() waits for included:
   * while it is out, anything written on the blocking connection waits
   * behind it.
   */
  get count(): number {
    return this.queue.length + this.inFlight;
  }

  /**
   * Sends one wait per token, in one write. Resolves once they are sent;
   * false when they cannot be: no blocking connection, or one to a Redis
   * Cluster, whose client does not keep a connection's commands in order
   * behind a blocking one.
   */
  async arm(tokens: readonly string[]): Promise<boolean> {
    const pending = this.options.blockingClient();
    const fallbackPending = this.options.client();
    if (!pending) return false;
    const [client, fallback] = await Promise.all([pending, fallbackPending]);
    if ((client as { isCluster?: boolean }).isCluster) return false;
    const timeout = this.options.blockTimeoutS();
    inOneWrite(client, () => {
      for (const token of tokens) {
        const wait = client.bzpopmin(this.options.marker, timeout);
        // The take that follows reports a broken connection too.
        wait.catch(() => undefined);
        const result = this.options.take(client, token, fallback);
        result.catch(() => undefined);
        this.queue.push({ token, result });
      }
    });
    return true;
  }

  /**
   * What the wait at the head gave; undefined when the connection failed or
   * the wait did not end in time (then every queued wait is dropped and the
   * blocking connection reconnected).
   */
  async next(): Promise<Taken | undefined> {
    const head = this.queue.shift();
    if (!head) return undefined;
    this.inFlight++;
    let timer: NodeJS.Timeout | undefined;
    // The head's wait began at the latest when the one before it ended, which was just now.
    const overdue = new Promise<"overdue">((resolve) => {
      timer = setTimeout(() => resolve("overdue"), this.options.blockTimeoutS() * 1000 + 2_000);
    });
    try {
      const data = await Promise.race([head.result, overdue]);
      if (data === "overdue") {
        this.options.log?.warn({ queued: this.queue.length }, "a blocking wait did not end in time; reconnecting the blocking connection");
        this.queue = [];
        await this.options.reconnect().catch(() => undefined);
        return undefined;
      }
      return { token: head.token, data };
    } catch {
      return undefined;
    } finally {
      this.inFlight--;
      clearTimeout(timer);
    }
  }

  /**
   * Hands out what the queued waits took, once the blocking connection is
   * closed (each then ends at once): a take Redis ran before the close
   * locked a job for this worker, which must run it.
   */
  async drain(): Promise<Taken[]> {
    const queued = this.queue;
    this.queue = [];
    const settled = await Promise.all(queued.map(async ({ token, result }) => ({ token, data: await result.catch(() => undefined) })));
    return settled.filter((t) => t.data !== undefined && t.data[0] !== undefined && t.data[0] !== null);
  }
}
