/**
 * Hears, on the deployment's cancel channel, that a requester went away from a
 * request (its HTTP client disconnected, its handle's consumer stopped), and
 * aborts that request's signal if this replica runs it. Costs a request one map
 * entry; the channel is quiet unless requesters leave.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { StreamStopped } from "./stream-writer.js";

export class CancelWatch {
  private readonly running = new Map<string, AbortController>();
  private readonly channel: string;

  constructor(
    private readonly sub: Redis,
    keys: Keys,
    deployment: string,
  ) {
    this.channel = keys.cancels(deployment);
    this.sub.on("message", (channel: string, message: string) => {
      if (channel === this.channel) this.running.get(message)?.abort(new StreamStopped("the requester went away", false));
    });
  }

  async start(): Promise<void> {
    await this.sub.subscribe(this.channel);
  }

  /** Watches one request while it runs; returns the function that stops watching it. */
  watch(replyTo: string, requestId: string, abort: AbortController): () => void {
    const key = `${replyTo}\n${requestId}`;
    this.running.set(key, abort);
    return () => {
      if (this.running.get(key) === abort) this.running.delete(key);
    };
  }
}
