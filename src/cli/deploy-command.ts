/**
 * `flotilla deploy FILE`: validate a YAML file of specs, apply it atomically,
 * and follow the rollout like `kubectl rollout status` (a progress bar on a
 * TTY, plain lines otherwise).
 */
import { readFile } from "node:fs/promises";
import cliProgress from "cli-progress";
import type { Redis } from "ioredis";
import { parse as parseYaml } from "yaml";
import { FlotillaError, errorMessage } from "../errors.js";
import { applyDeployments, waitForRollout, type ApplyResult, type RolloutProgress } from "../client/deployment-store.js";
import { packAndUpload } from "../client/package-upload.js";
import { formatBytes } from "../runtime-env/pack.js";
import type { Keys } from "../shared/keys.js";
import { parseDeployFile, type DeploymentSpec } from "../spec/deployment-spec.js";

/** Reads and validates a deploy file; every problem names the file and the field. */
export async function readDeployFile(file: string): Promise<DeploymentSpec[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new FlotillaError("INVALID_SPEC", `cannot read ${file}: ${errorMessage(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new FlotillaError("INVALID_SPEC", `${file} is not valid YAML: ${errorMessage(err)}`);
  }
  try {
    return parseDeployFile(doc);
  } catch (err) {
    if (err instanceof FlotillaError) throw new FlotillaError(err.code, `${file}: ${err.message}`, { details: err.details ?? {} });
    throw err;
  }
}

export interface DeployCommandOptions {
  wait: boolean;
  timeoutS: number;
  out: NodeJS.WriteStream;
  /** Relative runtimeEnv.workingDir paths are relative to this: the deploy file's directory. */
  baseDir: string;
  /** @default 100 */
  maxPackageMiB?: number;
}

export async function deployCommand(redis: Redis, keys: Keys, specs: DeploymentSpec[], options: DeployCommandOptions): Promise<ApplyResult[]> {
  const packages = await packAndUpload(redis, keys, specs, { baseDir: options.baseDir, maxBytes: (options.maxPackageMiB ?? 100) * 1024 * 1024 });
  for (const [name, p] of packages) {
    options.out.write(`${name}: package sha256:${p.hash} ${formatBytes(p.bytes)}, ${p.entries} ${p.entries === 1 ? "entry" : "entries"} from ${p.workingDir} (${p.uploaded ? "uploaded" : "already stored"})\n`);
  }
  const results = await applyDeployments(redis, keys, specs, Date.now(), { packages });
  for (const r of results) options.out.write(`${r.name}: ${r.outcome}${r.outcome === "unchanged" ? "" : ` (generation ${r.generation}${r.rollout ? ", rolling update" : ""})`}\n`);
  for (const r of results) if (r.warning) options.out.write(`warning: ${r.name}: ${r.warning}\n`);
  if (!options.wait) return results;
  await followRollout(redis, keys, results, options);
  return results;
}

/** Follows applied changes until HEALTHY (progress bars on a TTY, lines otherwise); rejects like waitForRollout. */
export async function followRollout(redis: Redis, keys: Keys, results: readonly ApplyResult[], options: { timeoutS: number; out: NodeJS.WriteStream }): Promise<void> {
  const progress = options.out.isTTY ? barProgress() : lineProgress(options.out);
  try {
    await waitForRollout(redis, keys, results, { timeoutMs: options.timeoutS * 1000, onProgress: progress.update });
  } finally {
    progress.stop();
  }
  options.out.write(`${results.map((r) => r.name).join(", ")}: HEALTHY\n`);
}

/** Replicas of the current version serving, of how many wanted (a status from an older controller may lack the count). */
function counts(p: RolloutProgress): { ready: number; target: number } {
  return { ready: p.status?.updatedReplicas ?? 0, target: p.status?.targetReplicas ?? 0 };
}

function lineProgress(out: NodeJS.WriteStream): { update(p: RolloutProgress[]): void; stop(): void } {
  const last = new Map<string, string>();
  return {
    update(list) {
      for (const p of list) {
        const line = p.status && p.status.generation >= p.generation ? `${p.name}: ${p.status.status} ${p.status.message}` : `${p.name}: waiting for the controller`;
        if (last.get(p.name) !== line) {
          last.set(p.name, line);
          out.write(`${line}\n`);
        }
      }
    },
    stop() {},
  };
}

function barProgress(): { update(p: RolloutProgress[]): void; stop(): void } {
  const multi = new cliProgress.MultiBar({ format: " {name} [{bar}] {value}/{total} {status}", hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic);
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    update(list) {
      for (const p of list) {
        const { ready, target } = counts(p);
        const status = p.status && p.status.generation >= p.generation ? p.status.status : "waiting";
        let bar = bars.get(p.name);
        if (!bar) {
          bar = multi.create(Math.max(target, 1), 0, { name: p.name.padEnd(16), status });
          bars.set(p.name, bar);
        }
        bar.setTotal(Math.max(target, 1));
        bar.update(target === 0 && status === "HEALTHY" ? 1 : ready, { status });
      }
    },
    stop() {
      multi.stop();
    },
  };
}
