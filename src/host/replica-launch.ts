/** What a replica process starts with: its config and its environment. */
import type { ReplicaConfig } from "../actors/replica-config.js";
import { settingsOf } from "../actors/replica-config.js";
import type { DeploymentRecord, ReplicaAssignment } from "../shared/records.js";
import type { HostOptions } from "./host-options.js";
import { REPLICA_MALLOC_ARENAS } from "./prestarted-process.js";

/** `appDir`: where `import` is resolved: the host's app directory, or the replica's prepared runtimeEnv package. */
export function replicaConfig(a: ReplicaAssignment, record: DeploymentRecord, host: HostOptions, appDir = host.appDir): ReplicaConfig {
  const spec = record.spec;
  return {
    replicaId: a.id,
    deployment: a.deployment,
    hostId: host.id,
    namespace: host.namespace,
    redisUrl: host.redisUrl,
    appDir,
    importRef: spec.import,
    codeVersion: record.codeVersion,
    version: a.version,
    configVersion: record.configVersion,
    userConfig: spec.userConfig,
    ...settingsOf(spec),
    ...(spec.actorOptions.memoryMiB !== undefined ? { memoryMiB: spec.actorOptions.memoryMiB } : {}),
  };
}

/** The host's environment, then the cluster's address and resource limits, then the deployment's own variables. */
export function replicaEnv(a: ReplicaAssignment, record: DeploymentRecord, host: HostOptions, hostEnv: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...hostEnv,
    // A handler's getHandle() reaches the same cluster by default (model composition).
    REDIS_URL: host.redisUrl,
    FLOTILLA_NAMESPACE: host.namespace,
    OMP_NUM_THREADS: hostEnv.OMP_NUM_THREADS ?? "1",
    MALLOC_ARENA_MAX: hostEnv.MALLOC_ARENA_MAX ?? REPLICA_MALLOC_ARENAS,
    CUDA_VISIBLE_DEVICES: a.gpuIds.join(","),
    ...record.spec.actorOptions.env,
  };
}
