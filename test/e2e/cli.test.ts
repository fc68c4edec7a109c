/**
 * End to end through the CLI as a user types it: `deploy FILE`, `status`,
 * `delete`, bad specs, the seed's Threshold example, and `up` + Ctrl-C.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { CLI, httpRequest, TestCluster } from "../helpers/cluster.js";
import { cleanupNamespace, REDIS_URL, testNamespace } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "flotilla-cli-test-"));
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  return p;
}

function thresholdFile(threshold: number): string {
  return file(
    `threshold-${threshold}.yaml`,
    `deployments:
  - name: threshold
    import: threshold.ts#Threshold
    version: "1"
    routePrefix: /threshold
    numReplicas: 2
    userConfig: { threshold: ${threshold} }
    actorOptions: { numCpus: 0.25 }
`,
  );
}

async function fractionTrue(cluster: TestCluster, n: number): Promise<number> {
  let trues = 0;
  for (let i = 0; i < n; i++) {
    const res = await httpRequest(cluster.url("/threshold"));
    assert.equal(res.status, 200, res.body);
    if (JSON.parse(res.body) === true) trues++;
  }
  return trues / n;
}

describe("the flotilla CLI", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "cli", hosts: [{ cpus: 2 }] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("deploys the seed's Threshold example and reconfigures it in place with a new userConfig", async () => {
    const first = await cluster.cli(["deploy", thresholdFile(0.01)]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /threshold: created/);
    assert.match(first.stdout, /HEALTHY/);
    assert.ok((await fractionTrue(cluster, 40)) >= 0.85, "threshold 0.01 answers mostly true");
    const pidsBefore = (await cluster.deployment("threshold"))?.replicas.map((r) => r.pid).sort();

    const second = await cluster.cli(["deploy", thresholdFile(0.99)]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /threshold: updated/);
    await waitFor("every replica to run the new config", async () => (await fractionTrue(cluster, 10)) === 0, { timeoutMs: 10_000 });
    assert.ok((await fractionTrue(cluster, 40)) <= 0.15, "threshold 0.99 answers mostly false");
    const pidsAfter = (await cluster.deployment("threshold"))?.replicas.map((r) => r.pid).sort();
    assert.deepEqual(pidsAfter, pidsBefore, "the same processes serve the new config");

    const again = await cluster.cli(["deploy", thresholdFile(0.99)]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /threshold: unchanged/);
  });

  it("rejects a bad spec with the file, the field and the value, and applies nothing", async () => {
    const bad = file(
      "bad.yaml",
      `deployments:
  - name: fine
    import: echo.ts
  - name: broken
    import: echo.ts
    numReplicas: -3
`,
    );
    const res = await cluster.cli(["deploy", bad]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /INVALID_SPEC/);
    assert.match(res.stderr, /deployments\[1\]\.numReplicas/);
    assert.match(res.stderr, /-3/);
    assert.equal(await cluster.deployment("fine"), undefined, "an invalid file applies nothing");

    const unknown = await cluster.cli(["deploy", file("unknown.yaml", "deployments:\n  - name: x\n    import: echo.ts\n    replicas: 2\n")]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /deployments\[0\]\.replicas: unknown field 'replicas'/);

    const escape = await cluster.cli(["deploy", file("escape.yaml", "deployments:\n  - name: x\n    import: ../../etc/passwd.js\n")]);
    assert.equal(escape.code, 1);
    assert.match(escape.stderr, /deployments\[0\]\.import: '\.\.' is not allowed/);

    const notYaml = await cluster.cli(["deploy", file("broken.yaml", "deployments: [\n")]);
    assert.equal(notYaml.code, 1);
    assert.match(notYaml.stderr, /not valid YAML/);
  });

  it("shows a readable status table and deletes a deployment", async () => {
    const table = await cluster.cli(["status"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /DEPLOYMENT/);
    assert.match(table.stdout, /threshold/);
    assert.match(table.stdout, /h1/);
    assert.match(table.stdout, /\(leader\)/);

    const del = await cluster.cli(["delete", "threshold"]);
    assert.equal(del.code, 0, del.stderr);
    await waitFor("threshold's route to go", async () => (await httpRequest(cluster.url("/threshold"))).status === 404);
    const missing = await cluster.cli(["delete", "threshold"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no deployment named 'threshold'/);
  });

  it("`up` runs a whole cluster in one command and Ctrl-C drains it and exits 0", async () => {
    const namespace = testNamespace("up");
    const config = file(
      "up.yaml",
      "deployments:\n  - name: echo\n    import: echo.ts\n    numReplicas: 2\n    actorOptions: { numCpus: 0.25 }\n",
    );
    const child = spawn(process.execPath, [CLI, "--redis", REDIS_URL, "--namespace", namespace, "--app-dir", cluster.appDir, "up", "--port", "0", "--admin-port", "0", "--metrics-port", "0", "--config", config], {
      env: { ...process.env, FLOTILLA_LOG_PRETTY: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      const url = await waitFor("up to print its URL", () => /flotilla is up: (http:\/\/\S+)/.exec(stdout)?.[1], { timeoutMs: 15_000 });
      await waitFor("the deploy file to roll out", () => /echo: HEALTHY/.test(stdout), { timeoutMs: 30_000 });
      const res = await httpRequest(`${url}/echo`, { method: "POST", body: "{}" });
      assert.equal(res.status, 200);
      const replicaPid = JSON.parse(res.body).pid as number;
      const metricsUrl = /router metrics (http:\/\/\S+\/metrics)/.exec(stdout)?.[1];
      assert.ok(metricsUrl, stdout);
      assert.match((await httpRequest(metricsUrl)).body, /^flotilla_router_requests_total\{deployment="echo",code="200"\} 1$/m);
      child.kill("SIGINT");
      const code = await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error("up did not exit within 30 s of SIGINT")), 30_000).unref())]);
      assert.equal(code, 0);
      assert.throws(() => process.kill(replicaPid, 0), "the replica processes are gone too");
      // A clean stop of the whole cluster is not a host failure: nothing is rescheduled, nothing warned.
      const warnings = stderr.split("\n").filter((l) => /"level":(4|5|6)0/.test(l));
      assert.deepEqual(warnings, [], "no warning or error while stopping");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await cleanupNamespace(namespace);
    }
  });
});
