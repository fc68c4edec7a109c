/**
 * Streamed answers end to end: a generator's chunks reach plain HTTP, SSE and
 * handle clients as they are yielded; a client that leaves cancels the
 * handler; failures end a stream visibly; a replica killed before its first
 * chunk is retried; a rolling update cuts no stream; a slow reader keeps the
 * stream's backlog in Redis bounded.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Connection } from "../../src/api/connection.js";
import { getHandle } from "../../src/api/deployment.js";
import { FlotillaError } from "../../src/errors.js";
import { STREAM_MAX_UNREAD } from "../../src/shared/stream-protocol.js";
import { TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

interface Arrival {
  at: number;
  text: string;
}

interface Streamed {
  status: number;
  headers: http.IncomingHttpHeaders;
  chunks: Arrival[];
  /** "end": the transfer ended cleanly; "aborted": it was cut (no terminating chunk). */
  ending: "end" | "aborted";
  startedAt: number;
}

/** GETs a URL with node:http, noting when each chunk arrives; `stopAfter` hangs up after that many chunks. */
function streamGet(url: string, options: { headers?: Record<string, string>; stopAfter?: number; onChunk?: (res: http.IncomingMessage, n: number, text: string) => void } = {}): Promise<Streamed> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const req = http.get(url, { headers: options.headers ?? {} }, (res) => {
      const chunks: Arrival[] = [];
      let settled = false;
      const done = (ending: "end" | "aborted"): void => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, chunks, ending, startedAt });
      };
      res.setEncoding("utf8");
      res.on("data", (text: string) => {
        chunks.push({ at: Date.now(), text });
        options.onChunk?.(res, chunks.length, text);
        if (options.stopAfter !== undefined && chunks.length >= options.stopAfter) {
          req.destroy();
          done("aborted");
        }
      });
      res.on("end", () => done(res.complete ? "end" : "aborted"));
      res.on("aborted", () => done("aborted"));
      res.on("error", () => done("aborted"));
      res.on("close", () => done(res.complete ? "end" : "aborted"));
    });
    req.on("error", (err) => (options.stopAfter === undefined ? reject(err) : undefined));
  });
}

function records(file: string): Array<{ event: string; at: number; pid: number }> {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string; at: number; pid: number });
  } catch {
    return [];
  }
}

let fileCount = 0;
function recordFile(label: string): string {
  return path.join(os.tmpdir(), `flotilla-stream-${process.pid}-${label}-${fileCount++}.jsonl`);
}

function sseEvents(text: string): Array<{ event: string; data: string }> {
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      return { event, data: data.join("\n") };
    });
}

/** Arrivals spread over about 1.2 s: each chunk separately, the first well before the last. */
function assertSpread(arrivals: number[], count: number): void {
  assert.equal(arrivals.length, count, `${count} separate arrivals`);
  const first = arrivals[0] ?? 0;
  const last = arrivals.at(-1) ?? 0;
  assert.ok(last - first >= 900, `first and last chunk ${last - first} ms apart (expected about 1200)`);
}

