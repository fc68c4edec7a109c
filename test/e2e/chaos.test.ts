/**
 * End to end, bounded chaos under steady HTTP load: a replica process, then a
 * host with its replicas, then the leader controller are killed with SIGKILL,
 * one after the other, each time waiting for the cluster to recover. The
 * handler is idempotent, so retries are safe: every request sent must be
 * answered 2xx; none may be lost.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeploymentView } from "../../src/client/cluster-status.js";
import { TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { describeLoad, startLoad, type RunningLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const SPEC = { name: "slow", import: "slow.ts", version: "1", numReplicas: 4, actorOptions: { numCpus: 0.25 } };
const HOST = { cpus: 2, heartbeatTimeoutS: 3 };

function pick<T>(items: readonly T[]): T {
  const item = items[Math.floor(Math.random() * items.length)];
  assert.ok(item !== undefined, "nothing to pick from");
  return item;
}

function handleOf(cluster: TestCluster, name: string): ProcessHandle {
  const handle = cluster.processes.find((p) => p.name === name);
  assert.ok(handle, `${name} was started by this test`);
  return handle;
}

describe("chaos under load", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "chaos", controllers: 2, hosts: [{ id: "h1", ...HOST }, { id: "h2", ...HOST }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("loses no request while a replica, a host and the leader controller are killed in turn", async () => {
    await cluster.deploy([SPEC]);
    await cluster.waitForReplicas("slow", 4);

    const load: RunningLoad = startLoad(cluster.url("/slow?ms=20"), { concurrency: 8, maxDurationMs: 75_000 });
    const timeline: string[] = [];
    const started = Date.now();
    const mark = (what: string): void => {
      timeline.push(`+${((Date.now() - started) / 1000).toFixed(1)}s ${what} (ok ${load.result.ok})`);
    };

    /** The deployment recovered: 4 running replicas on live hosts, none of `gone`, and the load still flowing. */
    const recovered = async (what: string, gone: { replicas?: string[]; host?: string } = {}): Promise<DeploymentView> => {
      const d = await waitFor(
        `recovery after ${what}`,
        async () => {
          const s = await cluster.status();
          const dep = s.deployments.find((x) => x.name === "slow");
          const live = new Set(s.hosts.filter((h) => h.alive).map((h) => h.id));
          if (!dep || dep.replicas.length !== 4) return undefined;
          const ok = dep.replicas.every((r) => r.state === "running" && r.host !== null && live.has(r.host) && r.host !== gone.host && !(gone.replicas ?? []).includes(r.id));
          return ok ? dep : undefined;
        },
        { timeoutMs: 25_000, intervalMs: 100, describe: () => cluster.deployment("slow") },
      );
      const okNow = load.result.ok;
      await waitFor(`load to flow after ${what}`, () => load.result.ok >= okNow + 100, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      mark(`recovered from ${what}`);
      return d;
    };

    try {
      await waitFor("load to flow", () => load.result.ok >= 200, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      mark("load flowing");

      // 1. A random replica process.
      const d0 = (await cluster.deployment("slow"))!;
      const victim = pick(d0.replicas);
      assert.ok(victim.pid);
      process.kill(victim.pid, "SIGKILL");
      mark(`SIGKILL replica ${victim.id} (pid ${victim.pid}) on ${victim.host}`);
      await recovered("the replica kill", { replicas: [victim.id] });

      // 2. A host process together with its replicas, as when a machine is lost; then a replacement host.
      const d1 = (await cluster.deployment("slow"))!;
      const hostId = pick(["h1", "h2"].filter((h) => d1.replicas.some((r) => r.host === h)));
      const doomed = d1.replicas.filter((r) => r.host === hostId);
      const host = handleOf(cluster, `host-${hostId}`);
      host.child.kill("SIGKILL");
      for (const r of doomed) if (r.pid) process.kill(r.pid, "SIGKILL");
      assert.equal((await host.exited).signal, "SIGKILL");
      mark(`SIGKILL host ${hostId} with its ${doomed.length} replica(s) ${doomed.map((r) => r.id).join(",")}`);
      cluster.spawnHost({ id: "h3", ...HOST });
      mark("replacement host h3 spawned");
      await recovered(`the loss of host ${hostId}`, { host: hostId, replicas: doomed.map((r) => r.id) });

      // 3. The leader controller.
      const s = await cluster.status();
      const leader = s.controllers.find((c) => c.leader);
      assert.ok(leader, JSON.stringify(s.controllers));
      const leaderHandle = handleOf(cluster, `controller-${leader.id}`);
      const replicasBefore = (s.deployments.find((x) => x.name === "slow")?.replicas ?? []).map((r) => r.id).sort();
      await cluster.kill(leaderHandle, "SIGKILL");
      const killedAt = Date.now();
      mark(`SIGKILL leader controller ${leader.id}`);
      const newLeader = await waitFor(
        "a standby to take the lease",
        async () => (await cluster.status()).controllers.find((c) => c.leader && c.id !== leader.id),
        { timeoutMs: 8000, intervalMs: 50 },
      );
      mark(`${newLeader.id} leads, ${Date.now() - killedAt} ms after the kill`);
      const d3 = await recovered("the leader controller kill");
      assert.deepEqual(d3.replicas.map((r) => r.id).sort(), replicasBefore, "the new leader kept the replicas as they were");

      const result = await load.stop();
      mark("load stopped");
      const lost = result.sent - result.ok;
      console.log(`# chaos timeline:\n${timeline.map((l) => `#   ${l}`).join("\n")}`);
      console.log(`# measured: sent ${result.sent}, answered 2xx ${result.ok}, lost ${lost} (non-2xx ${result.failures.length}, errors ${result.errors.length})`);
      assert.equal(result.failures.length, 0, describeLoad(result));
      assert.equal(result.errors.length, 0, describeLoad(result));
      assert.equal(lost, 0, describeLoad(result));
      assert.equal(result.ok, result.sent, describeLoad(result));

      await waitFor(
        "the queue to be empty and the deployment HEALTHY",
        async () => {
          const d = await cluster.deployment("slow");
          return d?.queue.waiting === 0 && d.queue.active === 0 && d.status === "HEALTHY";
        },
        { timeoutMs: 15_000, describe: () => cluster.deployment("slow") },
      );
    } finally {
      await load.stop().catch(() => undefined);
    }
  });
});
