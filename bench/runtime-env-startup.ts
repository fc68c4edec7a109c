/**
 * The first start of a runtimeEnv deployment on a host: with a cold cache
 * (the host downloads the package from Redis, checks it, unpacks it and runs
 * npm ci for its one small dependency, a tarball made here with npm pack, so
 * no network is involved) and with a warm one (a second deployment of the
 * same package: nothing to fetch or install). Packing and uploading are
 * measured apart: they happen in `deploy`, before the record is applied.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { applyDeployments, waitForRollout } from "../src/client/deployment-store.js";
import { packAndUpload } from "../src/client/package-upload.js";
import { parseDeploymentSpec } from "../src/spec/deployment-spec.js";
import { replicaStart, type ReplicaStart } from "./flotilla-startup.js";
import type { FlotillaTarget } from "./flotilla-target.js";
import { START_TIMEOUT_MS } from "./target.js";

const run = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Time given to a new prestarted process to load the runtime before the warm start. */
const PRESTART_SETTLE_MS = 2000;
const offline = { ...process.env, npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

export interface RuntimeEnvStart {
  /** Pack + upload of the working directory (what `deploy` does before applying). */
  packAndUploadMs: number;
  packageBytes: number;
  /** Apply → HEALTHY. */
  applyToHealthyMs: number;
  /** The host's preparation: fetch, verify, unpack, npm ci (the "runtimeEnv package ready" line); null when nothing was fetched. */
  prepareMs: number | null;
  replica: ReplicaStart | null;
}

export interface RuntimeEnvStartup {
  cold: RuntimeEnvStart;
  warm: RuntimeEnvStart;
}

/** A project directory with one dependency, pinned by its lockfile to a local tarball. */
async function makeProject(scratch: string): Promise<string> {
  const lib = path.join(scratch, "lib");
  await mkdir(lib, { recursive: true });
  await writeFile(path.join(lib, "package.json"), JSON.stringify({ name: "bench-lib", version: "1.0.0", main: "index.js" }));
  await writeFile(path.join(lib, "index.js"), "module.exports = { greeting: 'hello' };\n");
  const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: lib, env: offline });
  const tarball = stdout.trim().split("\n").pop() ?? "";
  const project = path.join(scratch, "project");
  await mkdir(path.join(project, "vendor"), { recursive: true });
  await writeFile(path.join(project, "vendor", tarball), await readFile(path.join(scratch, tarball)));
  await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "bench-project", version: "1.0.0", private: true, dependencies: { "bench-lib": `file:vendor/${tarball}` } }));
  await writeFile(path.join(project, "hello.ts"), 'import { greeting } from "bench-lib";\nexport default function hello() {\n  return { ok: true, greeting };\n}\n');
  await run("npm", ["install", "--package-lock-only", "--ignore-scripts"], { cwd: project, env: offline });
  return project;
}

/** The host's "runtimeEnv package ready" line for a replica, if it fetched its package. */
function prepareMs(target: FlotillaTarget, replica: string | undefined): number | null {
  const line = target.host.entries().find((e) => e.msg === "runtimeEnv package ready" && e.replica === replica);
  return typeof line?.ms === "number" ? line.ms : null;
}

async function startOne(target: FlotillaTarget, name: string, project: string): Promise<RuntimeEnvStart> {
  const spec = parseDeploymentSpec({ name, import: "hello.ts", numReplicas: 1, actorOptions: { numCpus: 0.25 }, runtimeEnv: { workingDir: project } });
  const t0 = performance.now();
  const packages = await packAndUpload(target.redis, target.keys, [spec], { baseDir: project });
  const packAndUploadMs = Math.round(performance.now() - t0);
  const t1 = performance.now();
  target.trackDeployment(name);
  const results = await applyDeployments(target.redis, target.keys, [spec], Date.now(), { packages });
  await waitForRollout(target.redis, target.keys, results, { timeoutMs: START_TIMEOUT_MS, pollMs: 20 });
  const applyToHealthyMs = Math.round(performance.now() - t1);
  let replica: ReplicaStart | null = null;
  for (const deadline = Date.now() + 5000; !replica && Date.now() < deadline; ) {
    replica = replicaStart(target.host, name);
    if (!replica) await sleep(50);
  }
  return { packAndUploadMs, packageBytes: packages.get(name)?.bytes ?? 0, applyToHealthyMs, prepareMs: prepareMs(target, replica?.replica), replica };
}

export async function measureRuntimeEnvStartup(target: FlotillaTarget): Promise<RuntimeEnvStartup> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), "flotilla-bench-runtime-env-"));
  try {
    const project = await makeProject(scratch);
    const cold = await startOne(target, "pkg-cold", project);
    // The cold replica took the host's prestarted process; the next one is started once it runs. Like a host
    // between two deployments, give it time to load the runtime, so the warm start measures the package path.
    const prestarted = (): number => target.host.entries().filter((e) => e.msg === "replica process prestarted").length;
    const before = prestarted();
    for (const deadline = Date.now() + 10_000; prestarted() === before && Date.now() < deadline; ) await sleep(50);
    await sleep(PRESTART_SETTLE_MS);
    const warm = await startOne(target, "pkg-warm", project);
    return { cold, warm };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
