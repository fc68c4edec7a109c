/**
 * The worker tuning and the lean add use BullMQ internals. When a BullMQ
 * release lacks one, they fall back to plain BullMQ (correct, slower); that
 * is said once per process, loudly, so it is not missed in an upgrade.
 */
import { createRequire } from "node:module";
import { createLogger, type Logger } from "../shared/logger.js";

/** The BullMQ release the internals were verified against (package.json pins it). */
export const VERIFIED_BULLMQ = "6.7.0";

/** Names of the members `target` lacks or whose type is not the expected one. */
export function missingMembers(target: object, expected: Record<string, "function" | "boolean" | "object">): string[] {
  const missing: string[] = [];
  for (const [path, type] of Object.entries(expected)) {
    let value: unknown = target;
    for (const part of path.split(".")) value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[part] : undefined;
    if (typeof value !== type || value === null) missing.push(path);
  }
  return missing;
}

function installedBullmq(): string {
  try {
    return (createRequire(import.meta.url)("bullmq/package.json") as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

const warned = new Set<string>();
let defaultLog: Logger | undefined;

/** Logs, once per process and `feature`, that `feature` runs as plain BullMQ because `missing` are absent. */
export function warnFallbackOnce(feature: string, missing: readonly string[], log?: Logger): void {
  if (missing.length === 0 || warned.has(feature)) return;
  warned.add(feature);
  const logger = log ?? (defaultLog ??= createLogger("queue"));
  logger.error(
    { feature, missing, bullmq: installedBullmq(), verified: VERIFIED_BULLMQ },
    `BullMQ internals missing: ${feature} falls back to plain BullMQ (slower requests); pin bullmq to ${VERIFIED_BULLMQ} or check the tuning against this release`,
  );
}
