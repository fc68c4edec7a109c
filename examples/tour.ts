/**
 * A tour of the programmatic API against a running cluster (start one with
 * `npx flotilla up --app-dir examples` in another terminal), then:
 *
 *   npx tsx examples/tour.ts
 *
 * It scales a deployment out and back, and changes a model's threshold in
 * place with userConfig, as Ray Serve's "Managing Deployments" guide does.
 */
import { deployment, disconnect } from "flotilla";

async function get(path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${process.env.PORT ?? 8000}${path}`);
  return res.text();
}

// Scaling out: one replica, then ten, then one again. Each deploy() waits until HEALTHY.
const echo = deployment({ name: "echo", import: "echo.ts", numReplicas: 1, actorOptions: { numCpus: 0.1 } });
await echo.deploy();
console.log("1 replica:", await get("/echo"));
await echo.options({ numReplicas: 10 }).deploy();
console.log("scaled to 10 replicas");
await echo.options({ numReplicas: 1 }).deploy();
console.log("back to 1 replica");

// User configuration: reconfigure() runs in the same processes; no restart.
const threshold = deployment({ name: "threshold", import: "threshold.ts#Threshold", version: "1", actorOptions: { numCpus: 0.1 } });
await threshold.options({ userConfig: { threshold: 0.01 } }).deploy();
console.log("threshold 0.01:", await get("/threshold"), "(true, probably)");
await threshold.options({ userConfig: { threshold: 0.99 } }).deploy();
console.log("threshold 0.99:", await get("/threshold"), "(false, probably)");

// Queue messages: the same deployment through its handle, no HTTP involved.
console.log("handle call:", await echo.handle().call({ hello: "queue" }));

await disconnect();
