/**
 * The HTTP router: matches a request to a deployment by routePrefix, turns it
 * into a queue job, and answers with the reply addressed to this router only.
 * Stateless; run as many as you like.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import type { Redis } from "ioredis";
import { v4 as uuidv4 } from "uuid";
import { FlotillaError, errorMessage } from "../errors.js";
import { RequestClient } from "../client/request-client.js";
import { parseJsonHash } from "../shared/json-hash.js";
import { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { HttpRequestData, Reply } from "../shared/protocol.js";
import type { DeploymentRecord, RouterInfo } from "../shared/records.js";
import { closeRedis, createRedis } from "../shared/redis.js";
import { settledWithin } from "../shared/settled-within.js";
import { RouteTable } from "./route-table.js";
import { readBody } from "./read-body.js";
import type { RouterMetrics } from "./router-metrics.js";

export interface RouterOptions {
  redisUrl: string;
  namespace: string;
  /** @default 8000 */
  port: number;
  /** @default "0.0.0.0" */
  bind: string;
  /** An unanswered request gets 504 after this long. @default 60 */
  requestTimeoutS: number;
  /** Larger bodies get 413. @default 10 MiB */
  maxBodyBytes: number;
  id?: string;
  /** Serve Prometheus metrics at GET /metrics on this port (0: any free port), on the `bind` address. @default undefined (off) */
  metricsPort?: number;
}

const REFRESH_MS = 1000;
/** How long start-up waits for the first route table before listening anyway. */
const START_REFRESH_WAIT_MS = 2000;

export class Router {
  readonly id: string;
  private readonly keys: Keys;
  private readonly client: RequestClient;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly routes = new RouteTable();
  private readonly server: http.Server;
  private refreshTimer: NodeJS.Timeout | undefined;
  private listenPort: number | undefined;
  private stopping = false;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  /** The deployments version the route table was read at (null: none stored, read every time). */
  private routesVersion: string | null = null;
  private refreshStartedAt = 0;
  private lastStuckWarnAt = 0;
  private stuckWarned = false;
  private readonly startedAt = Date.now();
  private metrics: RouterMetrics | undefined;
  /** The metrics server's port once listening. */
  metricsPort: number | undefined;

