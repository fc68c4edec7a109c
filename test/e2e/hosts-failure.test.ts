/**
 * End to end, worker hosts scaled horizontally (failure side): a host process
 * killed with SIGKILL together with its replicas, and a host stopped with
 * SIGTERM, both under closed-loop HTTP load. The queue is the buffer: every
 * request is eventually answered 2xx, and the replicas come back elsewhere.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeploymentView } from "../../src/client/cluster-status.js";
import { TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { describeLoad, startLoad, type LoadResult } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const SPEC = { name: "slow", import: "slow.ts", version: "1", numReplicas: 4, actorOptions: { numCpus: 0.5 } };
const PATH = "/slow?ms=100";

function hostOf(cluster: TestCluster, id: string): ProcessHandle {
  const handle = cluster.processes.find((p) => p.name === `host-${id}`);
  assert.ok(handle, `host ${id} was started by this test`);
  return handle;
}

function onHost(d: DeploymentView, host: string): DeploymentView["replicas"] {
  return d.replicas.filter((r) => r.host === host);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0);
}

function assertNoLoss(r: LoadResult): void {
  assert.equal(r.failures.length, 0, describeLoad(r));
  assert.equal(r.errors.length, 0, describeLoad(r));
  assert.equal(r.ok, r.sent, describeLoad(r));
  assert.ok(r.ok > 100, describeLoad(r));
}

describe("hosts: a host killed with SIGKILL under load", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({
      label: "hosts-kill",
      hosts: [
        { id: "h1", cpus: 2, heartbeatTimeoutS: 3 },
        { id: "h2", cpus: 2, heartbeatTimeoutS: 3 },
      ],
    });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("replaces the lost replicas on the other host and answers every request 2xx", async () => {
    await cluster.deploy([SPEC]);
    const d = await cluster.waitForReplicas("slow", 4);
    assert.equal(onHost(d, "h1").length, 2);
    assert.equal(onHost(d, "h2").length, 2);

    const load = startLoad(cluster.url(PATH), { concurrency: 10, maxDurationMs: 60_000 });
    try {
      await waitFor("load to flow", () => load.result.ok >= 100, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      const victims = onHost((await cluster.deployment("slow"))!, "h2");
      assert.equal(victims.length, 2);
      const pids = victims.map((r) => r.pid).filter((p): p is number => p !== null && p > 0);
      assert.equal(pids.length, 2, JSON.stringify(victims));

      // The host process and its replica processes die together, as when a machine is lost.
      const h2 = hostOf(cluster, "h2");
      const okAtKill = load.result.ok;
      h2.child.kill("SIGKILL");
      for (const pid of pids) process.kill(pid, "SIGKILL");
      const killedAt = Date.now();
      assert.equal((await h2.exited).signal, "SIGKILL");

      const deadAt = await waitFor(
        "status to show h2 dead",
        async () => ((await cluster.status()).hosts.some((h) => h.id === "h2" && !h.alive) ? Date.now() : undefined),
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      const back = await waitFor(
        "4 replicas running on h1",
        async () => {
          const now = await cluster.deployment("slow");
          return now && now.replicas.length === 4 && now.replicas.every((r) => r.state === "running" && r.host === "h1") ? { d: now, at: Date.now() } : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 50, describe: () => cluster.deployment("slow") },
      );
      for (const r of back.d.replicas) assert.ok(!pids.includes(r.pid ?? -1));
      const okAtRecovery = load.result.ok;
      await waitFor("load to flow on the replacements", () => load.result.ok >= okAtRecovery + 100, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });

      const result = await load.stop();
      console.log(
        `# measured (SIGKILL): h2 seen dead ${deadAt - killedAt} ms after the kill, 4 running on h1 ${back.at - killedAt} ms after; ` +
          `${result.ok} requests (${okAtKill} before the kill), latency p50 ${percentile(result.latenciesMs, 50)} ms, p99 ${percentile(result.latenciesMs, 99)} ms, max ${percentile(result.latenciesMs, 100)} ms`,
      );
      assertNoLoss(result);
      // Every job is settled (a job re-run after its replica died may finish just after the load stops).
      await waitFor("the queue to be empty", async () => {
        const q = (await cluster.deployment("slow"))?.queue;
        return q?.waiting === 0 && q.active === 0;
      }, { timeoutMs: 10_000, describe: () => cluster.deployment("slow") });
      await waitFor("slow to be HEALTHY", async () => (await cluster.deployment("slow"))?.status === "HEALTHY", { timeoutMs: 5000, describe: () => cluster.deployment("slow") });
      const status = await cluster.status();
      assert.deepEqual(status.hosts.find((h) => h.id === "h2")?.replicas, [], "the dead host holds no replicas");
    } finally {
      await load.stop().catch(() => undefined);
    }
  });
});

describe("hosts: a host stopped with SIGTERM under load", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "hosts-term", hosts: [{ id: "h1", cpus: 2 }, { id: "h2", cpus: 2 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("starts the host's replicas elsewhere first, loses no request, exits 0 and leaves status", async () => {
    await cluster.deploy([SPEC]);
    const d = await cluster.waitForReplicas("slow", 4);
    const leaving = onHost(d, "h2").map((r) => r.id);
    assert.equal(leaving.length, 2);

    const load = startLoad(cluster.url(PATH), { concurrency: 10, maxDurationMs: 60_000 });
    let sampling = true;
    const samples: Array<{ at: number; running: number; runningElsewhere: number; leavingRunning: number; leavingLeft: number; startedElsewhere: number }> = [];
    const sampler = (async () => {
      while (sampling) {
        const now = await cluster.deployment("slow").catch(() => undefined);
        if (now) {
          const running = now.replicas.filter((r) => r.state === "running");
          samples.push({
            at: Date.now(),
            running: running.length,
            runningElsewhere: running.filter((r) => r.host !== "h2").length,
            leavingRunning: running.filter((r) => leaving.includes(r.id)).length,
            leavingLeft: now.replicas.filter((r) => leaving.includes(r.id)).length,
            startedElsewhere: now.replicas.filter((r) => r.host !== null && r.host !== "h2" && r.state !== "draining").length,
          });
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    try {
      await waitFor("load to flow", () => load.result.ok >= 100, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      const termAt = Date.now();
      const exit = await cluster.kill(hostOf(cluster, "h2"), "SIGTERM", 60_000);
      const exitedAt = Date.now();
      assert.deepEqual(exit, { code: 0, signal: null }, "the host exits 0");
      const goneAt = await waitFor(
        "h2 to leave status",
        async () => ((await cluster.status()).hosts.some((h) => h.id === "h2") ? undefined : Date.now()),
        { timeoutMs: 5000, intervalMs: 50, describe: async () => (await cluster.status()).hosts },
      );
      const settled = await cluster.waitForReplicas("slow", 4, 15_000);
      assert.ok(settled.replicas.every((r) => r.host === "h1" && !leaving.includes(r.id)));
      const okAfter = load.result.ok;
      await waitFor("load to keep flowing", () => load.result.ok >= okAfter + 50, { timeoutMs: 15_000, describe: () => describeLoad(load.result) });
      sampling = false;
      await sampler;
      const result = await load.stop();

      const during = samples.filter((s) => s.at >= termAt && s.at <= exitedAt);
      const firstLeavingDown = during.find((s) => s.leavingRunning < leaving.length);
      const firstSuccessorRunning = during.find((s) => s.runningElsewhere > 4 - leaving.length);
      const minRunning = Math.min(...during.map((s) => s.running));
      console.log(
        `# measured (SIGTERM): host exited ${exitedAt - termAt} ms after SIGTERM, left status ${goneAt - termAt} ms after; ` +
          `first successor running at +${firstSuccessorRunning ? firstSuccessorRunning.at - termAt : "?"} ms, first h2 replica stopped serving at +${firstLeavingDown ? firstLeavingDown.at - termAt : "?"} ms; ` +
          `min running replicas during the move ${minRunning} (target 4); ${during.length} status samples; ` +
          `${result.ok} requests, latency p50 ${percentile(result.latenciesMs, 50)} ms, p99 ${percentile(result.latenciesMs, 99)} ms, max ${percentile(result.latenciesMs, 100)} ms`,
      );
      assertNoLoss(result);

      // Started elsewhere first. Whenever one of h2's replicas had stopped serving, a
      // successor for it had (a) been assigned to another host and (b) been running there,
      // so the deployment never had fewer than its 4 replicas serving.
      assert.ok(during.length > 5, `${during.length} samples`);
      const timeline = JSON.stringify(during.map((s) => ({ t: s.at - termAt, running: s.running, elsewhere: s.runningElsewhere, h2: s.leavingRunning })));
      for (const s of during) {
        const stopped = leaving.length - s.leavingRunning;
        assert.ok(s.startedElsewhere >= 4 - leaving.length + stopped, `at +${s.at - termAt} ms an h2 replica stopped before a successor was assigned: ${JSON.stringify(s)}`);
      }
      for (const s of during) {
        const stopped = leaving.length - s.leavingRunning;
        assert.ok(
          s.runningElsewhere >= 4 - leaving.length + stopped,
          `at +${s.at - termAt} ms ${stopped} of h2's replicas had stopped serving with only ${s.runningElsewhere - (4 - leaving.length)} successor(s) running elsewhere (running replicas dipped to ${minRunning}, target 4); timeline: ${timeline}`,
        );
      }
    } finally {
      sampling = false;
      await sampler;
      await load.stop().catch(() => undefined);
    }
  });
});
