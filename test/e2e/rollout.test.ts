/**
 * End to end: versions, rolling updates without dropped requests, and in-place
 * reconfigure, with real processes under continuous HTTP load.
 *
 * - a new version rolls out over 10 replicas with at most 2 not serving, and
 *   over 1 replica by surging (never a gap), with zero failed requests;
 * - a userConfig change, a maxConcurrentQueries change, numReplicas,
 *   routePrefix and autoscalingConfig changes keep the same processes;
 * - the same version and spec is a no-op; no version means a new one each time;
 * - a failing version never takes the old replicas down, reports UNHEALTHY with
 *   the constructor's error, and a good version recovers it;
 * - `flotilla deploy FILE` follows the rollout, fails with the error, times
 *   out, and returns at once with `--no-wait`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { applyDeployments, deleteDeployment, waitForRollout, type ApplyResult } from "../../src/client/deployment-store.js";
import type { DeploymentView } from "../../src/client/cluster-status.js";
import { maxUnavailable, minServing } from "../../src/controller/rollout-planner.js";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { describeLoad, startLoad, type LoadResult, type RunningLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const CONCURRENCY = 20;

/** One look at a deployment through `status` (what `status --json` shows). */
interface Sample {
  t: number;
  status: string;
  /** Replicas in state running or reconfiguring. */
  serving: number;
  /** Replicas not draining, stopped or failed (pending, starting, running, reconfiguring). */
  live: number;
  total: number;
  versions: Record<string, number>;
  message: string;
}

/** Reads the deployment's status every `intervalMs` until stopped. */
class Sampler {
  readonly samples: Sample[] = [];
  readonly started = Date.now();
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly cluster: TestCluster,
    private readonly name: string,
    private readonly intervalMs = 100,
  ) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const d = await this.cluster.deployment(this.name);
        if (d) this.samples.push(sampleOf(d, Date.now() - this.started));
      } catch {
        // a failed read is no observation
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Fewest serving replicas seen from the first sample that had one serving. */
  get minServing(): number {
    const from = this.samples.findIndex((s) => s.serving > 0);
    if (from === -1) return 0;
    return Math.min(...this.samples.slice(from).map((s) => s.serving));
  }

  get maxLive(): number {
    return Math.max(0, ...this.samples.map((s) => s.live));
  }

  get maxTotal(): number {
    return Math.max(0, ...this.samples.map((s) => s.total));
  }

  /** Statuses in the order first seen. */
  get statuses(): string[] {
    return [...new Set(this.samples.map((s) => s.status))];
  }

  /** A compact timeline: only the samples where something changed. */
  describe(): string {
    const lines: string[] = [];
    let last = "";
    for (const s of this.samples) {
      const key = `${s.status} serving ${s.serving} live ${s.live} total ${s.total} ${JSON.stringify(s.versions)}`;
      if (key !== last) lines.push(`+${(s.t / 1000).toFixed(1)}s ${key}`);
      last = key;
    }
    return `${this.samples.length} samples: ${lines.join(" | ")}`;
  }
}

function sampleOf(d: DeploymentView, t: number): Sample {
  const serving = d.replicas.filter((r) => r.state === "running" || r.state === "reconfiguring").length;
  const live = d.replicas.filter((r) => !["draining", "stopped", "failed"].includes(r.state)).length;
  return { t, status: d.status, serving, live, total: d.replicas.length, versions: { ...d.versions }, message: d.message };
}

/** Applies specs like `cluster.deploy`, returning what applyDeployments answered. */
async function apply(cluster: TestCluster, specs: DeploymentSpecInput[]): Promise<ApplyResult[]> {
  return applyDeployments(
    cluster.redis,
    cluster.keys,
    specs.map((s) => parseDeploymentSpec(s)),
  );
}

async function rollout(cluster: TestCluster, results: ApplyResult[], timeoutMs: number): Promise<void> {
  await waitForRollout(cluster.redis, cluster.keys, results, { timeoutMs });
}

function replicaIds(d: DeploymentView | undefined): string[] {
  return (d?.replicas ?? []).map((r) => r.id).sort();
}

function replicaPids(d: DeploymentView | undefined): number[] {
  return (d?.replicas ?? []).map((r) => r.pid ?? -1).sort((a, b) => a - b);
}

/** Waits until the load has `n` more 2xx answers than it had when called. */
async function moreAnswers(load: RunningLoad, n: number, timeoutMs = 20_000): Promise<void> {
  const target = load.result.ok + n;
  await waitFor(`${n} more answers under load`, () => load.result.ok >= target, { timeoutMs, describe: () => describeLoad(load.result) });
}

