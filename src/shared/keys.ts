/**
 * Every Redis key and channel Flotilla uses, in one place. Nothing else builds
 * key strings. Two families, both under the namespace:
 * - control-plane keys `{<ns>}:<name>`: one hash tag, so the leader's fenced
 *   updates (one Lua script over several of them) work on a Redis Cluster too;
 *   the per-host keys are among them, because the leader changes a host's
 *   assignments and its generation in the same fenced write;
 * - each deployment's BullMQ queue `<ns>:q:{<ns>/<deployment>}:*`: its own hash
 *   tag, so deployments spread over a cluster's slots.
 */

/** BullMQ refuses ':' in queue names; the hash tag keeps a deployment's keys on one slot. */
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
  /** List: replies addressed to one requester (a router or a handle); only that requester reads it. Its own hash tag. */
  replies(requesterId: string): string {
    return `${this.repliesPrefix}{${requesterId}}`;
  }
  /** Every reply list starts with this; replicas push to no other key. */
  get repliesPrefix(): string {
    return `${this.namespace}:replies:`;
  }
  /** BullMQ prefix; with `queueName` it puts the queue's keys under the namespace. */
  get queuePrefix(): string {
    return `${this.namespace}:q`;
  }
  /** BullMQ queue name of a deployment: the deployment's hash tag. */
  queueName(deployment: string): string {
    return deploymentTag(this.namespace, deployment);
  }
  /** The Redis key of a BullMQ queue sub-key, e.g. `wait`, `active`, or a job id's lock. */
  queueKey(deployment: string, suffix: string): string {
    return `${this.queuePrefix}:${this.queueName(deployment)}:${suffix}`;
  }
  /** SCAN patterns matching every key of this namespace (for cleanup in tests). */
  get patterns(): string[] {
    return [`${this.control}:*`, `${this.namespace}:*`];
  }
}
