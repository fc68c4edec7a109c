/**
 * An echo replica in a process of its own, for request-redis-cost.ts
 * `--replica-process`: started with REDIS_URL and FLOTILLA_NAMESPACE set, it
 * says "running" to its parent once it takes jobs, and drains and exits when
 * the parent sends anything (or on SIGTERM).
 */
import { echoReplica } from "../helpers/echo-replica.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";
const replica = echoReplica(process.env.FLOTILLA_NAMESPACE ?? "cost", "r1", { deployment: "echo", importRef: "echo.ts" });
replica.actor.start();
await waitFor("the replica to run", () => replica.report().state === "running");
process.send?.("running");

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  replica.actor.send({ type: "DRAIN" });
  await waitFor("the replica to stop", () => replica.report().state === "stopped");
  await replica.closeConnections();
  process.exit(0);
}
process.on("message", () => void stop());
process.on("SIGTERM", () => void stop());
process.on("disconnect", () => void stop());
