/**
 * End to end: two controllers, one leader. The leader is killed with SIGKILL
 * under HTTP load; the standby takes the lease within 5 s, adopts the replicas
 * as they are (no duplicate, none lost, same processes), and serving never
 * notices (it does not depend on a controller).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";
import { TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const SPEC = { name: "echo", import: "echo.ts", version: "1", numReplicas: 3, actorOptions: { numCpus: 0.25 } };

interface StatusJson {
  controllers: Array<{ id: string; leader: boolean; alive: boolean }>;
  deployments: Array<{ name: string; status: string; replicas: Array<{ id: string; pid: number | null; state: string }> }>;
}

function controllerHandle(cluster: TestCluster, id: string): ProcessHandle {
  const handle = cluster.processes.find((p) => p.name === `controller-${id}`);
  assert.ok(handle, `controller ${id} was started by this test`);
  return handle;
}

describe("controller failover", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "ctl-failover", controllers: 2, hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("a standby takes over within 5 s of the leader's SIGKILL, adopting the replicas as they are, while serving continues", async () => {
    await cluster.deploy([SPEC]);
    const initial = await cluster.waitForReplicas("echo", 3);
    const replicasBefore = initial.replicas.map((r) => `${r.id}:${r.pid}`).sort();
    assert.ok(initial.replicas.every((r) => r.pid !== null && r.pid > 0));

    // `status --json` lists both controllers, exactly one of them the leader.
    const report = await waitFor(
      "status --json to list both controllers alive with one leader",
      async () => {
        const cli = await cluster.cli(["status", "--json"]);
        assert.equal(cli.code, 0, cli.stderr);
        const r = JSON.parse(cli.stdout) as StatusJson;
        return r.controllers.length === 2 && r.controllers.every((c) => c.alive) && r.controllers.filter((c) => c.leader).length === 1 ? r : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    assert.deepEqual(report.controllers.map((c) => c.id).sort(), ["c1", "c2"]);
    const leaderId = report.controllers.find((c) => c.leader)!.id;
    const standbyId = report.controllers.find((c) => !c.leader)!.id;
    const leader = controllerHandle(cluster, leaderId);

    const load = startLoad(cluster.url("/echo/failover"), { concurrency: 5, maxDurationMs: 60_000 });
    try {
      await waitFor("load to flow", () => load.result.ok >= 50, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });

      const killedAt = Date.now();
      const okAtKill = load.result.ok;
      const exit = await cluster.kill(leader, "SIGKILL");
      assert.equal(exit.signal, "SIGKILL");

      const takeover = await waitFor(
        `the standby ${standbyId} to become the leader`,
        async () => {
          const s = await cluster.status();
          const leaders = s.controllers.filter((c) => c.leader);
          return leaders.length === 1 && leaders[0]!.id === standbyId ? Date.now() : undefined;
        },
        { timeoutMs: 8000, intervalMs: 25, describe: async () => (await cluster.status()).controllers },
      );
      const failoverMs = takeover - killedAt;

      // Let the new leader reconcile several times (each tick rewrites the deployment's status).
      const stamps = new Set<number>();
      await waitFor(
        "the new leader to reconcile at least 4 times",
        async () => {
          const raw = await cluster.redis.hget(cluster.keys.deploymentStatus, "echo");
          const st = raw ? (JSON.parse(raw) as DeploymentStatusRecord) : undefined;
          if (st && st.updatedAt > takeover) stamps.add(st.updatedAt);
          return stamps.size >= 4;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      const okAtCheck = load.result.ok;
      await waitFor("load to keep flowing under the new leader", () => load.result.ok >= okAtCheck + 50, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      const result = await load.stop();

      const after = await cluster.deployment("echo");
      assert.ok(after);
      const replicasAfter = after.replicas.map((r) => `${r.id}:${r.pid}`).sort();
      const status = await cluster.status();
      console.log(
        `# measured: leader ${leaderId} killed, ${standbyId} leader ${failoverMs} ms later; ` +
          `${result.ok} requests answered (${okAtKill} before the kill), ${describeLoad(result)}; replicas before ${replicasBefore.join(",")} after ${replicasAfter.join(",")}`,
      );

      assert.ok(failoverMs <= 5000, `failover took ${failoverMs} ms`);
      assert.deepEqual(replicasAfter, replicasBefore, "same replica ids and pids: no duplicate, none lost");
      assert.ok(after.replicas.every((r) => r.state === "running"), JSON.stringify(after.replicas));
      assert.equal(after.status, "HEALTHY", after.message);
      assert.equal(after.targetReplicas, 3);
      assert.equal(status.controllers.filter((c) => c.leader).length, 1);
      assert.equal(status.controllers.find((c) => c.leader)?.id, standbyId);

      assert.equal(result.failures.length, 0, describeLoad(result));
      assert.equal(result.errors.length, 0, describeLoad(result));
      assert.equal(result.ok, result.sent, describeLoad(result));
    } finally {
      await load.stop().catch(() => undefined);
    }
  });
});
