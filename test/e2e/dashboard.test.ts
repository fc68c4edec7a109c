/**
 * End to end in a real browser (Debian's chromium through playwright-core):
 * the dashboard a controller serves at `/`. It asks for the admin token and
 * refuses a wrong one, shows a deployment appear and its rollout progress
 * change without a reload, rolls back from the page, fits a phone's screen,
 * and says so when Redis is down. The token travels only as a bearer header.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Connection } from "../../src/api/connection.js";
import { getHandle } from "../../src/api/deployment.js";
import { launchBrowser, type TestBrowser } from "../helpers/browser.js";
import { httpRequest, loggedPort, TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { freePort, PrivateRedis } from "../helpers/private-redis.js";
import { waitFor } from "../helpers/wait.js";

const TOKEN = `tok-${randomUUID()}`;
const WRONG = `tok-${randomUUID()}`;

const web = (version: string, startDelayMs: number) => ({
  name: "web",
  import: "versioned.ts",
  version,
  numReplicas: 2,
  actorOptions: { numCpus: 0.25, env: { BUILD: version, START_DELAY_MS: String(startDelayMs) } },
});

describe("the dashboard", () => {
  let cluster: TestCluster;
  let controller: ProcessHandle;
  let admin: string;
  let browser: TestBrowser;

  before(async () => {
    cluster = await TestCluster.start({ label: "dashboard", controllers: 0, routers: 0, hosts: [{ cpus: 4 }] });
    controller = cluster.spawn("controller-cd", ["controller", "--id", "cd", "--admin-port", "0"], { FLOTILLA_ADMIN_TOKEN: TOKEN });
    admin = `http://127.0.0.1:${await loggedPort(controller, "admin API listening")}`;
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  const page = () => browser.page;
  const text = async (selector: string): Promise<string> => ((await page().locator(selector).first().textContent({ timeout: 1000 })) ?? "").trim();

  it("serves the page without the token but no data: every API route answers 401 without it", async () => {
    const res = await httpRequest(`${admin}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'.*connect-src 'self'/);
    assert.ok(!res.body.includes(cluster.namespace), "the page itself holds no cluster data");
    assert.ok(!/(src|href)="https?:/.test(res.body), "the page loads nothing from elsewhere");
    for (const [method, route] of [
      ["GET", "/api/status"],
      ["GET", "/api/traffic"],
      ["GET", "/api/deployments/web/history"],
      ["GET", "/api/deployments/web/logs"],
      ["POST", "/api/deployments/web/rollback"],
    ] as const) {
      for (const auth of [undefined, `Bearer ${WRONG}`]) {
        const answer = await httpRequest(`${admin}${route}`, { method, headers: auth ? { authorization: auth } : {} });
        assert.equal(answer.status, 401, `${method} ${route} with ${auth ? "a wrong token" : "no token"}: ${answer.body}`);
      }
    }
  });

  it("asks for the token, refuses a wrong one, and shows the cluster with the right one", async () => {
    await page().goto(`${admin}/`);
    await page().locator("#token").waitFor({ state: "visible", timeout: 5000 });
    assert.match(await text("[data-testid=login-error]"), /needs its admin token/);
    assert.equal(await page().locator("#app").isVisible(), false, "nothing is shown without the token");

    await page().fill("#token", WRONG);
    await page().click("#sign-in");
    await waitFor("the page to say the token was refused", async () => /refused that token/.test(await text("[data-testid=login-error]")), { timeoutMs: 5000 });
    assert.equal(await page().locator("#app").isVisible(), false);
    assert.equal(await page().evaluate(() => sessionStorage.length), 0, "a refused token is not kept");

    await page().fill("#token", TOKEN);
    await page().click("#sign-in");
    await page().locator("#app").waitFor({ state: "visible", timeout: 5000 });
    await waitFor("the namespace, the host and the controller to show", async () => {
      const body = await page().locator("body").innerText();
      return body.includes(cluster.namespace) && body.includes("h1") && /controller cd \(leader\)/.test(body);
    }, { timeoutMs: 10_000 });
    assert.equal(await page().locator("#login").isVisible(), false);
  });

  it("shows a deployment appear and its rollout progress change, without a reload", async () => {
    await page().evaluate(() => Object.assign(window, { sameDocument: true }));
    const applied = Date.now();
    await cluster.deploy([web("1", 1500)], { wait: false });
    const card = "[data-testid=deployment-web]";
    await page().locator(card).waitFor({ state: "visible", timeout: 10_000 });
    const appearedMs = Date.now() - applied;
    assert.ok(appearedMs < 3000, `the deployment appeared ${appearedMs} ms after it was applied`);

    const seen: string[] = [];
    await waitFor("the page to show web HEALTHY at 2/2", async () => {
      const line = `${await text(`${card} [data-testid=status]`)} ${await text(`${card} [data-testid=progress]`)}`;
      if (seen[seen.length - 1] !== line) seen.push(line);
      return line === "HEALTHY 2/2 on version 1";
    }, { timeoutMs: 30_000, intervalMs: 50, describe: () => seen });
    assert.ok(seen.some((l) => /^UPDATING [01]\/2 on version 1$/.test(l)), `the rollout was seen in progress: ${seen.join(" | ")}`);
    assert.ok(seen.length >= 2, `the progress changed on the page: ${seen.join(" | ")}`);
    assert.equal(await page().evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument), true, "the page was not reloaded");
    assert.match(await text(card), /running 2/);

    // The page reading the history settles the revision's outcome from the status: nobody waited on this deploy.
    await page().click("[data-testid=select-web]");
    await waitFor("revision 1 rolled out, on the page", async () => (await page().locator("[data-testid=history] [data-testid=revision-1] [data-testid=outcome]").count()) === 1 && (await text("[data-testid=history] [data-testid=revision-1] [data-testid=outcome]")) === "rolled out", { timeoutMs: 10_000 });
  });

  it("rolls back from the page: the revision list changes and the earlier version returns", async () => {
    await cluster.deploy([web("2", 0)]);
    const history = "[data-testid=history]";
    await waitFor("revisions 1 and 2 in the page's history", async () => (await page().locator(`${history} [data-testid=revision-2]`).count()) === 1 && (await page().locator(`${history} [data-testid=revision-1]`).count()) === 1, { timeoutMs: 10_000 });
    await waitFor("revision 2 rolled out, on the page", async () => (await text(`${history} [data-testid=revision-2] [data-testid=outcome]`)) === "rolled out", { timeoutMs: 5000 });
    assert.equal(await text(`${history} [data-testid=revision-1] [data-testid=outcome]`), "rolled out");
    // The tail of the deployment's logs, collected from its replicas on the host: a replica's own line, with its host and id.
    await waitFor("the logs panel to show a replica's line", async () => /\d\d:\d\d:\d\d h1 web-[0-9a-f]+ .*replica running/.test(await text("#logs")), { timeoutMs: 10_000, describe: () => text("#logs") });

    await page().click(`${history} [data-testid=rollback-1]`);
    await page().locator("[data-testid=confirm]").waitFor({ state: "visible", timeout: 5000 });
    await page().click("[data-testid=rollback-confirm]");
    await waitFor("the notice of the rollback", async () => /rolling back from revision 2 to revision 1 as revision 3/.test(await text("[data-testid=notice]")), { timeoutMs: 10_000 });
    await waitFor("revision 3 in the page's history, a rollback of 1, and 2 rolled back", async () => {
      if ((await page().locator(`${history} [data-testid=revision-3]`).count()) !== 1) return false;
      const row3 = await text(`${history} [data-testid=revision-3]`);
      const outcome2 = await text(`${history} [data-testid=revision-2] [data-testid=outcome]`);
      return /rollback of 1/.test(row3) && outcome2 === "rolled back";
    }, { timeoutMs: 10_000 });
    await waitFor("revision 3 to roll out, on the page", async () => (await text(`${history} [data-testid=revision-3] [data-testid=outcome]`)) === "rolled out", { timeoutMs: 30_000 });
    const d = await cluster.deployment("web");
    assert.equal(d?.version, "1");
    // Rolled out means version 1 serves at 2/2; version 2's replicas may still be draining then.
    await waitFor("version 2's replicas to be gone, two of version 1 left", async () => JSON.stringify((await cluster.deployment("web"))?.versions) === JSON.stringify({ "1": 2 }), {
      timeoutMs: 15_000,
      describe: async () => (await cluster.deployment("web"))?.versions,
    });
    await waitFor("the card to show version 1 again", async () => /^HEALTHY 2\/2 on version 1$/.test(`${await text("[data-testid=deployment-web] [data-testid=status]")} ${await text("[data-testid=deployment-web] [data-testid=progress]")}`), { timeoutMs: 5000 });
  });

  it("shows requests per second, every request counted even when requests share a batch job", async () => {
    await cluster.spawnRouter();
    await cluster.deploy([{ name: "fast", import: "echo.ts", numReplicas: 1, maxConcurrentQueries: 100, actorOptions: { numCpus: 0.25 } }]);
    // Requests through a router, and calls through a handle: both requesters count what they queue.
    const HTTP = 8;
    for (let i = 0; i < HTTP; i++) assert.equal((await httpRequest(cluster.url("/fast"))).status, 200);
    const conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
    const BURST = 512;
    const WARM = 8;
    try {
      const fast = getHandle("fast", conn);
      // One at a time first: the handle learns the handler is fast, so calls made together then share batch jobs.
      for (let i = 0; i < WARM; i++) await fast.call(i);
      const answers = await Promise.all(Array.from({ length: BURST }, (_, i) => fast.call<{ payload: number }>(i)));
      assert.deepEqual(answers.map((a) => a.payload), Array.from({ length: BURST }, (_, i) => i));
    } finally {
      await conn.close();
    }
    const sent = HTTP + WARM + BURST;
    const api = async <T>(route: string): Promise<T> => JSON.parse((await httpRequest(`${admin}${route}`, { headers: { authorization: `Bearer ${TOKEN}` } })).body) as T;
    type Traffic = { deployments: Record<string, number>; requests: Record<string, number>; requestsPerS: Record<string, number> };
    const traffic = await waitFor(`the counts of all ${sent} requests in Redis`, async () => {
      const t = await api<Traffic>("/api/traffic");
      return t.requests.fast === sent ? t : undefined;
    }, { timeoutMs: 10_000, describe: () => api("/api/traffic") });
    const jobs = traffic.deployments.fast ?? 0;
    console.log(`# ${sent} requests went in ${jobs} queue jobs`);
    assert.ok(jobs < BURST, `requests shared batch jobs (${jobs} jobs for ${sent} requests): a rate of jobs would under-count`);
    const status = await api<{ deployments: Array<{ name: string; requestsPerS?: number; requestsTotal?: number }> }>("/api/status");
    assert.equal(status.deployments.find((d) => d.name === "fast")?.requestsTotal, sent);

    // The rate averages over 5 s: while the burst is in that window it shows at least BURST / 5, more than every job made would.
    const seen: string[] = [];
    const rate = "[data-testid=deployment-fast] [data-testid=rate]";
    await waitFor("the page's requests/s to count every request of the burst", async () => {
      const label = await text(rate);
      if (seen[seen.length - 1] !== label) seen.push(label);
      const value = Number(/^requests\/s ([\d.]+)$/.exec(label)?.[1] ?? NaN);
      return value * 5 >= BURST;
    }, { timeoutMs: 15_000, intervalMs: 100, describe: () => seen });
    assert.ok(seen.every((label) => /^requests\/s (-|[\d.]+)$/.test(label)), seen.join(" | "));
    await waitFor("the rate to fall back to 0 once the requests stopped", async () => (await text(rate)) === "requests/s 0.0", { timeoutMs: 15_000, describe: () => text(rate) });
  });

  it("fits a phone-sized screen", async () => {
    await page().setViewportSize({ width: 375, height: 740 });
    await page().reload();
    await page().locator("[data-testid=deployment-web]").waitFor({ state: "visible", timeout: 10_000 });
    const overflow = await page().evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`);
    const box = await page().locator("[data-testid=deployment-web]").boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `the card fits the screen: ${JSON.stringify(box)}`);
    await page().setViewportSize({ width: 1280, height: 900 });
  });

  it("sent the token only as a bearer header: never in a URL, never in the controller's logs, no script errors", () => {
    assert.ok(browser.requests.length > 10, "the page polled the API");
    for (const url of browser.requests) assert.ok(!url.includes(TOKEN) && !url.includes(WRONG), `a URL holds the token: ${url}`);
    const logs = controller.logs.join("\n");
    assert.ok(logs.includes("deployment rolled back through the admin API"));
    assert.ok(!logs.includes(TOKEN) && !logs.includes(WRONG), "a token is in the controller's logs");
    // Chromium reports every non-2xx answer: the wrong token's 401s are expected.
    const errors = browser.errors.filter((e) => !/^Failed to load resource: the server responded with a status of 401\b/.test(e));
    assert.deepEqual(errors, []);
  });
});

describe("the dashboard when Redis is down", () => {
  let redis: PrivateRedis;
  let dir: string;
  let cluster: TestCluster;
  let browser: TestBrowser;
  let admin: string;
  let redisDown = false;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "flotilla-dashboard-redis-"));
    redis = new PrivateRedis(await freePort(), dir);
    await redis.start();
    cluster = await TestCluster.start({ label: "dashboard-down", redisUrl: redis.url, routers: 0, hosts: [] });
    admin = `http://127.0.0.1:${await loggedPort(cluster.processes[0] as ProcessHandle, "admin API listening")}`;
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    if (redisDown) await redis.start().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    await redis?.stop().catch(() => redis.kill());
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("shows a banner saying Redis does not answer, and clears it when Redis returns", async () => {
    const page = browser.page;
    await page.goto(`${admin}/`);
    await page.locator("#app").waitFor({ state: "visible", timeout: 10_000 });
    assert.equal(await page.locator("[data-testid=banner]").isVisible(), false);
    redisDown = true;
    await redis.stop();
    await waitFor("the banner", async () => /Redis does not answer/.test((await page.locator("[data-testid=banner]").textContent()) ?? ""), { timeoutMs: 10_000 });
    const api = await httpRequest(`${admin}/api/status`, { signal: AbortSignal.timeout(5000) });
    assert.equal(api.status, 503, api.body);
    assert.equal(JSON.parse(api.body).error.code, "REDIS_UNAVAILABLE");
    await redis.start();
    redisDown = false;
    await waitFor("the banner to go", async () => !(await page.locator("[data-testid=banner]").isVisible()), { timeoutMs: 20_000 });
  });
});
