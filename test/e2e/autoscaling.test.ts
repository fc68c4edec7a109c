/**
 * End to end: the autoscaler with real processes. The seed's example (1 → 5
 * replicas under 50 concurrent 1 s requests, back to 1 when the load stops,
 * no failed request), scale to zero and a cold start, what `status --json`
 * shows about an autoscaled deployment, and bad autoscaling specs refused by
 * the CLI.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { deleteDeployment } from "../../src/client/deployment-store.js";
import type { DeploymentView, StatusReport } from "../../src/client/cluster-status.js";
import type { DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "flotilla-autoscaling-test-"));
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

type Autoscaling = NonNullable<DeploymentView["autoscaling"]>;

/** Watches a deployment in the background: the highest replica count and every target it had, in order. */
function watchDeployment(cluster: TestCluster, name: string): { stop(): Promise<{ maxReplicas: number; targets: number[] }> } {
  let running = true;
  let maxReplicas = 0;
  const targets: number[] = [];
  const sample = async (): Promise<void> => {
    const d = await cluster.deployment(name).catch(() => undefined);
    if (d) {
      maxReplicas = Math.max(maxReplicas, d.replicas.filter((r) => r.state !== "stopped" && r.state !== "failed").length);
      if (targets[targets.length - 1] !== d.targetReplicas) targets.push(d.targetReplicas);
    }
  };
  const loop = (async () => {
    while (running) {
      await sample();
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await sample(); // the state the caller has just waited for, whatever the poll missed
      return { maxReplicas, targets };
    },
  };
}

describe("the autoscaler, end to end", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "autoscaling", hosts: [{ cpus: 2 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  async function statusJson(): Promise<StatusReport> {
    const res = await cluster.cli(["status", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as StatusReport;
  }

  /** Deletes a deployment and waits until its replicas are gone from the host, so the next test has the CPUs. */
  async function remove(name: string): Promise<void> {
    await deleteDeployment(cluster.redis, cluster.keys, name);
    await waitFor(`${name}'s replicas to be gone`, async () => (await cluster.status()).hosts.every((h) => h.replicas.every((id) => !id.startsWith(`${name}-`))), {
      timeoutMs: 20_000,
    });
  }

  it("scales 1 → 5 under 50 concurrent 1 s requests, back to 1 after the down delay, with zero failed requests", async () => {
    const spec: DeploymentSpecInput = {
      name: "auto",
      import: "slow.ts",
      version: "1",
      // Each replica runs 10 at once, so with 50 clients the queue holds what one replica
      // cannot take: demand (waiting + active) is 50 whatever the replica count, and
      // 50 / 10 per replica = 5 replicas, each running exactly its 10.
      maxConcurrentQueries: 10,
      actorOptions: { numCpus: 0.1 },
      autoscalingConfig: {
        minReplicas: 1,
        maxReplicas: 5,
        targetNumOngoingRequestsPerReplica: 10,
        upscaleDelayS: 2,
        downscaleDelayS: 5,
        lookBackPeriodS: 3,
        metricsIntervalS: 0.5,
      },
    };
    await cluster.deploy([spec]);
    await cluster.waitForReplicas("auto", 1);

    const watch = watchDeployment(cluster, "auto");
    const load = startLoad(cluster.url("/auto?ms=1000"), { concurrency: 50, maxDurationMs: 60_000 });
    const loadStarted = Date.now();
    let upMs: number;
    let underLoad: Autoscaling;
    try {
      await cluster.waitForReplicas("auto", 5, 30_000);
      upMs = Date.now() - loadStarted;
      console.log(`autoscaling: 1 → 5 running replicas ${upMs} ms after 50 clients started`);
      // Still under load: once the look-back window holds only loaded samples, status --json shows
      // demand ≈ 50 → desired 5 = actual 5, and the decision that scaled up.
      underLoad = await waitFor(
        "status --json to show demand ≈ 50, desired 5, actual 5 under the load",
        async () => {
          const a = (await statusJson()).deployments.find((d) => d.name === "auto")?.autoscaling;
          return a && a.actual === 5 && a.desired === 5 && a.demand >= 45 && a.demand <= 50 ? a : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 250, describe: async () => (await statusJson()).deployments.find((d) => d.name === "auto")?.autoscaling },
      );
      console.log(`autoscaling: status --json under 50 clients: ${JSON.stringify(underLoad)}`);
      await waitFor(
        "the 50 requests spread over the 5 replicas, at most 10 each",
        async () => {
          const d = await cluster.deployment("auto");
          const inflight = d?.replicas.map((r) => r.inflight) ?? [];
          return d && d.replicas.length === 5 && d.replicas.every((r) => r.state === "running" && r.inflight > 0 && r.inflight <= 10) && inflight.reduce((x, y) => x + y, 0) >= 40 ? d : undefined;
        },
        { timeoutMs: 10_000, describe: () => cluster.deployment("auto") },
      );
    } finally {
      const result = await load.stop();
      console.log(`autoscaling: load of 50 clients: ${describeLoad(result)}`);
      assert.equal(result.failures.length, 0, describeLoad(result));
      assert.equal(result.errors.length, 0, describeLoad(result));
      assert.ok(result.ok >= 50, describeLoad(result));
    }
    assert.equal(underLoad.lastDecision?.to, 5, JSON.stringify(underLoad));

    const loadStopped = Date.now();
    const down = await cluster.waitForReplicas("auto", 1, 25_000);
    const downMs = Date.now() - loadStopped;
    console.log(`autoscaling: 5 → 1 running replica ${downMs} ms after the load stopped (downscaleDelayS 5, lookBackPeriodS 3)`);
    assert.ok(downMs >= 5000, `scaled down after ${downMs} ms, before downscaleDelayS (5 s) had passed`);
    assert.equal(down.targetReplicas, 1);
    assert.equal(down.autoscaling?.lastDecision?.to, 1, JSON.stringify(down.autoscaling));
    assert.match(down.autoscaling?.lastDecision?.reason ?? "", /down after/);

    const seen = await watch.stop();
    assert.ok(seen.maxReplicas <= 5, `never more than maxReplicas: saw ${seen.maxReplicas}`);
    const peak = seen.targets.indexOf(5);
    const rising = seen.targets.slice(0, peak + 1);
    const falling = seen.targets.slice(peak);
    assert.ok(
      peak >= 0 && rising.every((t, i) => i === 0 || t > (rising[i - 1] ?? 0)) && falling.every((t, i) => i === 0 || t < (falling[i - 1] ?? 0)) && seen.targets.at(-1) === 1,
      `the target rose to 5, then only fell, to 1 (no see-saw): ${seen.targets.join(" → ")}`,
    );
    assert.ok(upMs < 20_000, `scale-up took ${upMs} ms`);
    await remove("auto");
  });

  it("scales to zero when idle, answers a cold request within 3 s, and goes back to zero", async () => {
    const spec: DeploymentSpecInput = {
      name: "zero",
      import: "slow.ts",
      version: "1",
      actorOptions: { numCpus: 0.1 },
      autoscalingConfig: {
        minReplicas: 0,
        maxReplicas: 2,
        initialReplicas: 1,
        targetNumOngoingRequestsPerReplica: 10,
        upscaleDelayS: 2,
        downscaleDelayS: 3,
        lookBackPeriodS: 2,
        metricsIntervalS: 0.5,
      },
    };
    const deployedAt = Date.now();
    await cluster.deploy([spec]);
    await waitFor("zero to have run its initial replica", async () => (await cluster.deployment("zero"))?.replicas.some((r) => r.state === "running"), {
      timeoutMs: 15_000,
      describe: () => cluster.deployment("zero"),
    });

    await cluster.waitForReplicas("zero", 0, 15_000);
    const idleMs = Date.now() - deployedAt;
    assert.ok(idleMs >= 3000, `scaled to zero after ${idleMs} ms, before downscaleDelayS (3 s)`);
    const atZero = (await statusJson()).deployments.find((d) => d.name === "zero");
    assert.ok(atZero, "status --json lists the deployment at zero replicas");
    assert.equal(atZero.targetReplicas, 0);
    assert.equal(atZero.replicas.length, 0);
    assert.equal(atZero.status, "HEALTHY", atZero.message);
    assert.equal(atZero.autoscaling?.actual, 0);
    assert.equal(atZero.autoscaling?.lastDecision?.to, 0, JSON.stringify(atZero.autoscaling));
    assert.match(atZero.autoscaling?.lastDecision?.reason ?? "", /idle/);

    const sent = performance.now();
    const res = await httpRequest(cluster.url("/zero?ms=0"));
    const coldMs = Math.round(performance.now() - sent);
    console.log(`autoscaling: cold start from 0 replicas answered in ${coldMs} ms`);
    assert.equal(res.status, 200, res.body);
    assert.equal(JSON.parse(res.body).slept, 0);
    assert.ok(coldMs < 3000, `cold-start latency ${coldMs} ms`);
    const woken = await cluster.deployment("zero");
    assert.equal(woken?.autoscaling?.lastDecision?.from, 0, JSON.stringify(woken?.autoscaling));
    assert.match(woken?.autoscaling?.lastDecision?.reason ?? "", /cold start/);

    const answeredAt = Date.now();
    const back = await cluster.waitForReplicas("zero", 0, 15_000);
    const backMs = Date.now() - answeredAt;
    console.log(`autoscaling: back to 0 replicas ${backMs} ms after the request was answered (downscaleDelayS 3)`);
    assert.equal(back.targetReplicas, 0);
    assert.ok(backMs >= 2500, `back to zero after only ${backMs} ms`);
    await remove("zero");
  });

  it("status --json shows demand, desired and actual replicas and the last decision with its reason", async () => {
    await cluster.deploy([
      {
        name: "watched",
        import: "slow.ts",
        version: "1",
        maxConcurrentQueries: 10,
        actorOptions: { numCpus: 0.1 },
        autoscalingConfig: { minReplicas: 1, maxReplicas: 3, targetNumOngoingRequestsPerReplica: 10, upscaleDelayS: 1, downscaleDelayS: 60, lookBackPeriodS: 2, metricsIntervalS: 0.5 },
      },
    ]);
    await cluster.waitForReplicas("watched", 1);
    const idle = (await statusJson()).deployments.find((d) => d.name === "watched");
    assert.ok(idle?.autoscaling, "an autoscaled deployment has an autoscaling section");
    assert.deepEqual({ demand: idle.autoscaling.demand, desired: idle.autoscaling.desired, actual: idle.autoscaling.actual }, { demand: 0, desired: 1, actual: 1 });

    const load = startLoad(cluster.url("/watched?ms=1000"), { concurrency: 25, maxDurationMs: 60_000 });
    let seen: DeploymentView;
    try {
      // 25 clients, 10 per replica: 3 replicas, and the look-back average settles near 25.
      seen = await waitFor(
        "status --json to show 3 replicas serving a demand of about 25",
        async () => {
          const d = (await statusJson()).deployments.find((x) => x.name === "watched");
          const a = d?.autoscaling;
          return d && a && a.actual === 3 && a.desired === 3 && a.demand >= 20 && a.demand <= 25 ? d : undefined;
        },
        { timeoutMs: 25_000, intervalMs: 250, describe: async () => (await statusJson()).deployments.find((x) => x.name === "watched") },
      );
      // The human table says the same, still under load.
      const table = await cluster.cli(["status"]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /autoscaling watched: demand \d+\.\d, desired 3, actual 3; last: [12] → 3 \(/);
    } finally {
      const result = await load.stop();
      assert.equal(result.failures.length + result.errors.length, 0, describeLoad(result));
    }
    const a = seen.autoscaling as Autoscaling;
    console.log(`autoscaling: status --json under 25 clients: ${JSON.stringify(a)}`);
    assert.equal(seen.targetReplicas, 3);
    assert.equal(seen.replicas.filter((r) => r.state === "running").length, 3);
    assert.ok(a.lastDecision, "the last decision is shown");
    assert.ok(a.lastDecision.from === 1 || a.lastDecision.from === 2, JSON.stringify(a.lastDecision));
    assert.equal(a.lastDecision.to, 3);
    assert.ok(typeof a.lastDecision.at === "number" && a.lastDecision.at > Date.now() - 60_000 && a.lastDecision.at <= Date.now());
    assert.match(a.lastDecision.reason, /^(spike: demand|demand) .*→ 3 replicas/);

    await remove("watched");
  });

  it("refuses bad autoscaling specs through the CLI, naming the field, and applies nothing", async () => {
    const cases: Array<{ what: string; yaml: string; field: RegExp; detail: RegExp }> = [
      {
        what: "minReplicas > maxReplicas",
        yaml: `deployments:
  - name: fine
    import: echo.ts
    actorOptions: { numCpus: 0.1 }
  - name: bounds
    import: slow.ts
    autoscalingConfig: { minReplicas: 4, maxReplicas: 2 }
`,
        field: /deployments\[1\]\.autoscalingConfig\.minReplicas/,
        detail: /minReplicas \(4\) must not exceed maxReplicas \(2\)/,
      },
      {
        what: "a negative minReplicas",
        yaml: `deployments:
  - name: negative
    import: slow.ts
    autoscalingConfig: { minReplicas: -1, maxReplicas: 2 }
`,
        field: /deployments\[0\]\.autoscalingConfig\.minReplicas/,
        detail: /-1/,
      },
      {
        what: "a negative downscaleDelayS",
        yaml: `deployments:
  - name: negative-delay
    import: slow.ts
    autoscalingConfig: { minReplicas: 1, maxReplicas: 2, downscaleDelayS: -5 }
`,
        field: /deployments\[0\]\.autoscalingConfig\.downscaleDelayS/,
        detail: /-5/,
      },
      {
        what: "numReplicas together with autoscalingConfig",
        yaml: `deployments:
  - name: both
    import: slow.ts
    numReplicas: 2
    autoscalingConfig: { minReplicas: 1, maxReplicas: 3 }
`,
        field: /deployments\[0\]\.numReplicas/,
        detail: /autoscalingConfig/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const res = await cluster.cli(["deploy", file(`bad-${i}.yaml`, c.yaml)]);
      assert.equal(res.code, 1, `${c.what}: exit code (stdout: ${res.stdout}, stderr: ${res.stderr})`);
      assert.match(res.stderr, /INVALID_SPEC/, c.what);
      assert.match(res.stderr, c.field, c.what);
      assert.match(res.stderr, c.detail, c.what);
    }
    const stored = await cluster.redis.hkeys(cluster.keys.deployments);
    for (const name of ["fine", "bounds", "negative", "negative-delay", "both"]) assert.ok(!stored.includes(name), `${name} was not applied`);
    const report = await statusJson();
    assert.deepEqual(report.deployments.map((d) => d.name).filter((n) => ["fine", "bounds", "negative", "negative-delay", "both"].includes(n)), []);
  });
});
