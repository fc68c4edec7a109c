/**
 * The router's view of which deployment serves which path: longest
 * routePrefix wins. Rebuilt from the deployment records on every change.
 */
import type { DeploymentRecord } from "../shared/records.js";
import { routePath } from "../spec/uniqueness.js";

export interface Route {
  prefix: string;
  deployment: string;
  maxQueuedRequests?: number;
  asyncResultTtlS?: number;
}

export class RouteTable {
  private routes: Route[] = [];

  /** Replaces the table with the routes of these deployments. */
  update(records: Iterable<DeploymentRecord>): void {
    const next: Route[] = [];
    for (const r of records) {
      if (r.spec.routePrefix === null) continue;
      const prefix = routePath(r.spec.routePrefix);
      next.push({
        prefix,
        deployment: r.spec.name,
        ...(r.spec.maxQueuedRequests !== undefined ? { maxQueuedRequests: r.spec.maxQueuedRequests } : {}),
        ...(r.spec.asyncResultTtlS !== undefined ? { asyncResultTtlS: r.spec.asyncResultTtlS } : {}),
      });
    }
    next.sort((a, b) => b.prefix.length - a.prefix.length || (a.prefix < b.prefix ? -1 : 1));
    this.routes = next;
  }

  /** The route whose prefix is the longest match of `path` on a segment boundary. */
  match(path: string): Route | undefined {
    for (const route of this.routes) {
      const p = route.prefix;
      if (p === "/" || path === p || (path.startsWith(p) && path.charCodeAt(p.length) === 47 /* "/" */)) return route;
    }
    return undefined;
  }

  list(): readonly Route[] {
    return this.routes;
  }
}
