/**
 * The Redis keys of deployments' BullMQ queues. Each deployment's queue lives
 * at `<ns>:q:{<ns>/<deployment>}:*`: BullMQ's prefix `<ns>:q` keeps it under
 * the namespace, and the queue name is the deployment's hash tag, so a
 * deployment's keys share one slot of a Redis Cluster (BullMQ's scripts need
 * that) while deployments spread over the slots.
 */

import { deploymentTag } from "../shared/keys.js";

/** The keys of one deployment's queue that Flotilla reads or writes itself. */
export interface DeploymentKeys {
  /** List: ids of jobs waiting to be taken (newest at the head). */
  wait: string;
  /** List: ids of jobs a worker holds. */
  active: string;
  /** Sorted sets of jobs waiting by priority, delayed, and failed for good. */
  prioritized: string;
  delayed: string;
  failed: string;
  /** Sorted set: BullMQ's wake-up markers for blocked workers. */
  marker: string;
  /** Set: active jobs the stalled check found last time (a job's lock must come back before the next). */
  stalled: string;
  /** Hash: the queue's settings (paused, global concurrency and rate limit). */
  meta: string;
  /** String: the last job id handed out. */
  id: string;
  /** Hash: requester id → requests it waits on (Flotilla's own; beside the queue for its hash tag). */
  requesters: string;
  /** Every job's hash (and its lock, `<prefix><id>:lock`) starts with this. */
  jobPrefix: string;
}

export class QueueKeys {
  constructor(readonly namespace: string) {}

  /** BullMQ's prefix option: puts the queue keys under the namespace. */
  get prefix(): string {
    return `${this.namespace}:q`;
  }

  /** BullMQ's queue name of a deployment. */
  name(deployment: string): string {
    return deploymentTag(this.namespace, deployment);
  }

  /** The Redis key of a queue sub-key, e.g. `wait`, `active`, a job id, or a job id's `<id>:lock`. */
  key(deployment: string, suffix: string): string {
    return `${this.prefix}:${this.name(deployment)}:${suffix}`;
  }

  of(deployment: string): DeploymentKeys {
    const k = (suffix: string): string => this.key(deployment, suffix);
    return {
      wait: k("wait"),
      active: k("active"),
      prioritized: k("prioritized"),
      delayed: k("delayed"),
      failed: k("failed"),
      marker: k("marker"),
      stalled: k("stalled"),
      meta: k("meta"),
      id: k("id"),
      requesters: k("requesters"),
      jobPrefix: k(""),
    };
  }
}