  constructor(
    private readonly options: RouterOptions,
    private readonly log: Logger,
  ) {
    this.id = options.id ?? `router-${uuidv4().slice(0, 8)}`;
    this.keys = new Keys(options.namespace);
    this.client = new RequestClient({ redisUrl: options.redisUrl, namespace: options.namespace, id: this.id });
    // Waits through outages (route refresh and registration are not the request path); refresh() keeps one pending at most.
    this.redis = createRedis(options.redisUrl, { name: `flotilla-${this.id}-control` });
    this.sub = createRedis(options.redisUrl, { name: `flotilla-${this.id}-sub` });
    this.server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 30_000, headersTimeout: 20_000 }, (req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 65_000;
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : "400 Bad Request";
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      else socket.destroy();
    });
  }

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    await this.sub.subscribe(this.keys.changes).catch(() => undefined);
    this.sub.on("message", (_c: string, message: string) => {
      if (message === "deployments") void this.refresh();
    });
    // Redis may be away at start: the router listens anyway (answering 503) and loads its routes once it is back.
    await settledWithin(this.refresh(), START_REFRESH_WAIT_MS);
    if (this.options.metricsPort !== undefined) {
      const { RouterMetrics } = await import("./router-metrics.js");
      this.metrics = new RouterMetrics();
      this.metricsPort = await this.metrics.listen(this.options.metricsPort, this.options.bind);
      this.log.info({ router: this.id, port: this.metricsPort, bind: this.options.bind }, "metrics listening");
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.bind, () => resolve());
    });
    const port = (this.server.address() as AddressInfo).port;
    this.listenPort = port;
    this.refreshTimer = setInterval(() => {
      this.warnIfRefreshStuck();
      void this.refresh();
    }, REFRESH_MS);
    await settledWithin(this.refresh(), START_REFRESH_WAIT_MS);
    this.log.info({ router: this.id, port, bind: this.options.bind }, "router listening");
    return port;
  }

  /**
   * Reloads the route table if the deployments changed and, once listening, renews this router's registration. One at a time: the
   * control connection waits through a Redis outage, and holds one refresh then, not one per tick; a
   * refresh asked for meanwhile runs once the current one ends, so no change is missed.
   */
  private refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshStartedAt = Date.now();
    this.refreshing = this.loadRoutes().finally(() => {
      this.refreshing = undefined;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        void this.refresh();
      }
    });
    return this.refreshing;
  }

  private async loadRoutes(): Promise<void> {
    try {
      // The version first: a change written between the two reads makes the next check read again.
      const version = await this.redis.get(this.keys.deploymentsVersion);
      if (version === null || version !== this.routesVersion) {
        const records = parseJsonHash<DeploymentRecord>(await this.redis.hgetall(this.keys.deployments));
        this.routes.update(records.values());
        this.routesVersion = version;
      }
      if (this.listenPort !== undefined) {
        const info: RouterInfo = { id: this.id, hostname: os.hostname(), pid: process.pid, port: this.listenPort, startedAt: this.startedAt };
        await this.redis
          .multi()
          .hset(this.keys.routers, this.id, JSON.stringify(info))
          .set(this.keys.routerAlive(this.id), "1", "PX", 5000)
          .exec();
      }
      if (this.stuckWarned) {
        this.log.info({ router: this.id, waitedMs: Date.now() - this.refreshStartedAt }, "route table refreshed again");
        this.stuckWarned = false;
      }
    } catch (err) {
      this.log.warn({ router: this.id, err: errorMessage(err) }, "route table refresh failed; serving the last one");
    }
  }

  /** Keeps serving the last route table while Redis is away, and says so every 10 s. */
  private warnIfRefreshStuck(): void {
    const now = Date.now();
    if (!this.refreshing || now - this.refreshStartedAt < 10_000 || now - this.lastStuckWarnAt < 10_000) return;
    this.lastStuckWarnAt = now;
    this.stuckWarned = true;
    this.log.warn({ router: this.id, waitingMs: now - this.refreshStartedAt, redis: this.redis.status }, "route table refresh waiting for Redis; serving the last one");
  }

  /** Every request but the router's own /-/ endpoints is counted once, under its deployment ("none" if no route matched). */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = performance.now();
    let deployment = "none";
    let status: number | undefined;
    this.metrics?.begin();
    try {
      const url = parseUrl(req.url ?? "/");
      if (url.pathname === "/-/healthz") return this.healthz(res);
      if (url.pathname === "/-/routes") {
        return this.send(res, 200, { "content-type": "application/json" }, JSON.stringify(Object.fromEntries(this.routes.list().map((r) => [r.prefix, r.deployment]))));
      }
      const route = this.routes.match(url.pathname);
      if (!route) throw new FlotillaError("NOT_FOUND", `no deployment serves path '${url.pathname}'`);
      deployment = route.deployment;
      const body = await readBody(req, this.options.maxBodyBytes);
      const request: HttpRequestData = {
        method: req.method ?? "GET",
        path: url.pathname,
        subPath: route.prefix === "/" ? url.pathname : url.pathname.slice(route.prefix.length) || "/",
        query: queryObject(url.searchParams),
        headers: headerObject(req),
        body,
      };
      const reply = await this.client.submit(route.deployment, { kind: "http", http: request }, {
        timeoutMs: this.options.requestTimeoutS * 1000,
        ...(route.maxQueuedRequests !== undefined ? { maxQueued: route.maxQueuedRequests } : {}),
      });
      this.answer(res, reply);
      status = reply.status;
    } catch (err) {
      status = this.fail(req, res, err);
    } finally {
      this.metrics?.end(deployment, status, (performance.now() - startedAt) / 1000);
    }
  }

  private answer(res: ServerResponse, reply: Reply): void {
    const headers: Record<string, string> = { ...reply.headers, "x-flotilla-replica": reply.replica ?? "", "x-flotilla-version": reply.version ?? "" };
    this.send(res, reply.status, headers, reply.base64 ? Buffer.from(reply.body, "base64") : reply.body);
  }

  /** Answers with the error; returns its status. */
  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): number {
    const error = err instanceof FlotillaError ? err : new FlotillaError("INTERNAL", errorMessage(err), { cause: err });
    if (error.code === "INTERNAL") this.log.error({ err: errorMessage(err), url: req.url }, "router error");
    const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
    if (error.status === 503) headers["retry-after"] = "1";
    // No "connection: close": Node would destroy the socket right after the response, and the reset can erase the 413.
    this.send(res, error.status, headers, JSON.stringify(error.toJSON()));
    if (error.code === "PAYLOAD_TOO_LARGE") res.on("finish", () => lingeringClose(req));
    return error.status;
  }

  private send(res: ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
    if (res.headersSent || res.destroyed) return;
    // Stopping: the connection ends after this answer, so no client sends another request on it. Not on a 413,
    // whose connection lingeringClose ends: "close" would reset it under the unread upload and can erase the answer.
    const close = this.stopping && status !== 413;
    res.writeHead(status, { ...headers, "content-length": String(Buffer.byteLength(body)), ...(close ? { connection: "close" } : {}) });
    res.end(body);
  }

  private healthz(res: ServerResponse): void {
    const ok = this.client.connection.status === "ready";
    this.send(res, ok ? 200 : 503, { "content-type": "application/json" }, JSON.stringify({ ok, router: this.id, redis: this.client.connection.status }));
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Stops accepting connections, waits for in-flight requests to be answered, then closes. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + this.options.requestTimeoutS * 1000;
    while (this.client.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.server.closeAllConnections();
    await closed;
    // Deregister if Redis answers soon; otherwise the registration expires by itself (routerAlive has a TTL).
    await settledWithin(this.redis.multi().hdel(this.keys.routers, this.id).del(this.keys.routerAlive(this.id)).exec(), 1000);
    await this.client.close();
    await closeRedis(this.sub);
    if (this.redis.status === "ready") await closeRedis(this.redis);
    else this.redis.disconnect();
    await this.metrics?.close();
    this.log.info({ router: this.id }, "router stopped");
  }
}

/** How long a refused upload may keep sending (discarded) after its 413 before the router hangs up. */
const LINGER_MS = 2000;

/**
 * Closes the connection of a request whose body was refused while the client may still be sending.
 * Destroying at once, with unread data in the receive buffer, makes the kernel send a reset that can
 * erase the 413 before the client reads it (RFC 9112 §9.6). Instead: the 413, then FIN; keep reading
 * and discarding (never buffering); destroy when the client closes its side, or after LINGER_MS.
 */
function lingeringClose(req: IncomingMessage): void {
  const socket = req.socket;
  req.resume();
  socket.end();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
}

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw, "http://router");
    decodeURIComponent(url.pathname);
    decodeURIComponent(url.search);
  } catch {
    throw new FlotillaError("INVALID_REQUEST", `the request URL is not valid (bad percent-encoding?): ${raw.slice(0, 200)}`);
  }
  return url;
}

function queryObject(params: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of params) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function headerObject(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}
