/**
 * Flotilla on a Redis Cluster: three private cluster nodes that the test
 * starts on free ports, the cluster URL `redis+cluster://host:port,...`, and
 * the usual serving, scaling and crash paths on top.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort, redisAnswers } from "../../src/cli/private-redis.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

describe("on a Redis Cluster", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "flotilla-rc-"));
  const servers: ChildProcess[] = [];
  let ports: number[] = [];
  let cluster: TestCluster;

  before(async () => {
    ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      // The bus port is given explicitly: Redis's default, port + 10000, is past 65535 for a third of the ephemeral range.
      const busPort = await freePort();
      servers.push(
        spawn("redis-server", ["--port", String(port), "--cluster-port", String(busPort), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", `nodes-${port}.conf`, "--dir", dir, "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "ignore"] }),
      );
    }
    const output = servers.map((server) => {
      const lines: string[] = [];
      server.stdout?.on("data", (chunk: Buffer) => lines.push(...chunk.toString("utf8").split("\n").filter(Boolean).slice(-20)));
      return lines;
    });
    for (const [i, port] of ports.entries()) {
      await waitFor(`cluster node ${port} to answer`, () => {
        if (servers[i]!.exitCode !== null) throw new Error(`redis-server on ${port} exited: ${output[i]!.slice(-3).join(" | ")}`);
        return redisAnswers(`redis://127.0.0.1:${port}`, 300);
      });
    }
    execFileSync("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"], { stdio: "ignore", timeout: 20_000 });
    // Every node, not just the first: a client's ready check asks any of them, and one that has not heard of all slots yet says fail.
    await waitFor("every cluster node to say cluster_state:ok", () =>
      ports.every((port) => execFileSync("redis-cli", ["-p", String(port), "cluster", "info"], { encoding: "utf8" }).includes("cluster_state:ok")),
    );
    cluster = await TestCluster.start({ label: "rcluster", redisUrl: `redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`, hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop();
    for (const server of servers) server.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  /** A failure here says what the processes logged: a cluster's faults show in their logs first. */
  async function withLogs(body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      if (err instanceof Error) err.message += `\n${cluster.logTail()}`;
      throw err;
    }
  }

  it("serves several deployments whose queues spread over the cluster's nodes", () => withLogs(async () => {
    const names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    await cluster.deploy(names.map((name) => ({ name, import: "echo.ts", actorOptions: { numCpus: 0.1 } })));
    for (const name of names) {
      const res = await httpRequest(cluster.url(`/${name}`), { method: "POST", body: JSON.stringify({ name }) });
      assert.equal(res.status, 200, res.body);
      assert.deepEqual(JSON.parse(res.body).body, { name });
    }
    const nodesWithQueues = ports.filter((port) => Number(execFileSync("redis-cli", ["-p", String(port), "dbsize"], { encoding: "utf8" }).trim()) > 0);
    assert.ok(nodesWithQueues.length >= 2, `keys on ${nodesWithQueues.length} of 3 nodes`);
  }));

  it("scales, and answers a request whose replica is killed mid-request", () => withLogs(async () => {
    await cluster.deploy([{ name: "slow", import: "slow.ts", numReplicas: 3, actorOptions: { numCpus: 0.1 } }]);
    await cluster.waitForReplicas("slow", 3);
    // 5 s: the replicas' in-flight counts reach the status up to a couple of seconds late on a busy machine.
    const sent = performance.now();
    const pending = httpRequest(cluster.url("/slow?ms=5000"));
    const busy = await waitFor("the request to run on a replica", async () => (await cluster.deployment("slow"))?.replicas.find((r) => r.inflight > 0), { intervalMs: 20 });
    assert.ok(busy.pid);
    process.kill(busy.pid, "SIGKILL");
    const killedAfter = performance.now() - sent;
    assert.ok(killedAfter < 4500, `the replica was killed while the request still ran (${Math.round(killedAfter)} ms after it was sent)`);
    const res = await pending;
    assert.equal(res.status, 200, res.body);
    assert.notEqual(JSON.parse(res.body).pid, busy.pid);
    await cluster.waitForReplicas("slow", 3);
  }));
});
