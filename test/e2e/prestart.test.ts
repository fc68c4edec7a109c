/**
 * End to end, prestarted replica processes: a host keeps `--prestart <n>`
 * (default 1) replica processes started ahead of need. The first replica of a
 * deployment becomes the prestarted process (same pid) with the replica's own
 * environment, the host tops the pool up again afterwards, a deployment that
 * sets a variable Node reads only at start-up (NODE_OPTIONS) gets a fresh
 * process, `--prestart 0` prestarts nothing, and a prestarted process does not
 * outlive a host killed with SIGKILL.
 *
 * The handler is a probe written to a temporary app directory by this file:
 * the env fixture answers only a few fixed variables, and these tests must see
 * that FLOTILLA_REPLICA_PRESTART is gone and what NODE_OPTIONS did.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { httpRequest, PROCESS_START_MS, TestCluster, type ProcessHandle } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

/** What probe.ts answers. */
interface ProbeAnswer {
  pid: number;
  env: Record<string, string | null>;
  envNames: string[];
  heapLimitMiB: number;
}

const PROBE_VARS = ["CUSTOM", "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "REDIS_URL", "FLOTILLA_NAMESPACE", "HOST_ONLY", "NODE_OPTIONS", "FLOTILLA_REPLICA_PRESTART"];

const PROBE_SOURCE = `import v8 from "node:v8";
/** Answers the replica process's environment as the handler sees it. */
export default function probe() {
  const env: Record<string, string | null> = {};
  for (const name of ${JSON.stringify(PROBE_VARS)}) env[name] = process.env[name] ?? null;
  return { pid: process.pid, env, envNames: Object.keys(process.env), heapLimitMiB: v8.getHeapStatistics().heap_size_limit / 2 ** 20 };
}
`;

interface LogEntry {
  index: number;
  msg: string;
  pid?: number;
  replica?: string;
  deployment?: string;
  prestarted?: boolean;
}

/** The host's JSON log lines with this message, in order (replica output on the same stream is skipped). */
function entries(handle: ProcessHandle, msg: string): LogEntry[] {
  const out: LogEntry[] = [];
  handle.logs.forEach((line, index) => {
    if (!line.includes(`"msg":"${msg}"`)) return;
    try {
      const { replicaPid, ...parsed } = JSON.parse(line) as Omit<LogEntry, "index" | "pid"> & { replicaPid?: number };
      // `pid` is the host's own; the replica process's is `replicaPid`.
      if (parsed.msg === msg) out.push({ ...parsed, pid: replicaPid, index } as LogEntry);
    } catch {
      // a line interleaved with a replica's output
    }
  });
  return out;
}

const prestartedLines = (handle: ProcessHandle): LogEntry[] => entries(handle, "replica process prestarted");
const startedLines = (handle: ProcessHandle): LogEntry[] => entries(handle, "replica process started");

/**
 * Whether `pid` is a live process. An orphan that exited may stay a zombie
 * here (PID 1 does not always reap), which `kill(pid, 0)` still finds: a
 * zombie counts as gone.
 */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Whether `pid` is (still) a replica process: guards the clean-up against a reused pid. */
function isReplicaProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("replica-main");
  } catch {
    return false;
  }
}

/** The "replica process started" line of the deployment's replica on this host. */
function startedLine(handle: ProcessHandle, deployment: string): Promise<LogEntry> {
  return waitFor(`${handle.name} to log "replica process started" for ${deployment}`, () => startedLines(handle).find((e) => e.deployment === deployment), {
    timeoutMs: 15_000,
    describe: () => startedLines(handle),
  });
}

