/**
 * Naive BullMQ front: each HTTP request becomes `queue.add` + `job.waitUntilFinished(queueEvents)`;
 * a separate worker process answers. The usual first design, for comparison.
 * Env: REDIS_URL, BENCH_QUEUE_PREFIX, BENCH_QUEUE.
 */
import http from "node:http";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { announce, env, exitOnSignal, listen } from "./serve.js";

const url = env("REDIS_URL");
const prefix = env("BENCH_QUEUE_PREFIX");
const name = env("BENCH_QUEUE");

const connection = new Redis(url, { maxRetriesPerRequest: null });
const queue = new Queue(name, { connection, prefix });
// QueueEvents blocks on XREAD: it gets a connection of its own.
const eventsConnection = new Redis(url, { maxRetriesPerRequest: null });
const events = new QueueEvents(name, { connection: eventsConnection, prefix });
queue.on("error", () => undefined);
events.on("error", () => undefined);
await queue.waitUntilReady();
await events.waitUntilReady();

// removeOnComplete: true would delete the job before waitUntilFinished reads its result ("Missing key").
const JOB_OPTIONS = { removeOnComplete: 1000, removeOnFail: 1000 };

const server = http.createServer((_req, res) => {
  queue
    .add("request", {}, JOB_OPTIONS)
    .then((job) => job.waitUntilFinished(events, 30_000))
    .then((value: unknown) => {
      const body = JSON.stringify(value);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    })
    .catch((err: unknown) => {
      const body = JSON.stringify({ error: err instanceof Error ? err.message : String(err) });
      res.writeHead(500, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
});
server.keepAliveTimeout = 65_000;

const port = await listen(server);
announce("listening", { port });
exitOnSignal(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await events.close();
  await queue.close();
  connection.disconnect();
  eventsConnection.disconnect();
});
