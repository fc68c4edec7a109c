/**
 * Every Redis key and channel Flotilla uses, in one place. Nothing else builds
 * key strings. Three families, all under the namespace:
 * - control-plane keys `{<ns>}:<name>`: one hash tag, so the leader's fenced
 *   updates (one Lua script over several of them) work on a Redis Cluster too;
 *   the per-host keys are among them, because the leader changes a host's
 *   assignments and its generation in the same fenced write;
 * - requesters' reply lists `<ns>:replies:{<requester>}`;
 * - each deployment's queue `<ns>:q:{<ns>/<deployment>}:*`: its own hash tag,
 *   so deployments spread over a cluster's slots. Those keys are the queue
 *   layer's (src/queue/queue-keys.ts), the only code that knows their layout.
 */

/**
 * A deployment's hash tag: its queue (BullMQ refuses ':' in queue names) and its
 * other per-deployment keys share one slot of a Redis Cluster.
 */
export function deploymentTag(namespace: string, deployment: string): string {
  return `{${namespace}/${deployment}}`;
}

export class Keys {
  constructor(readonly namespace: string) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(namespace)) {
      throw new Error(`namespace '${namespace}' must be 1-64 letters, digits, '_', '.', '-'`);
    }
  }

  /** Prefix of control-plane keys: the namespace as one hash tag. */
  get control(): string {
    return `{${this.namespace}}`;
  }

  /** Hash: deployment name → AutoscalerState JSON (the leader's window of samples and pending decisions). */
  get autoscaler(): string {
    return `${this.control}:autoscaler`;
  }
  /** Hash: deployment name → DeploymentRecord JSON (the desired state users write). */
  get deployments(): string {
    return `${this.control}:deployments`;
  }
  /** Hash: deployment name → DeploymentStatusRecord JSON (written by the leader controller). */
  get deploymentStatus(): string {
    return `${this.control}:deployment-status`;
  }
  /** Hash: deployment name → ControllerRecord JSON (the leader's own memory: back-off, failures, last target). */
  get controllerRecords(): string {
    return `${this.control}:controller-records`;
  }
  /** Hash: deployment name → RolloutRecord JSON (the leader's memory of each deployment's latest rollout). */
  get rollouts(): string {
    return `${this.control}:rollouts`;
  }
  /**
   * Hash: one deployment's revisions (see client/revisions.ts): `next` (the last number given), `r:<n>` (the
   * revision as applied), `o:<n>` (its outcome). Under the control tag, so it is written in the same
   * transaction as the deployment record.
   */
  revisions(deployment: string): string {
    return `${this.control}:revisions:${deployment}`;
  }
  /** Hash: replica id → ReplicaAssignment JSON (desired replicas, written by the leader controller). */
  get replicas(): string {
    return `${this.control}:replicas`;
  }
  /** Hash: replica id → ReplicaAssignment JSON of the replicas placed on one host: all that host reads of them. */
  hostAssignments(hostId: string): string {
    return `${this.control}:host-assignments:${hostId}`;
  }
  /** Hash: host id → counter the leader bumps in the write that changes the host's assignments. */
  get hostGenerations(): string {
    return `${this.control}:host-generations`;
  }
  /** Pub/sub channel of one host: a nudge that its assignments changed or a deployment it runs did. */
  hostChanges(hostId: string): string {
    return `${this.control}:host-changes:${hostId}`;
  }
  /** Hash: deployment name → a stamp that changes with every write of its record. */
  get deploymentGenerations(): string {
    return `${this.control}:deployment-generations`;
  }
  /** String: a counter bumped on every change to the deployments hash (the route table's version). */
  get deploymentsVersion(): string {
    return `${this.control}:deployments-version`;
  }
  /** Hash: replica id → ReplicaStatus JSON (observed, written by the replica's host). */
  get replicaStatus(): string {
    return `${this.control}:replica-status`;
  }
  /** Set: replica ids whose status a host wrote since the leader last took the set. */
  get replicaStatusChanged(): string {
    return `${this.control}:replica-status-changed`;
  }
  /** Hash: host id → HostInfo JSON. */
  get hosts(): string {
    return `${this.control}:hosts`;
  }
  /** String with a TTL: present while the host heartbeats. */
  hostAlive(hostId: string): string {
    return `${this.control}:host-alive:${hostId}`;
  }
  /** String: the id of the controller that holds the leader lease (PX TTL). */
  get leaderLease(): string {
    return `${this.control}:controller-leader`;
  }
  /** Hash: controller id → ControllerInfo JSON. */
  get controllers(): string {
    return `${this.control}:controllers`;
  }
  controllerAlive(controllerId: string): string {
    return `${this.control}:controller-alive:${controllerId}`;
  }
  /** Hash: router id → RouterInfo JSON. */
  get routers(): string {
    return `${this.control}:routers`;
  }
  routerAlive(routerId: string): string {
    return `${this.control}:router-alive:${routerId}`;
  }
  /** Pub/sub channel: a nudge ("deployments", "replicas", "hosts") so loops react before their next tick. */
  get changes(): string {
    return `${this.control}:changes`;
  }
  /**
   * Hash: package sha256 → PackageMeta JSON of every completely stored runtimeEnv package.
   * Written last by an upload, so an entry here means every chunk is stored. Package keys
   * share the control hash tag: completing an upload and collecting garbage are then one
   * script over the index and the chunks, on a Redis Cluster too.
   */
  get packages(): string {
    return `${this.control}:packages`;
  }
  /** Hash: package sha256 → ms (Redis clock) an upload or a deploy last asked for it; garbage collection spares recent ones. */
  get packagesTouched(): string {
    return `${this.control}:packages-touched`;
  }
  /** Hash: chunk index ("0", "1", ...) → bytes of one package's archive. Expires while an upload is incomplete. */
  packageChunks(sha256: string): string {
    return `${this.control}:package:${sha256}`;
  }
  /** List: replies addressed to one requester (a router or a handle); only that requester reads it. Its own hash tag. */
  replies(requesterId: string): string {
    return `${this.repliesPrefix}{${requesterId}}`;
  }
  /** Every reply list starts with this; replicas push to no other key. */
  /**
   * A streamed answer's keys, beside its requester's reply list (same hash tag):
   * the chunk list one writer (a replica's attempt) fills, and the keys saying
   * that writer is alive and that the requester stopped reading.
   */
  streamKeys(replyTo: string, requestId: string, writer: string): { chunks: string; alive: string; cancel: string } {
    const base = `${replyTo}:s:${requestId}`;
    return { chunks: `${base}:${writer}`, alive: `${base}:${writer}:alive`, cancel: `${base}:cancel` };
  }
  /** Channel: requests whose requester went away (`<replyTo>\n<requestId>`), heard by the deployment's replicas. */
  cancels(deployment: string): string {
    return `${this.namespace}:cancels:${deploymentTag(this.namespace, deployment)}`;
  }
  get repliesPrefix(): string {
    return `${this.namespace}:replies:`;
  }
  /**
   * Hash: one async request's record (see queue/async-requests.ts), found by its id alone, so any router
   * answers a poll. Its own hash tag: the id.
   */
  asyncRequest(id: string): string {
    return `${this.namespace}:async:{${id}}`;
  }
  /** Pub/sub channel: the id of an async request cancelled while running; replicas running it abort it. */
  get asyncCancels(): string {
    return `${this.control}:async-cancels`;
  }
  /** Hash: `<deployment>|<status>` → async requests that reached that status (queued counts submissions). */
  get asyncCounts(): string {
    return `${this.control}:async-counts`;
  }
  /** Hash: deployment → requests its requesters queued during one second (epoch s); kept two minutes (see client/request-counter.ts). */
  requestsAt(second: number): string {
    return `${this.control}:requests:${second}`;
  }
  /** Hash: deployment → requests its requesters have queued in all. */
  get requestsTotal(): string {
    return `${this.control}:requests-total`;
  }
  /** Stream: the output lines of a deployment's replicas on every host, capped (see log-stream.ts). The deployment's hash tag. */
  logs(deployment: string): string {
    return `${this.namespace}:logs:${deploymentTag(this.namespace, deployment)}`;
  }
  /** Hash: `<deployment>|<counter>` → count, incremented by hosts: failed health checks, replacements by kind. */
  get healthCounters(): string {
    return `${this.control}:health-counters`;
  }
  /** List: the latest replacements of live replicas (ReplacementEvent JSON), newest first. */
  get replacements(): string {
    return `${this.control}:replacements`;
  }
  /** SCAN patterns matching every key of this namespace (for cleanup in tests). */
  get patterns(): string[] {
    return [`${this.control}:*`, `${this.namespace}:*`];
  }
}

/** String: where a requester's reply socket listens (`<host>:<port> <secret>`, see queue/reply-sockets.ts), beside its reply list (same hash tag). Expires unless renewed. */
export function replySocketKey(replyList: string): string {
  return `${replyList}:via`;
}
