/**
 * Every Redis key and channel Flotilla uses, in one place. Nothing else builds
 * key strings. Three families, all under the namespace:
 * - control-plane keys `{<ns>}:<name>`: one hash tag, so the leader's fenced
 *   updates (one Lua script over several of them) work on a Redis Cluster too;
 * - requesters' reply lists `<ns>:replies:{<requester>}`;
 * - each deployment's queue `<ns>:q:{<ns>/<deployment>}:*`: its own hash tag,
 *   so deployments spread over a cluster's slots. Those keys are the queue
 *   layer's (src/queue/queue-keys.ts), the only code that knows their layout.
 */

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
  /** Hash: replica id → ReplicaAssignment JSON (desired replicas, written by the leader controller). */
  get replicas(): string {
    return `${this.control}:replicas`;
  }
  /** Hash: replica id → ReplicaStatus JSON (observed, written by the replica's host). */
  get replicaStatus(): string {
    return `${this.control}:replica-status`;
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
  /** List: replies addressed to one requester (a router or a handle); only that requester reads it. Its own hash tag. */
  replies(requesterId: string): string {
    return `${this.repliesPrefix}{${requesterId}}`;
  }
  /** Every reply list starts with this; replicas push to no other key. */
  get repliesPrefix(): string {
    return `${this.namespace}:replies:`;
  }
  /** SCAN patterns matching every key of this namespace (for cleanup in tests). */
  get patterns(): string[] {
    return [`${this.control}:*`, `${this.namespace}:*`];
  }
}
