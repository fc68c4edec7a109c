/**
 * End to end, worker hosts scaled horizontally (placement side): every host is
 * its own `flotilla host` process declaring its capacity. Pending demand when
 * the hosts are full and its placement when a host joins, spreading replicas
 * across hosts, fractional GPUs, the replica environment (CUDA_VISIBLE_DEVICES,
 * OMP_NUM_THREADS, MALLOC_ARENA_MAX, actorOptions.env), and how `status` shows hosts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DeploymentView, StatusReport } from "../../src/client/cluster-status.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

interface EnvAnswer {
  OMP_NUM_THREADS: string | null;
  CUDA_VISIBLE_DEVICES: string | null;
  CUSTOM: string | null;
  MALLOC_ARENA_MAX: string | null;
  mallocArenaMaxAtStart: string | null;
  pid: number;
}

/** Host id → ids of the deployment's replicas on it. */
function replicasByHost(d: DeploymentView): Map<string | null, string[]> {
  const out = new Map<string | null, string[]>();
  for (const r of d.replicas) out.set(r.host, [...(out.get(r.host) ?? []), r.id]);
  return out;
}

/**
 * Asks env.ts (served at `path`) until every running replica of `name` has
 * answered; returns replica id → its answer (matched by pid via status).
 */
async function envOfEveryReplica(cluster: TestCluster, name: string, path: string, n: number): Promise<Map<string, EnvAnswer & { host: string | null }>> {
  const d = await cluster.waitForReplicas(name, n);
  const byPid = new Map(d.replicas.map((r) => [r.pid, r]));
  const answers = new Map<string, EnvAnswer & { host: string | null }>();
  await waitFor(
    `every replica of ${name} to answer ${path}`,
    async () => {
      const batch = await Promise.all(Array.from({ length: 8 }, () => httpRequest(cluster.url(path))));
      for (const res of batch) {
        assert.equal(res.status, 200, res.body);
        const body = JSON.parse(res.body) as EnvAnswer;
        const replica = byPid.get(body.pid);
        assert.ok(replica, `answered by pid ${body.pid}, which is not a replica of ${name} in status`);
        answers.set(replica.id, { ...body, host: replica.host });
      }
      return answers.size === d.replicas.length;
    },
    { timeoutMs: 15_000, intervalMs: 20, describe: () => [...answers] },
  );
  return answers;
}

