/**
 * An echo replica in a process of its own, for request-redis-cost.ts
 * `--replica-process` and tests that kill a replica: started with REDIS_URL
 * and FLOTILLA_NAMESPACE set (FLOTILLA_DEPLOYMENT and FLOTILLA_IMPORT_REF
 * pick another fixture handler), it sends its parent `{ running: true,
 * workerId }` once it takes jobs, and drains and exits when the parent sends
 * anything (or on SIGTERM).
 */
import { echoReplica } from "../helpers/echo-replica.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";
const replica = echoReplica(process.env.FLOTILLA_NAMESPACE ?? "cost", "r1", {
  deployment: process.env.FLOTILLA_DEPLOYMENT ?? "echo",
  importRef: process.env.FLOTILLA_IMPORT_REF ?? "echo.ts",
});
replica.actor.start();
await waitFor("the replica to run", () => replica.report().state === "running");
process.send?.({ running: true, workerId: replica.report().workerId });

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
