/**
 * Options of the controller process (`flotilla controller`, `flotilla up`),
 * validated once: every default is here, and what the controller gets is
 * complete and frozen.
 */
import os from "node:os";
import { z } from "zod";
import { FlotillaError } from "../errors.js";

/** Default cap on an admin API request body. */
const ADMIN_MAX_BODY_BYTES = 10 * 1024 * 1024;

const adminSchema = z.strictObject({
  port: z.number().int().min(0).max(65535),
  bind: z.string().min(1),
  /** When set, every request must carry it as a bearer token. */
  token: z.string().min(1).optional(),
  maxBodyBytes: z.number().int().positive().default(ADMIN_MAX_BODY_BYTES),
});

const schema = z
  .strictObject({
    id: z.string().min(1).max(200).optional(),
    redisUrl: z.string().min(1),
    namespace: z.string().min(1),
    tickMs: z.number().int().min(10).max(60_000).default(500),
    leaseTtlMs: z.number().int().min(100).max(600_000).default(3000),
    admin: adminSchema.optional(),
    packageGcIntervalMs: z.number().int().min(100).max(86_400_000).optional(),
    packageGcGraceMs: z.number().int().min(0).max(30 * 86_400_000).optional(),
  })
  .refine((o) => o.leaseTtlMs > 2 * o.tickMs, { path: ["leaseTtlMs"], message: "must be more than twice tickMs, or the leader loses its lease between ticks" });

export interface AdminApiOptions {
  port: number;
  bind: string;
  /** When set, every request must carry it as a bearer token. */
  token?: string;
  /** Larger request bodies get 413. @default 10485760 */
  maxBodyBytes: number;
}

export interface ControllerOptions {
  /** @default `<hostname>-<pid>` */
  id: string;
  redisUrl: string;
  namespace: string;
  /** Time between ticks when nothing is announced. @default 500 */
  tickMs: number;
  /** A dead leader is replaced after at most this long. @default 3000 */
  leaseTtlMs: number;
  /** Serve the admin API; omitted: no admin API. */
  admin?: AdminApiOptions;
  /** How often the leader removes runtimeEnv packages no record references. @default 60000 */
  packageGcIntervalMs?: number;
  /** A package uploaded or reused this recently is kept even when unreferenced (a deploy in progress). @default 3600000 */
  packageGcGraceMs?: number;
}

export type ControllerOptionsInput = z.input<typeof schema>;

export function parseControllerOptions(input: ControllerOptionsInput): Readonly<ControllerOptions> {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new FlotillaError("INVALID_SPEC", `controller option ${issue?.path.join(".") || "(options)"}: ${issue?.message}`);
  }
  const { id, admin, ...rest } = result.data;
  const options: ControllerOptions = { id: id ?? `${os.hostname()}-${process.pid}`, ...rest };
  if (admin) options.admin = Object.freeze({ ...admin });
  return Object.freeze(options);
}
