/**
 * Options of `flotilla host`, validated once: the capacity this host declares
 * and where it finds Redis, the app directory and its runtimeEnv cache.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { FlotillaError } from "../errors.js";
import { defaultCacheDir } from "../runtime-env/cache-options.js";
import type { ResourceSet } from "../shared/records.js";
import { DEFAULT_LOG_MAX_LINES } from "../shared/log-stream.js";
import { MEMORY_RESOURCE } from "../spec/deployment-spec.js";

export interface HostOptions {
  id: string;
  redisUrl: string;
  namespace: string;
  appDir: string;
  /** `CPU`, `GPU`, `memoryMiB` and custom resources this host offers. */
  resources: ResourceSet;
  /** A host that has not heartbeated for this long is dead. @default 10 */
  heartbeatTimeoutS: number;
  /** Replica processes kept started ahead of need, so a new replica skips Node's start-up. @default 1 */
  prestart: number;
  /** Lines each deployment's log stream keeps (XADD MAXLEN ~). @default 10000 */
  logMaxLines: number;
  /** Where runtimeEnv packages are unpacked and their dependencies installed. @default $XDG_CACHE_HOME/flotilla or ~/.cache/flotilla */
  cacheDir: string;
  /** Packages and dependency sets no replica here uses are evicted, least recently used first, above this. @default 10 */
  cacheMaxGiB: number;
}

/** GPUs listed by `nvidia-smi -L`, or 0 when there is no driver. */
export function detectGpus(): number {
  try {
    const out = execFileSync("nvidia-smi", ["-L"], { encoding: "utf8", timeout: 5000, stdio: ["ignore", "pipe", "ignore"] });
    return out.split("\n").filter((line) => /^GPU \d+/.test(line)).length;
  } catch {
    return 0;
  }
}

const rawSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "host ids are 1-64 letters, digits, '_', '.', '-'").optional(),
  redisUrl: z.string().min(1),
  namespace: z.string().min(1),
  appDir: z.string().min(1),
  cpus: z.number().finite().nonnegative().optional(),
  gpus: z.number().int().nonnegative().optional(),
  /** Memory replicas may reserve (actorOptions.memoryMiB). @default the machine's total memory */
  memoryMiB: z.number().finite().nonnegative().optional(),
  resources: z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,62}$/), z.number().finite().nonnegative()).default({}),
  heartbeatTimeoutS: z.number().finite().min(1).max(3600).default(10),
  prestart: z.number().int().min(0).max(16).default(1),
  logMaxLines: z.number().int().min(1).max(10_000_000).default(DEFAULT_LOG_MAX_LINES),
  cacheDir: z.string().min(1).max(4096).optional(),
  cacheMaxGiB: z.number().finite().positive().max(1_000_000).default(10),
});

export function parseHostOptions(input: z.input<typeof rawSchema>): HostOptions {
  const result = rawSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new FlotillaError("INVALID_SPEC", `host option ${issue?.path.join(".") || "(options)"}: ${issue?.message}`);
  }
  const o = result.data;
  const flags: Record<string, string> = { CPU: "--cpus", GPU: "--gpus", [MEMORY_RESOURCE]: "--memory-mib" };
  for (const [reserved, flag] of Object.entries(flags)) {
    if (reserved in o.resources) throw new FlotillaError("INVALID_SPEC", `host option resources: '${reserved}' is declared with ${flag}`);
  }
  return {
    id: o.id ?? `${os.hostname().replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 40)}-${process.pid}`,
    redisUrl: o.redisUrl,
    namespace: o.namespace,
    appDir: path.resolve(o.appDir),
    resources: {
      CPU: o.cpus ?? os.availableParallelism(),
      GPU: o.gpus ?? detectGpus(),
      [MEMORY_RESOURCE]: o.memoryMiB ?? Math.floor(os.totalmem() / 1024 / 1024),
      ...o.resources,
    },
    heartbeatTimeoutS: o.heartbeatTimeoutS,
    prestart: o.prestart,
    logMaxLines: o.logMaxLines,
    cacheDir: path.resolve(o.cacheDir ?? defaultCacheDir()),
    cacheMaxGiB: o.cacheMaxGiB,
  };
}
