/**
 * What Redis would cost per request at 1 connection for three shapes of the
 * request path, built from Flotilla's own lean scripts (add, take, finish)
 * and a TCP connection between a "router" (this process) and a "replica"
 * (a child process), against a private redis-server. No HTTP, no handler,
 * no BullMQ worker: only the Redis traffic of each shape, so that a design
 * can be weighed before it is built. Every shape keeps each request a job
 * that is added, taken under a lock and finished.
 *
 * - `queued`: a request through the queue. The router adds; the replica
 *   keeps 8 waits (BZPOPMIN of the marker + take) queued on its blocking
 *   connection, tops them up when half are used, and sends the finishes it
 *   held back with the top-up; the answer goes to the router over the
 *   socket.
 * - `router-takes`: the router adds and takes in one write, for a replica
 *   that offered a slot, and sends it the taken job over the socket.
 * - `replica-adds`: the router sends the request over the socket; the
 *   replica sends its held-back finishes, the add and the take in one write.
 * - `one-script`: `replica-adds` with the held-back finishes, the add and the
 *   take in one script (the three scripts' bodies, called in turn).
 * - `add-take`: what Flotilla does for a lone request (direct-jobs.ts). The
 *   router adds and takes in one script (ADD_TAKE) and writes the job to
 *   the replica over the socket; the replica holds its finishes back and
 *   sends every fourth request's together (LEAN_FINISH_MANY).
 *
 * Run it by hand:
 *
 *   node --import tsx test/tools/request-path-shapes.ts [requests] [rounds]
 *
 * Shapes alternate within each round, as the machine's speed drifts.
 */
import { fork, spawn } from "node:child_process";
import net from "node:net";
import { Redis } from "ioredis";
import { ADD_TAKE, LEAN_ADD_STORED, LEAN_FINISH, LEAN_FINISH_MANY, LEAN_TAKE } from "../../src/queue/lean-scripts.js";
import { LuaScript } from "../../src/shared/lua-script.js";
import { freePort } from "../helpers/private-redis.js";
import { waitFor } from "../helpers/wait.js";

const SHAPES = ["queued", "router-takes", "replica-adds", "one-script", "add-take"] as const;
type Shape = (typeof SHAPES)[number];
const WAITS = 8;
const FINISH_HELD_MS = 5;
const prefix = "shapes:{d}:";
const K = {
  id: `${prefix}id`,
  wait: `${prefix}wait`,
  meta: `${prefix}meta`,
  active: `${prefix}active`,
  marker: `${prefix}marker`,
  prioritized: `${prefix}prioritized`,
  delayed: `${prefix}delayed`,
  stalled: `${prefix}stalled`,
};
const OPTIONS = '{"removeOnComplete":true,"removeOnFail":false,"attempts":0}';

const take = (redis: Redis, token: string): Promise<unknown> =>
  redis.evalsha(LEAN_TAKE.sha, 6, K.wait, K.active, K.prioritized, K.delayed, K.meta, K.marker, prefix, 0, token, 15_000, "");
const add = (redis: Redis, data: string): Promise<unknown> => redis.evalsha(LEAN_ADD_STORED.sha, 5, K.id, K.wait, K.meta, K.active, K.marker, prefix, "request", OPTIONS, Date.now(), data);
const finish = (redis: Redis, id: string, token: string): Promise<unknown> => redis.evalsha(LEAN_FINISH.sha, 3, K.active, K.stalled, prefix + id, id, token, 60_000);

/**
 * The finishes held back, an add and a take, in one script.
 * KEYS: id, wait, meta, active, marker, prioritized, delayed, stalled;
 * ARGV: job key prefix, number of finishes n, n pairs of job id and token,
 * the new job's data, the take's token. Returns the take's answer.
 */
const FINISH_ADD_TAKE = new LuaScript(`
local function finish(KEYS, ARGV)
${LEAN_FINISH.source}
end
local function add(KEYS, ARGV)
${LEAN_ADD_STORED.source}
end
local function take(KEYS, ARGV)
${LEAN_TAKE.source}
end
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
for i = 1, n do
  local id = ARGV[1 + 2 * i]
  finish({KEYS[4], KEYS[8], prefix .. id}, {id, ARGV[2 + 2 * i], "60000"})
end
local tail = 3 + 2 * n
add({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]}, {prefix, "request", ${JSON.stringify(OPTIONS)}, ARGV[tail + 2], ARGV[tail]})
return take({KEYS[2], KEYS[4], KEYS[6], KEYS[7], KEYS[3], KEYS[5]}, {prefix, "0", ARGV[tail + 1], "15000", ""})
`);

/** Runs `send`, which issues commands on `redis` in this turn, as one write. */
function oneWrite(redis: Redis, send: () => void): void {
  redis.stream.cork();
  send();
  process.nextTick(() => redis.stream.uncork());
}

/** Calls `line` with each newline-ended line of `socket`. */
function onLines(socket: net.Socket, line: (text: string) => void): void {
  let held = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    held += chunk;
    for (let nl = held.indexOf("\n"); nl !== -1; nl = held.indexOf("\n")) {
      line(held.slice(0, nl));
      held = held.slice(nl + 1);
    }
  });
}

