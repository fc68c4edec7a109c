/**
 * Entry point of a replica process (spawned by a host with an IPC channel).
 * Reports every state change to the host; the host sends `reconfigure` and
 * `drain`. SIGTERM/SIGINT or losing the host also drain.
 *
 * A prestarted process (FLOTILLA_REPLICA_PRESTART set, no config) loads the
 * runtime, says so, and waits for an `assign` message carrying the config and
 * the environment of the replica it becomes: a host keeps one ready so that a
 * new replica skips Node's start-up and module loading. It readies ahead too
 * the TypeScript loader (ts-loader.ts) of the kind of handler its host ran
 * last, so that a .ts handler does not wait for tsx to load.
 */
import { errorMessage } from "../errors.js";
import { createLogger } from "../shared/logger.js";
import { HANDLER_LOADERS } from "./module-scope.js";
import { readReplicaConfig, REPLICA_CONFIG_ENV, REPLICA_PRESTART_ENV, type ReplicaConfig } from "./replica-config.js";
import { ReplicaRunner } from "./replica-runner.js";
import { answerPings, HealthChecks } from "./health-checks.js";
import { prepareTypeScript, releaseTypeScriptCompiler } from "./ts-loader.js";
import type { HostToReplica, ReplicaToHost } from "./replica-ipc.js";

function waitForAssignment(): Promise<ReplicaConfig> {
  return new Promise((resolve) => {
    const stop = (): never => process.exit(0);
    process.once("disconnect", stop);
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    const onMessage = (message: HostToReplica): void => {
      if (message.type !== "assign") return;
      process.off("message", onMessage);
      process.off("disconnect", stop);
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      // The replica's environment replaces the host's, before any handler code loads.
      for (const name of Object.keys(process.env)) if (!(name in message.env)) delete process.env[name];
      Object.assign(process.env, message.env);
      resolve(message.config);
    };
    process.on("message", onMessage);
    process.send?.({ type: "prestarted" } satisfies ReplicaToHost);
  });
}

const prestartMode = process.env[REPLICA_CONFIG_ENV] ? undefined : process.env[REPLICA_PRESTART_ENV];
if (prestartMode) await prepareTypeScript(HANDLER_LOADERS.find((l) => l === prestartMode) ?? "js");
const config = prestartMode ? await waitForAssignment() : readReplicaConfig();
const log = createLogger("replica", { deployment: config.deployment, replica: config.replicaId });

const runner = new ReplicaRunner(config, log, prepareTypeScript);

function send(message: ReplicaToHost): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

const health = new HealthChecks(config, (result) => void send({ type: "health", ...result }));
runner.readiness = (handler) => health.first(handler);
answerPings(send);

let lastState = "";
let exiting = false;
let compilerReleased = false;
runner.actor.subscribe((snapshot) => {
  const report = runner.report();
  if (report.state === "running" && !compilerReleased) {
    compilerReleased = true;
    releaseTypeScriptCompiler();
  }
  const key = `${report.state}|${report.configVersion}|${report.error}`;
  if (key !== lastState) {
    lastState = key;
    void send({ type: "state", ...report });
  }
  if (report.state !== "starting" && report.state !== "running" && report.state !== "reconfiguring") health.stop();
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
    health.applySettings(message.settings);
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
