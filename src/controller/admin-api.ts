/**
 * The admin HTTP API, served by every controller (leader or standby: writes go
 * to Redis, so any of them can take them). JSON bodies have the deploy file's
 * shape. With FLOTILLA_ADMIN_TOKEN set, every call needs
 * `Authorization: Bearer <token>`.
 *
 *   GET    /api/status              the cluster, as `flotilla status --json`
 *   GET    /api/deployments         { deployments: [spec, ...] }
 *   PUT    /api/deployments         apply { deployments: [...] } (all or nothing)
 *   GET    /api/deployments/<name>  { spec, status }
 *   DELETE /api/deployments/<name>  delete one deployment
 *   GET    /api/deployments/<name>/logs  { lines: [...] } oldest first (query: since, replica, limit)
 *   GET    /metrics                 Prometheus text: the status as gauges, and process metrics
 * and the dashboard at `/` with its routes (history, rollback, traffic): see admin-dashboard-api.ts.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import { FlotillaError, errorMessage } from "../errors.js";
import { readClusterState } from "../client/cluster-state.js";
import { buildStatus } from "../client/cluster-status.js";
import { applyDeployments, deleteDeployment, getDeployment } from "../client/deployment-store.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { DeploymentRecord, DeploymentStatusRecord } from "../shared/records.js";
import { parseDeployFile } from "../spec/deployment-spec.js";
import { readBody } from "../shared/http-body.js";
import { assertRedisReady, dashboardApiRoute, dashboardPage } from "./admin-dashboard-api.js";
import type { ClusterMetrics } from "./cluster-metrics.js";
import type { AdminApiOptions } from "./controller-options.js";
import { logsRoute } from "./logs-route.js";

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Constant-time check of an Authorization header against the token. */
export function authorized(header: string | undefined, token: string | undefined): boolean {
  if (!token) return true;
  const match = /^Bearer (.+)$/.exec(header ?? "");
  return timingSafeEqual(digest(match?.[1] ?? ""), digest(token)) && match !== null;
}

export class AdminApi {
  private readonly server: http.Server;
  /** Loaded on the first scrape: a controller nobody scrapes never loads prom-client. */
  private metrics: Promise<ClusterMetrics> | undefined;

