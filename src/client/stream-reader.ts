/**
 * Reads a streamed answer for its requester: the chunks one writer appends to
 * the stream's list, in order, each as soon as it is there. Reads only when
 * its consumer asks for the next chunk, so a slow consumer leaves the writer
 * waiting at the bound instead of buffering here. Ends with the end entry;
 * rejects with the writer's error, with REPLICA_CRASHED when the writer's alive
 * key is gone before the end, and with TIMEOUT when no chunk comes for the
 * idle timeout. Stopping early (break, cancel()) cancels the stream.
 */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { StreamReaderChannel } from "../queue/stream-channel.js";
import { decodeEntry, type StreamChunk } from "../shared/stream-protocol.js";

/** How long one blocking read waits before the reader checks on the writer and the idle timeout. */
const READ_BLOCK_S = 0.5;
const READ_COUNT = 64;

export interface StreamReaderOptions {
  deployment: string;
  channel: StreamReaderChannel;
  /** Commands that must not wait behind a blocking read (the cancel). */
  control: Redis;
  /** A connection of its own for the blocking reads, given back at the end. */
  acquire(): Redis;
  release(conn: Redis): void;
  idleTimeoutMs: number;
  /** Called once, when the stream ends, however it ends. */
  onEnd?(outcome: "complete" | "error" | "cancelled", chunks: number): void;
}

export class StreamReader implements AsyncIterable<StreamChunk> {
  private cancelled = false;
  private ended = false;
  private iterating = false;
  private chunks = 0;

  constructor(private readonly options: StreamReaderOptions) {}

  /** Stops reading and tells the writer, which ends the handler's iteration. */
  cancel(): void {
    if (this.ended || this.cancelled) return;
    this.cancelled = true;
    void this.options.channel.cancel(this.options.control, this.options.deployment).catch(() => undefined);
    if (!this.iterating) this.end("cancelled", 0);
  }

  private end(outcome: "complete" | "error" | "cancelled", chunks: number): void {
    if (this.ended) return;
    this.ended = true;
    this.options.onEnd?.(outcome, chunks);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamChunk, void, undefined> {
    if (this.iterating || this.ended) throw new FlotillaError("INTERNAL", "a stream can be read only once");
    this.iterating = true;
    const { channel, idleTimeoutMs } = this.options;
    const conn = this.options.acquire();
    let outcome: "complete" | "error" | "cancelled" = "cancelled";
    let clean = false;
    try {
      let lastAt = Date.now();
      while (!this.cancelled) {
        let raw = await channel.read(conn, READ_COUNT, READ_BLOCK_S);
        if (this.cancelled) break;
        if (raw.length === 0) {
          if (!(await channel.writerAlive(conn))) {
            // The writer may have pushed its last entries just before it let go of the stream.
            raw = await channel.read(conn, READ_COUNT, 0.01);
            if (raw.length === 0) {
              outcome = "error";
              throw new FlotillaError("REPLICA_CRASHED", `the replica streaming the answer of deployment '${this.options.deployment}' stopped before the end`);
            }
          } else if (Date.now() - lastAt > idleTimeoutMs) {
            outcome = "error";
            throw new FlotillaError("TIMEOUT", `no chunk from deployment '${this.options.deployment}' within ${idleTimeoutMs} ms`);
          } else continue;
        }
        lastAt = Date.now();
        for (const entry of raw) {
          const decoded = decodeEntry(entry);
          if (decoded.kind === "end") {
            outcome = "complete";
            clean = true;
            return;
          }
          if (decoded.kind === "error") {
            outcome = "error";
            clean = true;
            throw new FlotillaError(decoded.code, decoded.message, { details: { deployment: this.options.deployment } });
          }
          this.chunks++;
          yield decoded;
          if (this.cancelled) break;
        }
      }
    } finally {
      if (!clean) {
        // Stopped early, failed or crashed: make sure no attempt at the request goes on writing.
        this.cancelled = true;
        await channel.cancel(this.options.control, this.options.deployment).catch(() => undefined);
      } else await channel.finish(conn).catch(() => undefined);
      this.options.release(conn);
      this.end(outcome, this.chunks);
    }
  }
}
