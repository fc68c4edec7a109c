/**
 * A requester's deployment queues, one per deployment, made on first use
 * and shared by its request paths (a router's plain and async requests add
 * on the same connection, so one queue object each is enough).
 */
import type { Redis } from "ioredis";
import { DeploymentQueue } from "../queue/deployment-queue.js";

/** The most queues prepare() sets up ahead of use. */
const MAX_PREPARED = 16;

export class DeploymentQueues {
  private readonly queues = new Map<string, DeploymentQueue>();

  /** `redis` is shared, not owned. */
  constructor(
    private readonly redis: Redis,
    private readonly namespace: string,
  ) {}

  /** The deployment's queue, made on first use. */
  get(deployment: string): DeploymentQueue {
    let queue = this.queues.get(deployment);
    if (!queue) {
      queue = new DeploymentQueue(this.redis, this.namespace, deployment);
      this.queues.set(deployment, queue);
    }
    return queue;
  }

  /**
   * Sets up the queues of (at most MAX_PREPARED of) these deployments ahead
   * of their first request, so a router's first request (an async one's 202
   * above all) costs what a later one does. Most of that cost is the
   * process's first queue (BullMQ defines its scripts on the connection); a
   * further queue costs one round trip, so a router of many deployments sets
   * up the rest on first use rather than holding a queue object for each.
   * Best effort: a queue that could not be set up (Redis away) is dropped and
   * made again by the request that needs it.
   */
  async prepare(deployments: Iterable<string>): Promise<void> {
    const room = Math.max(0, MAX_PREPARED - this.queues.size);
    const fresh = [...new Set(deployments)].filter((deployment) => !this.queues.has(deployment)).slice(0, room);
    await Promise.all(
      fresh.map(async (deployment) => {
        const queue = this.get(deployment);
        try {
          await queue.ready();
        } catch {
          if (this.queues.get(deployment) === queue) this.queues.delete(deployment);
          await queue.close().catch(() => undefined);
        }
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close().catch(() => undefined)));
    this.queues.clear();
  }
}
