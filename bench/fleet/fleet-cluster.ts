/**
 * A whole Flotilla cluster in this process: a leader controller and a
 * standby, a router, and N host agents whose replica processes are simulated
 * (sim-launcher.ts), the hosts in a worker thread (host-worker.ts).
 * Everything else is the real code, on a real Redis.
 */
import { Worker } from "node:worker_threads";
import { pino, type Logger } from "pino";
import { Controller, type LeaderTick } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { Router } from "../../src/router/router.js";
import type { FleetOptions } from "./fleet-options.js";
import type { FromHostWorker, HostWorkerData, ToHostWorker } from "./host-worker.js";
import { sleep, withDeadline } from "../wait.js";

export interface RecordedTick extends LeaderTick {
  controller: string;
  /** performance.now() at the tick's end. */
  at: number;
}

export interface Census {
  /** Replicas running their deployment's current code version, by deployment. */
  current: Map<string, number>;
  /** Replicas of other versions still alive. */
  other: number;
}

export class FleetCluster {
  readonly controllers = new Map<string, Controller>();
  readonly ticks: RecordedTick[] = [];
  router: Router | undefined;
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, (census: Census) => void>();
  private nextRequest = 0;
  private onStopped: (() => void) | undefined;
  private workerError: Error | undefined;
  private readonly log: Logger;

  constructor(
    private readonly options: FleetOptions,
    private readonly redisUrl: string,
    readonly namespace: string,
  ) {
    this.log = pino({ level: process.env.FLEET_LOG_LEVEL ?? "silent" });
  }

  /** Room for twice the average replicas per host: a rolling update surges. */
  get cpusPerHost(): number {
    return Math.max(2, Math.ceil((2 * this.options.deployments * this.options.replicas) / this.options.hosts));
  }

  async startHosts(): Promise<void> {
    const data: HostWorkerData = {
      redisUrl: this.redisUrl,
      namespace: this.namespace,
      hostIds: Array.from({ length: this.options.hosts }, (_, i) => `sim-${String(i).padStart(5, "0")}`),
      cpus: this.cpusPerHost,
      timing: { startMs: this.options.startMs, drainMs: this.options.drainMs },
    };
    // The worker loads TypeScript through tsx's hooks, registered in its own thread first.
    const boot = `import { register } from ${JSON.stringify(import.meta.resolve("tsx/esm/api"))}; register(); await import(${JSON.stringify(new URL("./host-worker.ts", import.meta.url).href)});`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData: data });
    this.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.on("error", (err) => {
        this.workerError = err;
        reject(err);
      });
      worker.on("message", (message: FromHostWorker) => {
        if (message.type === "started") resolve();
        else if (message.type === "census") this.waiting.get(message.id)?.({ current: new Map(message.current), other: message.other });
        else if (message.type === "stopped") this.onStopped?.();
        else {
          this.workerError = new Error(`the host worker failed: ${message.message}`);
          reject(this.workerError);
        }
      });
    });
  }

  /** What the simulated replicas run now, against each deployment's current code version. */
  census(versions: ReadonlyMap<string, string>): Promise<Census> {
    if (this.workerError) return Promise.reject(this.workerError);
    const id = this.nextRequest++;
    return new Promise((resolve) => {
      this.waiting.set(id, (census) => {
        this.waiting.delete(id);
        resolve(census);
      });
      this.worker?.postMessage({ type: "census", id, versions: [...versions] } satisfies ToHostWorker);
    });
  }

  async startController(id: string): Promise<Controller> {
    const options = parseControllerOptions({ id, redisUrl: this.redisUrl, namespace: this.namespace });
    const controller = new Controller(options, this.log.child({ controller: id }), (tick) => this.ticks.push({ ...tick, controller: id, at: performance.now() }));
    await controller.start();
    this.controllers.set(id, controller);
    return controller;
  }

  async startRouter(): Promise<void> {
    this.router = new Router({ redisUrl: this.redisUrl, namespace: this.namespace, port: 0, bind: "127.0.0.1", requestTimeoutS: 60, maxBodyBytes: 1 << 20 }, this.log.child({ router: true }));
    await this.router.start();
  }

  /** Waits until a controller (other than `except`) has run a successful leader tick after `since`; returns it. */
  async leaderTickAfter(since: number, timeoutMs: number, except?: string): Promise<RecordedTick | undefined> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const tick = this.ticks.find((t) => t.ok && t.at > since && t.controller !== except);
      if (tick) return tick;
      await sleep(20);
    }
    return undefined;
  }

  /** Stops everything, each part within a deadline (an overloaded cluster may not stop cleanly). */
  async stop(): Promise<void> {
    const attempt = async (what: string, p: Promise<unknown>, ms: number): Promise<void> => {
      await withDeadline(what, p, ms).catch((err: Error) => process.stderr.write(`fleet: ${err.message}\n`));
    };
    for (const [id, c] of this.controllers) await attempt(`stopping controller ${id}`, c.stop(), 15_000);
    if (this.router) await attempt("stopping the router", this.router.stop(), 15_000);
    const worker = this.worker;
    if (worker) {
      const stopped = new Promise<void>((resolve) => (this.onStopped = resolve));
      worker.postMessage({ type: "stop" } satisfies ToHostWorker);
      await attempt("stopping the hosts", stopped, 120_000);
      await worker.terminate();
    }
  }
}
