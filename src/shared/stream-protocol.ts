/**
 * The wire format of streamed answers. A handler whose result is an async
 * iterable streams: its first chunk goes out with a head (a Reply whose
 * `stream` names the chunk list, sent on the requester's reply list) and every
 * chunk is one entry of that list: a one-letter kind and the data.
 *   s<text>   a string chunk        b<base64>  a bytes chunk
 *   j<json>   any other value       e          the end
 *   x<json>   the end by an error: { code, message }
 */
import type { ErrorCode } from "../errors.js";

/** At most this many unread chunks wait in a stream's list; beyond that the handler's iteration waits. */
export const STREAM_MAX_UNREAD = 64;
/** The writer renews its alive key this often; a reader that finds it gone knows the replica died. */
export const STREAM_ALIVE_RENEW_MS = 500;
export const STREAM_ALIVE_TTL_MS = 3000;
/** How long a stream's keys outlive their last write when nobody reads them. */
export const STREAM_TTL_MS = 120_000;

export type StreamChunk = { kind: "text"; text: string } | { kind: "bytes"; bytes: Buffer } | { kind: "value"; value: unknown };

export type StreamEntry = StreamChunk | { kind: "end" } | { kind: "error"; code: ErrorCode; message: string };

/** What a head reply carries: which writer's chunk list to read. */
export interface StreamHead {
  writer: string;
}

/** Whether a handler's result (or a response()'s body) is something to stream. */
export function isStreamable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function";
}

/** One yielded value as a list entry. */
export function encodeChunk(value: unknown): string {
  if (typeof value === "string") return `s${value}`;
  if (value instanceof Uint8Array) return `b${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64")}`;
  return `j${JSON.stringify(value ?? null)}`;
}

export const END_ENTRY = "e";

export function errorEntry(code: ErrorCode, message: string): string {
  return `x${JSON.stringify({ code, message })}`;
}

export function decodeEntry(raw: string): StreamEntry {
  const data = raw.slice(1);
  switch (raw[0]) {
    case "s":
      return { kind: "text", text: data };
    case "b":
      return { kind: "bytes", bytes: Buffer.from(data, "base64") };
    case "j":
      return { kind: "value", value: JSON.parse(data) as unknown };
    case "e":
      return { kind: "end" };
    default: {
      const { code, message } = JSON.parse(data) as { code: ErrorCode; message: string };
      return { kind: "error", code, message };
    }
  }
}

/** The content type a stream gets from its first chunk, unless the handler set one. */
export function streamContentType(first: unknown): string {
  if (first === undefined || typeof first === "string") return "text/plain; charset=utf-8";
  if (first instanceof Uint8Array) return "application/octet-stream";
  return "application/x-ndjson";
}
