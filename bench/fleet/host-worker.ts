/**
 * The simulated hosts of the fleet benchmark, in a worker thread of their own:
 * they stand in for other machines, so their work runs beside the controller's
 * rather than queued in front of it on one event loop. The parent asks for a
 * census of the replicas and, at the end, for the hosts to stop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { pino } from "pino";
import { HostAgent } from "../../src/host/host-agent.js";
import { parseHostOptions } from "../../src/host/host-options.js";
import { SimLauncher, type SimTiming } from "./sim-launcher.js";

export interface HostWorkerData {
  redisUrl: string;
  namespace: string;
  hostIds: string[];
  cpus: number;
  timing: SimTiming;
}

export type ToHostWorker = { type: "census"; id: number; versions: Array<[string, string]> } | { type: "stop" };
export type FromHostWorker =
  | { type: "started" }
  | { type: "census"; id: number; current: Array<[string, number]>; other: number }
  | { type: "stopped" }
  | { type: "error"; message: string };

async function main(data: HostWorkerData): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("host-worker.ts runs as a worker thread");
  const log = pino({ level: process.env.FLEET_LOG_LEVEL ?? "silent" });
  const launcher = new SimLauncher(data.timing);
  const hosts: HostAgent[] = [];
  for (let i = 0; i < data.hostIds.length; i += 50) {
    await Promise.all(
      data.hostIds.slice(i, i + 50).map(async (id) => {
        const options = parseHostOptions({ id, redisUrl: data.redisUrl, namespace: data.namespace, appDir: "/tmp", cpus: data.cpus, gpus: 0, prestart: 0 });
        const host = new HostAgent(options, log.child({ host: id }), Date.now, undefined, launcher);
        await host.start();
        hosts.push(host);
      }),
    );
  }
  port.on("message", (message: ToHostWorker) => {
    if (message.type === "census") {
      const { current, other } = launcher.census(new Map(message.versions));
      port.postMessage({ type: "census", id: message.id, current: [...current], other } satisfies FromHostWorker);
    } else {
      void (async () => {
        for (let i = 0; i < hosts.length; i += 100) await Promise.all(hosts.slice(i, i + 100).map((h) => h.stop("drain")));
        port.postMessage({ type: "stopped" } satisfies FromHostWorker);
      })();
    }
  });
  port.postMessage({ type: "started" } satisfies FromHostWorker);
}

main(workerData as HostWorkerData).catch((err: unknown) => {
  parentPort?.postMessage({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies FromHostWorker);
});
