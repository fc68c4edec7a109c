/**
 * A whole Flotilla cluster in this process: a leader controller and a
 * standby, a router, and N host agents whose replica processes are simulated
 * (sim-launcher.ts). Everything else is the real code, on a real Redis.
 */
import os from "node:os";
import { pino, type Logger } from "pino";
import { Controller, type LeaderTick } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { HostAgent } from "../../src/host/host-agent.js";
import { parseHostOptions } from "../../src/host/host-options.js";
import { Router } from "../../src/router/router.js";
import { SimLauncher } from "./sim-launcher.js";
import type { FleetOptions } from "./fleet-options.js";
import { sleep, withDeadline } from "../wait.js";

export interface RecordedTick extends LeaderTick {
  controller: string;
  /** performance.now() at the tick's end. */
  at: number;
}

/** Runs `fn` over the items, at most `width` at a time. */
export async function inBatches<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(fn));
}

export class FleetCluster {
  readonly launcher: SimLauncher;
  readonly hosts: HostAgent[] = [];
  readonly controllers = new Map<string, Controller>();
  readonly ticks: RecordedTick[] = [];
  router: Router | undefined;
  private readonly log: Logger;

  constructor(
    private readonly options: FleetOptions,
    private readonly redisUrl: string,
    readonly namespace: string,
  ) {
    this.launcher = new SimLauncher({ startMs: options.startMs, drainMs: options.drainMs });
    this.log = pino({ level: process.env.FLEET_LOG_LEVEL ?? "silent" });
  }

  /** Room for twice the average replicas per host: a rolling update surges. */
  get cpusPerHost(): number {
    return Math.max(2, Math.ceil((2 * this.options.deployments * this.options.replicas) / this.options.hosts));
  }

  async startHosts(): Promise<void> {
    const ids = Array.from({ length: this.options.hosts }, (_, i) => `sim-${String(i).padStart(5, "0")}`);
    await inBatches(ids, 50, async (id) => {
      const options = parseHostOptions({ id, redisUrl: this.redisUrl, namespace: this.namespace, appDir: os.tmpdir(), cpus: this.cpusPerHost, gpus: 0, prestart: 0 });
      const host = new HostAgent(options, this.log.child({ host: id }), Date.now, this.launcher);
      await host.start();
      this.hosts.push(host);
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

  /** Waits until some controller has run a successful leader tick after `since`; returns it. */
  async leaderTickAfter(since: number, timeoutMs: number): Promise<RecordedTick | undefined> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const tick = this.ticks.find((t) => t.ok && t.at > since);
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
    await attempt("stopping the hosts", inBatches(this.hosts, 100, (h) => h.stop("drain")), 120_000);
  }
}
