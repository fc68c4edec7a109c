/**
 * Options of a host's runtimeEnv cache, validated once (zod) into a complete,
 * frozen value. The host's `--cache-dir` and `--cache-max-gib` land here.
 */
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import { FlotillaError } from "../errors.js";

/** `$XDG_CACHE_HOME/flotilla`, or `~/.cache/flotilla`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "flotilla");
}

export const runtimeEnvCacheOptionsSchema = z.strictObject({
  /** Where packages are unpacked and dependencies installed. @default $XDG_CACHE_HOME/flotilla or ~/.cache/flotilla */
  cacheDir: z.string().min(1).max(4096).optional(),
  /** Unused packages and dependency sets are evicted, least recently used first, to stay under this. @default 10 */
  cacheMaxGiB: z.number().finite().positive().max(1_000_000).default(10),
  /** An entry used this recently is never evicted (other processes sharing the cache may be using it). @default 600 */
  minIdleS: z.number().finite().nonnegative().max(86_400 * 365).default(600),
  /** `npm ci` is stopped and the install fails after this long. @default 600 */
  installTimeoutS: z.number().finite().positive().max(86_400).default(600),
  /** The npm executable. @default "npm" */
  npmCommand: z.string().min(1).max(4096).default("npm"),
});

export type RuntimeEnvCacheOptionsInput = z.input<typeof runtimeEnvCacheOptionsSchema>;
export type RuntimeEnvCacheOptions = Readonly<Omit<z.output<typeof runtimeEnvCacheOptionsSchema>, "cacheDir"> & { cacheDir: string }>;

/** Validates cache options; throws INVALID_SPEC naming the field. */
export function parseRuntimeEnvCacheOptions(input: unknown): RuntimeEnvCacheOptions {
  const result = runtimeEnvCacheOptionsSchema.safeParse(input ?? {}, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; ");
    throw new FlotillaError("INVALID_SPEC", `invalid runtimeEnv cache options: ${problems}`);
  }
  return Object.freeze({ ...result.data, cacheDir: path.resolve(result.data.cacheDir ?? defaultCacheDir()) });
}
