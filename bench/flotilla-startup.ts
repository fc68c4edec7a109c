/**
 * Flotilla's start-up costs: how long a replica takes from spawn to running
 * (the host's "replica process started" log line to the replica's own
 * "replica running" line, both stamped by pino in ms), the wall time from
 * applying a spec to HEALTHY, and the resident memory of each process.
 */
import { readFileSync } from "node:fs";
import type { FlotillaTarget } from "./flotilla-target.js";
import type { Proc } from "./proc.js";
import { measureRuntimeEnvStartup, type RuntimeEnvStartup } from "./runtime-env-startup.js";

export interface ReplicaStart {
  deployment: string;
  replica: string;
  pid: number;
  /** "replica process started" (host) → "replica running" (replica). */
  spawnToRunningMs: number;
  /** The replica's own measure: loading the handler and readying its BullMQ worker. */
  loadAndWorkerReadyMs: number | null;
}

export interface FlotillaStartup {
  /** Apply → HEALTHY for the first deployment (the host's first replica). */
  firstApplyToHealthyMs: number;
  firstReplica: ReplicaStart | null;
  /** Apply → HEALTHY for a second deployment, measured after the load. */
  secondApplyToHealthyMs: number;
  secondReplica: ReplicaStart | null;
  /**
   * VmRSS in MiB of each process, read settledAfterS after the load cells;
   * the loaded replica also just after the load ("replica (just after load)")
   * and LATE_S after it ("replica (60 s after load)").
   */
  rssMiB: Record<string, number | null>;
  /** VmHWM of the loaded replica: its peak resident memory, under load. */
  loadedReplicaPeakMiB: number | null;
  /** Seconds from the end of the load to the reading of rssMiB and pssMiB (at least 20). */
  settledAfterS: number;
  /**
   * Proportional set size in MiB: resident memory with pages shared between
   * processes (Node's own code, mostly) divided among them. What one more
   * replica costs is closer to this than to its RSS.
   */
  pssMiB: Record<string, number | null>;
  /** The first start of a runtimeEnv deployment (one small npm dependency) on a cold and on a warm host cache. */
  runtimeEnv?: RuntimeEnvStartup;
  runtimeEnvError?: string;
}

/** Reads the spawn and running lines of `deployment`'s first replica from the host's output. */
export function replicaStart(host: Proc, deployment: string): ReplicaStart | null {
  const entries = host.entries();
  const spawned = entries.find((e) => e.msg === "replica process started" && e.deployment === deployment);
  if (!spawned || typeof spawned.time !== "number" || typeof spawned.replicaPid !== "number") return null;
  const running = entries.find((e) => e.msg === "replica running" && e.replica === spawned.replica);
  if (!running || typeof running.time !== "number") return null;
  return {
    deployment,
    replica: String(spawned.replica),
    pid: spawned.replicaPid,
    spawnToRunningMs: running.time - spawned.time,
    loadAndWorkerReadyMs: typeof running.ms === "number" ? running.ms : null,
  };
}

