/**
 * A host reads only what is its own, and only when it changed: its
 * assignments and the records of the deployments it runs, on a change of its
 * generation (the leader bumps it in the write that changes the host's
 * assignments). Commands are watched with MONITOR, per client connection.
 * Replica processes are simulated (the fleet benchmark's launcher).
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { Redis } from "ioredis";
import { pino } from "pino";
import { SimLauncher } from "../../bench/fleet/sim-launcher.js";
import { applyDeployments } from "../../src/client/deployment-store.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { hostAssignmentOps } from "../../src/controller/host-assignment-ops.js";
import { LeaderLease } from "../../src/controller/leader-lease.js";
import { noDecisions } from "../../src/controller/reconcile-types.js";
import { HostAgent } from "../../src/host/host-agent.js";
import { parseHostOptions } from "../../src/host/host-options.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentRecord, ReplicaAssignment } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { Monitor, type MonitoredCommand } from "../helpers/monitor.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

const log = pino({ level: "silent" });

/** Host ids of this suite alone: connections are told apart by name, and other suites running beside it name their hosts h1, h2... */
const RUN = Math.random().toString(36).slice(2, 8);
const [H1, H2, H3] = [1, 2, 3].map((i) => `reads-${RUN}-h${i}`) as [string, string, string];

/** Commands Redis runs for the connections named `flotilla-host-<id>` (not the subscriber), by host. */
class CommandLog {
  private monitor: Monitor | undefined;
  private readonly addrs = new Map<string, string>();

  async start(redis: Redis, hostIds: readonly string[]): Promise<void> {
    const list = (await redis.client("LIST")) as string;
    for (const line of list.split("\n")) {
      const name = /\bname=(\S+)/.exec(line)?.[1];
      const addr = /\baddr=(\S+)/.exec(line)?.[1];
      const host = hostIds.find((id) => name === `flotilla-host-${id}`);
      if (host && addr) this.addrs.set(addr, host);
    }
    assert.equal(this.addrs.size, hostIds.length, "one command connection per host");
    this.monitor = await Monitor.start(REDIS_URL, (c) => this.addrs.has(c.source));
  }

  /** Waits until MONITOR has shown every command the server ran before now. */
  caughtUp(via: Redis): Promise<void> {
    return this.monitor?.caughtUp(via) ?? Promise.resolve();
  }

  since(host: string, at: number): MonitoredCommand[] {
    return (this.monitor?.commands ?? []).filter((c) => this.addrs.get(c.source) === host && c.at >= at);
  }

  stop(): void {
    this.monitor?.stop();
  }
}

function startHost(namespace: string, id: string, launcher: SimLauncher, cpus: number): Promise<HostAgent> {
  const host = new HostAgent(parseHostOptions({ id, redisUrl: REDIS_URL, namespace, appDir: "/tmp", cpus, gpus: 0, prestart: 0 }), log, Date.now, undefined, launcher);
  return host.start().then(() => host);
}