describe("streaming", () => {
  let cluster: TestCluster;
  let conn: Connection;

  before(async () => {
    cluster = await TestCluster.start({ label: "streaming", hosts: [{ cpus: 4 }] });
    await cluster.deploy([
      { name: "streamer", import: "streamer.ts", version: "1", numReplicas: 2, actorOptions: { numCpus: 0.5 } },
      { name: "patient", import: "patient.ts", version: "1", numReplicas: 1, actorOptions: { numCpus: 0.25 } },
      { name: "rolling", import: "streamer.ts", version: "1", numReplicas: 2, actorOptions: { numCpus: 0.25 } },
    ]);
    conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
  });

  after(async () => {
    await conn?.close();
    await cluster?.stop();
  });

  it("sends each chunk over plain HTTP as it is yielded, as text/plain", async () => {
    const res = await streamGet(cluster.url("/streamer?n=5&ms=300"));
    assert.equal(res.status, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain/);
    assert.equal(res.headers["transfer-encoding"], "chunked");
    assert.equal(res.ending, "end");
    assertSpread(res.chunks.map((c) => c.at), 5);
    assert.deepEqual(
      res.chunks.map((c) => c.text.split(":")[0]),
      ["0", "1", "2", "3", "4"],
    );
    const firstAfter = (res.chunks[0]?.at ?? 0) - res.startedAt;
    assert.ok(firstAfter < 1000, `first chunk after ${firstAfter} ms`);
  });

  it("writes objects as JSON lines (application/x-ndjson)", async () => {
    const res = await streamGet(cluster.url("/streamer?n=3&ms=0&kind=json"));
    assert.match(String(res.headers["content-type"]), /^application\/x-ndjson/);
    const lines = res.chunks.map((c) => c.text).join("").trim().split("\n");
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { i: number }).i), [0, 1, 2]);
  });

  it("sends SSE data events as they come, ending with event: end", async () => {
    const res = await streamGet(cluster.url("/streamer?n=5&ms=300"), { headers: { accept: "text/event-stream" } });
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    const events = sseEvents(res.chunks.map((c) => c.text).join(""));
    assert.deepEqual(events.map((e) => e.event), ["message", "message", "message", "message", "message", "end"]);
    assert.deepEqual(events.slice(0, 5).map((e) => e.data.split(":")[0]), ["0", "1", "2", "3", "4"]);
    const dataArrivals = res.chunks.filter((c) => c.text.includes("data: ") && !c.text.includes("event: end")).map((c) => c.at);
    assertSpread(dataArrivals, 5);
  });

  it("gives a handle the yielded values in order, each as it is yielded", async () => {
    const handle = getHandle("streamer", conn);
    const values: Array<{ i: number }> = [];
    const arrivals: number[] = [];
    for await (const value of handle.stream<{ i: number }>({ n: 5, ms: 300, kind: "json" })) {
      values.push(value);
      arrivals.push(Date.now());
    }
    assert.deepEqual(values.map((v) => v.i), [0, 1, 2, 3, 4]);
    assertSpread(arrivals, 5);
  });

  it("aborts the handler's signal within 1 s when the HTTP client disconnects after 2 chunks", async () => {
    const file = recordFile("disconnect");
    const res = await streamGet(cluster.url(`/streamer?n=50&ms=300&record=${encodeURIComponent(file)}`), { stopAfter: 2 });
    const leftAt = Date.now();
    assert.equal(res.chunks.length, 2);
    await waitFor("the handler to see its signal abort", () => records(file).some((r) => r.event === "aborted"), { timeoutMs: 5000 });
    const aborted = records(file).find((r) => r.event === "aborted");
    assert.ok(aborted && aborted.at - leftAt <= 1000, `signal aborted ${aborted ? aborted.at - leftAt : "?"} ms after the client left`);
    await waitFor("the iteration to end", () => records(file).some((r) => r.event === "returned"), { timeoutMs: 5000 });
  });

  it("cancels the stream when a handle's consumer breaks out of the loop", async () => {
    const file = recordFile("break");
    let n = 0;
    for await (const _ of getHandle("streamer", conn).stream({ n: 50, ms: 200, record: file })) {
      if (++n === 2) break;
    }
    const leftAt = Date.now();
    await waitFor("the handler to see its signal abort", () => records(file).some((r) => r.event === "aborted"), { timeoutMs: 5000 });
    const aborted = records(file).find((r) => r.event === "aborted");
    assert.ok(aborted && aborted.at - leftAt <= 1000);
  });

  it("ends a stream whose handler throws mid-way visibly: SSE event: error, aborted HTTP, rejected handle", async () => {
    const sse = await streamGet(cluster.url("/streamer?n=5&ms=50&throwAt=2"), { headers: { accept: "text/event-stream" } });
    const events = sseEvents(sse.chunks.map((c) => c.text).join(""));
    assert.deepEqual(events.map((e) => e.event), ["message", "message", "error"]);
    assert.equal((JSON.parse(events[2]?.data ?? "{}") as { code: string }).code, "HANDLER_ERROR");
    const plain = await streamGet(cluster.url("/streamer?n=5&ms=50&throwAt=2"));
    assert.equal(plain.ending, "aborted");
    assert.equal(plain.chunks.map((c) => c.text).join("").split("\n").filter(Boolean).length, 2);
    const seen: unknown[] = [];
    await assert.rejects(
      (async () => {
        for await (const v of getHandle("streamer", conn).stream({ n: 5, ms: 50, throwAt: 2 })) seen.push(v);
      })(),
      (err: unknown) => err instanceof FlotillaError && err.code === "HANDLER_ERROR",
    );
    assert.equal(seen.length, 2);
  });

  it("ends the stream with REPLICA_CRASHED when its replica is killed mid-stream: SSE event: error, aborted HTTP", async () => {
    for (const accept of ["text/event-stream", "*/*"]) {
      let victim = 0;
      const res = await streamGet(cluster.url("/streamer?n=40&ms=200"), {
        headers: { accept },
        onChunk: (_res, n, text) => {
          if (n !== 2) return;
          victim = Number(/(\d+):(\d+)/.exec(text)?.[2] ?? 0);
          if (victim > 0) process.kill(victim, "SIGKILL");
        },
      });
      assert.ok(victim > 0, "the chunks name their replica's pid");
      const text = res.chunks.map((c) => c.text).join("");
      if (accept === "text/event-stream") {
        const events = sseEvents(text);
        assert.equal(events.at(-1)?.event, "error");
        assert.equal((JSON.parse(events.at(-1)?.data ?? "{}") as { code: string }).code, "REPLICA_CRASHED");
        assert.ok(events.filter((e) => e.event === "message").length < 40);
      } else {
        assert.equal(res.ending, "aborted");
        assert.ok(text.split("\n").filter(Boolean).length < 40);
      }
      await cluster.waitForReplicas("streamer", 2, 30_000);
    }
  });

  it("answers from another replica when the first is killed before its first chunk", async () => {
    const file = recordFile("retry");
    const pending = streamGet(cluster.url(`/streamer?n=3&ms=100&firstMs=5000&record=${encodeURIComponent(file)}`));
    await waitFor("the handler to start", () => records(file).some((r) => r.event === "started"), { timeoutMs: 10_000 });
    const victim = records(file)[0]?.pid ?? 0;
    process.kill(victim, "SIGKILL");
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(res.ending, "end");
    const lines = res.chunks.map((c) => c.text).join("").split("\n").filter(Boolean);
    assert.equal(lines.length, 3);
    for (const line of lines) assert.notEqual(Number(line.split(":")[1]), victim);
    await cluster.waitForReplicas("streamer", 2, 30_000);
  });

  it("keeps a slow reader's backlog in Redis at most the bound, and delivers every chunk", async () => {
    let maxLen = 0;
    let paused: http.IncomingMessage | undefined;
    const pending = streamGet(cluster.url("/streamer?n=400&ms=0&size=65536"), {
      onChunk: (res, n) => {
        if (n === 1) {
          paused = res;
          res.pause();
        }
      },
    });
    await waitFor("the first chunk", () => paused !== undefined, { timeoutMs: 10_000 });
    // The router reads only as fast as the client; the client reads nothing for a while (the chunks are
    // large so that the sockets' buffers fill and hold the router back).
    const pattern = `${cluster.keys.repliesPrefix}*:s:*`;
    const until = Date.now() + 1500;
    let sawFull = false;
    const seen = new Set<string>();
    while (Date.now() < until) {
      const keys = (await cluster.redis.keys(pattern)).filter((k) => !k.endsWith(":alive") && !k.endsWith(":cancel"));
      for (const key of keys) {
        seen.add(key);
        const len = await cluster.redis.llen(key);
        maxLen = Math.max(maxLen, len);
        if (len === STREAM_MAX_UNREAD) sawFull = true;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(sawFull, `the backlog reached the bound (max seen ${maxLen})`);
    assert.ok(maxLen <= STREAM_MAX_UNREAD, `backlog ${maxLen} > ${STREAM_MAX_UNREAD}`);
    paused?.resume();
    const res = await pending;
    assert.equal(res.ending, "end");
    assert.equal(res.chunks.map((c) => c.text).join("").split("\n").filter(Boolean).length, 400);
    await waitFor("the stream's keys to go", async () => (await cluster.redis.exists(...[...seen].flatMap((k) => [k, `${k}:alive`]))) === 0, { timeoutMs: 5000 });
  });

  it("aborts a plain request's signal within 1 s when its HTTP client disconnects", async () => {
    const file = recordFile("plain");
    const req = http.get(cluster.url(`/patient?ms=20000&record=${encodeURIComponent(file)}`));
    req.on("error", () => undefined);
    await waitFor("the handler to start", () => records(file).some((r) => r.event === "started"), { timeoutMs: 10_000 });
    req.destroy();
    const leftAt = Date.now();
    await waitFor("the handler to see its signal abort", () => records(file).some((r) => r.event === "aborted"), { timeoutMs: 5000 });
    const aborted = records(file).find((r) => r.event === "aborted");
    assert.ok(aborted && aborted.at - leftAt <= 1000, `signal aborted ${aborted ? aborted.at - leftAt : "?"} ms after the client left`);
  });

  it("cuts none of 20 streams running through a rolling update", async () => {
    const started: number[] = [];
    const streams = Array.from({ length: 20 }, (_, i) =>
      streamGet(cluster.url("/rolling?n=20&ms=300"), { onChunk: (_res, n) => (n === 1 ? started.push(i) : undefined) }),
    );
    await waitFor("every stream to begin", () => started.length === 20, { timeoutMs: 15_000 });
    await cluster.deploy([{ name: "rolling", import: "streamer.ts", version: "2", numReplicas: 2, actorOptions: { numCpus: 0.25 } }], { wait: false });
    // The update must overlap the streams: a version-1 replica draining while they still run.
    let open = true;
    let drainedDuringStreams = false;
    const watching = (async () => {
      while (open) {
        const view = await cluster.deployment("rolling");
        if (open && view?.replicas.some((r) => r.version === "1" && r.state === "draining")) drainedDuringStreams = true;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const results = await Promise.all(streams).finally(() => (open = false));
    await watching;
    assert.ok(drainedDuringStreams, "a version-1 replica drained while the streams ran");
    for (const res of results) {
      assert.equal(res.ending, "end");
      assert.deepEqual(
        res.chunks.map((c) => c.text).join("").split("\n").filter(Boolean).map((l) => l.split(":")[0]),
        Array.from({ length: 20 }, (_, i) => String(i)),
      );
    }
    await waitFor("version 2 to serve", async () => (await cluster.deployment("rolling"))?.replicas.every((r) => r.version === "2"), { timeoutMs: 30_000 });
  });

  it("finishes the streams a SIGTERMed router is writing before it exits", async () => {
    await cluster.spawnRouter();
    const index = cluster.routerPorts.length - 1;
    const router = cluster.processes.find((p) => p.name === `router-${index + 1}`);
    assert.ok(router);
    let begun = 0;
    const streams = Array.from({ length: 3 }, () => streamGet(cluster.url("/streamer?n=8&ms=200", index), { onChunk: (_res, n) => (n === 1 ? begun++ : undefined) }));
    await waitFor("every stream to begin", () => begun === 3, { timeoutMs: 10_000 });
    const exit = cluster.kill(router, "SIGTERM");
    for (const res of await Promise.all(streams)) {
      assert.equal(res.ending, "end");
      assert.equal(res.chunks.map((c) => c.text).join("").split("\n").filter(Boolean).length, 8);
    }
    assert.equal((await exit).code, 0);
  });
});
