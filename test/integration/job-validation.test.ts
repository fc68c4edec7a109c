/**
 * Job data is checked at the replica's edge: malformed jobs sent with a bare
 * BullMQ client to a real replica (its effects and state machine, in this
 * process) are answered 400 INVALID_REQUEST naming the field, as the job's
 * return value and on the reply list they name, never reach the handler, and
 * the replica keeps serving.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { Keys } from "../../src/shared/keys.js";
import type { Reply } from "../../src/shared/protocol.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { runAsPlainClient } from "../helpers/queues.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

process.env.FLOTILLA_LOG_LEVEL ??= "error";

/** What the fixture handler (recorder.ts) was called with, in this process. */
const recorded = (): unknown[] => (globalThis as { __flotillaRecorded?: unknown[] }).__flotillaRecorded ?? [];

describe("job data at the replica's edge", () => {
  const namespace = testNamespace("jobdata");
  const keys = new Keys(namespace);
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const runner = echoReplica(namespace, "rec-1", { deployment: "rec", importRef: "recorder.ts" });
  const queue = new Queue(queueKeys.name("rec"), { connection: redis, prefix: queueKeys.prefix });
  const replyTo = keys.replies("bare-client");

  before(async () => {
    await startReplica(runner);
  });

  after(async () => {
    await queue.close();
    await stopReplica(runner);
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  /** Adds a job as any BullMQ client would, and resolves with its return value. */
  async function run(data: unknown): Promise<Reply> {
    return (await runAsPlainClient(queue, data)) as Reply;
  }

  async function nextReply(): Promise<Reply> {
    const popped = await redis.blpop(replyTo, 5);
    assert.ok(popped, "a reply on the reply list");
    return JSON.parse(popped[1]) as Reply;
  }

  function assertInvalid(reply: Reply, field: string, label: string): void {
    assert.equal(reply.status, 400, `${label}: ${JSON.stringify(reply)}`);
    assert.equal(reply.error?.code, "INVALID_REQUEST", label);
    assert.equal(reply.error?.details?.field, field, `${label}: ${reply.error?.message}`);
    assert.ok(reply.error?.message.includes(field || "job data"), `${label}: the message names '${field}': ${reply.error?.message}`);
    assert.deepEqual(JSON.parse(reply.body), { error: reply.error }, `${label}: the body is the error`);
  }

  const malformed: Array<{ label: string; data: unknown; field: string; addressable: boolean }> = [
    { label: "a bare BullMQ job with no kind", data: { text: "hello" }, field: "kind", addressable: true },
    { label: "an unknown kind", data: { kind: "rpc", payload: 1 }, field: "kind", addressable: true },
    { label: "a string as data", data: "just a string", field: "", addressable: false },
    { label: "http: null", data: { kind: "http", http: null }, field: "http", addressable: true },
    { label: "http.method: 5", data: { kind: "http", http: { method: 5, path: "/rec" } }, field: "http.method", addressable: true },
    { label: "a batch whose requests is not an array", data: { kind: "batch", requests: { 0: { kind: "call", payload: 1 } } }, field: "requests", addressable: false },
  ];

  it("answers each malformed job 400 INVALID_REQUEST naming the field, as its return value and on its reply list; the handler is never called", async () => {
    for (const [i, c] of malformed.entries()) {
      assertInvalid(await run(c.data), c.field, c.label);
      if (!c.addressable) continue;
      const requestId = `bad-${i}`;
      const returned = await run({ ...(c.data as object), replyTo, requestId });
      assert.deepEqual(returned, { status: 400 }, `${c.label}: with a reply list, the return value is the status`);
      const reply = await nextReply();
      assert.equal(reply.requestId, requestId);
      assertInvalid(reply, c.field, `${c.label} (reply list)`);
    }
    assert.deepEqual(recorded(), [], "the handler was never called");

    const good = await run({ kind: "call", payload: { n: 1 } });
    assert.equal(good.status, 200);
    assert.deepEqual(good.value, { payload: { n: 1 } });
    assert.deepEqual(recorded(), [{ n: 1 }], "the replica kept serving");
  });

  it("in a batch, refuses a malformed request alone and serves the others", async () => {
    const before = recorded().length;
    const returned = await run({
      kind: "batch",
      requests: [
        { kind: "call", payload: "fine", replyTo, requestId: "good" },
        { kind: "http", http: { method: 5, path: "/rec" }, replyTo, requestId: "bad" },
      ],
    });
    assert.deepEqual(returned, { status: 200, batch: 2 });
    const replies = new Map<string | undefined, Reply>();
    for (let i = 0; i < 2; i++) {
      const reply = await nextReply();
      replies.set(reply.requestId, reply);
    }
    assert.equal(replies.get("good")?.status, 200);
    assert.deepEqual(replies.get("good")?.value, { payload: "fine" });
    assertInvalid(replies.get("bad")!, "requests[1].http.method", "the batch's malformed request");
    assert.equal(recorded().length - before, 1, "only the good request reached the handler");
  });

  it("answers 400 INVALID_REQUEST when a handler calls json() on a body that is not JSON, and serves one that is", async () => {
    const http = { method: "POST", path: "/rec", subPath: "/", query: {}, headers: {} };
    const bad = await run({ kind: "http", http: { ...http, body: "{not json" } });
    assert.equal(bad.status, 400, JSON.stringify(bad));
    assert.equal(bad.error?.code, "INVALID_REQUEST");
    assert.match(bad.error?.message ?? "", /not valid JSON/);
    const ok = await run({ kind: "http", http: { ...http, body: '{"a":1}' } });
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { method: "POST", body: { a: 1 } });
  });
});
