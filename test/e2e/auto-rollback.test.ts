/**
 * End to end through the CLI: automatic rollback (rollbackOnFailure). A broken
 * version (its constructor throws) deployed with `--no-wait` under load ends
 * HEALTHY on the previous revision with no one acting, its revision `failed`
 * in `history`, and not one request failed; a version that never finishes
 * starting is rolled back after rolloutTimeoutS, and the `deploy` waiting on
 * it says so and exits 1.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { History } from "../../src/client/revisions.js";
import { TestCluster } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const CONCURRENCY = 6;
const tmp = mkdtempSync(path.join(os.tmpdir(), "flotilla-autorb-test-"));

function deployFile(name: string, version: string, options: { importRef?: string; env?: Record<string, string>; policy?: string } = {}): string {
  const file = path.join(tmp, `${name}-${version}.yaml`);
  const env = JSON.stringify({ BUILD: version, ...options.env });
  writeFileSync(
    file,
    `deployments:
  - name: ${name}
    import: ${options.importRef ?? "versioned.ts"}
    version: "${version}"
    numReplicas: 2
    rollbackOnFailure: true
    ${options.policy ?? "rolloutFailureThreshold: 3"}
    actorOptions: { numCpus: 0.25, env: ${env} }
`,
  );
  return file;
}

describe("automatic rollback", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "autorb", hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  async function history(name: string): Promise<History> {
    const res = await cluster.cli(["history", name, "--json"]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as History;
  }

  /** Runs `during` under load on `name` and checks that every request was answered, by `version` only. */
  async function underLoad(name: string, version: string, during: () => Promise<void>): Promise<void> {
    const load = startLoad(cluster.url(`/${name}`), { concurrency: CONCURRENCY });
    let result;
    try {
      await waitFor(`answers from version ${version}`, () => (load.result.versions.get(version) ?? 0) > 30, { timeoutMs: 20_000 });
      await during();
      const answered = load.result.ok;
      await waitFor("100 more answers", () => load.result.ok > answered + 100, { timeoutMs: 20_000 });
    } finally {
      result = await load.stop();
    }
    assert.equal(result.failures.length + result.errors.length, 0, describeLoad(result));
    assert.deepEqual([...result.versions.keys()], [version], `only version ${version} answered: ${describeLoad(result)}`);
  }

  it("returns a broken version to the last revision that rolled out, with no one acting and no request failed", async () => {
    const first = await cluster.cli(["deploy", deployFile("web", "1")]);
    assert.equal(first.code, 0, `${first.stdout} ${first.stderr}`);
    const pids = (await cluster.deployment("web"))?.replicas.map((r) => r.pid).sort();
    await underLoad("web", "1", async () => {
      const broken = await cluster.cli(["deploy", "--no-wait", deployFile("web", "2", { importRef: "broken.ts#Broken" })]);
      assert.equal(broken.code, 0, broken.stderr);
      await waitFor("web back on revision 1, HEALTHY", async () => {
        const d = await cluster.deployment("web");
        return d?.status === "HEALTHY" && d.version === "1" && JSON.stringify(d.versions) === '{"1":2}' ? d : undefined;
      }, { timeoutMs: 60_000, describe: async () => ({ deployment: await cluster.deployment("web"), logs: cluster.logTail(8) }) });
    });
    const d = await cluster.deployment("web");
    assert.equal(d?.message, "rolled back to revision 1: revision 2 failed: 3 failed start(s) of its replicas: model weights not found; 2/2 replicas running");
    assert.deepEqual(d?.replicas.map((r) => r.pid).sort(), pids, "the replicas of version 1 served on: none restarted");

    const h = await waitFor("revision 3 rolled out", async () => {
      const got = await history("web");
      return got.revisions.at(-1)?.outcome === "rolled out" ? got : undefined;
    }, { timeoutMs: 10_000 });
    assert.equal(h.current, 3);
    assert.deepEqual(h.revisions.map((r) => [r.revision, r.version, r.outcome, r.rollbackOf ?? null]), [
      [1, "1", "rolled out", null],
      [2, "2", "failed", null],
      [3, "1", "rolled out", 1],
    ]);
    assert.match(h.revisions[1]?.error ?? "", /^3 failed start\(s\) of its replicas: .*model weights not found/);
    assert.match(h.revisions[2]?.source.user ?? "", /^controller:/);
    const table = await cluster.cli(["history", "web"]);
    assert.match(table.stdout, /2 .*failed: 3 failed start\(s\)/);
    assert.match(table.stdout, /3 \*.*rolled out.*rollback of 1/);
  });

  it("rolls back a version that never finishes starting after rolloutTimeoutS; the waiting deploy says so and exits 1", async () => {
    const first = await cluster.cli(["deploy", deployFile("slow", "1", { policy: "rolloutTimeoutS: 4" })]);
    assert.equal(first.code, 0, `${first.stdout} ${first.stderr}`);
    await underLoad("slow", "1", async () => {
      // Its module takes ten minutes to load: its replicas stay starting.
      const stuck = await cluster.cli(["deploy", "--timeout", "60", deployFile("slow", "2", { policy: "rolloutTimeoutS: 4", env: { START_DELAY_MS: "600000" } })]);
      assert.equal(stuck.code, 1, `${stuck.stdout} ${stuck.stderr}`);
      assert.match(stuck.stderr, /ROLLOUT_FAILED: rollout of 'slow' failed and was rolled back to revision 1: revision 2 failed: not rolled out within 4 s \(0\/2 replicas running it\)/);
    });
    await waitFor("slow HEALTHY on version 1 alone", async () => {
      const d = await cluster.deployment("slow");
      return d?.status === "HEALTHY" && JSON.stringify(d.versions) === '{"1":2}';
    }, { timeoutMs: 30_000, describe: () => cluster.deployment("slow") });
    const h = await history("slow");
    assert.deepEqual(h.revisions.map((r) => [r.version, r.outcome]).slice(0, 2), [["1", "rolled out"], ["2", "failed"]]);
    assert.equal(h.revisions[2]?.rollbackOf, 1);
  });
});