describe("prestarted replica processes", () => {
  let cluster: TestCluster;
  let appDir: string;
  let warm: ProcessHandle;
  const saved = { OMP_NUM_THREADS: process.env.OMP_NUM_THREADS, CUSTOM: process.env.CUSTOM, NODE_OPTIONS: process.env.NODE_OPTIONS };

  /** Asks the probe of `route` until the router answers 200. */
  async function ask(route: string): Promise<ProbeAnswer> {
    return waitFor(
      `${route} to answer 200`,
      async () => {
        const res = await httpRequest(cluster.url(route));
        return res.status === 200 ? (JSON.parse(res.body) as ProbeAnswer) : undefined;
      },
      { timeoutMs: 10_000 },
    );
  }

  before(async () => {
    // Hosts inherit this process's environment: make the defaults observable.
    delete process.env.OMP_NUM_THREADS;
    delete process.env.CUSTOM;
    delete process.env.NODE_OPTIONS;
    appDir = await mkdtemp(path.join(os.tmpdir(), "flotilla-prestart-"));
    await writeFile(path.join(appDir, "package.json"), JSON.stringify({ type: "module" }));
    await writeFile(path.join(appDir, "probe.ts"), PROBE_SOURCE);
    cluster = await TestCluster.start({
      label: "prestart",
      appDir,
      hosts: [{ id: "warm", cpus: 2, resources: { warm: 10 }, env: { HOST_ONLY: "from-host" } }],
    });
    const handle = cluster.processes.find((p) => p.name === "host-warm");
    assert.ok(handle);
    warm = handle;
  });

  after(async () => {
    // Prestarted processes the cluster's hosts started: gone with their hosts, unless a test failed first.
    const spares = cluster ? cluster.processes.filter((p) => p.name.startsWith("host-")).flatMap((h) => prestartedLines(h).map((e) => e.pid)) : [];
    await cluster?.stop();
    for (const pid of spares) {
      if (pid !== undefined && isRunning(pid) && isReplicaProcess(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    if (appDir) await rm(appDir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  });

  it("starts a deployment's first replica in the prestarted process (same pid) with the replica's environment, then prestarts a new one", async () => {
    // The host registered only once its prestarted process was ready: the line was logged before.
    const initial = await waitFor(`${warm.name} to log "replica process prestarted"`, () => (prestartedLines(warm).length > 0 ? prestartedLines(warm) : undefined), {
      timeoutMs: 5000,
      describe: () => warm.logs.slice(-5),
    });
    assert.equal(initial.length, 1, `one process prestarted before the first replica: ${JSON.stringify(initial)}`);
    const sparePid = initial[0]!.pid;
    assert.ok(typeof sparePid === "number" && sparePid > 0, `prestarted pid ${sparePid}`);
    assert.ok(isRunning(sparePid), `prestarted process ${sparePid} is alive`);

    await cluster.deploy([{ name: "first", import: "probe.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { warm: 1 }, env: { CUSTOM: "from-spec" } } }]);
    const started = await startedLine(warm, "first");
    assert.equal(started.prestarted, true, JSON.stringify(started));
    assert.equal(started.pid, sparePid, "the replica is the prestarted process");
    const d = await cluster.waitForReplicas("first", 1);
    assert.equal(d.replicas[0]?.pid, sparePid, "status shows the prestarted pid");
    assert.equal(d.replicas[0]?.id, started.replica);

    const answer = await ask("/first");
    assert.equal(answer.pid, sparePid, "the prestarted process answers");
    assert.equal(answer.env.CUSTOM, "from-spec", "actorOptions.env reaches the handler");
    assert.equal(answer.env.OMP_NUM_THREADS, "1");
    assert.equal(answer.env.CUDA_VISIBLE_DEVICES, "");
    assert.equal(answer.env.REDIS_URL, cluster.redisUrl);
    assert.equal(answer.env.FLOTILLA_NAMESPACE, cluster.namespace);
    assert.equal(answer.env.HOST_ONLY, "from-host", "the host's environment reaches the handler");
    assert.equal(answer.env.FLOTILLA_REPLICA_PRESTART, null);
    assert.ok(!answer.envNames.includes("FLOTILLA_REPLICA_PRESTART"), `handler env names: ${answer.envNames.join(",")}`);

    // The pool is topped up once the replica is no longer starting.
    const refill = await waitFor("a new process to be prestarted", () => prestartedLines(warm).find((e) => e.pid !== sparePid), {
      timeoutMs: 15_000,
      describe: () => prestartedLines(warm),
    });
    assert.ok(typeof refill.pid === "number" && refill.pid > 0);
    assert.ok(refill.index > started.index, "prestarted after the replica started");
    assert.ok(isRunning(refill.pid), `the new prestarted process ${refill.pid} is alive`);
    assert.equal(prestartedLines(warm).length, 2, JSON.stringify(prestartedLines(warm)));
  });

  it("gives a deployment whose actorOptions.env sets NODE_OPTIONS a fresh process, where NODE_OPTIONS takes effect, and leaves the prestarted one unused", async () => {
    const unused = (): LogEntry[] => prestartedLines(warm).filter((e) => e.pid !== undefined && isRunning(e.pid) && !startedLines(warm).some((s) => s.pid === e.pid));
    const spares = await waitFor("an unused prestarted process in the pool", () => (unused().length > 0 ? unused() : undefined), {
      timeoutMs: 15_000,
      describe: () => ({ prestarted: prestartedLines(warm), started: startedLines(warm) }),
    });
    assert.equal(spares.length, 1, `exactly one unused prestarted process: ${JSON.stringify(spares)}`);
    const sparePid = spares[0]!.pid!;
    const prestartedBefore = prestartedLines(warm).length;

    await cluster.deploy([
      { name: "nodeopts", import: "probe.ts", version: "1", actorOptions: { numCpus: 0.1, resources: { warm: 1 }, env: { NODE_OPTIONS: "--max-old-space-size=123" } } },
    ]);
    const started = await startedLine(warm, "nodeopts");
    assert.equal(started.prestarted, false, JSON.stringify(started));
    assert.notEqual(started.pid, sparePid);
    assert.ok(!prestartedLines(warm).some((e) => e.pid === started.pid), "the replica's pid was never a prestarted one");

    const answer = await ask("/nodeopts");
    assert.equal(answer.pid, started.pid);
    assert.equal(answer.env.NODE_OPTIONS, "--max-old-space-size=123");
    assert.equal(answer.env.FLOTILLA_REPLICA_PRESTART, null);
    // --max-old-space-size=123 plus the young generation (--max-semi-space-size=1).
    assert.ok(answer.heapLimitMiB >= 123 && answer.heapLimitMiB < 140, `heap limit ${answer.heapLimitMiB} MiB: NODE_OPTIONS took effect`);
    const first = await ask("/first");
    assert.ok(first.heapLimitMiB >= 140, `a replica without NODE_OPTIONS has the default heap limit (${first.heapLimitMiB} MiB)`);

    // The prestarted process is still there, unused, and the pool was not grown.
    assert.ok(isRunning(sparePid), `prestarted process ${sparePid} is still alive`);
    assert.ok(!startedLines(warm).some((e) => e.pid === sparePid));
    assert.equal(prestartedLines(warm).length, prestartedBefore);
  });

  it("with --prestart 0 prestarts nothing and starts replicas in fresh processes", async () => {
    const cold = cluster.spawn("host-cold", ["host", "--id", "cold", "--cpus", "1", "--resources", JSON.stringify({ cold: 10 }), "--prestart", "0"]);
    await cluster.waitForHosts(2);
    await waitFor(`${cold.name} to log "host registered"`, () => entries(cold, "host registered").length > 0, { timeoutMs: PROCESS_START_MS });

    await cluster.deploy([{ name: "coldstart", import: "probe.ts", version: "1", numReplicas: 2, actorOptions: { numCpus: 0.1, resources: { cold: 1 }, env: { CUSTOM: "cold" } } }]);
    const d = await cluster.waitForReplicas("coldstart", 2);
    assert.deepEqual(d.replicas.map((r) => r.host), ["cold", "cold"]);
    const started = await waitFor("both coldstart replicas logged as started", () => {
      const lines = startedLines(cold).filter((e) => e.deployment === "coldstart");
      return lines.length === 2 ? lines : undefined;
    }, { timeoutMs: 10_000, describe: () => startedLines(cold) });
    for (const line of started) assert.equal(line.prestarted, false, JSON.stringify(line));
    assert.deepEqual(started.map((l) => l.pid).sort(), d.replicas.map((r) => r.pid).sort());

    const answer = await ask("/coldstart");
    assert.ok(started.some((l) => l.pid === answer.pid), `answered by pid ${answer.pid}`);
    assert.equal(answer.env.CUSTOM, "cold");
    assert.equal(answer.env.FLOTILLA_REPLICA_PRESTART, null);
    // Still none after two more ticks of the host with its replicas running (a tick tops the pool up).
    const heartbeat = async (): Promise<number> => (JSON.parse((await cluster.redis.hget(cluster.keys.hosts, "cold")) ?? "{}") as { lastHeartbeatAt?: number }).lastHeartbeatAt ?? 0;
    let seen = await heartbeat();
    for (let tick = 0; tick < 2; tick++) {
      const previous = seen;
      seen = await waitFor(`tick ${tick + 1} of the cold host`, async () => {
        const at = await heartbeat();
        return at > previous ? at : undefined;
      }, { timeoutMs: 5000 });
    }
    assert.deepEqual(prestartedLines(cold), [], "no process prestarted with --prestart 0");
  });

  it("ends a host's unused prestarted process when the host is killed with SIGKILL", async () => {
    const doomed = cluster.spawnHost({ id: "doomed", cpus: 1, resources: { doomed: 1 } });
    await waitFor(`${doomed.name} to log "host registered"`, () => entries(doomed, "host registered").length > 0, { timeoutMs: PROCESS_START_MS, describe: () => doomed.logs.slice(-5) });
    const lines = prestartedLines(doomed);
    assert.equal(lines.length, 1, JSON.stringify(lines));
    const sparePid = lines[0]!.pid!;
    assert.ok(isRunning(sparePid), `prestarted process ${sparePid} is alive before the host dies`);
    assert.deepEqual(startedLines(doomed), [], "the prestarted process was never used");

    const exit = await cluster.kill(doomed, "SIGKILL");
    assert.equal(exit.signal, "SIGKILL");
    const killedAt = Date.now();
    await waitFor(`prestarted process ${sparePid} to exit after its host was killed`, () => !isRunning(sparePid), { timeoutMs: 10_000, intervalMs: 50 });
    console.log(`# measured: prestarted process gone ${Date.now() - killedAt} ms after its host was SIGKILLed`);
  });
});