/** The fields of a take's answer, {id, fields} or undefined when it took nothing. */
function taken(raw: unknown): { id: string; fields: string[] } | undefined {
  const [fields, id] = raw as [string[] | 0, string | 0];
  return Array.isArray(fields) && id ? { id: String(id), fields } : undefined;
}

async function replica(shape: Shape, redisPort: number, routerPort: number): Promise<void> {
  const redis = new Redis({ port: redisPort, host: "127.0.0.1" });
  const blocking = new Redis({ port: redisPort, host: "127.0.0.1" });
  await waitFor("the replica's connections", () => redis.status === "ready" && blocking.status === "ready");
  const socket = net.connect(routerPort, "127.0.0.1");
  socket.setNoDelay(true);
  let held: Array<[string, string]> = [];
  let timer: NodeJS.Timeout | undefined;
  /** Sends the held-back finishes on `via` (in the caller's write, if it is making one). */
  const flush = (via: Redis): void => {
    clearTimeout(timer);
    timer = undefined;
    for (const [id, token] of held) void finish(via, id, token);
    held = [];
  };
  const answer = (job: { id: string; fields: string[] }, token: string): void => {
    const data = JSON.parse(job.fields[job.fields.indexOf("data") + 1] ?? "{}") as { requestId: string; payload: unknown };
    socket.write(`${JSON.stringify({ requestId: data.requestId, value: data.payload })}\n`);
    held.push([job.id, token]);
    timer ??= setTimeout(() => oneWrite(redis, () => flush(redis)), FINISH_HELD_MS);
  };
  let tokens = 0;
  if (shape === "queued") {
    let queued = 0;
    const arm = (count: number): void =>
      oneWrite(blocking, () => {
        for (let i = 0; i < count; i++) {
          const token = `replica:${tokens++}`;
          queued++;
          blocking.bzpopmin(K.marker, 5).catch(() => undefined);
          take(blocking, token).then(
            (raw) => {
              queued--;
              const job = taken(raw);
              if (job) answer(job, token);
              if (queued * 2 <= WAITS)
                setImmediate(() => {
                  if (queued * 2 > WAITS) return;
                  arm(WAITS - queued);
                  oneWrite(redis, () => flush(redis));
                });
            },
            () => undefined,
          );
        }
      });
    arm(WAITS);
  } else if (shape === "add-take") {
    let started = 0;
    onLines(socket, (line) => {
      const { id, token, data } = JSON.parse(line) as { id: string; token: string; data: string };
      const { requestId, payload } = JSON.parse(data) as { requestId: string; payload: unknown };
      socket.write(`${JSON.stringify({ requestId, value: payload })}\n`);
      held.push([id, token]);
      if (++started % (WAITS / 2) === 0) {
        const batch = held;
        held = [];
        void redis.evalsha(LEAN_FINISH_MANY.sha, 2 + batch.length, K.active, K.stalled, ...batch.map(([i]) => prefix + i), ...batch.flat());
      }
    });
  } else if (shape === "router-takes") {
    let started = 0;
    onLines(socket, (line) => {
      const { job, token } = JSON.parse(line) as { job: { id: string; fields: string[] }; token: string };
      answer(job, token);
      if (++started % (WAITS / 2) === 0) oneWrite(redis, () => flush(redis));
    });
  } else if (shape === "one-script") {
    onLines(socket, (line) => {
      const { data } = JSON.parse(line) as { data: string };
      const token = `replica:${tokens++}`;
      clearTimeout(timer);
      timer = undefined;
      const finishes = held.flat();
      const count = held.length;
      held = [];
      void redis
        .evalsha(FINISH_ADD_TAKE.sha, 8, K.id, K.wait, K.meta, K.active, K.marker, K.prioritized, K.delayed, K.stalled, prefix, count, ...finishes, data, token, Date.now())
        .then((raw) => {
          const job = taken(raw);
          if (job) answer(job, token);
        });
    });
  } else {
    onLines(socket, (line) => {
      const { data } = JSON.parse(line) as { data: string };
      const token = `replica:${tokens++}`;
      oneWrite(redis, () => {
        flush(redis);
        void add(redis, data);
        void take(redis, token).then((raw) => {
          const job = taken(raw);
          if (job) answer(job, token);
        });
      });
    });
  }
  process.on("message", () => {
    oneWrite(redis, () => flush(redis));
    void redis.ping().then(() => process.exit(0));
  });
  process.send?.("ready");
}

interface Measured {
  shape: Shape;
  rps: number;
  p50Ms: number;
  cpuUs: number;
  reads: number;
  writes: number;
}

