/**
 * Restarting a router, as a rolling restart behind a load balancer does:
 * SIGTERM stops it taking connections, the requests it already holds are
 * answered (on keep-alive connections too), it deregisters and exits 0, and
 * the other router serves on.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

/** GET over one keep-alive agent, so requests share connections as a proxy's would. */
function keepAliveGet(agent: http.Agent, url: string): Promise<{ status: number; body: string; connection: string | undefined; endedAt: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection, endedAt: performance.now() }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("router restart under load", () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ label: "router-drain", routers: 2, hosts: [{ cpus: 4 }] });
    await cluster.deploy([{ name: "slow", import: "slow.ts", numReplicas: 2, maxConcurrentQueries: 50, actorOptions: { numCpus: 0.5 } }]);
  });

  after(async () => {
    await cluster?.stop();
  });

  it("answers every request it holds when SIGTERMed, closing each connection after it, exits 0, and the other router serves on", async () => {
    const [port1] = cluster.routerPorts;
    assert.ok(port1);
    const router1 = cluster.processes.find((p) => p.name === "router-1");
    assert.ok(router1);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    try {
      // Ten pooled keep-alive connections, as a proxy keeps them; then a slow request on each.
      const warm = await Promise.all(Array.from({ length: 10 }, () => keepAliveGet(agent, cluster.url("/slow?ms=300"))));
      assert.deepEqual(warm.map((w) => `${w.status} ${w.connection}`), warm.map(() => "200 keep-alive"));
      // 5 s each: the replicas' in-flight counts reach the status up to a couple of seconds late on a busy machine.
      const inFlight = Array.from({ length: 10 }, () => keepAliveGet(agent, cluster.url("/slow?ms=5000")));
      await waitFor("the ten requests to run on the replicas", async () => {
        const d = await cluster.deployment("slow");
        return (d?.replicas.reduce((n, r) => n + r.inflight, 0) ?? 0) >= 10;
      }, { intervalMs: 20 });
      const killedAt = performance.now();
      const exited = cluster.kill(router1, "SIGTERM");
      const answers = await Promise.allSettled(inFlight);
      const early = answers.filter((a) => a.status === "fulfilled" && a.value.endedAt < killedAt + 100).length;
      assert.equal(early, 0, "every request was still running when the SIGTERM was sent");
      // Each is answered, and its connection closed after it: a client (or a proxy's pool) sends nothing more on it.
      assert.deepEqual(
        answers.map((a) => (a.status === "rejected" ? String(a.reason) : `${a.value.status} ${a.value.connection}`)),
        answers.map(() => "200 close"),
      );
      assert.deepEqual(await exited, { code: 0, signal: null });
      assert.equal(await connects(port1), false, "the stopped router takes no connections");
      const routers = await waitFor("router-1 to leave the status", async () => {
        const status = await cluster.status();
        return status.routers.length === 1 ? status.routers : undefined;
      }, { describe: async () => (await cluster.status()).routers });
      assert.notEqual(routers[0]?.port, port1);
      const res = await httpRequest(cluster.url("/slow?ms=1", 1));
      assert.equal(res.status, 200, res.body);
    } finally {
      agent.destroy();
    }
  });
});
