/**
 * Closed-loop HTTP load for e2e tests: N clients each send a request, wait for
 * its answer, and send the next, until stopped or a bound is reached. Counts
 * every outcome so tests can assert "zero non-2xx" and see what answered.
 */
import { Agent, request } from "undici";

export interface LoadResult {
  sent: number;
  ok: number;
  /** Non-2xx answers: status and body, in order. */
  failures: Array<{ status: number; body: string; at: number }>;
  /** Requests that got no HTTP answer at all (connection errors). */
  errors: Array<{ message: string; at: number }>;
  /** `x-flotilla-version` header → answers carrying it, in order of first appearance. */
  versions: Map<string, number>;
  /** The sequence of versions, one entry per 2xx answer (for "switches from old to new"). */
  versionSequence: string[];
  latenciesMs: number[];
}

export interface LoadOptions {
  concurrency: number;
  /** Stop after this long even if not stopped. @default 120000 */
  maxDurationMs?: number;
  method?: string;
  body?: string;
  /** Per-request timeout. @default 70000 */
  requestTimeoutMs?: number;
}

export interface RunningLoad {
  /** Stops sending and resolves once every in-flight request is answered. */
  stop(): Promise<LoadResult>;
  /** The counts so far. */
  readonly result: LoadResult;
}

export function startLoad(url: string, options: LoadOptions): RunningLoad {
  const dispatcher = new Agent({ connections: options.concurrency, pipelining: 1, keepAliveTimeout: 10_000 });
  const result: LoadResult = { sent: 0, ok: 0, failures: [], errors: [], versions: new Map(), versionSequence: [], latenciesMs: [] };
  const deadline = Date.now() + (options.maxDurationMs ?? 120_000);
  let stopped = false;
  const client = async (): Promise<void> => {
    while (!stopped && Date.now() < deadline) {
      result.sent++;
      const started = performance.now();
      try {
        const res = await request(url, {
          method: (options.method ?? "GET") as "GET",
          ...(options.body !== undefined ? { body: options.body } : {}),
          dispatcher,
          headersTimeout: options.requestTimeoutMs ?? 70_000,
          bodyTimeout: options.requestTimeoutMs ?? 70_000,
        });
        const body = await res.body.text();
        result.latenciesMs.push(performance.now() - started);
        if (res.statusCode >= 200 && res.statusCode < 300) {
          result.ok++;
          const version = String(res.headers["x-flotilla-version"] ?? "");
          result.versions.set(version, (result.versions.get(version) ?? 0) + 1);
          result.versionSequence.push(version);
        } else {
          result.failures.push({ status: res.statusCode, body: body.slice(0, 300), at: Date.now() });
        }
      } catch (err) {
        result.errors.push({ message: err instanceof Error ? err.message : String(err), at: Date.now() });
      }
    }
  };
  const clients = Array.from({ length: options.concurrency }, () => client());
  return {
    result,
    async stop() {
      stopped = true;
      await Promise.all(clients);
      await dispatcher.close();
      return result;
    },
  };
}

/** A short summary for assertion messages. */
export function describeLoad(r: LoadResult): string {
  return `sent ${r.sent}, ok ${r.ok}, non-2xx ${r.failures.length}${r.failures[0] ? ` (first: ${r.failures[0].status} ${r.failures[0].body})` : ""}, errors ${r.errors.length}${r.errors[0] ? ` (first: ${r.errors[0].message})` : ""}`;
}
