/**
 * End to end through the CLI: `flotilla history` and `flotilla rollback`.
 * Three deploys make three revisions with their outcomes; a rollback under
 * load is a rolling update with zero failed requests, after which every answer
 * carries the earlier version; wrong names and revisions exit 1 with a clear
 * message; the admin API serves the same history and rolls back too.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { History } from "../../src/client/revisions.js";
import { httpRequest, loggedPort, TestCluster } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const CONCURRENCY = 8;
const TOKEN = `tok-${randomUUID()}`;
const tmp = mkdtempSync(path.join(os.tmpdir(), "flotilla-history-test-"));

function deployFile(name: string, version: string, importRef = "versioned.ts"): string {
  const file = path.join(tmp, `${name}-${version}.yaml`);
  writeFileSync(
    file,
    `deployments:
  - name: ${name}
    import: ${importRef}
    version: "${version}"
    numReplicas: 2
    actorOptions: { numCpus: 0.25, env: { BUILD: "${version}" } }
`,
  );
  return file;
}

describe("history and rollback", () => {
  let cluster: TestCluster;
  let admin: string;

  before(async () => {
    cluster = await TestCluster.start({ label: "history", controllers: 0, hosts: [{ cpus: 4 }] });
    const controller = cluster.spawn("controller-ch", ["controller", "--id", "ch", "--admin-port", "0"], { FLOTILLA_ADMIN_TOKEN: TOKEN });
    admin = `http://127.0.0.1:${await loggedPort(controller, "admin API listening")}`;
  });

  after(async () => {
    await cluster?.stop();
  });

  async function history(name: string): Promise<History> {
    const res = await cluster.cli(["history", name, "--json"]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as History;
  }

  it("three deploys make three revisions with their outcomes, listed as a table and as JSON", async () => {
    for (const [version, importRef, code] of [["1", "versioned.ts", 0], ["2", "versioned.ts", 0], ["3", "broken.ts#Broken", 1]] as const) {
      const res = await cluster.cli(["deploy", "--timeout", "60", deployFile("hist", version, importRef)]);
      assert.equal(res.code, code, `deploy ${version}: ${res.stdout} ${res.stderr}`);
    }
    const h = await history("hist");
    assert.equal(h.current, 3);
    assert.deepEqual(h.revisions.map((r) => [r.revision, r.version, r.outcome]), [
      [1, "1", "rolled out"],
      [2, "2", "rolled out"],
      [3, "3", "failed"],
    ]);
    assert.match(h.revisions[2]?.error ?? "", /model weights not found/);
    assert.deepEqual(h.revisions[0]?.source, { host: os.hostname(), user: os.userInfo().username });
    assert.equal(h.revisions[1]?.spec.import, "versioned.ts");

    const table = await cluster.cli(["history", "hist"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /REV.*APPLIED.*FROM.*VERSION.*OUTCOME.*SOURCE-REV/);
    assert.match(table.stdout, /3 \*.*failed: .*model weights not found/);
    assert.match(table.stdout, new RegExp(`${os.userInfo().username}@${os.hostname()}`));

    // The same through the admin API, with the token.
    const api = await httpRequest(`${admin}/api/deployments/hist/history`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(api.status, 200, api.body);
    assert.deepEqual((JSON.parse(api.body) as History).revisions.map((r) => r.outcome), ["rolled out", "rolled out", "failed"]);
  });

  it("refuses unknown deployments and revisions, and a rollback with nothing to return to, with exit 1", async () => {
    const noDeployment = await cluster.cli(["history", "nope"]);
    assert.equal(noDeployment.code, 1);
    assert.match(noDeployment.stderr, /NOT_FOUND: no deployment named 'nope'/);
    const noRollback = await cluster.cli(["rollback", "nope"]);
    assert.equal(noRollback.code, 1);
    assert.match(noRollback.stderr, /NOT_FOUND: no deployment named 'nope'/);
    const noRevision = await cluster.cli(["rollback", "hist", "--to", "99"]);
    assert.equal(noRevision.code, 1);
    assert.match(noRevision.stderr, /NOT_FOUND: deployment 'hist' has no revision 99 \(kept: 1-3\)/);
    const badRevision = await cluster.cli(["rollback", "hist", "--to", "two"]);
    assert.equal(badRevision.code, 1);
    assert.match(badRevision.stderr, /--to must be an integer/);

    const fresh = await cluster.cli(["deploy", "--no-wait", deployFile("fresh", "1")]);
    assert.equal(fresh.code, 0, fresh.stderr);
    const nothing = await cluster.cli(["rollback", "fresh"]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /NO_ROLLBACK_TARGET: .*nothing to roll back to/);
    const api = await httpRequest(`${admin}/api/deployments/fresh/rollback`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: "{}" });
    assert.equal(api.status, 409, api.body);
    const badBody = await httpRequest(`${admin}/api/deployments/hist/rollback`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: '{"to":"x"}' });
    assert.equal(badBody.status, 400, badBody.body);
    assert.match(JSON.parse(badBody.body).error.message, /to/);
    assert.equal((await history("hist")).current, 3, "nothing was applied");
  });

  it("rolls back under load as a rolling update: zero failed requests, then only the earlier version answers", async () => {
    for (const version of ["1", "2"]) {
      const res = await cluster.cli(["deploy", deployFile("svc", version)]);
      assert.equal(res.code, 0, res.stderr);
    }
    const load = startLoad(cluster.url("/svc"), { concurrency: CONCURRENCY });
    let stopped = false;
    try {
      await waitFor("answers from version 2", () => (load.result.versions.get("2") ?? 0) > 50, { timeoutMs: 20_000 });
      const res = await cluster.cli(["rollback", "svc"]);
      assert.equal(res.code, 0, `${res.stdout} ${res.stderr}`);
      const doneAt = load.result.versionSequence.length;
      assert.match(res.stdout, /^svc: rolling back from revision 2 to revision 1 as revision 3 \(generation 3, rolling update\)$/m);
      assert.match(res.stdout, /^svc: (UPDATING|HEALTHY) /m, "progress lines like deploy's");
      assert.match(res.stdout, /^svc: HEALTHY$/m);
      await waitFor("200 more answers", () => load.result.versionSequence.length > doneAt + CONCURRENCY + 200, { timeoutMs: 30_000 });
      stopped = true;
      const result = await load.stop();
      assert.equal(result.failures.length + result.errors.length, 0, describeLoad(result));
      // Requests in flight when the rollout finished may still be answered by a draining replica of version 2.
      const later = result.versionSequence.slice(doneAt + CONCURRENCY);
      assert.ok(later.length > 200);
      assert.deepEqual([...new Set(later)], ["1"], `every later answer carries version 1: ${describeLoad(result)}`);
      assert.ok((result.versions.get("2") ?? 0) > 0 && (result.versions.get("1") ?? 0) > 0);
    } finally {
      if (!stopped) await load.stop();
    }
    const h = await history("svc");
    assert.deepEqual(h.revisions.map((r) => [r.revision, r.version, r.outcome, r.rollbackOf ?? null]), [
      [1, "1", "rolled out", null],
      [2, "2", "rolled back", null],
      [3, "1", "rolled out", 1],
    ]);
    const table = await cluster.cli(["history", "svc"]);
    assert.match(table.stdout, /3 \*.*rolled out.*rollback of 1/);

    // Through the admin API: back to 2 by number; the answer names the revisions at once.
    const api = await httpRequest(`${admin}/api/deployments/svc/rollback`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ to: 2 }) });
    assert.equal(api.status, 200, api.body);
    assert.deepEqual((({ revision, rollbackOf, from }) => ({ revision, rollbackOf, from }))(JSON.parse(api.body)), { revision: 4, rollbackOf: 2, from: 3 });
    await waitFor("version 2 to serve alone", async () => {
      const d = await cluster.deployment("svc");
      return d?.status === "HEALTHY" && JSON.stringify(d.versions) === '{"2":2}';
    }, { timeoutMs: 30_000 });
    await waitFor("revision 4 rolled out", async () => (await history("svc")).revisions.at(-1)?.outcome === "rolled out", { timeoutMs: 10_000 });
  });
});
