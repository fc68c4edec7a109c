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
import { ERROR_CODES, FlotillaError, errorMessage } from "../errors.js";
import { RequestClient } from "../client/request-client.js";
import { readBody } from "../shared/http-body.js";
import { parseJsonHash } from "../shared/json-hash.js";
import { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { HttpRequestData, Reply } from "../shared/protocol.js";
import { errorAnswer } from "../shared/reply.js";
import type { DeploymentRecord, RouterInfo } from "../shared/records.js";
import { closeRedis, createRedis } from "../shared/redis.js";
import { settledWithin } from "../shared/settled-within.js";
import { Ticker } from "../shared/ticker.js";
import { AsyncRequestClient } from "../client/async-request-client.js";
import { AsyncRoutes, prefersAsync, REQUESTS_PATH } from "./async-routes.js";
import { parseTarget, toUrl } from "./request-target.js";
import { RouteTable } from "./route-table.js";
import { writeStreamResponse } from "./stream-response.js";
import { warmUp } from "./warm-up.js";
import type { RouterMetrics } from "./router-metrics.js";
import type { RouterOptions } from "./router-options.js";

export type { RouterOptions };

const REFRESH_MS = 1000;
/** How long start-up waits for the first route table before listening anyway. */
const START_REFRESH_WAIT_MS = 2000;
/** How long a route table load waits for its deployments' queues to be set up. */
const PREPARE_WAIT_MS = 1000;
/** While a refresh waits for Redis, say so this often. */
const STUCK_WARN_MS = 10_000;

export class Router {
  readonly id: string;
  private readonly keys: Keys;
  private readonly client: RequestClient;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly routes = new RouteTable();
  private readonly asyncClient: AsyncRequestClient;
  private readonly asyncRoutes: AsyncRoutes;
  private readonly server: http.Server;
  /** Reloads the route table and renews the registration: one run at a time, once more when nudged during one. */
  private readonly refresher = new Ticker(() => this.refresh(), () => REFRESH_MS);
  private listenPort: number | undefined;
  private stopping = false;
  /** The deployments version the route table was read at (null: none stored, read every time). */
  private routesVersion: string | null = null;
  private readonly startedAt = Date.now();
  private metrics: RouterMetrics | undefined;
  /** Streamed answers being written: a stopping router finishes them too. */
  private openStreams = 0;
  /** The metrics server's port once listening. */
  metricsPort: number | undefined;

  /** @param options validated, defaults filled in: see parseRouterOptions */
  constructor(
    private readonly options: Readonly<RouterOptions>,
    private readonly log: Logger,
  ) {
    this.id = options.id ?? `router-${uuidv4().slice(0, 8)}`;
    this.keys = new Keys(options.namespace);
    this.client = new RequestClient({ redisUrl: options.redisUrl, namespace: options.namespace, id: this.id });
    this.asyncClient = new AsyncRequestClient(this.client.connection, this.keys, { queues: this.client.queues, counter: this.client.counter });
    this.asyncRoutes = new AsyncRoutes(this.asyncClient);
    // Waits through outages (route refresh and registration are not the request path); the refresher keeps one pending at most.
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
    this.refresher.start();
    await this.sub.subscribe(this.keys.changes).catch(() => undefined);
    this.sub.on("message", (_c: string, message: string) => {
      if (message === "deployments") this.refresher.nudge();
    });
    // Redis may be away at start: the router listens anyway (answering 503) and loads its routes once it is back.
    await settledWithin(this.refresher.runNow(), START_REFRESH_WAIT_MS);
    if (this.options.metricsPort !== undefined) {
      const { RouterMetrics } = await import("./router-metrics.js");
      this.metrics = new RouterMetrics(
        () => this.client.repliesBy,
        () => this.client.directJobs,
      );
      this.metricsPort = await this.metrics.listen(this.options.metricsPort, this.options.bind);
      this.log.info({ router: this.id, port: this.metricsPort, bind: this.options.bind }, "metrics listening");
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.port, this.options.bind, () => resolve());
    });
    const port = (this.server.address() as AddressInfo).port;
    this.listenPort = port;
    // Registers at once rather than at the next tick.
    await settledWithin(this.refresher.runNow(), START_REFRESH_WAIT_MS);
    await warmUp(this.options.bind, port, "/-/healthz");
    this.log.info({ router: this.id, port, bind: this.options.bind }, "router listening");
    return port;
  }

  /**
   * One refresh: reloads the route table if the deployments changed and, once listening, renews this
   * router's registration. The control connection waits through a Redis outage, so a run can last as long
   * as the outage; meanwhile the router serves the last route table and says so every STUCK_WARN_MS.
   */
  private async refresh(): Promise<void> {
    const startedAt = Date.now();
    let warned = false;
    const watchdog = setInterval(() => {
      warned = true;
      this.log.warn({ router: this.id, waitingMs: Date.now() - startedAt, redis: this.redis.status }, "route table refresh waiting for Redis; serving the last one");
    }, STUCK_WARN_MS);
    try {
      await this.loadRoutes();
      if (warned) this.log.info({ router: this.id, waitedMs: Date.now() - startedAt }, "route table refreshed again");
    } catch (err) {
      this.log.warn({ router: this.id, err: errorMessage(err) }, "route table refresh failed; serving the last one");
    } finally {
      clearInterval(watchdog);
    }
  }

  private async loadRoutes(): Promise<void> {
    // The version first: a change written between the two reads makes the next check read again.
    const version = await this.redis.get(this.keys.deploymentsVersion);
    if (version === null || version !== this.routesVersion) {
      const records = parseJsonHash<DeploymentRecord>(await this.redis.hgetall(this.keys.deployments));
      this.routes.update(records.values());
      this.routesVersion = version;
      // Async requests answer 202 once their job is added: their queues are set up now, not by the first one.
      await settledWithin(this.asyncClient.prepare(this.routes.list().map((r) => r.deployment)), PREPARE_WAIT_MS);
    }
    if (this.listenPort !== undefined) {
      const info: RouterInfo = { id: this.id, hostname: os.hostname(), pid: process.pid, port: this.listenPort, startedAt: this.startedAt };
      await this.redis
        .multi()
        .hset(this.keys.routers, this.id, JSON.stringify(info))
        .set(this.keys.routerAlive(this.id), "1", "PX", 5000)
        .exec();
    }
  }

  /** Every request but the router's own /-/ endpoints is counted once, under its deployment ("none" if no route matched). */
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = performance.now();
    let deployment = "none";
    let status: number | undefined;
    this.metrics?.begin();
    try {
      const raw = req.url ?? "/";
      const target = parseTarget(raw);
      const { pathname } = target;
      if (pathname.charCodeAt(1) === 45 /* "-" */ && pathname.startsWith("/-/")) {
        if (pathname === "/-/healthz") return this.healthz(res);
        if (pathname === "/-/routes") {
          return this.send(res, 200, { "content-type": "application/json" }, JSON.stringify(Object.fromEntries(this.routes.list().map((r) => [r.prefix, r.deployment]))));
        }
        if (pathname.startsWith(REQUESTS_PATH)) {
          const answer = await this.asyncRoutes.serve(req, toUrl(target, raw));
          return this.send(res, answer.status, answer.headers, answer.body);
        }
      }
      const route = this.routes.match(pathname);
      if (!route) throw new FlotillaError("NOT_FOUND", `no deployment serves path '${pathname}'`);
      deployment = route.deployment;
      const request: HttpRequestData = {
        method: req.method ?? "GET",
        path: pathname,
        subPath: route.prefix === "/" ? pathname : pathname.slice(route.prefix.length) || "/",
        query: target.query,
        headers: headerObject(req),
        body: hasBody(req) ? await readBody(req, this.options.maxBodyBytes) : "",
      };
      if (request.headers.prefer !== undefined && prefersAsync(request.headers.prefer)) {
        const accepted = await this.asyncRoutes.accept(route, request);
        this.send(res, accepted.status, accepted.headers, accepted.body);
        status = accepted.status;
        return;
      }
      // A client that goes away withdraws its request, or aborts its handler's signal. "close" also
      // comes after an answer, when there is nothing left to withdraw.
      let cancel: ((reason: Error) => void) | undefined;
      let gone = false;
      res.on("close", () => {
        if (res.writableEnded) return;
        gone = true;
        cancel?.(clientGone());
      });
      const reply = await this.client.submit(route.deployment, { kind: "http", http: request }, {
        timeoutMs: this.options.requestTimeoutS * 1000,
        cancelWith: (c) => {
          cancel = c;
          if (gone) c(clientGone());
        },
        ...(route.maxQueuedRequests !== undefined ? { maxQueued: route.maxQueuedRequests } : {}),
      });
      status = reply.status;
      if (reply.stream) await this.stream(req, res, route.deployment, reply, startedAt);
      else this.answer(res, reply);
    } catch (err) {
      status = this.fail(req, res, err);
    } finally {
      this.metrics?.end(deployment, status, (performance.now() - startedAt) / 1000);
    }
  }

  private async stream(req: IncomingMessage, res: ServerResponse, deployment: string, head: Reply, startedAt: number): Promise<void> {
    this.openStreams++;
    try {
      const reader = this.client.openStream(deployment, head, {
        idleTimeoutMs: this.options.requestTimeoutS * 1000,
        onEnd: (_outcome, chunks) => this.metrics?.chunksSent(deployment, chunks),
      });
      await writeStreamResponse(req, res, head, reader, {
        close: this.stopping,
        onFirstChunk: () => this.metrics?.firstChunk(deployment, (performance.now() - startedAt) / 1000),
      });
    } finally {
      this.openStreams--;
    }
  }

  private answer(res: ServerResponse, reply: Reply): void {
    // The reply was parsed for this answer alone: its headers are ours to add to.
    const headers: Record<string, string> = typeof reply.headers === "object" && reply.headers !== null ? reply.headers : {};
    headers["x-flotilla-replica"] = reply.replica ?? "";
    headers["x-flotilla-version"] = reply.version ?? "";
    this.write(res, reply.status, headers, reply.base64 ? Buffer.from(reply.body, "base64") : reply.body);
  }

  /** Answers with the error; returns its status. */
  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): number {
    const error = err instanceof FlotillaError ? err : new FlotillaError("INTERNAL", errorMessage(err), { cause: err });
    if (error.code === "INTERNAL") this.log.error({ err: errorMessage(err), url: req.url }, "router error");
    const answer = errorAnswer(error);
    // No "connection: close": Node would destroy the socket right after the response, and the reset can erase the 413.
    this.send(res, answer.status, answer.headers, answer.body);
    if (error.code === "PAYLOAD_TOO_LARGE") res.on("finish", () => lingeringClose(req));
    return answer.status;
  }

  private send(res: ServerResponse, status: number, headers: Readonly<Record<string, string>>, body: string | Buffer): void {
    this.write(res, status, { ...headers }, body);
  }

  /** Like send, with a header object of the caller's to give away: the length (and connection) are set on it. */
  private write(res: ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
    if (res.headersSent || res.destroyed) return;
    headers["content-length"] = String(Buffer.byteLength(body));
    // Stopping: the connection ends after this answer, so no client sends another request on it. Not on a 413,
    // whose connection lingeringClose ends: "close" would reset it under the unread upload and can erase the answer.
    if (this.stopping && status !== ERROR_CODES.PAYLOAD_TOO_LARGE.status) headers.connection = "close";
    res.writeHead(status, headers);
    res.end(body);
  }

  private healthz(res: ServerResponse): void {
    const ok = this.client.connection.status === "ready";
    this.send(res, ok ? 200 : ERROR_CODES.REDIS_UNAVAILABLE.status, { "content-type": "application/json" }, JSON.stringify({ ok, router: this.id, redis: this.client.connection.status }));
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  /** Stops accepting connections, waits for in-flight requests to be answered, then closes. */
  async stop(): Promise<void> {
    this.stopping = true;
    // Not awaited: a run waiting for an absent Redis ends when the connection is closed below.
    void this.refresher.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + this.options.requestTimeoutS * 1000;
    while (this.client.inflight + this.openStreams > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.server.closeAllConnections();
    await closed;
    // Deregister if Redis answers soon; otherwise the registration expires by itself (routerAlive has a TTL).
    await settledWithin(this.redis.multi().hdel(this.keys.routers, this.id).del(this.keys.routerAlive(this.id)).exec(), 1000);
    await this.asyncClient.close();
    await this.client.close();
    await closeRedis(this.sub);
    if (this.redis.status === "ready") await closeRedis(this.redis);
    else this.redis.disconnect();
    await this.metrics?.close();
    this.log.info({ router: this.id }, "router stopped");
  }
}

const clientGone = (): FlotillaError => new FlotillaError("INVALID_REQUEST", "the client went away");

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

/** The request's headers, lower-cased; repeated ones (set-cookie is an array in Node) joined with ", ". */
function headerObject(req: IncomingMessage): Record<string, string> {
  const headers = req.headers;
  for (const k in headers) {
    if (typeof headers[k] !== "string") return joinedHeaders(headers);
  }
  // Node builds this object for the request alone, with string values: it is serialised as it is.
  return headers as Record<string, string>;
}

function joinedHeaders(headers: IncomingMessage["headers"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

/** RFC 9112 §6.3: a request with neither Content-Length nor Transfer-Encoding has no body; "0" has none either. */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}
