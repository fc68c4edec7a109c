/**
 * Makes docs/dashboard.png, the README's picture of the dashboard: a real
 * cluster (controller, router, two hosts) with an autoscaled deployment under
 * load and a versioned one with a few revisions and a rollback, shown by the
 * same chromium the browser tests use. Run it by hand after changing the page:
 *
 *   npm run build && node --import tsx test/tools/dashboard-screenshot.ts
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { rollbackDeployment } from "../../src/client/rollback.js";
import { waitForRollout } from "../../src/client/deployment-store.js";
import { launchBrowser } from "../helpers/browser.js";
import { loggedPort, TestCluster } from "../helpers/cluster.js";
import { startLoad } from "../helpers/load.js";
import { waitFor } from "../helpers/wait.js";

const OUT = fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));
const TOKEN = randomUUID();

const api = (version: string) => ({ name: "api", import: "versioned.ts", version, numReplicas: 3, actorOptions: { numCpus: 0.5, env: { BUILD: version } } });

const cluster = await TestCluster.start({ label: "screenshot", controllers: 0, hosts: [{ id: "host-a", cpus: 4 }, { id: "host-b", cpus: 4 }] });
const browser = await launchBrowser({ viewport: { width: 1100, height: 900 } });
try {
  const controller = cluster.spawn("controller-main", ["controller", "--id", "controller-1", "--admin-port", "0"], { FLOTILLA_ADMIN_TOKEN: TOKEN });
  const admin = `http://127.0.0.1:${await loggedPort(controller, "admin API listening")}`;
  await cluster.deploy([api("1.0.0")]);
  await cluster.deploy([api("1.1.0")]);
  await cluster.deploy([api("1.2.0")]);
  const back = await rollbackDeployment(cluster.redis, cluster.keys, "api", { to: 2 });
  await waitForRollout(cluster.redis, cluster.keys, [back], { timeoutMs: 30_000 });
  await cluster.deploy([
    {
      name: "echo",
      import: "echo.ts",
      version: "3",
      actorOptions: { numCpus: 0.25 },
      autoscalingConfig: { minReplicas: 1, maxReplicas: 4, targetNumOngoingRequestsPerReplica: 2, upscaleDelayS: 1, downscaleDelayS: 60 },
    },
  ]);

  const page = browser.page;
  await page.goto(`${admin}/`);
  await page.fill("#token", TOKEN);
  await page.click("#sign-in");
  await page.locator("[data-testid=deployment-api]").waitFor({ state: "visible" });
  const load = startLoad(cluster.url("/echo/hello"), { concurrency: 6, maxDurationMs: 60_000 });
  await waitFor("echo to scale out under load", async () => ((await cluster.deployment("echo"))?.replicas.length ?? 0) >= 2, { timeoutMs: 30_000 });
  // About half a minute of rates for the chart.
  await new Promise((r) => setTimeout(r, 25_000));
  await page.click("[data-testid=select-api]");
  await page.locator("[data-testid=history] [data-testid=revision-4]").waitFor({ state: "visible" });
  await page.screenshot({ path: OUT, fullPage: true });
  await load.stop();
  process.stdout.write(`wrote ${OUT}\n`);
} finally {
  await browser.close();
  await cluster.stop();
}