function assertNoFailures(r: LoadResult, what: string): void {
  assert.equal(r.failures.length, 0, `${what}: no non-2xx answers; ${describeLoad(r)}`);
  assert.equal(r.errors.length, 0, `${what}: no connection errors; ${describeLoad(r)}`);
}

/** Run-length summary of the versions answered, e.g. "v1×523 v2×17 v1×2 v2×800". */
function runs(seq: readonly string[]): string {
  const out: string[] = [];
  let cur: string | undefined;
  let n = 0;
  for (const v of seq) {
    if (v === cur) n++;
    else {
      if (cur !== undefined) out.push(`${cur}×${n}`);
      cur = v;
      n = 1;
    }
  }
  if (cur !== undefined) out.push(`${cur}×${n}`);
  return out.length > 40 ? `${out.slice(0, 20).join(" ")} … ${out.slice(-20).join(" ")}` : out.join(" ");
}

/** Asserts the answered versions go from `from` (first) to `to` (last, and only `to` once `mark` answers were in). */
function assertSwitch(seq: readonly string[], from: string, to: string, mark: number, allowed: readonly string[] = [from, to]): void {
  const seen = runs(seq);
  assert.equal(seq[0], from, `the old version answers first; versions answered: ${seen}`);
  assert.equal(seq[seq.length - 1], to, `the new version answers last; versions answered: ${seen}`);
  const unexpected = seq.filter((v) => !allowed.includes(v));
  assert.equal(unexpected.length, 0, `only ${allowed.join(", ")} answer; versions answered: ${seen}`);
  // At `mark` no old replica was left; at most CONCURRENCY answers could still have been on their way then.
  const late = seq.slice(mark + CONCURRENCY).filter((v) => v !== to);
  assert.equal(late.length, 0, `only ${to} answers after the old replicas are gone (mark at answer ${mark}); versions answered: ${seen}`);
}

const figures: string[] = [];
function figure(text: string): void {
  figures.push(text);
  process.stderr.write(`# figure: ${text}\n`);
}

