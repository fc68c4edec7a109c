/**
 * The one uniqueness rule for deployments (names, and the paths their route
 * prefixes serve), kept free of the schema library so the router's route
 * table can share the path rule without loading it.
 */
import { FlotillaError } from "../errors.js";
import type { DeploymentSpec } from "./deployment-spec.js";

/** The path a route prefix serves: trailing slashes name no other route (`/a/` serves what `/a` does). */
export function routePath(prefix: string): string {
  return prefix.replace(/\/+$/, "") || "/";
}

/**
 * The one uniqueness rule: names are unique within one apply, and no two
 * deployments serve the same route path, counting `existing` deployments that
 * this apply does not replace. `label(i)` names specs[i] in the error.
 */
export function assertUnique(
  specs: ReadonlyArray<DeploymentSpec>,
  existing: Iterable<DeploymentSpec> = [],
  label: (i: number) => string = (i) => `deployments[${i}]`,
): void {
  const names = new Map<string, number>();
  specs.forEach((spec, i) => {
    const seen = names.get(spec.name);
    if (seen !== undefined) {
      throw new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${label(i)}.name: '${spec.name}' is already used by ${label(seen)}`);
    }
    names.set(spec.name, i);
  });
  const routes = new Map<string, string>();
  for (const other of existing) {
    if (other.routePrefix !== null && !names.has(other.name)) routes.set(routePath(other.routePrefix), `deployment '${other.name}'`);
  }
  specs.forEach((spec, i) => {
    if (spec.routePrefix === null) return;
    const path = routePath(spec.routePrefix);
    const owner = routes.get(path);
    if (owner !== undefined) {
      throw new FlotillaError("INVALID_SPEC", `invalid deployment spec: ${label(i)}.routePrefix: '${spec.routePrefix}' is already the route of ${owner}`);
    }
    routes.set(path, `'${spec.name}'`);
  });
}
