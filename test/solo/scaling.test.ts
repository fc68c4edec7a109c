/**
 * End to end: scaling out and in as `status --json` shows it, and a replica
 * process killed mid-request (the request is still answered, the replica replaced).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

describe("scaling and replica crashes", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "scaling", hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("scales 1 → 10 → 1 replicas, each step settling in under 15 s, seen in status --json", async (t) => {
    const spec = { name: "counter", import: "counter.ts#Counter", version: "1", actorOptions: { numCpus: 0.1 } };
    await cluster.deploy([{ ...spec, numReplicas: 1 }]);
    await cluster.waitForReplicas("counter", 1);

    let started = Date.now();
    await cluster.deploy([{ ...spec, numReplicas: 10 }], { wait: false });
    await cluster.waitForReplicas("counter", 10, 15_000);
    const upMs = Date.now() - started;

    const cli = await cluster.cli(["status", "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    const report = JSON.parse(cli.stdout);
    const d = report.deployments.find((x: { name: string }) => x.name === "counter");
    assert.equal(d.status, "HEALTHY");
    assert.equal(d.targetReplicas, 10);
    assert.equal(d.replicas.length, 10);
    assert.ok(d.replicas.every((r: { state: string; pid: number; host: string; version: string }) => r.state === "running" && r.pid > 0 && r.host === "h1" && r.version === "1"));
    assert.deepEqual(d.queue, { waiting: 0, active: 0 });
    assert.deepEqual(report.hosts.map((h: { id: string; alive: boolean }) => [h.id, h.alive]), [["h1", true]]);
    assert.equal(new Set(d.replicas.map((r: { pid: number }) => r.pid)).size, 10, "every replica is its own process");

    started = Date.now();
    await cluster.deploy([{ ...spec, numReplicas: 1 }], { wait: false });
    await cluster.waitForReplicas("counter", 1, 15_000);
    const downMs = Date.now() - started;
    t.diagnostic(`up ${upMs} ms, down ${downMs} ms`);
    assert.ok(upMs < 15_000 && downMs < 15_000, `up ${upMs} ms, down ${downMs} ms`);
    const res = await httpRequest(cluster.url("/counter"));
    assert.equal(res.status, 200);
  });

  it("answers a request whose replica is killed with SIGKILL mid-request, and replaces the replica within 10 s", async (t) => {
    await cluster.deploy([{ name: "slow", import: "slow.ts", numReplicas: 1, actorOptions: { numCpus: 0.1 } }]);
    const [before] = (await cluster.waitForReplicas("slow", 1)).replicas;
    assert.ok(before?.pid);

    const sent = Date.now();
    const pending = httpRequest(cluster.url("/slow?ms=1500"));
    await waitFor("the request to be running on the replica", async () => ((await cluster.deployment("slow"))?.queue.active ?? 0) === 1, { intervalMs: 20 });
    process.kill(before.pid, "SIGKILL");
    const killedAt = Date.now();

    const replaced = await waitFor(
      "a replacement replica running",
      async () => {
        const d = await cluster.deployment("slow");
        const running = d?.replicas.find((r) => r.state === "running" && r.id !== before.id);
        return running ? { replica: running, at: Date.now() } : undefined;
      },
      // About 1 s (the restart back-off) on an idle machine; the bound leaves room for a loaded one.
      { timeoutMs: 10_000, intervalMs: 50, describe: async () => ({ deployment: await cluster.deployment("slow"), logs: cluster.logTail(8) }) },
    );
    t.diagnostic(`replacement running ${replaced.at - killedAt} ms after the kill`);

    const res = await pending;
    const answeredAt = Date.now();
    assert.equal(res.status, 200, res.body);
    assert.notEqual(JSON.parse(res.body).pid, before.pid, "answered by another process");
    assert.ok(answeredAt - killedAt <= 10_000, `answered ${answeredAt - killedAt} ms after the crash`);
    assert.ok(answeredAt - sent < 12_000);
    const d = await cluster.waitForReplicas("slow", 1);
    assert.equal(d.status, "HEALTHY");
  });
});