/** A `<field>: <n> kB` line of a /proc file of the process, in MiB, or null when it cannot be read. */
function procMiB(pid: number | undefined | null, file: string, field: string): number | null {
  if (!pid) return null;
  try {
    const kb = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(readFileSync(`/proc/${pid}/${file}`, "utf8"))?.[1];
    return kb ? Math.round((Number(kb) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

/** VmRSS of a process in MiB, or null when it cannot be read. */
export const rssMiB = (pid: number | undefined | null): number | null => procMiB(pid, "status", "VmRSS");

/** Pss of a process in MiB (from smaps_rollup), or null when it cannot be read. */
export const pssMiB = (pid: number | undefined | null): number | null => procMiB(pid, "smaps_rollup", "Pss");

/** Replica lines may reach the host's stderr a moment after HEALTHY is observed. */
async function replicaStartSoon(host: Proc, deployment: string): Promise<ReplicaStart | null> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = replicaStart(host, deployment);
    if (found || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The idle memory figures are read this long after the load ends: V8 hands memory back to the system only after some seconds idle. */
const SETTLE_S = 20;
/**
 * The loaded replica is read again this long after the load: when V8's heap
 * shrinks after SETTLE_S varies from run to run, so the reading at SETTLE_S
 * alone can catch a replica before it has.
 */
const LATE_S = 60;

/** `loadEndedAt`: when the target's last load ended (performance.now()); other targets' slices may have run since. */
export async function measureStartup(target: FlotillaTarget, loadEndedAt = performance.now(), secondName = "hello-start"): Promise<FlotillaStartup> {
  const firstReplica = replicaStart(target.host, "hello");
  const status = await target.status();
  const loadedPid = status.deployments.find((d) => d.name === "hello")?.replicas.find((r) => r.state === "running")?.pid ?? null;
  const justAfterLoad = rssMiB(loadedPid);
  const loadedReplicaPeakMiB = procMiB(loadedPid, "status", "VmHWM");
  const pids: Record<string, number | null | undefined> = {
    controller: target.controller.pid,
    router: target.router.pid,
    host: target.host.pid,
    "replica (after load)": loadedPid,
  };
  const secondApplyToHealthyMs = await target.deploy(secondName);
  const secondReplica = await replicaStartSoon(target.host, secondName);
  pids["replica (fresh, idle, .ts handler in an ES module package)"] = secondReplica?.pid;
  // A host prestarts its next process for the loader its last handler needed: the first replica of another
  // kind takes a process readied for the previous kind (its loader already in it), the second one its own.
  await target.deploy(`${secondName}-js`, "hello-js.js");
  await target.deploy(`${secondName}-js2`, "hello-js.js");
  pids["replica (fresh, idle, .js handler)"] = (await replicaStartSoon(target.host, `${secondName}-js2`))?.pid;
  await target.deploy(`${secondName}-cjs`, "cjs/hello.ts");
  await target.deploy(`${secondName}-cjs2`, "cjs/hello.ts");
  pids["replica (fresh, idle, .ts handler in CommonJS scope)"] = (await replicaStartSoon(target.host, `${secondName}-cjs2`))?.pid;
  let runtimeEnv: RuntimeEnvStartup | undefined;
  let runtimeEnvError: string | undefined;
  try {
    runtimeEnv = await measureRuntimeEnvStartup(target);
  } catch (err) {
    runtimeEnvError = err instanceof Error ? err.message : String(err);
  }
  const idleMs = SETTLE_S * 1000 - (performance.now() - loadEndedAt);
  if (idleMs > 0) await new Promise((r) => setTimeout(r, idleMs));
  const settledAfterS = Math.round((performance.now() - loadEndedAt) / 1000);
  const rss: Record<string, number | null> = { "replica (just after load)": justAfterLoad };
  const pss: Record<string, number | null> = {};
  for (const [name, pid] of Object.entries(pids)) {
    rss[name] = rssMiB(pid);
    pss[name] = pssMiB(pid);
  }
  const lateMs = LATE_S * 1000 - (performance.now() - loadEndedAt);
  if (lateMs > 0) await new Promise((r) => setTimeout(r, lateMs));
  rss[`replica (${LATE_S} s after load)`] = rssMiB(loadedPid);
  pss[`replica (${LATE_S} s after load)`] = pssMiB(loadedPid);
  return {
    firstApplyToHealthyMs: target.firstRolloutMs,
    firstReplica,
    secondApplyToHealthyMs,
    secondReplica,
    rssMiB: rss,
    pssMiB: pss,
    loadedReplicaPeakMiB,
    settledAfterS,
    ...(runtimeEnv ? { runtimeEnv } : {}),
    ...(runtimeEnvError ? { runtimeEnvError } : {}),
  };
}
