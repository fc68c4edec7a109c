/**
 * End to end: Prometheus metrics. A router started with --metrics-port counts
 * every answered request once by deployment and status; a controller's admin
 * API serves the cluster as gauges, behind the same bearer token as the rest.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { httpRequest, loggedPort, TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";
import { samples } from "../helpers/prometheus.js";

const TOKEN = `tok-${randomUUID()}`;
const OK_REQUESTS = 20;
const UNKNOWN_REQUESTS = 3;

describe("Prometheus metrics", () => {
  let cluster: TestCluster;
  let router: ProcessHandle;
  let routerMetricsPort: number;
  let controller: ProcessHandle;
  let adminPort: number;

  before(async () => {
    cluster = await TestCluster.start({ label: "metrics", controllers: 0, routers: 0, hosts: [{ cpus: 1 }] });
    controller = cluster.spawn("controller-cx", ["controller", "--id", "cx", "--admin-port", "0"], { FLOTILLA_ADMIN_TOKEN: TOKEN });
    await cluster.spawnRouter(["--metrics-port", "0"]);
    router = cluster.processes.find((p) => p.name === "router-1") as ProcessHandle;
    [routerMetricsPort, adminPort] = await Promise.all([loggedPort(router, "metrics listening"), loggedPort(controller, "admin API listening")]);
    await cluster.deploy([{ name: "echo", import: "echo.ts", numReplicas: 2, actorOptions: { numCpus: 0.1 } }]);
  });

  after(async () => {
    await cluster?.stop();
  });

  async function scrape(port: number, token: string | null = TOKEN): Promise<{ status: number; body: string; headers: Headers }> {
    return httpRequest(`http://127.0.0.1:${port}/metrics`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } });
  }

  it("the router counts each request once by deployment and status, with its duration, and nothing left in flight", async () => {
    assert.notEqual(routerMetricsPort, cluster.routerPorts[0], "metrics are not on the serving port");
    const answers = await Promise.all([
      ...Array.from({ length: OK_REQUESTS }, (_, i) => httpRequest(cluster.url(`/echo/item/${i}`), { method: "POST", body: JSON.stringify({ i }) })),
      ...Array.from({ length: UNKNOWN_REQUESTS }, (_, i) => httpRequest(cluster.url(`/no-such-route-${i}`))),
    ]);
    assert.deepEqual(
      answers.map((a) => a.status),
      [...Array<number>(OK_REQUESTS).fill(200), ...Array<number>(UNKNOWN_REQUESTS).fill(404)],
    );
    // The router's own endpoint is not a request to count.
    assert.equal((await httpRequest(cluster.url("/-/healthz"))).status, 200);
    // The serving port has no /metrics of its own: it is just an unmatched path (and counted as one).
    assert.equal((await httpRequest(cluster.url("/metrics"))).status, 404);

    const res = await scrape(routerMetricsPort, null);
    assert.equal(res.status, 200, res.body);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const m = samples(res.body);
    const counted = [...m].filter(([k]) => k.startsWith("flotilla_router_requests_total{"));
    assert.deepEqual(Object.fromEntries(counted), {
      'flotilla_router_requests_total{deployment="echo",code="200"}': OK_REQUESTS,
      'flotilla_router_requests_total{deployment="none",code="404"}': UNKNOWN_REQUESTS + 1,
    });
    assert.equal(m.get('flotilla_router_request_duration_seconds_count{deployment="echo"}'), OK_REQUESTS);
    assert.equal(m.get('flotilla_router_request_duration_seconds_bucket{le="+Inf",deployment="echo"}'), OK_REQUESTS);
    assert.equal(m.get('flotilla_router_request_duration_seconds_count{deployment="none"}'), UNKNOWN_REQUESTS + 1);
    const seconds = m.get('flotilla_router_request_duration_seconds_sum{deployment="echo"}') ?? 0;
    assert.ok(seconds > 0 && seconds < OK_REQUESTS * 30, `duration sum ${seconds}`);
    assert.equal(m.get("flotilla_router_requests_in_flight"), 0);
    assert.ok(m.has("process_resident_memory_bytes"), "process metrics");
  });

  it("the router takes a lone request's answer over its reply socket, counts answers by the way they came, and counts requests handed to replicas directly", async () => {
    const answers = async (): Promise<{ socket: number; list: number }> => {
      const m = samples((await scrape(routerMetricsPort, null)).body);
      return { socket: m.get('flotilla_router_answers_total{via="socket"}') ?? -1, list: m.get('flotilla_router_answers_total{via="list"}') ?? -1 };
    };
    const before = await answers();
    assert.ok(before.socket >= 0 && before.list >= 0, `both ways are counted (${JSON.stringify(before)})`);
    assert.ok(before.socket + before.list >= OK_REQUESTS, `every answer so far came one way or the other (${JSON.stringify(before)})`);
    // One request at a time: a replica connects to the router on its first answer to it, and answers over the socket from then on.
    let n = 0;
    await waitFor(
      "an answer over the router's reply socket",
      async () => {
        assert.equal((await httpRequest(cluster.url(`/echo/lone/${n++}`), { method: "POST", body: "{}" })).status, 200);
        return (await answers()).socket > before.socket;
      },
      { describe: answers },
    );
    // Two replicas: each connects on its own first answer, which may still come from the list; then all five go over sockets.
    let round = 0;
    await waitFor(
      "five lone requests in a row answered over the socket",
      async () => {
        const start = await answers();
        for (let i = 0; i < 5; i++) assert.equal((await httpRequest(cluster.url(`/echo/again/${round}/${i}`), { method: "POST", body: "{}" })).status, 200);
        round++;
        const end = await answers();
        return end.socket - start.socket === 5 && end.list === start.list;
      },
      { describe: answers },
    );
    // Connected and fast, the replicas offer the router slots: lone requests are then handed to them directly.
    const handedOver = async (): Promise<number> => samples((await scrape(routerMetricsPort, null)).body).get("flotilla_router_requests_handed_over_total") ?? -1;
    const handedBefore = await handedOver();
    assert.ok(handedBefore >= 0, "requests handed over are counted");
    await waitFor(
      "a lone request handed to a replica directly",
      async () => {
        assert.equal((await httpRequest(cluster.url(`/echo/handed/${n++}`), { method: "POST", body: "{}" })).status, 200);
        return (await handedOver()) > handedBefore;
      },
      { describe: handedOver },
    );
  });

  it("the controller's /metrics shows the cluster as gauges", async () => {
    const m = await waitFor(
      "the controller's metrics to show echo HEALTHY with 2 running replicas",
      async () => {
        const res = await scrape(adminPort);
        assert.equal(res.status, 200, res.body);
        assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
        const s = samples(res.body);
        return s.get('flotilla_deployment_status{deployment="echo",status="HEALTHY"}') === 1 && s.get('flotilla_deployment_replicas{deployment="echo",state="running"}') === 2 ? s : undefined;
      },
      { timeoutMs: 15_000, describe: async () => (await scrape(adminPort)).body.split("\n").filter((l) => l.startsWith("flotilla_")) },
    );
    assert.equal(m.get('flotilla_deployment_target_replicas{deployment="echo"}'), 2);
    assert.equal(m.get('flotilla_deployment_replicas{deployment="echo",state="pending"}'), 0);
    assert.equal(m.get('flotilla_deployment_status{deployment="echo",status="UPDATING"}'), 0);
    assert.equal(m.get('flotilla_queue_waiting{deployment="echo"}'), 0);
    assert.equal(m.get('flotilla_hosts{alive="true"}'), 1);
    assert.equal(m.get('flotilla_hosts{alive="false"}'), 0);
    assert.equal(m.get('flotilla_host_resource_total{host="h1",resource="CPU"}'), 1);
    assert.equal(m.get('flotilla_host_resource_free{host="h1",resource="CPU"}'), 0.8);
    assert.equal(m.get('flotilla_pending_demand{resource="CPU"}'), 0);
    assert.equal(m.get('flotilla_routers{alive="true"}'), 1);
    assert.equal(m.get("flotilla_controller_leader"), 1);
    assert.ok(m.has("process_cpu_user_seconds_total"), "process metrics");
  });

  it("a standby controller serves the same cluster gauges with leader 0", async () => {
    const standby = cluster.spawnController();
    const port = await loggedPort(standby, "admin API listening");
    const m = await waitFor(
      "the standby to see both controllers",
      async () => {
        const s = samples((await scrape(port, null)).body);
        return s.get('flotilla_controllers{alive="true"}') === 2 ? s : undefined;
      },
      { timeoutMs: 15_000 },
    );
    assert.equal(m.get('flotilla_deployment_replicas{deployment="echo",state="running"}'), 2);
    assert.equal(m.get('flotilla_deployment_status{deployment="echo",status="HEALTHY"}'), 1);
    assert.equal(m.get("flotilla_controller_leader"), 0);
    const leader = samples((await scrape(adminPort)).body);
    assert.equal(leader.get("flotilla_controller_leader"), 1, "the first controller still leads");
  });

  it("with FLOTILLA_ADMIN_TOKEN set, /metrics without the token (or with a wrong one) is 401", async () => {
    for (const token of [null, `tok-${randomUUID()}`]) {
      const res = await scrape(adminPort, token);
      assert.equal(res.status, 401, res.body);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, "UNAUTHORIZED");
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.ok(!res.body.includes("flotilla_"), "no metrics leak");
    }
    assert.equal((await httpRequest(`http://127.0.0.1:${adminPort}/metrics`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  });
});
