/**
 * A replica's stream writer against the real Redis, read by a StreamReader:
 * requestTimeoutS limits the time between chunks, streamTimeoutS the whole
 * stream, a handler that throws mid-way ends the stream with HANDLER_ERROR,
 * and a reader that stops early makes the writer end the iteration.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { writeStream, type StreamOutcome } from "../../src/actors/stream-writer.js";
import { StreamReader } from "../../src/client/stream-reader.js";
import { FlotillaError } from "../../src/errors.js";
import { StreamReaderChannel, StreamWriterChannel } from "../../src/queue/stream-channel.js";
import { Keys } from "../../src/shared/keys.js";
import { createLogger } from "../../src/shared/logger.js";
import type { StreamChunk } from "../../src/shared/stream-protocol.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "silent";

describe("stream writer", () => {
  const namespace = testNamespace("stream-writer");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const control = testRedis();
  const conns: ReturnType<typeof testRedis>[] = [];
  const log = createLogger("stream-writer-test");
  let n = 0;

  after(async () => {
    for (const c of conns) c.disconnect();
    redis.disconnect();
    control.disconnect();
    await cleanupNamespace(namespace);
  });

  /** Runs `iterable` through a writer and a reader; resolves with what the reader got and how each side ended. */
  function run(iterable: AsyncIterable<unknown>, limits: { idleTimeoutS?: number; totalTimeoutS?: number } = {}, stopAfter?: number) {
    const address = { replyTo: keys.replies("r"), requestId: String(n++), writer: "w" };
    const abort = new AbortController();
    const writing: Promise<StreamOutcome> = writeStream({
      iterable,
      status: 200,
      headers: {},
      channel: new StreamWriterChannel(redis, keys, address),
      writer: address.writer,
      abort,
      head: (fields) => ({ ...fields, body: "", replica: "x", version: "1", requestId: address.requestId }),
      ...limits,
      log,
    });
    const reader = new StreamReader({
      deployment: "d",
      channel: new StreamReaderChannel(keys, address),
      control,
      acquire: () => {
        const c = testRedis();
        conns.push(c);
        return c;
      },
      release: () => undefined,
      idleTimeoutMs: 10_000,
    });
    const reading = (async () => {
      const got: StreamChunk[] = [];
      try {
        for await (const c of reader) {
          got.push(c);
          if (stopAfter !== undefined && got.length >= stopAfter) break;
        }
        return { got, error: undefined };
      } catch (err) {
        return { got, error: err as FlotillaError };
      }
    })();
    return { writing, reading, abort };
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("ends a stream idle past requestTimeoutS with TIMEOUT, and ends the iteration", async () => {
    let returned = false;
    async function* gen() {
      try {
        yield "a";
        await sleep(2000);
        yield "b";
      } finally {
        returned = true;
      }
    }
    const { writing, reading, abort } = run(gen(), { idleTimeoutS: 0.2 });
    const { got, error } = await reading;
    assert.deepEqual(got, [{ kind: "text", text: "a" }]);
    assert.equal(error?.code, "TIMEOUT");
    assert.equal(abort.signal.aborted, true);
    assert.equal((await writing).ended, "complete");
    await waitFor("the iteration to end", () => returned, { timeoutMs: 3000 });
  });

  it("caps a whole stream at streamTimeoutS even while chunks keep coming", async () => {
    async function* gen() {
      for (let i = 0; ; i++) {
        yield i;
        await sleep(50);
      }
    }
    const startedAt = Date.now();
    const { reading } = run(gen(), { idleTimeoutS: 1, totalTimeoutS: 0.5 });
    const { got, error } = await reading;
    assert.equal(error?.code, "TIMEOUT");
    assert.ok(got.length >= 3, `${got.length} chunks before the cap`);
    assert.ok(Date.now() - startedAt < 2000);
  });

  it("ends a stream whose handler throws mid-way with HANDLER_ERROR", async () => {
    async function* gen() {
      yield { i: 0 };
      throw new Error("model fell over");
    }
    const { got, error } = await run(gen()).reading;
    assert.deepEqual(got, [{ kind: "value", value: { i: 0 } }]);
    assert.equal(error?.code, "HANDLER_ERROR");
    assert.match(error?.message ?? "", /model fell over/);
  });

  it("answers an error before the first chunk as an ordinary error, not a stream", async () => {
    async function* gen() {
      throw new Error("no first chunk");
      yield 1;
    }
    const { writing } = run(gen());
    const outcome = await writing;
    assert.equal(outcome.ended, "error");
  });

  it("fires the handler's signal and ends the iteration within 1 s when the reader stops", async () => {
    let returnedAt = 0;
    async function* gen() {
      try {
        for (let i = 0; ; i++) {
          yield i;
          await sleep(300);
        }
      } finally {
        returnedAt = Date.now();
      }
    }
    const { writing, reading, abort } = run(gen(), {}, 2);
    await reading;
    const stoppedAt = Date.now();
    assert.equal((await writing).ended, "cancelled");
    assert.ok(abort.signal.aborted);
    await waitFor("the iteration to end", () => returnedAt > 0, { timeoutMs: 3000 });
    assert.ok(returnedAt - stoppedAt <= 1000, `return() ${returnedAt - stoppedAt} ms after the reader stopped`);
  });
});
