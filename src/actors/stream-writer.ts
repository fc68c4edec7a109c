/**
 * Streams a handler's async iterable to its requester, inside a replica. The
 * first chunk goes out with the head as soon as it is yielded; later chunks go
 * as they come, those yielded during one write together in the next. When
 * STREAM_MAX_UNREAD chunks wait unread, writing (and so the iteration) waits.
 * The iteration ends (`return()`) when the reader cancels, the idle timeout
 * (requestTimeoutS) or the whole-stream cap (streamTimeoutS) passes, or the
 * replica is forced to stop; a handler that throws ends the stream with
 * HANDLER_ERROR.
 */
import type { Abortable } from "./request-abort.js";
import { errorMessage } from "../errors.js";
import type { StreamWriterChannel } from "../queue/stream-channel.js";
import type { Logger } from "../shared/logger.js";
import type { Reply } from "../shared/protocol.js";
import { StreamStopped } from "./stream-stopped.js";
import { END_ENTRY, encodeChunk, errorEntry, STREAM_ALIVE_RENEW_MS, STREAM_MAX_UNREAD, streamContentType } from "../shared/stream-protocol.js";

export interface StreamRun {
  iterable: AsyncIterable<unknown>;
  /** The head's status and the headers the handler set (lower-case names). */
  status: number;
  headers: Record<string, string>;
  channel: StreamWriterChannel;
  writer: string;
  /** The handler's abort signal: aborted here on cancel and timeouts, elsewhere on a forced stop. */
  abort: Abortable;
  /** Builds the head reply from what the stream's start decided. */
  head(fields: Pick<Reply, "status" | "headers" | "stream">): Reply;
  idleTimeoutS?: number;
  totalTimeoutS?: number;
  log: Logger;
}

/** How a stream ended: "error" before the first chunk is answered as an ordinary error reply by the caller. */
export type StreamOutcome = { ended: "complete" | "cancelled" | "failed"; status: number } | { ended: "error"; error: unknown };


const FULL_WAIT_MIN_MS = 2;
const FULL_WAIT_MAX_MS = 50;

export async function writeStream(run: StreamRun): Promise<StreamOutcome> {
  const { channel, abort } = run;
  const iterator = run.iterable[Symbol.asyncIterator]();
  const startedAt = Date.now();
  const aborted = new Promise<"aborted">((resolve) => {
    if (abort.signal.aborted) resolve("aborted");
    else abort.signal.addEventListener("abort", () => resolve("aborted"), { once: true });
  });

  /** The next value, unless the signal fires or a timeout passes first (which fire the signal). */
  const next = async (): Promise<IteratorResult<unknown> | "aborted"> => {
    let timer: NodeJS.Timeout | undefined;
    const limits: number[] = [];
    if (run.idleTimeoutS !== undefined) limits.push(run.idleTimeoutS * 1000);
    if (run.totalTimeoutS !== undefined) limits.push(run.totalTimeoutS * 1000 - (Date.now() - startedAt));
    if (limits.length > 0) {
      const ms = Math.max(0, Math.min(...limits));
      const idle = run.idleTimeoutS !== undefined && ms === run.idleTimeoutS * 1000;
      timer = setTimeout(() => {
        const what = idle ? `no chunk within requestTimeoutS (${run.idleTimeoutS} s)` : `the stream ran past streamTimeoutS (${run.totalTimeoutS} s)`;
        abort.abort(new StreamStopped(what, true));
      }, ms);
    }
    try {
      return await Promise.race([iterator.next(), aborted]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  };

  const stopIteration = (): void => {
    // An async generator busy in a step runs return() after that step; never wait for it here.
    void Promise.resolve()
      .then(() => iterator.return?.())
      .catch(() => undefined);
  };

  let first: IteratorResult<unknown> | "aborted";
  try {
    first = await next();
  } catch (err) {
    return { ended: "error", error: err };
  }
  if (first === "aborted") {
    stopIteration();
    return { ended: "error", error: abort.signal.reason };
  }

  const headers = { ...run.headers };
  headers["content-type"] ??= streamContentType(first.done ? undefined : first.value);
  const head = JSON.stringify(run.head({ status: run.status, headers, stream: { writer: run.writer } }));

  let pending: string[] = first.done ? [END_ENTRY] : [encodeChunk(first.value)];
  let flushing: Promise<void> | undefined;
  let failure: unknown;
  let headSent = false;

  const flushAll = async (): Promise<void> => {
    while (pending.length > 0) {
      const batch = pending;
      pending = [];
      let off = 0;
      let waitMs = FULL_WAIT_MIN_MS;
      while (off < batch.length) {
        const n = await channel.push(off === 0 ? batch : batch.slice(off), headSent ? undefined : head);
        if (n < 0) throw new StreamStopped("the requester stopped reading", false);
        if (n > 0) {
          headSent = true;
          off += n;
          waitMs = FULL_WAIT_MIN_MS;
        } else {
          // Full: the reader has STREAM_MAX_UNREAD chunks to read; wait for it (the push renews the alive key).
          await new Promise((r) => setTimeout(r, waitMs));
          waitMs = Math.min(waitMs * 2, FULL_WAIT_MAX_MS);
        }
      }
    }
  };
  const flush = (): void => {
    if (flushing || failure !== undefined) return;
    flushing = flushAll()
      .catch((err: unknown) => {
        failure = err;
        if (!abort.signal.aborted) abort.abort(err);
      })
      .finally(() => (flushing = undefined));
  };

  const renewer = setInterval(() => {
    channel.renew().then(
      (cancelled) => {
        if (cancelled && !abort.signal.aborted) abort.abort(new StreamStopped("the requester stopped reading", false));
      },
      () => undefined,
    );
  }, STREAM_ALIVE_RENEW_MS);

  let cancelled = false;
  try {
    flush();
    let done = first.done === true;
    while (!done) {
      const step = await next().catch((err: unknown) => ({ thrown: err }) as const);
      if (step === "aborted") break;
      if ("thrown" in step) {
        run.log.warn({ err: errorMessage(step.thrown) }, "handler threw mid-stream");
        pending.push(errorEntry("HANDLER_ERROR", errorMessage(step.thrown)));
        done = true;
        break;
      }
      if (step.done) {
        pending.push(END_ENTRY);
        done = true;
        break;
      }
      pending.push(encodeChunk(step.value));
      flush();
      if (pending.length >= STREAM_MAX_UNREAD) await flushing;
    }
    if (!done) {
      stopIteration();
      const reason: unknown = abort.signal.reason;
      if (reason instanceof StreamStopped && !reason.timeout) {
        cancelled = true;
        return { ended: "cancelled", status: run.status };
      }
      // A timeout ends the stream with TIMEOUT; a forced stop leaves it to the reader, which sees the writer gone.
      if (reason instanceof StreamStopped) pending.push(errorEntry("TIMEOUT", reason.message));
      else return { ended: "failed", status: run.status };
    }
    while (flushing) await flushing;
    flush();
    while (flushing) await flushing;
    if (failure !== undefined) {
      cancelled = failure instanceof StreamStopped;
      return { ended: cancelled ? "cancelled" : "failed", status: run.status };
    }
    return { ended: "complete", status: run.status };
  } finally {
    clearInterval(renewer);
    await channel.close(cancelled).catch(() => undefined);
  }
}

/** A stream for a requester that reads no reply list (a job's return value): every chunk, gathered. */
export async function collectStream(iterable: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const value of iterable) out.push(value);
  return out;
}
