/**
 * End to end: the admin API of a controller started with FLOTILLA_ADMIN_TOKEN.
 * Every route needs the bearer token (401 otherwise, and nothing happens);
 * invalid specs are refused whole with the field named; unknown routes are
 * 404; routers never expose admin operations; the token never reaches a log.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { httpRequest, PROCESS_START_MS, TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const TOKEN = `tok-${randomUUID()}`;
const WRONG = `tok-${randomUUID()}`;

interface Answer {
  status: number;
  body: string;
  json: unknown;
  headers: Headers;
}

interface ErrorBody {
  error: { code: string; message: string };
}

describe("admin API with a bearer token", () => {
  let cluster: TestCluster;
  let controller: ProcessHandle;
  let adminPort: number;

  before(async () => {
    cluster = await TestCluster.start({ label: "admin-api", controllers: 0, hosts: [{ cpus: 4 }] });
    controller = cluster.spawn("controller-cx", ["controller", "--id", "cx", "--admin-port", "0"], { FLOTILLA_ADMIN_TOKEN: TOKEN });
    adminPort = await waitFor(`controller cx's admin API to listen`, () => {
      for (const line of controller.logs) {
        if (line.includes('"admin API listening"')) return (JSON.parse(line) as { port: number }).port;
      }
      return undefined;
    }, { timeoutMs: PROCESS_START_MS });
  });

  after(async () => {
    await cluster?.stop();
  });

  async function admin(method: string, path: string, options: { auth?: string | null; body?: unknown } = {}): Promise<Answer> {
    const headers: Record<string, string> = {};
    const auth = options.auth === undefined ? `Bearer ${TOKEN}` : options.auth;
    if (auth !== null) headers.authorization = auth;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
      headers["content-type"] = "application/json";
    }
    const res = await httpRequest(`http://127.0.0.1:${adminPort}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    let json: unknown;
    try {
      json = JSON.parse(res.body);
    } catch {
      json = undefined;
    }
    return { ...res, json };
  }

  async function specNames(): Promise<string[]> {
    const res = await admin("GET", "/api/deployments");
    assert.equal(res.status, 200, res.body);
    return (res.json as { deployments: Array<{ name: string }> }).deployments.map((d) => d.name);
  }

  const echoSpec = (name: string) => ({ name, import: "echo.ts", version: "1", numReplicas: 1, actorOptions: { numCpus: 0.25 } });

  it("refuses every route without the token or with a wrong one (401, nothing done), and serves it with the token", async () => {
    // A deployment to read and delete.
    const put = await admin("PUT", "/api/deployments", { body: { deployments: [echoSpec("alpha")] } });
    assert.equal(put.status, 200, put.body);
    assert.deepEqual(await specNames(), ["alpha"]);

    const routes: Array<{ method: string; path: string; body?: unknown }> = [
      { method: "GET", path: "/api/status" },
      { method: "GET", path: "/api/deployments" },
      { method: "PUT", path: "/api/deployments", body: { deployments: [echoSpec("sneaky")] } },
      { method: "GET", path: "/api/deployments/alpha" },
      { method: "DELETE", path: "/api/deployments/alpha" },
    ];
    const badAuth: Array<string | null> = [
      null,
      `Bearer ${WRONG}`,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      "Bearer ",
      `bearer${TOKEN}`,
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString("base64")}`,
      TOKEN,
    ];
    for (const route of routes) {
      for (const auth of badAuth) {
        const res = await admin(route.method, route.path, { auth, ...(route.body !== undefined ? { body: route.body } : {}) });
        const what = `${route.method} ${route.path} with ${auth === null ? "no Authorization" : `Authorization '${auth.slice(0, 12)}…'`}`;
        assert.equal(res.status, 401, `${what}: ${res.body}`);
        assert.equal((res.json as ErrorBody).error.code, "UNAUTHORIZED", what);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/, what);
        assert.ok(!res.body.includes(TOKEN), `${what}: the answer does not echo the token`);
      }
    }
    // Nothing was applied or deleted by the refused calls.
    assert.deepEqual(await specNames(), ["alpha"]);

    // With the token, every route answers 200.
    const status = await admin("GET", "/api/status");
    assert.equal(status.status, 200, status.body);
    const report = status.json as { namespace: string; controllers: Array<{ id: string }>; deployments: Array<{ name: string }> };
    assert.equal(report.namespace, cluster.namespace);
    assert.deepEqual(report.controllers.map((c) => c.id), ["cx"]);
    assert.deepEqual(report.deployments.map((d) => d.name), ["alpha"]);

    const list = await admin("GET", "/api/deployments");
    assert.equal(list.status, 200, list.body);
    assert.equal((list.json as { deployments: Array<{ name: string; import: string }> }).deployments[0]?.import, "echo.ts");

    const put2 = await admin("PUT", "/api/deployments", { body: { deployments: [echoSpec("beta")] } });
    assert.equal(put2.status, 200, put2.body);
    assert.deepEqual(await specNames(), ["alpha", "beta"]);

    const one = await admin("GET", "/api/deployments/alpha");
    assert.equal(one.status, 200, one.body);
    assert.equal((one.json as { spec: { name: string } }).spec.name, "alpha");
    assert.ok("status" in (one.json as object));

    const del = await admin("DELETE", "/api/deployments/alpha");
    assert.equal(del.status, 200, del.body);
    assert.deepEqual(del.json, { deleted: "alpha" });
    await waitFor("alpha to be gone", async () => !(await specNames()).includes("alpha"), { timeoutMs: 15_000 });
    const gone = await admin("GET", "/api/deployments/alpha");
    assert.equal(gone.status, 404, gone.body);
    assert.equal((gone.json as ErrorBody).error.code, "NOT_FOUND");
    const delAgain = await admin("DELETE", "/api/deployments/nothing-here");
    assert.equal(delAgain.status, 404, delAgain.body);
  });

  it("refuses an invalid spec with 400 INVALID_SPEC naming the field, applying nothing of the request", async () => {
    const before = await specNames();
    const cases: Array<{ body: unknown; field: RegExp }> = [
      { body: { deployments: [echoSpec("gamma"), { ...echoSpec("delta"), numReplicas: -3 }] }, field: /deployments\[1\]\.numReplicas/ },
      { body: { deployments: [{ ...echoSpec("gamma"), bogusField: 1 }] }, field: /bogusField/ },
      { body: { deployments: [{ ...echoSpec("Not_A_DNS_Label") }] }, field: /deployments\[0\]\.name/ },
      { body: { deployments: [{ ...echoSpec("gamma"), import: "../outside.ts" }] }, field: /deployments\[0\]\.import/ },
      { body: { deployments: [{ ...echoSpec("gamma"), actorOptions: { numCpus: "lots" } }] }, field: /deployments\[0\]\.actorOptions\.numCpus/ },
      { body: "{ not json", field: /JSON/ },
    ];
    for (const c of cases) {
      const res = await admin("PUT", "/api/deployments", { body: c.body });
      assert.equal(res.status, 400, `${JSON.stringify(c.body)}: ${res.body}`);
      const err = (res.json as ErrorBody).error;
      assert.equal(err.code, "INVALID_SPEC", res.body);
      assert.match(err.message, c.field, res.body);
    }
    assert.deepEqual(await specNames(), before, "nothing applied");
    const status = await admin("GET", "/api/status");
    assert.ok(!(status.json as { deployments: Array<{ name: string }> }).deployments.some((d) => d.name === "gamma"));
  });

  it("answers 404 to unknown routes and methods", async () => {
    for (const [method, path] of [
      // GET / is the dashboard page (test/e2e/dashboard.test.ts).
      ["GET", "/index.htm"],
      ["GET", "/api"],
      ["GET", "/api/nope"],
      ["POST", "/api/status"],
      ["POST", "/api/deployments"],
      ["PATCH", "/api/deployments/beta"],
      ["GET", "/api/deployments/beta/extra"],
    ] as const) {
      const res = await admin(method, path);
      assert.equal(res.status, 404, `${method} ${path}: ${res.body}`);
      assert.equal((res.json as ErrorBody).error.code, "NOT_FOUND", `${method} ${path}`);
    }
  });

  it("routers never expose admin operations: /api/... is 404 unless a deployment routes it", async () => {
    for (const [method, path] of [
      ["GET", "/api/status"],
      ["GET", "/api/deployments"],
      ["PUT", "/api/deployments"],
      ["DELETE", "/api/deployments/beta"],
    ] as const) {
      const res = await httpRequest(cluster.url(path), {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        ...(method === "PUT" ? { body: JSON.stringify({ deployments: [echoSpec("via-router")] }) } : {}),
      });
      assert.equal(res.status, 404, `router ${method} ${path}: ${res.body}`);
      assert.equal(JSON.parse(res.body).error.code, "NOT_FOUND");
    }
    assert.ok((await specNames()).includes("beta"), "the router's DELETE did nothing");
    assert.ok(!(await specNames()).includes("via-router"), "the router's PUT did nothing");

    // A deployment may serve /api: then it is that deployment answering, not an admin operation.
    const put = await admin("PUT", "/api/deployments", { body: { deployments: [{ ...echoSpec("apiapp"), routePrefix: "/api" }] } });
    assert.equal(put.status, 200, put.body);
    const res = await waitFor(
      "the router to route /api to the apiapp deployment",
      async () => {
        const r = await httpRequest(cluster.url("/api/status"));
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    assert.ok(res.headers.get("x-flotilla-replica")?.startsWith("apiapp-"));
    const echoed = JSON.parse(res.body) as { path: string; subPath: string };
    assert.equal(echoed.path, "/api/status");
    assert.equal(echoed.subPath, "/status");
  });

  it("never logs the token or a bearer Authorization header", () => {
    assert.ok(controller.logs.length > 0);
    const all = controller.logs.join("\n");
    assert.ok(all.includes("admin API listening"));
    assert.ok(all.includes("deployments applied through the admin API"), "the admin writes were logged");
    assert.ok(!all.includes(TOKEN), "the token is in the controller's logs");
    assert.ok(!all.includes(WRONG), "a wrong token is in the controller's logs");
    assert.ok(!all.includes("Bearer"), `'Bearer' is in the controller's logs: ${controller.logs.filter((l) => l.includes("Bearer")).slice(0, 3).join("\n")}`);
    assert.equal(controller.child.exitCode, null);
  });
});