  /** `isLeader` tells whether this process holds the leader lease now (for `flotilla_controller_leader`). */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly options: AdminApiOptions,
    private readonly log: Logger,
    private readonly isLeader: () => boolean = () => false,
  ) {
    this.server = http.createServer({ headersTimeout: 20_000, requestTimeout: 60_000 }, (req, res) => void this.handle(req, res));
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", (err: NodeJS.ErrnoException) =>
        reject(new FlotillaError("INVALID_REQUEST", `admin API cannot listen on ${this.options.bind}:${this.options.port}: ${err.code === "EADDRINUSE" ? "the port is in use (choose another with --admin-port)" : err.message}`)),
      );
      this.server.listen(this.options.port, this.options.bind, () => resolve());
    });
    const port = (this.server.address() as AddressInfo).port;
    this.log.info({ port, bind: this.options.bind, auth: this.options.token ? "bearer token" : "none" }, "admin API listening");
    return port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const page = dashboardPage(req.method ?? "GET", new URL(req.url ?? "/", "http://admin").pathname);
      if (page) {
        res.writeHead(200, page.headers);
        res.end(req.method === "HEAD" ? undefined : page.body);
        return;
      }
      if (!authorized(req.headers.authorization, this.options.token)) {
        throw new FlotillaError("UNAUTHORIZED", "missing or wrong bearer token (Authorization: Bearer <FLOTILLA_ADMIN_TOKEN>)");
      }
      const url = new URL(req.url ?? "/", "http://admin");
      const method = req.method ?? "GET";
      const one = /^\/api\/deployments\/([^/]+)$/.exec(url.pathname);
      if (url.pathname.startsWith("/api/")) assertRedisReady(this.redis);
      if (url.pathname === "/api/status" && method === "GET") {
        return json(res, 200, buildStatus(this.keys.namespace, await readClusterState(this.redis, this.keys)));
      }
      if (url.pathname === "/metrics" && method === "GET") return await this.scrape(res);
      const logs = /^\/api\/deployments\/([^/]+)\/logs$/.exec(url.pathname);
      if (logs && method === "GET") return json(res, 200, await logsRoute(this.redis, this.keys, decodeURIComponent(logs[1] ?? ""), url.searchParams));
      if (url.pathname === "/api/deployments" && method === "GET") {
        const records = parseJsonHash<DeploymentRecord>(await this.redis.hgetall(this.keys.deployments));
        return json(res, 200, { deployments: [...records.values()].map((r) => r.spec).sort((a, b) => a.name.localeCompare(b.name)) });
      }
      if (url.pathname === "/api/deployments" && method === "PUT") {
        const body = await readBody(req, this.options.maxBodyBytes);
        let doc: unknown;
        try {
          doc = JSON.parse(body);
        } catch (err) {
          throw new FlotillaError("INVALID_SPEC", `the body is not JSON: ${errorMessage(err)}`);
        }
        const specs = parseDeployFile(doc);
        const shipped = specs.filter((spec) => spec.runtimeEnv).map((spec) => spec.name);
        if (shipped.length > 0) {
          // The working directory is on the caller's machine: only a client can pack and upload it.
          throw new FlotillaError(
            "INVALID_SPEC",
            `invalid deployment spec: ${shipped.join(", ")}: runtimeEnv is not accepted by the admin API, because its workingDir must be packed and uploaded by a client; deploy it with \`flotilla deploy FILE\` or \`deployment().deploy()\` (REDIS_URL pointing at this cluster's Redis)`,
          );
        }
        const results = await applyDeployments(this.redis, this.keys, specs);
        this.log.info({ results }, "deployments applied through the admin API");
        return json(res, 200, { results });
      }
      if (one && (method === "GET" || method === "DELETE")) {
        const name = decodeURIComponent(one[1] ?? "");
        if (method === "DELETE") {
          if (!(await deleteDeployment(this.redis, this.keys, name))) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}'`);
          this.log.info({ deployment: name }, "deployment deleted through the admin API");
          return json(res, 200, { deleted: name });
        }
        const record = await getDeployment(this.redis, this.keys, name);
        if (!record) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}'`);
        const status = await this.redis.hget(this.keys.deploymentStatus, name);
        return json(res, 200, { spec: record.spec, status: status ? (JSON.parse(status) as DeploymentStatusRecord) : null });
      }
      const answer = await dashboardApiRoute({ redis: this.redis, keys: this.keys, log: this.log, maxBodyBytes: this.options.maxBodyBytes ?? 1024 * 1024 }, req, method, url.pathname);
      if (answer !== undefined) return json(res, 200, answer);
      throw new FlotillaError("NOT_FOUND", `no admin route ${method} ${url.pathname}`);
    } catch (err) {
      const error = err instanceof FlotillaError ? err : new FlotillaError("INTERNAL", errorMessage(err));
      if (error.code === "INTERNAL") this.log.error({ err: error.message }, "admin API error");
      json(res, error.status, error.toJSON(), error.code === "UNAUTHORIZED" ? { "www-authenticate": 'Bearer realm="flotilla"' } : {});
    }
  }

  private async scrape(res: ServerResponse): Promise<void> {
    this.metrics ??= import("./cluster-metrics.js").then((m) => new m.ClusterMetrics());
    const metrics = await this.metrics;
    const report = buildStatus(this.keys.namespace, await readClusterState(this.redis, this.keys));
    const text = await metrics.render(report, this.isLeader());
    res.writeHead(200, { "content-type": metrics.contentType, "content-length": String(Buffer.byteLength(text)) });
    res.end(text);
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}