describe("hosts: capacity, pending demand and a host joining", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "hosts-cap", hosts: [{ id: "h1", cpus: 2 }, { id: "h2", cpus: 2 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("runs 4 of 5 one-CPU replicas on 2×2 CPUs, shows the 5th pending with its reason and demand, and places it within 2 s of a third host registering", async () => {
    await cluster.deploy([{ name: "busy", import: "echo.ts", version: "1", numReplicas: 5, actorOptions: { numCpus: 1 } }], { wait: false });

    const full = await waitFor(
      "4 running and 1 pending replica",
      async () => {
        const s = await cluster.status();
        const d = s.deployments.find((x) => x.name === "busy");
        const running = d?.replicas.filter((r) => r.state === "running") ?? [];
        const pending = d?.replicas.filter((r) => r.state === "pending" && r.pendingReason) ?? [];
        return d && running.length === 4 && pending.length === 1 && d.replicas.length === 5 ? { s, d, pending: pending[0]! } : undefined;
      },
      { timeoutMs: 20_000, describe: () => cluster.deployment("busy") },
    );
    assert.equal(full.pending.host, null);
    assert.equal(full.pending.pid, null);
    assert.match(full.pending.pendingReason ?? "", /CPU/, `pendingReason: ${full.pending.pendingReason}`);
    assert.match(full.pending.pendingReason ?? "", /needs 1 CPU/);
    assert.deepEqual(full.s.pendingDemand, { CPU: 1 });
    const byHost = replicasByHost(full.d);
    assert.equal(byHost.get("h1")?.length, 2, JSON.stringify([...byHost]));
    assert.equal(byHost.get("h2")?.length, 2, JSON.stringify([...byHost]));
    assert.match(full.d.message, /1 pending: needs 1 CPU/);
    for (const h of full.s.hosts) assert.deepEqual(h.resources.free, { CPU: 0, GPU: 0, memoryMiB: 8192 }, `host ${h.id} is full`);

    // The human table says what more hosts must offer.
    const table = await cluster.cli(["status"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /pending demand: 1 CPU/);

    const pendingId = full.pending.id;
    cluster.spawnHost({ id: "h3", cpus: 2 });
    const registeredAt = await waitFor(
      "status to list h3 alive",
      async () => ((await cluster.status()).hosts.some((h) => h.id === "h3" && h.alive) ? Date.now() : undefined),
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    const placed = await waitFor(
      "5 running replicas",
      async () => {
        const d = await cluster.deployment("busy");
        return d && d.replicas.length === 5 && d.replicas.every((r) => r.state === "running") ? { d, at: Date.now() } : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 20, describe: () => cluster.deployment("busy") },
    );
    const placeMs = placed.at - registeredAt;
    console.log(`# measured: pending replica running ${placeMs} ms after h3 was listed alive`);
    assert.ok(placeMs <= 2000, `5 running ${placeMs} ms after h3 registered (limit 2000 ms)`);
    const moved = placed.d.replicas.find((r) => r.id === pendingId);
    assert.equal(moved?.host, "h3", "the pending replica went to the new host");
    assert.deepEqual((await cluster.status()).pendingDemand, {});
    // The deployment status is the controller's verdict on its next tick.
    await waitFor("busy to be HEALTHY", async () => (await cluster.deployment("busy"))?.status === "HEALTHY", { timeoutMs: 5000, describe: () => cluster.deployment("busy") });
  });

  it("status --json lists every host with id, alive, total and free resources and its replicas; each replica's host is a host id", async () => {
    const cli = await cluster.cli(["status", "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    const report = JSON.parse(cli.stdout) as StatusReport;
    assert.deepEqual(
      report.hosts.map((h) => ({ id: h.id, alive: h.alive, draining: h.draining, total: h.resources.total, free: h.resources.free, replicas: h.replicas.length })),
      [
        { id: "h1", alive: true, draining: false, total: { CPU: 2, GPU: 0, memoryMiB: 8192 }, free: { CPU: 0, GPU: 0, memoryMiB: 8192 }, replicas: 2 },
        { id: "h2", alive: true, draining: false, total: { CPU: 2, GPU: 0, memoryMiB: 8192 }, free: { CPU: 0, GPU: 0, memoryMiB: 8192 }, replicas: 2 },
        { id: "h3", alive: true, draining: false, total: { CPU: 2, GPU: 0, memoryMiB: 8192 }, free: { CPU: 1, GPU: 0, memoryMiB: 8192 }, replicas: 1 },
      ],
    );
    const d = report.deployments.find((x) => x.name === "busy");
    assert.ok(d);
    const hostIds = new Set(report.hosts.map((h) => h.id));
    for (const r of d.replicas) {
      assert.ok(r.host !== null && hostIds.has(r.host), `replica ${r.id} has host ${r.host}`);
      assert.ok(report.hosts.find((h) => h.id === r.host)?.replicas.includes(r.id), `host ${r.host} lists replica ${r.id}`);
      assert.ok((r.pid ?? 0) > 0);
    }
    assert.deepEqual(report.pendingDemand, {});

    const table = await cluster.cli(["status"]);
    assert.equal(table.code, 0, table.stderr);
    const hostRows = table.stdout.split("\n").filter((l) => /^\W*h[123]\W/.test(l));
    assert.equal(hostRows.length, 3, table.stdout);
    const row = (id: string): string[] => (hostRows.find((l) => l.includes(` ${id} `)) ?? "").split(/\s*│\s*|\s*\|\s*/).map((c) => c.trim()).filter(Boolean);
    assert.deepEqual(row("h1"), ["h1", "yes", "2 CPU, 8192 memoryMiB", "8192 memoryMiB", "2"], table.stdout);
    assert.deepEqual(row("h3"), ["h3", "yes", "2 CPU, 8192 memoryMiB", "1 CPU, 8192 memoryMiB", "1"], table.stdout);
  });
});

describe("hosts: spread, fractional GPUs and the replica environment", () => {
  let cluster: TestCluster;
  const saved = { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS, CUDA_VISIBLE_DEVICES: process.env.CUDA_VISIBLE_DEVICES, CUSTOM: process.env.CUSTOM, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX };

  before(async () => {
    // Hosts inherit this process's environment: make the defaults observable.
    delete process.env.OMP_NUM_THREADS;
    delete process.env.CUDA_VISIBLE_DEVICES;
    delete process.env.CUSTOM;
    delete process.env.MALLOC_ARENA_MAX;
    cluster = await TestCluster.start({
      label: "hosts-place",
      hosts: [
        { id: "h1", cpus: 2, resources: { plain: 10 } },
        { id: "h2", cpus: 2, resources: { plain: 10 } },
      ],
    });
  });

  after(async () => {
    await cluster?.stop();
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  });

  it("spreads 4 half-CPU replicas over 2 hosts as 2 and 2", async () => {
    await cluster.deploy([{ name: "spread", import: "echo.ts", version: "1", numReplicas: 4, actorOptions: { numCpus: 0.5 } }]);
    const d = await cluster.waitForReplicas("spread", 4);
    const byHost = replicasByHost(d);
    assert.deepEqual([...byHost.keys()].sort(), ["h1", "h2"]);
    assert.equal(byHost.get("h1")?.length, 2);
    assert.equal(byHost.get("h2")?.length, 2);
    const s = await cluster.status();
    for (const h of s.hosts) assert.deepEqual(h.resources.free, { CPU: 1, GPU: 0, memoryMiB: 8192, plain: 10 }, `host ${h.id}`);
  });

  it("packs two 0.5-GPU replicas onto one GPU (CUDA_VISIBLE_DEVICES=0), leaves a third pending for its GPU, and gives GPU-less replicas an empty CUDA_VISIBLE_DEVICES", async () => {
    // The GPU host's own environment names devices; a replica sees only what it was given.
    cluster.spawnHost({ id: "gpu", cpus: 4, gpus: 1, resources: { accel: 10 }, env: { CUDA_VISIBLE_DEVICES: "0,1" } });
    await cluster.waitForHosts(3);
    const gpuSpec = { name: "gpu", import: "env.ts", version: "1", actorOptions: { numCpus: 0.5, numGpus: 0.5 } };
    await cluster.deploy([{ ...gpuSpec, numReplicas: 2 }]);
    const d = await cluster.waitForReplicas("gpu", 2);
    assert.deepEqual(d.replicas.map((r) => r.host), ["gpu", "gpu"]);
    const answers = await envOfEveryReplica(cluster, "gpu", "/gpu", 2);
    assert.equal(answers.size, 2);
    for (const [id, a] of answers) assert.equal(a.CUDA_VISIBLE_DEVICES, "0", `replica ${id}`);
    let s = await cluster.status();
    assert.deepEqual(s.hosts.find((h) => h.id === "gpu")?.resources.free, { CPU: 3, GPU: 0, memoryMiB: 8192, accel: 10 });

    await cluster.deploy([{ ...gpuSpec, numReplicas: 3 }], { wait: false });
    const pending = await waitFor(
      "a third GPU replica pending with its reason",
      async () => (await cluster.deployment("gpu"))?.replicas.find((r) => r.state === "pending" && r.pendingReason),
      { timeoutMs: 10_000, describe: () => cluster.deployment("gpu") },
    );
    assert.match(pending.pendingReason ?? "", /needs 0\.5 GPU/, `pendingReason: ${pending.pendingReason}`);
    s = await cluster.status();
    assert.deepEqual(s.pendingDemand, { CPU: 0.5, GPU: 0.5 });
    assert.equal(s.deployments.find((x) => x.name === "gpu")?.replicas.filter((r) => r.state === "running").length, 2);
    await cluster.deploy([{ ...gpuSpec, numReplicas: 2 }]);
    await cluster.waitForReplicas("gpu", 2);
    assert.deepEqual((await cluster.status()).pendingDemand, {});

    // On the GPU host itself, a replica that asked for no GPU sees none.
    await cluster.deploy([{ name: "nogpu", import: "env.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { accel: 1 } } }]);
    const noGpu = await envOfEveryReplica(cluster, "nogpu", "/nogpu", 1);
    const [only] = [...noGpu.values()];
    assert.equal(only?.host, "gpu");
    assert.equal(only?.CUDA_VISIBLE_DEVICES, "");
  });

  it("sets OMP_NUM_THREADS to 1 and MALLOC_ARENA_MAX to 2 by default, to the host's values when the host has them, to actorOptions.env's when the deployment sets them; actorOptions.env sets other variables too", async () => {
    cluster.spawnHost({ id: "omp", cpus: 2, resources: { ompzone: 10 }, env: { OMP_NUM_THREADS: "4", MALLOC_ARENA_MAX: "4" } });
    await cluster.waitForHosts(4);
    await cluster.deploy([
      { name: "omp-default", import: "env.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { plain: 1 } } },
      { name: "omp-host", import: "env.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { ompzone: 1 } } },
      { name: "omp-spec", import: "env.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { ompzone: 1 }, env: { OMP_NUM_THREADS: "7", MALLOC_ARENA_MAX: "8", CUSTOM: "hello" } } },
    ]);
    const one = async (name: string): Promise<EnvAnswer & { host: string | null }> => {
      const answers = await envOfEveryReplica(cluster, name, `/${name}`, 1);
      assert.equal(answers.size, 1);
      return [...answers.values()][0]!;
    };
    const byDefault = await one("omp-default");
    assert.ok(byDefault.host === "h1" || byDefault.host === "h2", `on ${byDefault.host}`);
    assert.equal(byDefault.OMP_NUM_THREADS, "1");
    // MALLOC_ARENA_MAX is read by glibc when the process starts, prestarted or not: its start environment has it.
    assert.deepEqual([byDefault.MALLOC_ARENA_MAX, byDefault.mallocArenaMaxAtStart], ["2", "2"]);
    assert.equal(byDefault.CUSTOM, null);
    const fromHost = await one("omp-host");
    assert.equal(fromHost.host, "omp");
    assert.equal(fromHost.OMP_NUM_THREADS, "4");
    assert.deepEqual([fromHost.MALLOC_ARENA_MAX, fromHost.mallocArenaMaxAtStart], ["4", "4"]);
    assert.equal(fromHost.CUSTOM, null);
    const fromSpec = await one("omp-spec");
    assert.equal(fromSpec.host, "omp");
    assert.equal(fromSpec.OMP_NUM_THREADS, "7", "actorOptions.env wins over the host's value");
    assert.deepEqual([fromSpec.MALLOC_ARENA_MAX, fromSpec.mallocArenaMaxAtStart], ["8", "8"], "a process of its own, started with the deployment's value");
    assert.equal(fromSpec.CUSTOM, "hello");
    assert.equal(fromSpec.CUDA_VISIBLE_DEVICES, "");
  });
});
