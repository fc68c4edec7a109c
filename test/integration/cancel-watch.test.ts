/**
 * Cancels reach a replica on one subscriber connection that opens only when a
 * request runs long enough to need it. A cancel published before that
 * subscription was live is still seen (the replica reads the cancel key once
 * subscribed); stream cancels and async cancels share the connection.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CancelSubscriber } from "../../src/actors/cancel-subscriber.js";
import { CancelWatch } from "../../src/actors/cancel-watch.js";
import { StreamStopped } from "../../src/actors/stream-stopped.js";
import { AsyncRequestClient } from "../../src/client/async-request-client.js";
import { RequestClient } from "../../src/client/request-client.js";
import { publishCancel } from "../../src/queue/stream-channel.js";
import { Keys } from "../../src/shared/keys.js";
import { echoReplica } from "../helpers/echo-replica.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("cancel watch", () => {
  const namespace = testNamespace("cancels");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const dir = mkdtempSync(join(tmpdir(), "flotilla-cancels-"));
  const client = new RequestClient({ redisUrl: REDIS_URL, namespace });
  const asyncClient = new AsyncRequestClient(redis, keys);
  const subscriber = new CancelSubscriber(REDIS_URL, `flotilla-test-cancels-${namespace}`);
  const patient = echoReplica(namespace, `patient-${namespace}`, { deployment: "patient", importRef: "patient.ts" });
  const streamer = echoReplica(namespace, `streamer-${namespace}`, { deployment: "streamer", importRef: "streamer.ts" });

  /** The replica's connections for cancels, by the name it gives them. */
  const cancelConnections = async (replicaId: string): Promise<number> =>
    ((await redis.client("LIST")) as string).split("\n").filter((line) => line.includes(` name=flotilla-replica-${replicaId}-cancels `)).length;
  const events = (file: string): string[] =>
    existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { event: string }).event) : [];
  const httpJob = (query: Record<string, string>) => ({ kind: "http" as const, http: { method: "GET", path: "/", subPath: "/", query, headers: {}, body: "" } });

  before(async () => {
    patient.actor.start();
    streamer.actor.start();
    await waitFor("both replicas to run", () => patient.report().state === "running" && streamer.report().state === "running");
  });

  after(async () => {
    for (const runner of [patient, streamer]) runner.actor.send({ type: "DRAIN" });
    await waitFor("both replicas to stop", () => patient.report().state === "stopped" && streamer.report().state === "stopped");
    await Promise.all([patient.closeConnections(), streamer.closeConnections(), subscriber.close(), client.close()]);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await cleanupNamespace(namespace);
  });

  it("aborts a request whose cancel was published before the subscription existed", async () => {
    const watch = new CancelWatch(subscriber, redis, keys, "dep", 50);
    const replyTo = keys.replies("requester-a");
    const abort = new AbortController();
    // Published before the request is watched: nothing can have subscribed yet, however slow the machine
    // (watched first, a publish slower than listenAfterMs would race the subscription).
    assert.equal(subscriber.opened, false, "nothing subscribed when the cancel went out");
    await publishCancel(redis, keys, "dep", replyTo, "1");
    watch.watch(replyTo, "1", abort);
    await waitFor("the request's signal to abort", () => abort.signal.aborted, { timeoutMs: 5000 });
    assert.ok(abort.signal.reason instanceof StreamStopped);
    assert.equal(subscriber.opened, true);

    // Subscribed now: a message alone (no cancel key) reaches the next request.
    const second = new AbortController();
    watch.watch(replyTo, "2", second);
    await redis.publish(keys.cancels("dep"), `${replyTo}\n2`);
    await waitFor("the second request's signal to abort on the message", () => second.signal.aborted, { timeoutMs: 5000 });
  });

  it("opens no connection for requests that finish at once", async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, () => client.submit("patient", httpJob({ ms: "0" }))));
    assert.deepEqual(
      replies.map((r) => r.status),
      replies.map(() => 200),
    );
    assert.equal(await cancelConnections(`patient-${namespace}`), 0);
  });

  it("stops a stream cancelled as it starts, on a replica that had not subscribed yet", async () => {
    assert.equal(await cancelConnections(`streamer-${namespace}`), 0);
    const file = join(dir, "stream.jsonl");
    const leave = new AbortController();
    const answer = client.submit("streamer", httpJob({ n: "5", firstMs: "20000", record: file }), { signal: leave.signal });
    answer.catch(() => undefined);
    await waitFor("the handler to start", () => events(file).includes("started"), { intervalMs: 5 });
    leave.abort(new Error("the caller went away"));
    await waitFor("the handler's signal to abort", () => events(file).includes("aborted"), { timeoutMs: 5000 });
    await waitFor("the iteration to end", () => events(file).includes("returned"), { timeoutMs: 5000 });
    await assert.rejects(answer);
    assert.equal(await cancelConnections(`streamer-${namespace}`), 1);
  });

  it("hears request cancels and async cancels on one connection", async () => {
    const plainFile = join(dir, "plain.jsonl");
    const leave = new AbortController();
    const plain = client.submit("patient", httpJob({ ms: "20000", record: plainFile }), { signal: leave.signal });
    plain.catch(() => undefined);
    await waitFor("the plain request to start", () => events(plainFile).includes("started"));
    leave.abort(new Error("the caller went away"));
    await waitFor("the plain request's signal to abort", () => events(plainFile).includes("aborted"), { timeoutMs: 5000 });

    const asyncFile = join(dir, "async.jsonl");
    const id = await asyncClient.submit("patient", httpJob({ ms: "20000", record: asyncFile }), { resultTtlS: 60 });
    await waitFor("the async request to run", async () => (await asyncClient.get(id)).status === "running" && events(asyncFile).includes("started"));
    await asyncClient.cancel(id);
    await waitFor("the async request's signal to abort", () => events(asyncFile).includes("aborted"), { timeoutMs: 5000 });
    assert.equal((await asyncClient.get(id)).status, "cancelled");
    assert.equal(await cancelConnections(`patient-${namespace}`), 1);
  });
});
