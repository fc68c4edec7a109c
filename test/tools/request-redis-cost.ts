/**
 * What one request costs Redis at 1 connection, command by command: a
 * RequestClient sends requests one after another to an echo replica in this
 * process, against a private redis-server on a free port (so its counters see
 * nothing else). Prints the client's p50, the commands per request by name
 * (INFO commandstats), the scripts run per request and Redis's CPU per
 * request (used_cpu_user + used_cpu_sys) and its socket reads and writes
 * per request (INFO stats). Run it by hand:
 *
 *   node --import tsx test/tools/request-redis-cost.ts [requests] [--monitor]
 *
 * `--monitor` also prints, for two requests, each command Redis ran, in
 * order, with the name of the connection that sent it (MONITOR).
 * `--replica-process` runs the replica in a process of its own
 * (echo-replica-process.ts), so that an answer crosses processes as it does
 * in a cluster. `FLOTILLA_REPLY_SOCKETS=off` compares the reply list alone
 * with reply sockets.
 *
 * The router's HTTP and the process hops are not in it: `npm run bench` times
 * the whole path.
 */
import { fork, spawn } from "node:child_process";
import { RequestClient } from "../../src/client/request-client.js";
import { createRedis } from "../../src/shared/redis.js";
import { Monitor } from "../helpers/monitor.js";
import { freePort } from "../helpers/private-redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";
const requests = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 2000);
const monitor = process.argv.includes("--monitor");
const replicaProcess = process.argv.includes("--replica-process");
const port = await freePort();
const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
// Stopped early (Ctrl-C, a timeout, a closed stdout when piped to `head`): the private server goes too.
process.once("exit", () => server.kill());
process.stdout.on("error", () => process.exit(0));
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.exit(128 + (signal === "SIGINT" ? 2 : 15));
  });
}
const url = `redis://127.0.0.1:${port}`;
// The test helpers read REDIS_URL when they load: the replica goes to the private server.
process.env.REDIS_URL = url;
const { echoReplica } = await import("../helpers/echo-replica.js");
const admin = createRedis(url, { name: "request-redis-cost" });
try {
  await waitFor("the private redis-server to answer", async () => (await admin.ping().catch(() => "")) === "PONG");
  const namespace = "cost";
  let stopReplica: () => Promise<void>;
  if (replicaProcess) {
    const child = fork(new URL("./echo-replica-process.ts", import.meta.url), { execArgv: ["--import", "tsx"], env: { ...process.env, FLOTILLA_NAMESPACE: namespace } });
    await Promise.race([
      new Promise((resolve) => child.once("message", resolve)),
      new Promise((_, reject) => child.once("exit", (code) => reject(new Error(`the replica process exited (${code}) before it ran`)))),
    ]);
    stopReplica = async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send("stop");
      await exited;
    };
  } else {
    const replica = echoReplica(namespace, "r1", { deployment: "echo", importRef: "echo.ts" });
    replica.actor.start();
    await waitFor("the replica to run", () => replica.report().state === "running");
    stopReplica = async () => {
      replica.actor.send({ type: "DRAIN" });
      await waitFor("the replica to stop", () => replica.report().state === "stopped");
      await replica.closeConnections();
    };
  }
  const client = new RequestClient({ redisUrl: url, namespace });
  await client.socketReady();
  const job = { kind: "call" as const, payload: { a: 1 } };
  for (let i = 0; i < 300; i++) await client.submit("echo", job); // warm-up: scripts loaded, code optimised
  if (monitor) await printMonitored(url, admin, () => client.submit("echo", job).then(() => client.submit("echo", job)));
  await admin.config("RESETSTAT");
  const cpu = async (): Promise<number> => {
    const info = await admin.info("cpu");
    return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]);
  };
  /** Redis's socket reads and writes so far (INFO stats; a read is one wake-up with input). */
  const io = async (): Promise<[number, number]> => {
    const info = await admin.info("stats");
    return [Number(/total_reads_processed:(\d+)/.exec(info)?.[1]), Number(/total_writes_processed:(\d+)/.exec(info)?.[1])];
  };
  const io0 = await io();
  const cpu0 = await cpu();
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < requests; i++) {
    const t = performance.now();
    await client.submit("echo", job);
    times.push(performance.now() - t);
  }
  const elapsed = performance.now() - t0;
  const cpuUs = ((await cpu()) - cpu0) * 1e6;
  const io1 = await io();
  const stats = await admin.info("commandstats");
  times.sort((a, b) => a - b);
  const rows: Array<[string, number, number]> = [];
  for (const line of stats.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m && !/^(info|config)/.test(m[1] as string)) rows.push([m[1] as string, Number(m[2]) / requests, Number(m[3]) / requests]);
  }
  rows.sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, n]) => sum + n, 0);
  // A script's time includes the commands it runs, which are also counted under their own names.
  const commandUs = rows.filter(([name]) => !/^eval/.test(name)).reduce((sum, [, , us]) => sum + us, 0) + rows.filter(([name]) => /^eval/.test(name)).reduce((sum, [, , us]) => sum + us, 0) / 2;
  console.log(`${requests} requests, ${Math.round((requests / elapsed) * 1000)} req/s, p50 ${times[requests >> 1]?.toFixed(3)} ms, p90 ${times[Math.floor(requests * 0.9)]?.toFixed(3)} ms`);
  console.log(`Redis: ${total.toFixed(1)} commands and ${(cpuUs / requests).toFixed(1)} µs CPU per request`);
  console.log(`  socket reads ${((io1[0] - io0[0]) / requests).toFixed(2)} and writes ${((io1[1] - io0[1]) / requests).toFixed(2)} per request`);
  console.log(`  (per request, in commands as Redis times them: about ${commandUs.toFixed(1)} µs; the rest is reading, writing and waking clients)`);
  console.log(`  command          calls  µs (a script's includes its commands')`);
  for (const [name, n, us] of rows) if (n >= 0.01) console.log(`  ${name.padEnd(16)} ${n.toFixed(2).padStart(5)}  ${us.toFixed(1).padStart(5)}`);
  console.log(`  answers over the reply socket ${client.repliesBy.socket}, from the reply list ${client.repliesBy.list} (warm-up included)`);
  await stopReplica();
  await client.close();
} finally {
  admin.disconnect();
  server.kill();
}

/** Prints each command Redis runs while `run` runs, with the name of the connection that sent it. */
async function printMonitored(redisUrl: string, names: ReturnType<typeof createRedis>, run: () => Promise<unknown>): Promise<void> {
  const byAddr = new Map<string, string>();
  for (const line of String(await names.client("LIST")).split("\n")) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    if (addr) byAddr.set(addr, /name=(\S*)/.exec(line)?.[1] || addr);
  }
  for (const { source, args } of await Monitor.during(redisUrl, () => true, names, run)) {
    const shown = args.map((a) => (a.length > 40 ? `${a.slice(0, 37)}...` : a)).join(" ");
    console.log(`  ${(byAddr.get(source) ?? source).padEnd(40)} ${shown.slice(0, 140)}`);
  }
}
