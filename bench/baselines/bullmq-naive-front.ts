/**
 * Naive BullMQ front: each HTTP request becomes `queue.add` + `job.waitUntilFinished(queueEvents)`;
 * a separate worker process answers. The usual first design, for comparison.
 * Env: REDIS_URL, BENCH_QUEUE_PREFIX, BENCH_QUEUE.
 */
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { env, serveJson } from "./serve.js";

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

await serveJson(
  () => queue.add("request", {}, JOB_OPTIONS).then((job) => job.waitUntilFinished(events, 30_000)),
  async () => {
    await events.close();
    await queue.close();
    connection.disconnect();
    eventsConnection.disconnect();
  },
);
