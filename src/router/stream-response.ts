/**
 * Writes a streamed answer to its HTTP client: each chunk as it comes (chunked
 * transfer), strings and bytes as they are, other values as one JSON line; or,
 * when the client asked for `text/event-stream`, as SSE `data:` events ending
 * with `event: end`. A stream that fails after its head ends visibly: SSE with
 * `event: error`, plain HTTP by aborting the transfer (no terminating chunk).
 * A client that goes away cancels the stream.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { errorMessage, FlotillaError } from "../errors.js";
import type { StreamReader } from "../client/stream-reader.js";
import type { Reply } from "../shared/protocol.js";
import type { StreamChunk } from "../shared/stream-protocol.js";

export interface StreamResponseOptions {
  /** The connection ends after this answer (the router is stopping). */
  close: boolean;
  /** Called once with the first chunk written. */
  onFirstChunk?(): void;
}

/** Whether the client asked for server-sent events. */
export function wantsEventStream(req: IncomingMessage): boolean {
  return (req.headers.accept ?? "").includes("text/event-stream");
}

function sseData(text: string): string {
  return `${text
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}`)
    .join("\n")}\n\n`;
}

function plainBytes(chunk: StreamChunk): string | Buffer {
  if (chunk.kind === "text") return chunk.text;
  if (chunk.kind === "bytes") return chunk.bytes;
  return `${JSON.stringify(chunk.value)}\n`;
}

function sseEvent(chunk: StreamChunk): string {
  if (chunk.kind === "text") return sseData(chunk.text);
  if (chunk.kind === "bytes") return sseData(chunk.bytes.toString("base64"));
  return sseData(JSON.stringify(chunk.value));
}

/** Resolves once the client can take more, or has gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** Writes the stream; resolves with how it ended. Never throws. */
export async function writeStreamResponse(req: IncomingMessage, res: ServerResponse, head: Reply, reader: StreamReader, options: StreamResponseOptions): Promise<"complete" | "error" | "cancelled"> {
  const sse = wantsEventStream(req);
  const headers: Record<string, string> = { ...head.headers, "x-flotilla-replica": head.replica ?? "", "x-flotilla-version": head.version ?? "" };
  delete headers["content-length"];
  if (sse) {
    headers["content-type"] = "text/event-stream; charset=utf-8";
    headers["cache-control"] = "no-cache";
  }
  if (options.close) headers.connection = "close";
  const onClose = (): void => {
    if (!res.writableEnded) reader.cancel();
  };
  res.on("close", onClose);
  res.writeHead(head.status, headers);
  let first = true;
  try {
    for await (const chunk of reader) {
      if (res.destroyed) break;
      const ok = res.write(sse ? sseEvent(chunk) : plainBytes(chunk));
      if (first) {
        first = false;
        options.onFirstChunk?.();
      }
      if (!ok) await drained(res);
    }
    if (res.destroyed) return "cancelled";
    res.end(sse ? "event: end\ndata: \n\n" : undefined);
    return "complete";
  } catch (err) {
    const error = err instanceof FlotillaError ? err : new FlotillaError("INTERNAL", errorMessage(err), { cause: err });
    if (res.destroyed) return "cancelled";
    if (sse) res.end(`event: error\ndata: ${JSON.stringify({ code: error.code, message: error.message })}\n\n`);
    else res.destroy();
    return "error";
  } finally {
    res.off("close", onClose);
  }
}