async function measure(shape: Shape, requests: number): Promise<Measured> {
  const port = await freePort();
  const server = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const stopServer = (): void => void server.kill();
  process.once("exit", stopServer);
  const admin = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => 50 });
  const redis = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => 50 });
  // Refused until the server listens: the wait below retries.
  admin.on("error", () => undefined);
  const listener = net.createServer();
  try {
    await waitFor("the private redis-server to answer", async () => (await admin.ping().catch(() => "")) === "PONG");
    await redis.connect();
    for (const script of [LEAN_ADD_STORED, LEAN_TAKE, LEAN_FINISH, FINISH_ADD_TAKE, ADD_TAKE, LEAN_FINISH_MANY]) await admin.script("LOAD", script.source);
    const pending = new Map<string, () => void>();
    let toReplica: net.Socket | undefined;
    listener.on("connection", (socket) => {
      socket.setNoDelay(true);
      toReplica = socket;
      onLines(socket, (line) => {
        const { requestId } = JSON.parse(line) as { requestId: string };
        pending.get(requestId)?.();
        pending.delete(requestId);
      });
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const child = fork(new URL(import.meta.url), ["--replica", shape, String(port), String((listener.address() as net.AddressInfo).port)], { execArgv: ["--import", "tsx"] });
    await new Promise((resolve, reject) => {
      child.once("message", resolve);
      child.once("exit", (code) => reject(new Error(`the replica process exited (${code}) before it ran`)));
    });
    const socket = await waitFor("the replica's socket", () => toReplica);
    let tokens = 0;
    const one = (n: number): Promise<void> =>
      new Promise<void>((resolve) => {
        const requestId = String(n);
        pending.set(requestId, resolve);
        const data = JSON.stringify({ kind: "call", payload: { a: 1 }, replyTo: "shapes:replies:{router}", requestId });
        if (shape === "queued") void add(redis, data);
        else if (shape === "replica-adds" || shape === "one-script") socket.write(`${JSON.stringify({ data })}\n`);
        else if (shape === "add-take") {
          const token = `router:${tokens++}`;
          void redis.evalsha(ADD_TAKE.sha, 7, K.id, K.wait, K.meta, K.active, K.marker, K.prioritized, K.delayed, prefix, "request", OPTIONS, Date.now(), data, token, 15_000).then((raw) => {
            const [id, taken] = raw as [string, number];
            // Nothing waits in this tool's queue: every job is taken for the replica.
            if (taken !== 1) throw new Error(`add-take: job ${id} was not taken`);
            socket.write(`${JSON.stringify({ id, token, data })}\n`);
          });
        }
        else {
          const token = `router:${tokens++}`;
          oneWrite(redis, () => {
            void add(redis, data);
            void take(redis, token).then((raw) => {
              const job = taken(raw);
              if (job) socket.write(`${JSON.stringify({ job, token })}\n`);
            });
          });
        }
      });
    /** Each request within 5 s: a shape that loses one fails loudly instead of hanging. */
    const timed = (n: number): Promise<void> =>
      Promise.race([one(n), new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`${shape}: request ${n} not answered within 5 s`)), 5_000).unref())]);
    for (let i = 0; i < 300; i++) await timed(i);
    const counters = async (): Promise<[number, number, number]> => {
      const info = await admin.info();
      const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1]);
      return [field("used_cpu_user") + field("used_cpu_sys"), field("total_reads_processed"), field("total_writes_processed")];
    };
    const before = await counters();
    const times: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < requests; i++) {
      const t = performance.now();
      await timed(1000 + i);
      times.push(performance.now() - t);
    }
    const elapsedMs = performance.now() - t0;
    const after = await counters();
    times.sort((a, b) => a - b);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.send("stop");
    await exited;
    const left = (await admin.llen(K.active)) + (await admin.llen(K.wait));
    if (left > 0) throw new Error(`${shape}: ${left} jobs left in the active and wait lists after the run`);
    return {
      shape,
      rps: Math.round((requests / elapsedMs) * 1000),
      p50Ms: times[requests >> 1] ?? 0,
      cpuUs: ((after[0] - before[0]) * 1e6) / requests,
      reads: (after[1] - before[1]) / requests,
      writes: (after[2] - before[2]) / requests,
    };
  } finally {
    listener.close();
    admin.disconnect();
    redis.disconnect();
    server.kill();
    process.off("exit", stopServer);
  }
}

if (process.argv[2] === "--replica") {
  await replica(process.argv[3] as Shape, Number(process.argv[4]), Number(process.argv[5]));
} else {
  const [requests = 10_000, rounds = 3] = process.argv.slice(2).filter((a) => /^\d+$/.test(a)).map(Number);
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(128 + (signal === "SIGINT" ? 2 : 15)));
  // A closed stdout (piped to `head`) ends the run; the private servers go with it (the exit handlers).
  process.stdout.on("error", () => process.exit(0));
  console.log(`${requests} requests per shape and round, one after another; Redis CPU, reads and writes per request`);
  for (let round = 1; round <= rounds; round++) {
    for (const shape of SHAPES) {
      const m = await measure(shape, requests);
      console.log(
        `round ${round} ${m.shape.padEnd(13)} ${String(m.rps).padStart(5)} req/s  p50 ${m.p50Ms.toFixed(3)} ms  Redis CPU ${m.cpuUs.toFixed(1).padStart(5)} µs  reads ${m.reads.toFixed(2)}  writes ${m.writes.toFixed(2)}`,
      );
    }
  }
}
