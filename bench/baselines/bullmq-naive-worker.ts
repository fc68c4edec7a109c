/** The worker of the naive BullMQ baseline: answers {ok:true}, 100 jobs at a time. Env as the front. */
import { Worker } from "bullmq";
import { Redis } from "ioredis";
import { announce, env, exitOnSignal } from "./serve.js";

const connection = new Redis(env("REDIS_URL"), { maxRetriesPerRequest: null });
const worker = new Worker(env("BENCH_QUEUE"), async () => ({ ok: true }), { connection, prefix: env("BENCH_QUEUE_PREFIX"), concurrency: 100 });
worker.on("error", () => undefined);
await worker.waitUntilReady();
announce("ready");
exitOnSignal(async () => {
  await worker.close();
  connection.disconnect();
});
