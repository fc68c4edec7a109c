/**
 * Replica health end to end, with real processes: a replica whose
 * checkHealth() starts failing under load is drained and replaced by a new
 * process with no failed request; a version whose first check fails never
 * serves and the old one keeps serving; a replica whose event loop is blocked
 * is killed and its request answered by another; a replica that grows past
 * actorOptions.memoryMiB is drained and replaced with no failed request.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { httpRequest, loggedPort, TestCluster } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";
import type { DeploymentView } from "../../src/client/cluster-status.js";

const PERIOD_S = 0.5;
const THRESHOLD = 3;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("replica health", { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  let dir: string;
  let adminPort: number;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "flotilla-health-"));
    cluster = await TestCluster.start({ label: "health", hosts: [{ id: "h1", cpus: 4 }, { id: "h2", cpus: 4 }] });
    adminPort = await loggedPort(cluster.processes.find((p) => p.name.startsWith("controller"))!, "admin API listening");
  });

  after(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const running = (d: DeploymentView | undefined) => d?.replicas.filter((r) => r.state === "running") ?? [];

  it("replaces a replica whose health checks start failing under load, within period x threshold + a few seconds, with no failed request", async () => {
    await cluster.deploy([
      { name: "healthy", import: "health.ts#Health", version: "1", numReplicas: 2, userConfig: { dir }, healthCheckPeriodS: PERIOD_S, healthCheckFailureThreshold: THRESHOLD, actorOptions: { numCpus: 0.5 } },
    ]);
    const before = await cluster.waitForReplicas("healthy", 2);
    for (const r of before.replicas) assert.ok(r.health?.lastCheckAt, `replica ${r.id} shows its last check: ${JSON.stringify(r)}`);
    const sick = before.replicas[0]!;
    const load = startLoad(cluster.url("/healthy"), { concurrency: 4 });
    try {
      await waitFor("load to be answered", () => load.result.ok > 20, { timeoutMs: 10_000 });
      const sickAt = Date.now();
      writeFileSync(path.join(dir, `sick-${sick.pid}`), "");
      const replaced = await waitFor(
        "the sick replica replaced by a new running process",
        async () => {
          const d = await cluster.deployment("healthy");
          const now = running(d);
          return now.length === 2 && !d?.replicas.some((r) => r.id === sick.id) && now.every((r) => r.pid !== sick.pid) ? { d: d!, at: Date.now() } : undefined;
        },
        { timeoutMs: 30_000, describe: async () => ({ d: await cluster.deployment("healthy"), logs: cluster.logTail(10) }) },
      );
      const ms = replaced.at - sickAt;
      console.log(`# measured: unhealthy replica replaced ${ms} ms after its checks began to fail`);
      assert.ok(ms <= PERIOD_S * THRESHOLD * 1000 + 8000, `replaced after ${ms} ms`);
      await waitFor("more answers after the replacement", () => load.result.ok > 40, { timeoutMs: 10_000 });
    } finally {
      const result = await load.stop();
      assert.equal(result.failures.length + result.errors.length, 0, describeLoad(result));
    }
    const d = await cluster.deployment("healthy");
    assert.equal(d?.replacements?.[0]?.reason, "health check failed: sick replica", JSON.stringify(d?.replacements));
    assert.equal(d?.replacements?.[0]?.replica, sick.id);
    assert.ok((d?.healthCounts?.checkFailures ?? 0) >= THRESHOLD, JSON.stringify(d?.healthCounts));
    assert.equal(d?.healthCounts?.replacements.health, 1);
    const table = await cluster.cli(["status"]);
    assert.match(table.stdout, new RegExp(`${sick.id} on h\\d: health check failed: sick replica`), table.stdout);
    const metrics = (await httpRequest(`http://127.0.0.1:${adminPort}/metrics`)).body;
    assert.match(metrics, /^flotilla_replica_replacements_total\{deployment="healthy",reason="health"\} 1$/m);
    assert.match(metrics, /^flotilla_health_check_failures_total\{deployment="healthy"\} [1-9]\d*$/m);
  });

  it("fails a rollout whose first health check fails, like a constructor that throws, and the old version keeps serving", async () => {
    await cluster.deploy([{ name: "ready", import: "health.ts#Health", version: "1", numReplicas: 1, healthCheckPeriodS: PERIOD_S, actorOptions: { numCpus: 0.25 } }]);
    const old = await cluster.waitForReplicas("ready", 1);
    await cluster.deploy([{ name: "ready", import: "health.ts#Unready", version: "2", numReplicas: 1, healthCheckPeriodS: PERIOD_S, actorOptions: { numCpus: 0.25 } }], { wait: false });
    const unhealthy = await waitFor(
      "ready to be UNHEALTHY with the check's error",
      async () => {
        const d = await cluster.deployment("ready");
        return d?.status === "UNHEALTHY" && d.message.includes("health check failed: model not ready") ? d : undefined;
      },
      { timeoutMs: 30_000, describe: () => cluster.deployment("ready") },
    );
    assert.deepEqual(running(unhealthy).map((r) => r.pid), [old.replicas[0]!.pid], "the old replica still runs");
    for (let i = 0; i < 5; i++) {
      const res = await httpRequest(cluster.url("/ready"));
      assert.equal(res.status, 200, res.body);
      assert.equal(res.headers.get("x-flotilla-version"), "1");
    }
  });

  it("kills a replica whose event loop is blocked longer than healthCheckTimeoutS; another replica answers its request", async () => {
    await cluster.deploy([{ name: "blocking", import: "blocking.ts", version: "1", numReplicas: 2, healthCheckTimeoutS: 2, actorOptions: { numCpus: 0.5 } }]);
    await cluster.waitForReplicas("blocking", 2);
    const marker = path.join(dir, "blocked-pid");
    const started = Date.now();
    const res = await httpRequest(cluster.url(`/blocking?marker=${encodeURIComponent(marker)}&ms=120000`));
    const answeredMs = Date.now() - started;
    assert.equal(res.status, 200, res.body);
    const blockedPid = Number(readFileSync(marker, "utf8"));
    const answer = JSON.parse(res.body) as { pid: number };
    assert.notEqual(answer.pid, blockedPid, "answered by another replica");
    console.log(`# measured: request of a blocked replica answered ${answeredMs} ms after it was sent`);
    await waitFor("the blocked process to be gone", () => !alive(blockedPid), { timeoutMs: 10_000 });
    const d = await waitFor(
      "the replacement to be recorded and 2 replicas running",
      async () => {
        const d = await cluster.deployment("blocking");
        return running(d).length === 2 && d?.replacements?.length ? d : undefined;
      },
      { timeoutMs: 30_000, describe: () => cluster.deployment("blocking") },
    );
    assert.match(d.replacements![0]!.reason, /^event loop blocked \d+ s$/);
    assert.equal(d.replacements![0]!.kind, "liveness");
  });

  it("drains and replaces a replica whose memory grows past memoryMiB, with no failed request", async () => {
    await cluster.deploy([{ name: "leaky", import: "leaky.ts", version: "1", numReplicas: 2, actorOptions: { numCpus: 0.5, memoryMiB: 200 } }]);
    const before = await cluster.waitForReplicas("leaky", 2);
    const hosts = (await cluster.status()).hosts;
    for (const h of hosts) assert.equal(h.resources.free.memoryMiB, 8192 - 200 * h.replicas.filter((id) => id.startsWith("leaky-")).length, `memory reserved on ${h.id}`);
    const load = startLoad(cluster.url("/leaky"), { concurrency: 4 });
    let grown: { pid: number };
    try {
      await waitFor("load to be answered", () => load.result.ok > 20, { timeoutMs: 10_000 });
      const res = await httpRequest(cluster.url("/leaky?grow=300"));
      assert.equal(res.status, 200, res.body);
      grown = JSON.parse(res.body) as { pid: number };
      await waitFor(
        "the grown replica replaced",
        async () => {
          const d = await cluster.deployment("leaky");
          const now = running(d);
          return now.length === 2 && now.every((r) => r.pid !== grown.pid) && d?.replacements?.length ? d : undefined;
        },
        { timeoutMs: 30_000, describe: async () => ({ d: await cluster.deployment("leaky"), logs: cluster.logTail(10) }) },
      );
      await waitFor("more answers after the replacement", () => load.result.ok > load.result.sent / 2 + 10, { timeoutMs: 10_000 });
    } finally {
      const result = await load.stop();
      assert.equal(result.failures.length + result.errors.length, 0, describeLoad(result));
    }
    const d = await cluster.deployment("leaky");
    const event = d?.replacements?.[0];
    assert.equal(event?.kind, "memory");
    assert.match(event?.reason ?? "", /^memory \d+ MiB over 200 MiB$/);
    assert.ok(before.replicas.some((r) => r.pid === grown.pid), "one of the first replicas grew");
    await waitFor("the grown process to exit", () => !alive(grown.pid), { timeoutMs: 30_000 });
  });
});