describe("a host reads its own", () => {
  const namespace = testNamespace("hostreads");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const launcher = new SimLauncher({ startMs: 20, drainMs: 20 });
  const commands = new CommandLog();
  const hosts: HostAgent[] = [];
  let controller: Controller | undefined;
  after(async () => {
    commands.stop();
    await controller?.stop();
    for (const h of hosts) await h.stop("drain");
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("sees a new assignment within a second of the leader's write, without reading other hosts' assignments", async () => {
    for (const id of [H1, H2, H3]) hosts.push(await startHost(namespace, id, launcher, 2));
    controller = new Controller(parseControllerOptions({ id: "ctl", redisUrl: REDIS_URL, namespace, tickMs: 100, leaseTtlMs: 1000 }), log);
    await controller.start();
    await waitFor("the controller to lead", () => controller?.isLeader);
    await commands.start(redis, [H1, H2, H3]);
    const leaderMonitor = await Monitor.start(REDIS_URL, (c) => c.args[0]?.toLowerCase().startsWith("eval") === true && c.args.some((a) => a.includes(keys.hostAssignments(H1))));
    try {
      const deployedAt = Date.now();
      await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "app", import: "app.js", numReplicas: 6, actorOptions: { numCpus: 1 } })]);
      const onH1 = await waitFor("two replicas running on h1", () => {
        const mine = [...launcher.live].filter((c) => c.config?.hostId === H1 && c.state === "running");
        return mine.length === 2 ? mine : undefined;
      });
      await leaderMonitor.caughtUp(redis);
      await commands.caughtUp(redis);
      const written = leaderMonitor.commands[0];
      assert.ok(written, "the leader wrote h1's assignments in a fenced script");
      const firstSpawn = Math.min(...onH1.map((c) => c.spawnedAt));
      assert.ok(firstSpawn - written.at < 1000, `h1 started its replica ${Math.round(firstSpawn - written.at)} ms after the leader's write`);

      for (const [host, others] of [[H1, [H2, H3]], [H2, [H1, H3]], [H3, [H1, H2]]] as const) {
        const seen = commands.since(host, deployedAt);
        const read = (c: MonitoredCommand): boolean => c.args[0]?.toLowerCase() === "hgetall" && c.args[1] === keys.hostAssignments(host);
        assert.ok(seen.some(read), `${host} read its own assignments`);
        for (const c of seen) {
          const text = c.args.join(" ");
          for (const other of others) assert.ok(!text.includes(keys.hostAssignments(other)), `${host} touched ${other}'s assignments: ${text.slice(0, 200)}`);
          assert.ok(!c.args.includes(keys.replicas), `${host} read the whole replicas hash: ${text.slice(0, 200)}`);
          assert.ok(!(c.args[0]?.toLowerCase() === "hgetall" && c.args[1] === keys.deployments), `${host} read every deployment record`);
        }
      }
    } finally {
      leaderMonitor.stop();
    }
  });

  it("in steady state sends its heartbeat and the generation check, and nothing else", async () => {
    await waitFor("every replica running", () => [...launcher.live].filter((c) => c.state === "running").length === 6);
    // Statuses settle: the last ones written after running are not steady-state traffic.
    await new Promise((r) => setTimeout(r, 1500));
    const from = Date.now();
    await waitFor("3 s of steady state", () => Date.now() - from >= 3000, { timeoutMs: 5000 });
    await commands.caughtUp(redis);
    for (const host of [H1, H2, H3]) {
      const seen = commands.since(host, from).filter((c) => c.at <= from + 3000);
      const names = [...new Set(seen.map((c) => c.args[0]?.toLowerCase()))].sort();
      assert.deepEqual(names, ["hget", "hmget", "hset", "set"], `${host} sent ${JSON.stringify(seen.map((c) => c.args.slice(0, 2)))}`);
      assert.ok(seen.length <= 4 * 4, `${host}: ${seen.length} commands in 3 s`);
      const hmget = seen.find((c) => c.args[0]?.toLowerCase() === "hmget");
      assert.deepEqual(hmget?.args.slice(1), [keys.deploymentGenerations, "app"], "it checks the stamps of the records it runs, no others");
    }
  });
});

describe("a missed change message", () => {
  const namespace = testNamespace("hostmiss");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const launcher = new SimLauncher({ startMs: 20, drainMs: 20 });
  let host: HostAgent | undefined;
  after(async () => {
    await host?.stop("drain");
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("is caught by the generation check at the next heartbeat; an unchanged generation reads nothing", async () => {
    host = await startHost(namespace, "solo", launcher, 4);
    await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "app", import: "app.js", numReplicas: 1 })]);
    const record = JSON.parse((await redis.hget(keys.deployments, "app")) as string) as DeploymentRecord;
    const assignment = (id: string): ReplicaAssignment => ({ id, deployment: "app", codeVersion: record.codeVersion, version: record.codeVersion, host: "solo", desired: "run", resources: { CPU: 1 }, gpuIds: [], createdAt: Date.now() });
    const lease = new LeaderLease(redis, keys.leaderLease, "test-leader", 30_000);
    assert.equal(await lease.tryAcquire(), true);

    // Written the leader's way, generation bumped, but no message sent.
    const { ops } = hostAssignmentOps({ ...noDecisions(), upsert: [assignment("app-missed")] }, new Map(), keys);
    const writtenAt = Date.now();
    assert.equal(await lease.fencedApply(ops), true);
    await waitFor("the host to start the replica whose message it missed", () => [...launcher.live].some((c) => c.config?.replicaId === "app-missed"), { timeoutMs: 3000 });
    const lag = Math.min(...[...launcher.live].map((c) => c.spawnedAt)) - writtenAt;
    assert.ok(lag < 2000, `started ${lag} ms after the write: within one heartbeat`);

    // Written without a generation bump: the host has no reason to read, and does not.
    await redis.hset(keys.hostAssignments("solo"), "app-unannounced", JSON.stringify(assignment("app-unannounced")));
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(![...launcher.live].some((c) => c.config?.replicaId === "app-unannounced"), "the host read its assignments with an unchanged generation");
    await redis.hincrby(keys.hostGenerations, "solo", 1);
    await waitFor("the host to read after the generation moved", () => [...launcher.live].some((c) => c.config?.replicaId === "app-unannounced"), { timeoutMs: 3000 });
    await lease.release();
  });
});
