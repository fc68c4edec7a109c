/** A replica of a fixture app handler (echo by default), run in the test's own process (its effects and state machine). */
import { ReplicaRunner } from "../../src/actors/replica-runner.js";
import { createLogger } from "../../src/shared/logger.js";
import { FIXTURE_APP } from "./cluster.js";
import { REDIS_URL } from "./redis.js";
import { waitFor } from "./wait.js";

export function echoReplica(
  namespace: string,
  replicaId: string,
  handler: { deployment: string; importRef: string } = { deployment: "echo", importRef: "echo.ts" },
  /** How many requests it runs at once (the spec's maxConcurrentQueries). */
  maxConcurrentQueries = 100,
): ReplicaRunner {
  return new ReplicaRunner(
    {
      replicaId,
      deployment: handler.deployment,
      hostId: "h",
      namespace,
      redisUrl: REDIS_URL,
      appDir: FIXTURE_APP,
      importRef: handler.importRef,
      codeVersion: "c1",
      version: "1",
      configVersion: null,
      userConfig: undefined,
      maxConcurrentQueries,
      gracefulShutdownTimeoutS: 5,
      maxRetries: 3,
      healthCheckPeriodS: 10,
      healthCheckTimeoutS: 30,
      healthCheckFailureThreshold: 3,
    },
    createLogger("test-replica"),
  );
}

/** Starts the replica and waits until it takes jobs. */
export async function startReplica(runner: ReplicaRunner, what = "the replica"): Promise<void> {
  runner.actor.start();
  await waitFor(`${what} to run`, () => runner.report().state === "running");
}

/** Drains the replica, waits until it stopped, and closes its connections. */
export async function stopReplica(runner: ReplicaRunner, what = "the replica"): Promise<void> {
  runner.actor.send({ type: "DRAIN" });
  await waitFor(`${what} to stop`, () => runner.report().state === "stopped");
  await runner.closeConnections();
}
