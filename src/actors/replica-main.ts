/**
 * Entry point of a replica process (spawned by a host with an IPC channel).
 * Reports every state change to the host; the host sends `reconfigure` and
 * `drain`. SIGTERM/SIGINT or losing the host also drain.
 */
import { errorMessage } from "../errors.js";
import { createLogger } from "../shared/logger.js";
import { readReplicaConfig } from "./replica-config.js";
import { ReplicaRunner } from "./replica-runner.js";
import type { HostToReplica, ReplicaToHost } from "./replica-ipc.js";

const config = readReplicaConfig();
const log = createLogger("replica", { deployment: config.deployment, replica: config.replicaId });

if (/\.m?ts$/.test(config.importRef.split("#")[0] ?? "")) {
  const { register } = await import("tsx/esm/api");
  register();
}

const runner = new ReplicaRunner(config, log);

function send(message: ReplicaToHost): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

let lastState = "";
let exiting = false;
runner.actor.subscribe((snapshot) => {
  const report = runner.report();
  const key = `${report.state}|${report.configVersion}|${report.error}`;
  if (key !== lastState) {
    lastState = key;
    void send({ type: "state", ...report });
  }
  if (snapshot.status === "done" && !exiting) {
    exiting = true;
    void finish(report.state === "failed" ? 1 : 0, snapshot.context.forced);
  }
});

async function finish(code: number, forced: boolean): Promise<void> {
  if (forced) {
    log.warn({ inflight: runner.inflightCount }, "graceful shutdown timeout: stopping with requests in flight (they will be retried elsewhere)");
    await runner.forceStop();
  } else if (code !== 0) {
    await runner.forceStop();
  }
  await runner.closeConnections();
  log.info({ code }, code === 0 ? "replica stopped" : "replica failed");
  await send({ type: "exit", code });
  process.exit(code);
}

let lastInflight = -1;
setInterval(() => {
  const inflight = runner.inflightCount;
  if (inflight !== lastInflight) {
    lastInflight = inflight;
    void send({ type: "stats", inflight });
  }
}, 500).unref();

process.on("message", (message: HostToReplica) => {
  if (message.type === "reconfigure") {
    runner.actor.send({ type: "RECONFIGURE", userConfig: message.userConfig, configVersion: message.configVersion });
  } else if (message.type === "settings") {
    runner.applySettings(message.settings);
  } else if (message.type === "drain") {
    runner.actor.send({ type: "DRAIN" });
  }
});

const drain = (): void => {
  runner.actor.send({ type: "DRAIN" });
};
process.on("SIGTERM", drain);
process.on("SIGINT", drain);
process.on("disconnect", drain);
process.on("unhandledRejection", (reason) => {
  log.error({ err: errorMessage(reason) }, "unhandled promise rejection in handler code");
});

runner.actor.start();
