/**
 * Options of a router (`flotilla router`, and the router `flotilla up` runs),
 * validated once with their defaults: everything the Router is given is
 * complete and checked.
 */
import { z } from "zod";
import { FlotillaError } from "../errors.js";
import { ROUTER_DEFAULTS } from "./router-defaults.js";

export { ROUTER_DEFAULTS };

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
  /** @default "router-" and 8 random hex digits */
  id?: string;
  /** Serve Prometheus metrics at GET /metrics on this port (0: any free port), on the `bind` address. @default undefined (off) */
  metricsPort?: number;
}

const port = z.number().int().min(0).max(65_535);

const schema = z.strictObject({
  redisUrl: z.string().min(1),
  namespace: z.string().min(1),
  port: port.default(ROUTER_DEFAULTS.port),
  bind: z.string().min(1).default(ROUTER_DEFAULTS.bind),
  requestTimeoutS: z.number().finite().positive().max(86_400).default(ROUTER_DEFAULTS.requestTimeoutS),
  maxBodyBytes: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).default(ROUTER_DEFAULTS.maxBodyBytes),
  // Part of Redis key and connection names, which refuse spaces.
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "router ids are 1-64 letters, digits, '_', '.', '-'").optional(),
  metricsPort: port.optional(),
});

export type RouterOptionsInput = z.input<typeof schema>;

/** Validates router options and fills in the defaults; an error names the option and the value. */
export function parseRouterOptions(input: RouterOptionsInput): Readonly<RouterOptions> {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === "unrecognized_keys") throw new FlotillaError("INVALID_SPEC", `router option ${issue.keys.join(", ")}: unknown option`);
    const field = issue?.path.join(".") || "(options)";
    const value = issue && issue.path.length > 0 ? (input as Record<string, unknown>)[String(issue.path[0])] : input;
    throw new FlotillaError("INVALID_SPEC", `router option ${field}: ${issue?.message} (got ${JSON.stringify(value) ?? String(value)})`);
  }
  const { id, metricsPort, ...rest } = result.data;
  return Object.freeze({ ...rest, ...(id !== undefined ? { id } : {}), ...(metricsPort !== undefined ? { metricsPort } : {}) });
}
