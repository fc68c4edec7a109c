/**
 * The Prometheus views, without Redis: the controller's gauges from a status
 * report, the router's counters and their server, and README naming every metric.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, it } from "node:test";
import type { DeploymentView, StatusReport } from "../../src/client/cluster-status.js";
import { ClusterMetrics, clusterSamples } from "../../src/controller/cluster-metrics.js";
import { RouterMetrics } from "../../src/router/router-metrics.js";
import { samples } from "../helpers/prometheus.js";

function deploymentView(name: string, over: Partial<DeploymentView> = {}): DeploymentView {
  return {
    name,
    version: "1",
    codeVersion: "c1",
    status: "HEALTHY",
    message: "",
    targetReplicas: 2,
    routePrefix: `/${name}`,
    queue: { waiting: 0, active: 0 },
    versions: {},
    replicas: [],
    ...over,
  };
}

const replica = (id: string, state: DeploymentView["replicas"][number]["state"]) => ({ id, host: "h1", state, version: "1", codeVersion: "c1", pid: 1, inflight: 0 });

const REPORT: StatusReport = {
  namespace: "t",
  deployments: [
    deploymentView("echo", {
      replicas: [replica("e1", "running"), replica("e2", "running"), replica("e3", "draining")],
      queue: { waiting: 4, active: 2 },
      asyncCounts: { queued: 7, running: 6, succeeded: 4, failed: 1, cancelled: 1 },
    }),
    deploymentView("auto", {
      status: "UPDATING",
      targetReplicas: 3,
      replicas: [replica("a1", "starting"), replica("a2", "pending")],
      autoscaling: { demand: 2.5, desired: 3, actual: 0 },
    }),
  ],
  hosts: [
    { id: "h1", alive: true, draining: false, resources: { total: { CPU: 4, GPU: 0 }, free: { CPU: 3.5, GPU: 0 } }, replicas: [], emptyForS: null },
    { id: "h2", alive: false, draining: false, resources: { total: { CPU: 8, GPU: 1 }, free: { CPU: 8, GPU: 1 } }, replicas: [], emptyForS: null },
  ],
  controllers: [{ id: "c1", leader: true, alive: true }],
  routers: [
    { id: "r1", port: 8000, alive: true },
    { id: "r2", port: 8001, alive: false },
  ],
  pendingDemand: { CPU: 0.5, memoryGiB: 2 },
};

describe("controller metrics", () => {
  it("turns a status report into gauges, with zeros for every replica state and status", () => {
    const s = clusterSamples(REPORT, true);
    const value = (name: keyof typeof s, labels: Record<string, string>) => s[name].find((x) => JSON.stringify(x.labels) === JSON.stringify(labels))?.value;
    assert.equal(value("flotilla_deployment_replicas", { deployment: "echo", state: "running" }), 2);
    assert.equal(value("flotilla_deployment_replicas", { deployment: "echo", state: "draining" }), 1);
    assert.equal(value("flotilla_deployment_replicas", { deployment: "echo", state: "failed" }), 0);
    assert.equal(s.flotilla_deployment_replicas.length, 2 * 7);
    assert.deepEqual(
      s.flotilla_deployment_status.filter((x) => x.labels.deployment === "auto").map((x) => [x.labels.status, x.value]),
      [["HEALTHY", 0], ["UPDATING", 1], ["UNHEALTHY", 0], ["DELETING", 0]],
    );
    assert.deepEqual(s.flotilla_autoscaler_demand, [{ labels: { deployment: "auto" }, value: 2.5 }]);
    assert.deepEqual(s.flotilla_hosts, [{ labels: { alive: "true" }, value: 1 }, { labels: { alive: "false" }, value: 1 }]);
    assert.deepEqual(s.flotilla_host_resource_total.map((x) => x.labels.host), ["h1", "h1"], "a dead host's capacity is not listed");
    assert.equal(value("flotilla_host_resource_free", { host: "h1", resource: "CPU" }), 3.5);
    assert.deepEqual(s.flotilla_pending_demand.map((x) => [x.labels.resource, x.value]), [["CPU", 0.5], ["GPU", 0], ["memoryGiB", 2]]);
    assert.deepEqual(s.flotilla_routers.map((x) => x.value), [1, 1]);
    assert.deepEqual(s.flotilla_controller_leader, [{ labels: {}, value: 1 }]);
    assert.deepEqual(clusterSamples(REPORT, false).flotilla_controller_leader, [{ labels: {}, value: 0 }]);
  });

  it("renders Prometheus text, and a deployment gone from the report is gone from the next scrape", async () => {
    const metrics = new ClusterMetrics(false);
    assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
    const first = samples(await metrics.render(REPORT, true));
    assert.equal(first.get('flotilla_deployment_replicas{deployment="echo",state="running"}'), 2);
    assert.equal(first.get('flotilla_deployment_target_replicas{deployment="auto"}'), 3);
    assert.equal(first.get('flotilla_queue_waiting{deployment="echo"}'), 4);
    assert.equal(first.get('flotilla_deployment_status{deployment="echo",status="HEALTHY"}'), 1);
    assert.equal(first.get('flotilla_host_resource_total{host="h1",resource="CPU"}'), 4);
    assert.equal(first.get("flotilla_controller_leader"), 1);
    assert.equal(first.get('flotilla_async_requests_total{deployment="echo",status="queued"}'), 7);
    assert.equal(first.get('flotilla_async_requests_total{deployment="echo",status="succeeded"}'), 4);
    assert.equal(first.get('flotilla_async_requests_total{deployment="echo",status="cancelled"}'), 1);
    assert.equal(first.get('flotilla_async_requests_total{deployment="auto",status="failed"}'), 0, "zeros for a deployment without async requests");
    assert.equal(first.get('flotilla_async_requests_total{deployment="echo",status="running"}'), undefined, "running is not an outcome");

    const second = samples(await metrics.render({ ...REPORT, deployments: REPORT.deployments.slice(0, 1) }, false));
    assert.equal(second.get('flotilla_deployment_target_replicas{deployment="auto"}'), undefined);
    assert.ok(![...second.keys()].some((k) => k.includes('deployment="auto"')));
    assert.equal(second.get("flotilla_controller_leader"), 0);
  });

  it("includes Node's process metrics by default", async () => {
    const text = await new ClusterMetrics().render(REPORT, true);
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
  });
});

describe("router metrics", () => {
  const metrics = new RouterMetrics();
  after(() => metrics.close());

  it("counts each request once by deployment and code, times it, and tracks requests in flight", async () => {
    for (let i = 0; i < 5; i++) metrics.begin();
    assert.equal(samples(await metrics.registry.metrics()).get("flotilla_router_requests_in_flight"), 5);
    metrics.end("echo", 200, 0.002);
    metrics.end("echo", 200, 0.004);
    metrics.end("echo", 504, 60);
    metrics.end("none", 404, 0.0001);
    metrics.end("none", undefined, 0.0001); // the router's own /-/healthz: not counted
    const m = samples(await metrics.registry.metrics());
    assert.equal(m.get("flotilla_router_requests_in_flight"), 0);
    assert.equal(m.get('flotilla_router_requests_total{deployment="echo",code="200"}'), 2);
    assert.equal(m.get('flotilla_router_requests_total{deployment="echo",code="504"}'), 1);
    assert.equal(m.get('flotilla_router_requests_total{deployment="none",code="404"}'), 1);
    assert.equal(m.get('flotilla_router_request_duration_seconds_count{deployment="echo"}'), 3);
    assert.equal(m.get('flotilla_router_request_duration_seconds_bucket{le="0.0025",deployment="echo"}'), 1);
    assert.equal(m.get('flotilla_router_request_duration_seconds_bucket{le="60",deployment="echo"}'), 3);
    assert.equal(m.get('flotilla_router_request_duration_seconds_count{deployment="none"}'), 1);
  });

  it("serves GET /metrics on its own port, and 404 for anything else", async () => {
    const port = await metrics.listen(0, "127.0.0.1");
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /^flotilla_router_requests_total\{deployment="echo",code="200"\} 2$/m);
    assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" })).status, 404);
  });
});

describe("README", () => {
  it("names every flotilla_ metric", async () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const router = new RouterMetrics();
    const names = [...(await new ClusterMetrics(false).render(REPORT, true)).matchAll(/^# TYPE (flotilla_\w+)/gm), ...(await router.registry.metrics()).matchAll(/^# TYPE (flotilla_\w+)/gm)].map((m) => m[1]);
    assert.ok(names.length >= 15, names.join(" "));
    for (const name of names) assert.match(readme, new RegExp(`\`${name}[{\`]`), `README does not name ${name}`);
  });
});
