/**
 * The streaming cell: a handler that yields 1,000 small chunks, read over one
 * connection, one request after another, through Flotilla and from a bare
 * node:http server writing the same chunks. Reports the time to first chunk
 * (from sending the request to the first body bytes) and chunks per second
 * (chunks received ÷ the time from request to last chunk).
 */
import http from "node:http";
import { fileURLToPath } from "node:url";
import type { BenchConfig } from "./config.js";
import type { FlotillaTarget } from "./flotilla-target.js";
import { startTsProc } from "./proc.js";
import { START_TIMEOUT_MS, STOP_GRACE_MS } from "./target.js";

export const STREAM_CHUNKS = 1000;

export interface StreamSide {
  requests: number;
  firstChunkP50Ms: number;
  firstChunkP99Ms: number;
  chunksPerS: number;
}

export interface StreamingResult {
  chunks: number;
  flotilla: StreamSide;
  rawHttp: StreamSide;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One request: ms to the first body bytes and to the end. */
function once(url: string): Promise<{ firstMs: number; totalMs: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstMs = -1;
    let bytes = 0;
    http
      .get(url, { agent }, (res) => {
        res.on("data", (chunk: Buffer) => {
          if (firstMs < 0) firstMs = performance.now() - t0;
          bytes += chunk.length;
        });
        res.on("end", () => (res.statusCode === 200 ? resolve({ firstMs, totalMs: performance.now() - t0, bytes }) : reject(new Error(`status ${res.statusCode}`))));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

function quantile(sorted: number[], q: number): number {
  return Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 1000) / 1000;
}

async function measureSide(url: string, seconds: number, warmupS: number): Promise<StreamSide> {
  const until = (s: number): number => performance.now() + s * 1000;
  for (const end = until(warmupS); performance.now() < end; ) await once(url);
  const firsts: number[] = [];
  let totalMs = 0;
  for (const end = until(seconds); performance.now() < end; ) {
    const r = await once(url);
    firsts.push(r.firstMs);
    totalMs += r.totalMs;
  }
  firsts.sort((a, b) => a - b);
  return {
    requests: firsts.length,
    firstChunkP50Ms: quantile(firsts, 0.5),
    firstChunkP99Ms: quantile(firsts, 0.99),
    chunksPerS: Math.round((firsts.length * STREAM_CHUNKS) / (totalMs / 1000)),
  };
}

export async function measureStreaming(target: FlotillaTarget, config: BenchConfig, log: (message: string) => void): Promise<StreamingResult> {
  await target.deploy("tokens", "tokens.ts");
  const flotilla = await measureSide(`${new URL(target.url).origin}/tokens?n=${STREAM_CHUNKS}`, config.durationS, config.warmupS);
  log(`streaming flotilla: first chunk p50 ${flotilla.firstChunkP50Ms} ms, ${flotilla.chunksPerS} chunks/s`);
  const raw = startTsProc("raw-stream", fileURLToPath(new URL("./baselines/raw-stream.ts", import.meta.url)));
  try {
    const port = await raw.waitForJson("to listen", (e) => (e.event === "listening" && typeof e.port === "number" ? e.port : undefined), START_TIMEOUT_MS);
    const rawHttp = await measureSide(`http://127.0.0.1:${port}/?n=${STREAM_CHUNKS}`, config.durationS, config.warmupS);
    log(`streaming raw node:http: first chunk p50 ${rawHttp.firstChunkP50Ms} ms, ${rawHttp.chunksPerS} chunks/s`);
    return { chunks: STREAM_CHUNKS, flotilla, rawHttp };
  } finally {
    await raw.stop(STOP_GRACE_MS);
  }
}

export function renderStreaming(result: StreamingResult | undefined, error: string | undefined): string[] {
  if (!result) return error ? [`\nstreaming: not measured (${error})`] : [];
  const line = (label: string, s: StreamSide): string =>
    `  ${label}: first chunk p50 ${s.firstChunkP50Ms} ms, p99 ${s.firstChunkP99Ms} ms; ${s.chunksPerS} chunks/s (${s.requests} requests)`;
  return [`\nstreaming at 1 connection, a handler yielding ${result.chunks} small chunks`, line("flotilla", result.flotilla), line("raw node:http", result.rawHttp)];
}
