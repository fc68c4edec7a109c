/**
 * The admin API's page and the routes it uses beyond the status:
 *
 *   GET  /                                 the dashboard page (no token needed: it holds no data)
 *   GET  /api/deployments/<name>/history   { deployment, exists, current, revisions: [...] }
 *   POST /api/deployments/<name>/rollback  body { "to": REV } optional; answers at once with the new revision
 *   GET  /api/traffic                      { at, deployments: { name: jobs added so far },
 *                                            requests: { name: requests queued so far }, requestsPerS: { name: rate } }
 *
 * Every /api route needs the bearer token like the others (checked by the caller).
 */
import type { IncomingMessage } from "node:http";
import type { Redis } from "ioredis";
import { z } from "zod";
import { FlotillaError, errorMessage } from "../errors.js";
import { readHistory } from "../client/revisions.js";
import { rollbackDeployment } from "../client/rollback.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { jobsAdded } from "../queue/queue-counters.js";
import { readRequestRates } from "../client/request-counter.js";
import type { DeploymentRecord } from "../shared/records.js";
import { readBody } from "../shared/http-body.js";
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from "./dashboard/page.js";

export interface DashboardPage {
  headers: Readonly<Record<string, string>>;
  body: string;
}

/** The page, for `GET /` (and `/index.html`); undefined for any other request. */
export function dashboardPage(method: string, pathname: string): DashboardPage | undefined {
  if ((method === "GET" || method === "HEAD") && (pathname === "/" || pathname === "/index.html")) return { headers: DASHBOARD_HEADERS, body: DASHBOARD_HTML };
  return undefined;
}

/** Fails fast while Redis is not connected, instead of holding the request until it returns. */
export function assertRedisReady(redis: Redis): void {
  if (redis.status !== "ready") throw new FlotillaError("REDIS_UNAVAILABLE", `Redis does not answer (connection ${redis.status}); the cluster state cannot be read`);
}

const rollbackBody = z.strictObject({ to: z.number().int().min(1).optional() });

interface Context {
  redis: Redis;
  keys: Keys;
  log: Logger;
  maxBodyBytes: number;
}

/** Answers the routes above (body to send as JSON with 200), or undefined when the request is for none of them. */
export async function dashboardApiRoute(ctx: Context, req: IncomingMessage, method: string, pathname: string): Promise<unknown> {
  if (pathname === "/api/traffic" && method === "GET") {
    const names = [...parseJsonHash<DeploymentRecord>(await ctx.redis.hgetall(ctx.keys.deployments)).keys()];
    const [jobs, rates] = await Promise.all([jobsAdded(ctx.redis, ctx.keys.namespace, names), readRequestRates(ctx.redis, ctx.keys)]);
    const of = (values: Map<string, number>): Record<string, number> => Object.fromEntries(names.map((name) => [name, values.get(name) ?? 0]));
    return { at: Date.now(), deployments: jobs, requests: of(rates.total), requestsPerS: of(rates.perS) };
  }
  const match = /^\/api\/deployments\/([^/]+)\/(history|rollback)$/.exec(pathname);
  if (!match) return undefined;
  const name = decodeURIComponent(match[1] ?? "");
  if (match[2] === "history" && method === "GET") return readHistory(ctx.redis, ctx.keys, name);
  if (match[2] === "rollback" && method === "POST") {
    const text = await readBody(req, ctx.maxBodyBytes);
    let doc: unknown = {};
    if (text.trim() !== "") {
      try {
        doc = JSON.parse(text);
      } catch (err) {
        throw new FlotillaError("INVALID_REQUEST", `the body is not JSON: ${errorMessage(err)}`);
      }
    }
    const parsed = rollbackBody.safeParse(doc);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FlotillaError("INVALID_REQUEST", `rollback body: ${issue?.path.join(".") || "(body)"}: ${issue?.message ?? "invalid"} (expected { "to": <revision number> } or {})`);
    }
    const source = { host: req.socket.remoteAddress ?? "unknown", user: "admin-api" };
    const result = await rollbackDeployment(ctx.redis, ctx.keys, name, { ...(parsed.data.to !== undefined ? { to: parsed.data.to } : {}), source });
    ctx.log.info({ deployment: name, revision: result.revision, rollbackOf: result.rollbackOf, from: result.from }, "deployment rolled back through the admin API");
    return result;
  }
  return undefined;
}
