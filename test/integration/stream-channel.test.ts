/**
 * A stream's Redis side with the real Redis: the writer never leaves more
 * than the bound unread, the reader gets every entry in order, a cancel stops
 * the writer, a writer gone before the end reads as REPLICA_CRASHED, and a
 * request whose caller aborts before any replica took it is withdrawn.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { StreamReader } from "../../src/client/stream-reader.js";
import { FlotillaError } from "../../src/errors.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { StreamReaderChannel, StreamWriterChannel } from "../../src/queue/stream-channel.js";
import { Keys } from "../../src/shared/keys.js";
import { END_ENTRY, encodeChunk, STREAM_MAX_UNREAD, type StreamChunk } from "../../src/shared/stream-protocol.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("stream channel", () => {
  const namespace = testNamespace("stream-channel");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const control = testRedis();
  const blocking: ReturnType<typeof testRedis>[] = [];
  let n = 0;

  after(async () => {
    for (const c of blocking) c.disconnect();
    redis.disconnect();
    control.disconnect();
    await cleanupNamespace(namespace);
  });

  function pair(writer = "w1"): { writerChannel: StreamWriterChannel; reader: StreamReader; chunksKey: string } {
    const address = { replyTo: keys.replies("requester"), requestId: String(n++), writer };
    return {
      writerChannel: new StreamWriterChannel(redis, keys, address),
      chunksKey: keys.streamKeys(address.replyTo, address.requestId, writer).chunks,
      reader: new StreamReader({
        deployment: "d",
        channel: new StreamReaderChannel(keys, address),
        control,
        acquire: () => {
          const c = testRedis();
          blocking.push(c);
          return c;
        },
        release: () => undefined,
        idleTimeoutMs: 10_000,
      }),
    };
  }

  async function readAll(reader: StreamReader): Promise<StreamChunk[]> {
    const out: StreamChunk[] = [];
    for await (const c of reader) out.push(c);
    return out;
  }

  it("holds at most the bound unread and delivers every entry in order", async () => {
    const { writerChannel, reader, chunksKey } = pair();
    const entries = Array.from({ length: STREAM_MAX_UNREAD + 10 }, (_, i) => encodeChunk(i % 2 ? { i } : `t${i}`));
    const pushed = await writerChannel.push(entries);
    assert.equal(pushed, STREAM_MAX_UNREAD);
    assert.equal(await redis.llen(chunksKey), STREAM_MAX_UNREAD);
    assert.equal(await writerChannel.push(entries.slice(pushed)), 0, "full: nothing more goes");
    const reading = readAll(reader);
    let off = pushed;
    while (off < entries.length) {
      const k = await writerChannel.push(entries.slice(off));
      off += k;
      assert.ok((await redis.llen(chunksKey)) <= STREAM_MAX_UNREAD);
    }
    while ((await writerChannel.push([END_ENTRY])) === 0);
    const got = await reading;
    assert.equal(got.length, entries.length);
    got.forEach((c, i) => assert.deepEqual(c, i % 2 ? { kind: "value", value: { i } } : { kind: "text", text: `t${i}` }));
    assert.equal(await redis.exists(chunksKey), 0, "read to the end, the list is gone");
  });

  it("stops the writer once the reader cancels", async () => {
    const { writerChannel, reader } = pair();
    await writerChannel.push([encodeChunk("a")]);
    for await (const _ of reader) break;
    assert.equal(await writerChannel.push([encodeChunk("b")]), -1);
    assert.equal(await writerChannel.renew(), true);
  });

  it("reads a writer gone before the end as REPLICA_CRASHED", async () => {
    const { writerChannel, reader } = pair();
    await writerChannel.push([encodeChunk("a")]);
    await writerChannel.close(false);
    const seen: StreamChunk[] = [];
    await assert.rejects(
      (async () => {
        for await (const c of reader) seen.push(c);
      })(),
      (err: unknown) => err instanceof FlotillaError && err.code === "REPLICA_CRASHED",
    );
    assert.deepEqual(seen, [{ kind: "text", text: "a" }]);
  });

  it("withdraws a request whose caller aborts before any replica took it", async () => {
    const client = new RequestClient({ redisUrl: REDIS_URL, namespace });
    const queueKeys = new QueueKeys(namespace);
    try {
      const abort = new AbortController();
      const answer = client.submit("nobody", { kind: "call", payload: 1 }, { signal: abort.signal });
      await waitFor("the job to wait", async () => (await redis.llen(queueKeys.of("nobody").wait)) === 1);
      abort.abort(new Error("caller left"));
      await assert.rejects(answer, /caller left/);
      await waitFor("the job to be withdrawn", async () => (await redis.llen(queueKeys.of("nobody").wait)) === 0, { timeoutMs: 3000 });
      assert.equal(client.inflight, 0);
    } finally {
      await client.close();
    }
  });
});