describe("versions, rolling updates and in-place reconfigure", () => {
  let cluster: TestCluster;
  const tmp = mkdtempSync(path.join(os.tmpdir(), "flotilla-rollout-test-"));

  before(async () => {
    cluster = await TestCluster.start({ label: "rollout", hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop();
    if (figures.length > 0) process.stderr.write(`# rollout figures:\n${figures.map((f) => `#   ${f}`).join("\n")}\n`);
  });

  /** Deletes a test's deployment so its replicas stop using the 2 cores. */
  async function remove(name: string): Promise<void> {
    await deleteDeployment(cluster.redis, cluster.keys, name).catch(() => undefined);
  }

  it("rolls a new version over 10 replicas under load: no failed request, never fewer than 8 serving", { timeout: 150_000 }, async () => {
    const name = "versioned";
    const spec = (v: string): DeploymentSpecInput => ({ name, import: "versioned.ts", version: v, numReplicas: 10, actorOptions: { numCpus: 0.1, env: { BUILD: v } } });
    let load: RunningLoad | undefined;
    let sampler: Sampler | undefined;
    try {
      const t0 = Date.now();
      await rollout(cluster, await apply(cluster, [spec("v1")]), 90_000);
      const initial = await cluster.waitForReplicas(name, 10, 30_000);
      figure(`10 replicas of v1 healthy in ${Date.now() - t0} ms`);

      load = startLoad(cluster.url("/versioned"), { concurrency: CONCURRENCY });
      await moreAnswers(load, 100);
      sampler = new Sampler(cluster, name);

      const started = Date.now();
      const results = await apply(cluster, [spec("v2")]);
      assert.deepEqual(
        results.map((r) => [r.outcome, r.rollout]),
        [["updated", true]],
        "a new version and env is a rolling update",
      );
      await rollout(cluster, results, 120_000);
      const healthyMs = Date.now() - started;
      const final = await cluster.waitForReplicas(name, 10, 30_000);
      const goneMs = Date.now() - started;
      const mark = load.result.versionSequence.length;
      await moreAnswers(load, 300);
      const result = await load.stop();
      load = undefined;
      await sampler.stop();

      figure(
        `10-replica rollout: HEALTHY after ${healthyMs} ms, old replicas gone after ${goneMs} ms; min serving ${sampler.minServing}, max live ${sampler.maxLive}, max total ${sampler.maxTotal}; load ${describeLoad(result)}; versions ${runs(result.versionSequence)}`,
      );
      assertNoFailures(result, "10-replica rolling update");
      const floor = minServing(10);
      assert.equal(floor, 8);
      assert.ok(sampler.minServing >= floor, `never fewer than ${floor} serving, saw ${sampler.minServing}; ${sampler.describe()}`);
      assert.ok(sampler.maxLive <= 10 + maxUnavailable(10), `never more than 12 replicas not draining, saw ${sampler.maxLive}; ${sampler.describe()}`);
      assert.ok(sampler.statuses.includes("UPDATING"), `UPDATING during the rollout; ${sampler.describe()}`);
      assert.equal(sampler.samples[sampler.samples.length - 1]?.status, "HEALTHY", `HEALTHY at the end; ${sampler.describe()}`);
      assertSwitch(result.versionSequence, "v1", "v2", mark);

      assert.equal(final.status, "HEALTHY");
      assert.deepEqual(final.versions, { v2: 10 }, "status --json versions after the rollout");
      assert.ok(final.replicas.every((r) => r.version === "v2" && r.state === "running"));
      const oldIds = new Set(replicaIds(initial));
      assert.ok(
        final.replicas.every((r) => !oldIds.has(r.id)),
        "every replica was replaced",
      );
      const res = await httpRequest(cluster.url("/versioned"));
      assert.equal(res.status, 200, res.body);
      assert.equal(JSON.parse(res.body).build, "v2", "the new actorOptions.env reached the new processes");
      assert.equal(res.headers.get("x-flotilla-version"), "v2");
      const cliStatus = await cluster.cli(["status", "--json"]);
      assert.equal(cliStatus.code, 0, cliStatus.stderr);
      const reported = (JSON.parse(cliStatus.stdout) as { deployments: DeploymentView[] }).deployments.find((d) => d.name === name);
      assert.deepEqual(reported?.versions, { v2: 10 }, `status --json: ${JSON.stringify(reported)}`);
      assert.equal(reported?.status, "HEALTHY");
      // `status --json` counts replicas per version: the old replicas keep the label they had
      // before the rollout ("v1", as their replies say), so mid-rollout both versions show.
      assert.deepEqual(initial.versions, { v1: 10 }, "status --json versions before the rollout");
      assert.ok(
        sampler.samples.some((s) => (s.versions.v1 ?? 0) > 0 && (s.versions.v2 ?? 0) > 0),
        `status shows both versions' replica counts mid-rollout as {v1: n, v2: m}; ${sampler.describe()}`,
      );
    } finally {
      await load?.stop();
      await sampler?.stop();
      await remove(name);
    }
  });

  it("updates a 1-replica deployment by surging: the new replica serves before the old drains, no failed request", { timeout: 90_000 }, async () => {
    const name = "single";
    const spec = (v: string): DeploymentSpecInput => ({ name, import: "versioned.ts", version: v, numReplicas: 1, actorOptions: { numCpus: 0.1, env: { BUILD: v } } });
    let load: RunningLoad | undefined;
    let sampler: Sampler | undefined;
    try {
      await rollout(cluster, await apply(cluster, [spec("v1")]), 30_000);
      const [old] = (await cluster.waitForReplicas(name, 1)).replicas;
      load = startLoad(cluster.url("/single"), { concurrency: CONCURRENCY });
      await moreAnswers(load, 100);
      sampler = new Sampler(cluster, name);

      const started = Date.now();
      const results = await apply(cluster, [spec("v2")]);
      assert.equal(results[0]?.rollout, true);
      await rollout(cluster, results, 60_000);
      const healthyMs = Date.now() - started;
      const final = await cluster.waitForReplicas(name, 1);
      const goneMs = Date.now() - started;
      const mark = load.result.versionSequence.length;
      await moreAnswers(load, 200);
      const result = await load.stop();
      load = undefined;
      await sampler.stop();

      figure(
        `1-replica rollout: HEALTHY after ${healthyMs} ms, old replica gone after ${goneMs} ms; min serving ${sampler.minServing}, max live ${sampler.maxLive}, max total ${sampler.maxTotal}; load ${describeLoad(result)}; versions ${runs(result.versionSequence)}`,
      );
      assertNoFailures(result, "1-replica rolling update");
      assert.ok(sampler.minServing >= 1, `never 0 serving, saw ${sampler.minServing}; ${sampler.describe()}`);
      assert.ok(sampler.maxLive <= 2, `surges by one replica at most, saw ${sampler.maxLive} live; ${sampler.describe()}`);
      // Side by side: the new replica ran before the old one stopped. A status
      // sample can miss that overlap (a prestarted process makes it short); the logs do not.
      const newId = final.replicas[0]?.id ?? "";
      const times = await waitFor(
        "the new replica's \"replica running\" and the old one's \"replica stopped\" log lines",
        () => {
          const running = cluster.loggedAt("replica running", newId);
          const stopped = cluster.loggedAt("replica stopped", old?.id ?? "");
          return running !== undefined && stopped !== undefined ? { running, stopped } : undefined;
        },
        { timeoutMs: 10_000, describe: () => cluster.logTail(20) },
      );
      assert.ok(times.running < times.stopped, `old and new replica existed side by side (surge): new running at ${times.running}, old stopped at ${times.stopped}; ${sampler.describe()}`);
      assertSwitch(result.versionSequence, "v1", "v2", mark);
      assert.notEqual(final.replicas[0]?.id, old?.id);
      assert.deepEqual(final.versions, { v2: 1 });
    } finally {
      await load?.stop();
      await sampler?.stop();
      await remove(name);
    }
  });

  it("applies a new userConfig in place under load: same replicas and pids, new config answered, no failed request", { timeout: 60_000 }, async () => {
    const name = "probe";
    const spec = (gen: number): DeploymentSpecInput => ({ name, import: "threshold.ts#ConfigProbe", version: "1", numReplicas: 2, userConfig: { gen }, actorOptions: { numCpus: 0.1 } });
    let load: RunningLoad | undefined;
    let sampler: Sampler | undefined;
    try {
      await rollout(cluster, await apply(cluster, [spec(1)]), 30_000);
      const initial = await cluster.waitForReplicas(name, 2);
      const first = JSON.parse((await httpRequest(cluster.url("/probe"))).body) as { config: unknown; pid: number };
      assert.deepEqual(first.config, { gen: 1 }, "the constructor-time reconfigure ran");

      load = startLoad(cluster.url("/probe"), { concurrency: CONCURRENCY });
      await moreAnswers(load, 100);
      sampler = new Sampler(cluster, name);
      const started = Date.now();
      const results = await apply(cluster, [spec(2)]);
      assert.deepEqual(
        results.map((r) => [r.outcome, r.rollout]),
        [["updated", false]],
        "a userConfig change is no rolling update",
      );
      await rollout(cluster, results, 30_000);

      const pids = new Set(replicaPids(initial));
      const answered = new Set<number>();
      await waitFor(
        "both replica processes to answer the new config",
        async () => {
          const body = JSON.parse((await httpRequest(cluster.url("/probe"))).body) as { config: { gen: number }; pid: number };
          if (body.config.gen === 2) answered.add(body.pid);
          return [...pids].every((p) => answered.has(p));
        },
        { timeoutMs: 15_000, intervalMs: 20, describe: () => ({ pids: [...pids], answeredNewConfig: [...answered] }) },
      );
      const reconfigureMs = Date.now() - started;
      for (let i = 0; i < 10; i++) {
        const body = JSON.parse((await httpRequest(cluster.url("/probe"))).body) as { config: unknown; pid: number };
        assert.deepEqual(body.config, { gen: 2 }, `once reconfigured, every answer has the new config (answer ${i}: ${JSON.stringify(body)})`);
        assert.ok(pids.has(body.pid), `answered by an original process, got pid ${body.pid}`);
      }
      await moreAnswers(load, 100);
      const result = await load.stop();
      load = undefined;
      await sampler.stop();
      const final = await cluster.deployment(name);

      figure(`userConfig reconfigure: new config answered by every replica ${reconfigureMs} ms after apply; min serving ${sampler.minServing}; load ${describeLoad(result)}`);
      assertNoFailures(result, "reconfigure");
      assert.deepEqual(replicaIds(final), replicaIds(initial), "same replica ids");
      assert.deepEqual(replicaPids(final), replicaPids(initial), "same replica processes");
      assert.equal(final?.codeVersion, initial.codeVersion, "same code version");
      assert.ok(sampler.minServing >= 2, `both replicas kept serving, saw ${sampler.minServing}; ${sampler.describe()}`);
      assert.ok(sampler.samples.every((s) => s.total === 2), `no replica was started or drained; ${sampler.describe()}`);
      assert.deepEqual([...result.versions.keys()], ["1"], "one version answered throughout");
    } finally {
      await load?.stop();
      await sampler?.stop();
      await remove(name);
    }
  });

  it("treats the same version and spec as a no-op, and a spec without a version as a new version every time", { timeout: 60_000 }, async () => {
    const pinned: DeploymentSpecInput = { name: "pinned", import: "threshold.ts#ConfigProbe", version: "7", numReplicas: 2, userConfig: { a: 1, b: [1, 2] }, actorOptions: { numCpus: 0.1 } };
    const unpinned: DeploymentSpecInput = { name: "unpinned", import: "echo.ts", numReplicas: 1, actorOptions: { numCpus: 0.1 } };
    try {
      const created = await apply(cluster, [pinned, unpinned]);
      assert.deepEqual(
        created.map((r) => [r.name, r.outcome]),
        [
          ["pinned", "created"],
          ["unpinned", "created"],
        ],
      );
      await rollout(cluster, created, 30_000);
      const pinnedBefore = await cluster.waitForReplicas("pinned", 2);
      const unpinnedBefore = await cluster.waitForReplicas("unpinned", 1);
      const statusBefore = JSON.parse((await cluster.redis.hget(cluster.keys.deploymentStatus, "pinned")) ?? "{}") as DeploymentStatusRecord;

      // The same spec again (keys in another order): nothing to do.
      const appliedAt = Date.now();
      const again = await apply(cluster, [{ actorOptions: { numCpus: 0.1 }, userConfig: { b: [1, 2], a: 1 }, numReplicas: 2, version: "7", import: "threshold.ts#ConfigProbe", name: "pinned" }]);
      assert.deepEqual(again, [{ name: "pinned", outcome: "unchanged", generation: statusBefore.generation, rollout: false }]);
      // Let the controller run a few ticks after the no-op apply before looking again.
      await waitFor(
        "two controller ticks after the no-op apply",
        async () => {
          const st = JSON.parse((await cluster.redis.hget(cluster.keys.deploymentStatus, "pinned")) ?? "{}") as DeploymentStatusRecord;
          return st.updatedAt > appliedAt + 1000 ? st : undefined;
        },
        { timeoutMs: 10_000 },
      );
      const pinnedAfter = await cluster.deployment("pinned");
      assert.deepEqual(replicaIds(pinnedAfter), replicaIds(pinnedBefore), `replica ids unchanged: ${JSON.stringify(pinnedAfter?.replicas)}`);
      assert.deepEqual(replicaPids(pinnedAfter), replicaPids(pinnedBefore), "replica processes unchanged");
      assert.equal(pinnedAfter?.status, "HEALTHY");
      assert.equal(pinnedAfter?.codeVersion, pinnedBefore.codeVersion);

      // No version: the very same spec is a new code version and a rolling update.
      const redeploy = await apply(cluster, [unpinned]);
      assert.deepEqual(
        redeploy.map((r) => [r.outcome, r.rollout]),
        [["updated", true]],
        "a spec without version is a new code version on every deploy",
      );
      await rollout(cluster, redeploy, 30_000);
      const unpinnedAfter = await cluster.waitForReplicas("unpinned", 1);
      assert.notEqual(unpinnedAfter.codeVersion, unpinnedBefore.codeVersion, "a fresh code version");
      assert.match(unpinnedAfter.codeVersion, /^auto-/);
      assert.notDeepEqual(replicaIds(unpinnedAfter), replicaIds(unpinnedBefore), "the replica was replaced");
      const res = await httpRequest(cluster.url("/unpinned"));
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-flotilla-version"), unpinnedAfter.codeVersion, "without a version, replies carry the code version");
    } finally {
      await remove("pinned");
      await remove("unpinned");
    }
  });

  it("keeps the old replicas serving through a failing version, reports UNHEALTHY with the error, and recovers with a good version", { timeout: 120_000 }, async () => {
    const name = "fallible";
    const good = (v: string): DeploymentSpecInput => ({ name, import: "versioned.ts", version: v, numReplicas: 3, actorOptions: { numCpus: 0.1, env: { BUILD: v } } });
    const broken: DeploymentSpecInput = { name, import: "broken.ts#Broken", version: "v2", numReplicas: 3, actorOptions: { numCpus: 0.1 } };
    let load: RunningLoad | undefined;
    let sampler: Sampler | undefined;
    try {
      await rollout(cluster, await apply(cluster, [good("v1")]), 45_000);
      const initial = await cluster.waitForReplicas(name, 3);
      load = startLoad(cluster.url("/fallible"), { concurrency: CONCURRENCY });
      await moreAnswers(load, 100);
      sampler = new Sampler(cluster, name);

      const failStarted = Date.now();
      const results = await apply(cluster, [broken]);
      assert.equal(results[0]?.rollout, true);
      await assert.rejects(rollout(cluster, results, 30_000), /model weights not found/, "waiting for the rollout reports the constructor's error");
      const unhealthy = await waitFor(
        "the deployment to be UNHEALTHY with the constructor's error",
        async () => {
          const d = await cluster.deployment(name);
          return d?.status === "UNHEALTHY" && d.message.includes("model weights not found") ? d : undefined;
        },
        { timeoutMs: 20_000, describe: () => cluster.deployment(name) },
      );
      const unhealthyMs = Date.now() - failStarted;
      const oldServing = unhealthy.replicas.filter((r) => r.codeVersion === initial.codeVersion && r.state === "running");
      assert.ok(oldServing.length >= minServing(3), `old replicas still serving while UNHEALTHY: ${JSON.stringify(unhealthy.replicas)}`);
      const beforeIds = new Set(replicaIds(initial));
      assert.ok(
        oldServing.every((r) => beforeIds.has(r.id)),
        "the serving replicas are the old ones",
      );
      // The old version keeps answering while the new one fails and backs off.
      await moreAnswers(load, 200);
      const duringFailure = { ...load.result, versionSequence: [...load.result.versionSequence] };
      assertNoFailures(duringFailure, "during the failed rollout");
      assert.ok(
        duringFailure.versionSequence.every((v) => v === "v1"),
        `only v1 answers while v2 fails: ${runs(duringFailure.versionSequence)}`,
      );

      const recoverStarted = Date.now();
      const fix = await apply(cluster, [good("v3")]);
      assert.equal(fix[0]?.rollout, true);
      await rollout(cluster, fix, 60_000);
      const recoverMs = Date.now() - recoverStarted;
      const final = await cluster.waitForReplicas(name, 3, 30_000);
      const mark = load.result.versionSequence.length;
      await moreAnswers(load, 200);
      const result = await load.stop();
      load = undefined;
      await sampler.stop();

      figure(
        `failed rollout: UNHEALTHY after ${unhealthyMs} ms ("${unhealthy.message}"); recovery to HEALTHY in ${recoverMs} ms; min serving ${sampler.minServing} of 3; load ${describeLoad(result)}; versions ${runs(result.versionSequence)}`,
      );
      assertNoFailures(result, "failed rollout and recovery");
      assert.ok(sampler.minServing >= minServing(3), `never fewer than ${minServing(3)} serving, saw ${sampler.minServing}; ${sampler.describe()}`);
      const firstUnhealthy = sampler.samples.findIndex((s) => s.status === "UNHEALTHY");
      assert.ok(firstUnhealthy >= 0, `UNHEALTHY seen: ${sampler.describe()}`);
      assert.ok(
        sampler.samples.slice(firstUnhealthy).some((s) => s.status === "HEALTHY"),
        `HEALTHY again after UNHEALTHY: ${sampler.describe()}`,
      );
      assert.equal(sampler.samples[sampler.samples.length - 1]?.status, "HEALTHY", `HEALTHY at the end: ${sampler.describe()}`);
      assertSwitch(result.versionSequence, "v1", "v3", mark, ["v1", "v3"]);
      assert.equal(final.status, "HEALTHY");
      assert.deepEqual(final.versions, { v3: 3 });
    } finally {
      await load?.stop();
      await sampler?.stop();
      await remove(name);
    }
  });

  it("`flotilla deploy FILE` follows the rollout, fails with the constructor's error, times out, and returns at once with --no-wait", { timeout: 120_000 }, async () => {
    const file = (fileName: string, text: string): string => {
      const p = path.join(tmp, fileName);
      writeFileSync(p, text);
      return p;
    };
    // v1 loads for 1.5 s, so its rollout is seen in progress; v3 for 6 s, so a CLI that followed its rollout could not return before it.
    const START_DELAY_MS: Record<string, number> = { v1: 1500, v3: 6000 };
    const deployFile = (v: string, importRef: string): string =>
      file(
        `clidep-${v}.yaml`,
        `deployments:
  - name: clidep
    import: ${importRef}
    version: "${v}"
    numReplicas: 1
    actorOptions: { numCpus: 0.1, env: { BUILD: "${v}", START_DELAY_MS: "${START_DELAY_MS[v] ?? 0}" } }
`,
      );
    try {
      let t = Date.now();
      const first = await cluster.cli(["deploy", deployFile("v1", "versioned.ts")]);
      const firstMs = Date.now() - t;
      assert.equal(first.code, 0, `exit 0; stdout: ${first.stdout}; stderr: ${first.stderr}`);
      assert.match(first.stdout, /^clidep: created \(generation 1, rolling update\)$/m);
      // v1 takes 1.5 s to load, so the rollout is seen in progress.
      const progress = first.stdout.split("\n").filter((l) => /^clidep: (waiting for the controller|UPDATING|HEALTHY) /.test(l));
      assert.ok(progress.length >= 2, `progress lines printed (stdout is not a TTY): ${JSON.stringify(first.stdout)}`);
      assert.ok(
        progress.some((l) => /^clidep: UPDATING 0\/1 replicas running the current version/.test(l)),
        `an UPDATING progress line: ${JSON.stringify(first.stdout)}`,
      );
      assert.match(first.stdout, /^clidep: HEALTHY 1\/1 replicas running$/m);
      assert.match(first.stdout, /^clidep: HEALTHY$/m, "the final line");
      const v1 = await httpRequest(cluster.url("/clidep"));
      assert.equal(v1.headers.get("x-flotilla-version"), "v1");

      t = Date.now();
      const failing = await cluster.cli(["deploy", deployFile("v2", "broken.ts#Broken")]);
      const failingMs = Date.now() - t;
      assert.notEqual(failing.code, 0, `a failed rollout exits non-zero; stdout: ${failing.stdout}; stderr: ${failing.stderr}`);
      assert.match(failing.stdout, /^clidep: updated \(generation 2, rolling update\)$/m);
      assert.match(failing.stderr, /ROLLOUT_FAILED: rollout of 'clidep' failed: .*model weights not found/, `the constructor's error; stderr: ${failing.stderr}`);
      const stillV1 = await httpRequest(cluster.url("/clidep"));
      assert.equal(stillV1.status, 200, stillV1.body);
      assert.equal(stillV1.headers.get("x-flotilla-version"), "v1", "the old replica still answers");

      t = Date.now();
      const tooBig = await cluster.cli([
        "deploy",
        "--timeout",
        "2",
        file("toobig.yaml", `deployments:\n  - name: toobig\n    import: echo.ts\n    actorOptions: { numCpus: 64 }\n`),
      ]);
      const tooBigMs = Date.now() - t;
      await remove("toobig");
      assert.notEqual(tooBig.code, 0, `a rollout past --timeout exits non-zero; stdout: ${tooBig.stdout}; stderr: ${tooBig.stderr}`);
      assert.match(tooBig.stderr, /TIMEOUT: rollout did not finish within 2 s: toobig: UPDATING/, `the timeout and what it waited for; stderr: ${tooBig.stderr}`);
      assert.match(tooBig.stderr, /pending/, `says why: ${tooBig.stderr}`);

      t = Date.now();
      const noWait = await cluster.cli(["deploy", "--no-wait", deployFile("v3", "versioned.ts")]);
      const noWaitMs = Date.now() - t;
      // v3 takes 6 s to load: had the CLI followed the rollout, v3 would be serving by now.
      const whenReturned = await cluster.deployment("clidep");
      assert.equal(noWait.code, 0, `--no-wait exits 0; stderr: ${noWait.stderr}`);
      assert.notEqual(whenReturned?.status, "HEALTHY", `--no-wait returned while v3 was still loading: ${JSON.stringify(whenReturned)}`);
      assert.match(noWait.stdout, /^clidep: updated \(generation 3, rolling update\)$/m);
      assert.doesNotMatch(noWait.stdout, /HEALTHY|UPDATING/, "--no-wait does not follow the rollout");
      const recovered = await waitFor(
        "the --no-wait deploy to roll out",
        async () => {
          const d = await cluster.deployment("clidep");
          return d?.status === "HEALTHY" && d.versions.v3 === 1 && d.replicas.length === 1 ? d : undefined;
        },
        { timeoutMs: 30_000, describe: () => cluster.deployment("clidep") },
      );
      const rolledOutMs = Date.now() - t;
      figure(
        `CLI: deploy v1 ${firstMs} ms (${progress.length} progress lines), failing deploy exit ${failing.code} after ${failingMs} ms, --timeout 2 exit ${tooBig.code} after ${tooBigMs} ms, --no-wait ${noWaitMs} ms (rollout done ${rolledOutMs} ms)`,
      );
      assert.equal(recovered.replicas[0]?.version, "v3");
      const v3 = await httpRequest(cluster.url("/clidep"));
      assert.equal(JSON.parse(v3.body).build, "v3");
    } finally {
      await remove("clidep");
      await remove("toobig");
    }
  });

  it("applies a maxConcurrentQueries change to the running process: 1 → 3 without a restart", { timeout: 60_000 }, async () => {
    const name = "slowq";
    const spec = (mcq: number): DeploymentSpecInput => ({ name, import: "slow.ts", version: "1", numReplicas: 1, maxConcurrentQueries: mcq, actorOptions: { numCpus: 0.1 } });
    const burst = async (): Promise<{ ms: number; pids: number[]; statuses: number[] }> => {
      const t = Date.now();
      const answers = await Promise.all([0, 1, 2].map(() => httpRequest(cluster.url("/slowq?ms=600"))));
      return { ms: Date.now() - t, pids: answers.map((a) => (a.status === 200 ? (JSON.parse(a.body) as { pid: number }).pid : -1)), statuses: answers.map((a) => a.status) };
    };
    try {
      await rollout(cluster, await apply(cluster, [spec(1)]), 30_000);
      const [replica] = (await cluster.waitForReplicas(name, 1)).replicas;
      assert.ok(replica?.pid);
      assert.equal((await httpRequest(cluster.url("/slowq?ms=1"))).status, 200);

      const serial = await burst();
      assert.deepEqual(serial.statuses, [200, 200, 200]);
      assert.ok(serial.ms >= 1600, `maxConcurrentQueries 1 runs 3 × 600 ms requests one at a time; took ${serial.ms} ms`);

      const results = await apply(cluster, [spec(3)]);
      assert.deepEqual(
        results.map((r) => [r.outcome, r.rollout]),
        [["updated", false]],
        "a maxConcurrentQueries change is no rolling update",
      );
      await rollout(cluster, results, 30_000);
      const host = cluster.processes.find((p) => p.name === "host-h1");
      assert.ok(host);
      await waitFor(
        "the replica to apply maxConcurrentQueries 3",
        () => host.logs.some((l) => l.includes('"settings applied"') && l.includes(`"replica":"${replica.id}"`) && l.includes('"maxConcurrentQueries":3')),
        { timeoutMs: 10_000 },
      );
      const parallel = await burst();
      figure(`maxConcurrentQueries: 3 × 600 ms took ${serial.ms} ms at 1, ${parallel.ms} ms at 3`);
      assert.deepEqual(parallel.statuses, [200, 200, 200]);
      assert.ok(parallel.ms < 1200, `maxConcurrentQueries 3 runs them side by side; took ${parallel.ms} ms`);
      assert.deepEqual(parallel.pids, [replica.pid, replica.pid, replica.pid], "the same process answers");
      const final = await cluster.deployment(name);
      assert.deepEqual(replicaIds(final), [replica.id]);
      assert.deepEqual(replicaPids(final), [replica.pid]);
    } finally {
      await remove(name);
    }
  });

  it("changes numReplicas, routePrefix and autoscalingConfig without restarting a replica", { timeout: 60_000 }, async () => {
    const name = "knobs";
    const base: DeploymentSpecInput = { name, import: "threshold.ts#ConfigProbe", version: "1", actorOptions: { numCpus: 0.1 } };
    try {
      await rollout(cluster, await apply(cluster, [{ ...base, numReplicas: 2 }]), 30_000);
      const initial = await cluster.waitForReplicas(name, 2);

      const scaled = await apply(cluster, [{ ...base, numReplicas: 3, routePrefix: "/knobs-v2" }]);
      assert.deepEqual(
        scaled.map((r) => [r.outcome, r.rollout]),
        [["updated", false]],
      );
      await rollout(cluster, scaled, 30_000);
      const three = await cluster.waitForReplicas(name, 3);
      const kept = replicaIds(initial).filter((id) => three.replicas.some((r) => r.id === id));
      assert.deepEqual(kept, replicaIds(initial), `both original replicas kept: ${JSON.stringify(three.replicas)}`);
      const pidsThree = replicaPids(three);
      for (const pid of replicaPids(initial)) assert.ok(pidsThree.includes(pid), `pid ${pid} still serves`);
      await waitFor("the new route to answer", async () => (await httpRequest(cluster.url("/knobs-v2"))).status === 200, { timeoutMs: 10_000 });
      await waitFor("the old route to go", async () => (await httpRequest(cluster.url("/knobs"))).status === 404, { timeoutMs: 10_000 });

      const auto = await apply(cluster, [{ ...base, routePrefix: "/knobs-v2", autoscalingConfig: { minReplicas: 3, maxReplicas: 3 } }]);
      assert.deepEqual(
        auto.map((r) => [r.outcome, r.rollout]),
        [["updated", false]],
      );
      await rollout(cluster, auto, 30_000);
      const final = await cluster.waitForReplicas(name, 3);
      assert.deepEqual(replicaIds(final), replicaIds(three), "switching to autoscalingConfig keeps the replicas");
      assert.deepEqual(replicaPids(final), pidsThree, "and their processes");
    } finally {
      await remove(name);
    }
  });
});
