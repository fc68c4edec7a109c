/**
 * End to end, runtime environments: code and dependencies travel with the
 * deploy. Three hosts, each with an empty app directory and a cache of its
 * own, and a project directory elsewhere, deployed with `flotilla deploy`:
 *
 * - two deployments whose lockfiles pin different versions of one library
 *   (local `file:` tarballs made here with npm pack; npm runs offline) both
 *   answer with their own version; status shows each package and the
 *   replicas' "installing dependencies" note; the app directories stay empty;
 * - editing a file and deploying rolls out the new package with zero failed
 *   requests under load, reusing the installed dependencies (no second npm
 *   ci) and the prestarted processes;
 * - a fourth host joining later serves the package with nothing copied to it;
 * - a broken lockfile fails the rollout with npm's words in status while the
 *   old version keeps serving, and a good deploy recovers;
 * - `deploy` refuses a symlink out of the directory and an over-limit
 *   package, and the admin API refuses runtimeEnv specs;
 * - a crafted archive with `../` entries written straight into Redis is
 *   refused by the host, which writes nothing outside its cache.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { applyDeployments } from "../../src/client/deployment-store.js";
import type { StatusReport } from "../../src/client/cluster-status.js";
import type { DeploymentRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { httpRequest, loggedPort, TestCluster, type HostSpec, type ProcessHandle } from "../helpers/cluster.js";
import { describeLoad, startLoad } from "../helpers/load.js";
import { craftArchive } from "../helpers/tar-craft.js";
import { waitFor } from "../helpers/wait.js";

const run = promisify(execFile);
const offline = { ...process.env, npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

async function write(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

/** A tiny library tarball made with npm pack. */
async function libTarball(scratch: string, version: string): Promise<string> {
  const dir = path.join(scratch, `lib-${version}`);
  await write(path.join(dir, "package.json"), JSON.stringify({ name: "conflict-lib", version, main: "index.js" }));
  await write(path.join(dir, "index.js"), `module.exports = { version: ${JSON.stringify(version)} };\n`);
  const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: dir, env: offline });
  return path.join(scratch, stdout.trim().split("\n").pop() ?? "");
}

/** The handler of the project's deployments: which library version it sees, and which code it is. */
const handler = (code: string): string => `import { version } from "conflict-lib";\nexport default function model() {\n  return { lib: version, code: ${JSON.stringify(code)} };\n}\n`;

/** A deployment's directory: its handler, and a lockfile pinning conflict-lib from a vendored tarball. */
async function deploymentDir(dir: string, tarball: string, code: string): Promise<void> {
  await mkdir(path.join(dir, "vendor"), { recursive: true });
  await writeFile(path.join(dir, "vendor", path.basename(tarball)), await readFile(tarball));
  await write(path.join(dir, "package.json"), JSON.stringify({ name: path.basename(dir), version: "1.0.0", private: true, dependencies: { "conflict-lib": `file:vendor/${path.basename(tarball)}` } }));
  await write(path.join(dir, "model.ts"), handler(code));
  await run("npm", ["install", "--package-lock-only", "--ignore-scripts"], { cwd: dir, env: offline });
}

function deployFile(entries: Array<{ name: string; dir: string; replicas?: number; actorOptions?: string }>): string {
  const lines = ["deployments:"];
  for (const e of entries) {
    lines.push(
      `  - name: ${e.name}`,
      "    import: model.ts",
      `    numReplicas: ${e.replicas ?? 1}`,
      `    routePrefix: /${e.name}`,
      `    actorOptions: ${e.actorOptions ?? "{ numCpus: 0.25 }"}`,
      `    runtimeEnv: { workingDir: ./${e.dir} }`,
    );
  }
  return `${lines.join("\n")}\n`;
}

async function answer(cluster: TestCluster, route: string): Promise<{ lib: string; code: string; version: string }> {
  const res = await httpRequest(cluster.url(route), { method: "POST", body: "{}" });
  assert.equal(res.status, 200, res.body);
  return { ...(JSON.parse(res.body) as { lib: string; code: string }), version: res.headers.get("x-flotilla-version") ?? "" };
}

async function listTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true }).catch(() => [] as string[])).map(String);
}

interface LogEntry {
  msg?: string;
  deployment?: string;
  prestarted?: boolean;
}

function entries(handle: ProcessHandle, msg: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of handle.logs) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as LogEntry);
    } catch {
      // interleaved output
    }
  }
  return out;
}

describe("runtime environments", () => {
  let scratch = "";
  let project = "";
  let npmLog = "";
  let cluster: TestCluster | undefined;
  const hostDirs = new Map<string, { app: string; cache: string }>();
  const hostEnv: Record<string, string> = {};

  const c = (): TestCluster => {
    assert.ok(cluster, "the cluster started");
    return cluster;
  };
  const status = async (): Promise<StatusReport> => {
    const res = await c().cli(["status", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    return JSON.parse(res.stdout) as StatusReport;
  };
  const record = async (name: string): Promise<DeploymentRecord> => JSON.parse((await c().redis.hget(c().keys.deployments, name)) ?? "null") as DeploymentRecord;
  const npmRuns = async (): Promise<string[]> => (await readFile(npmLog, "utf8").catch(() => "")).split("\n").filter(Boolean);
  /** No host ran npm ci twice for one lockfile (the wrapper logs host, deps-<lockfile hash>-<random>, arguments). */
  const assertInstalledOncePerHost = async (): Promise<void> => {
    const runs = await npmRuns();
    const installs = runs.map((r) => /^(\S+) deps-([0-9a-f]{12})-/.exec(r)?.slice(1).join(" ") ?? r);
    assert.equal(new Set(installs).size, installs.length, `each host installs each lockfile once: ${JSON.stringify(runs)}`);
  };
  const deploy = (file: string, ...args: string[]) => c().cli(["deploy", path.join(project, file), "--timeout", "90", ...args]);

  const hostSpec = async (id: string, extra: Partial<HostSpec> = {}): Promise<HostSpec> => {
    const dirs = { app: path.join(scratch, `${id}-app`), cache: path.join(scratch, `${id}-cache`) };
    await mkdir(dirs.app, { recursive: true });
    hostDirs.set(id, dirs);
    return { id, cpus: 1, appDir: dirs.app, cacheDir: dirs.cache, env: { ...hostEnv, TEST_HOST_ID: id }, ...extra };
  };

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), "flotilla-runtime-env-"));
    project = path.join(scratch, "project");
    npmLog = path.join(scratch, "npm-runs.log");
    // Hosts find this `npm` first: it logs each run (with the host's id), takes a second so the
    // install phase can be seen in status, and runs the real npm offline.
    const bin = path.join(scratch, "bin");
    await mkdir(bin);
    const realNpm = execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim();
    // Its working directory is <cache>/tmp/deps-<lockfile hash>-<random>/project.
    await writeFile(path.join(bin, "npm"), `#!/bin/sh\necho "$TEST_HOST_ID $(basename "$(dirname "$PWD")") $*" >> '${npmLog}'\nsleep 1\nexec '${realNpm}' "$@"\n`);
    await chmod(path.join(bin, "npm"), 0o755);
    Object.assign(hostEnv, { PATH: `${bin}:${process.env.PATH ?? ""}`, npm_config_offline: "true", npm_config_update_notifier: "false" });

    const v1 = await libTarball(scratch, "1.0.0");
    const v2 = await libTarball(scratch, "2.0.0");
    await deploymentDir(path.join(project, "a"), v1, "A1");
    await deploymentDir(path.join(project, "b"), v2, "B1");
    const a = { name: "a", dir: "a", replicas: 2 };
    const b = { name: "b", dir: "b" };
    await write(path.join(project, "flotilla.yaml"), deployFile([a, b]));
    await write(path.join(project, "a.yaml"), deployFile([a]));
    await write(path.join(project, "b.yaml"), deployFile([b]));
    await write(path.join(project, "late.yaml"), deployFile([{ name: "late", dir: "a", actorOptions: "{ numCpus: 0.25, resources: { late: 1 } }" }]));

    const emptyApp = path.join(scratch, "empty-app");
    await mkdir(emptyApp);
    cluster = await TestCluster.start({ label: "runtime-env", appDir: emptyApp, hosts: [await hostSpec("h1"), await hostSpec("h2"), await hostSpec("h3")] });
  });

  after(async () => {
    await cluster?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("serves two deployments pinning different versions of one library, each with its own; status shows the packages and the install", async () => {
    const started = await deploy("flotilla.yaml", "--no-wait");
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /^a: package sha256:[0-9a-f]{64} [\d.]+ (B|KiB), \d+ entries from .*\/project\/a \(uploaded\)$/m);
    // The replicas show what they are doing while they start.
    const notes = new Set<string>();
    await waitFor(
      "a and b HEALTHY",
      async () => {
        const report = await c().status();
        for (const d of report.deployments) for (const r of d.replicas) if (r.note) notes.add(r.note);
        return report.deployments.length === 2 && report.deployments.every((d) => d.status === "HEALTHY") ? report : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, describe: async () => ({ status: await c().status(), logs: c().logTail(20) }) },
    );
    assert.ok([...notes].some((n) => /^installing dependencies of package [0-9a-f]{12} \(npm ci\)$/.test(n)), `notes seen: ${JSON.stringify([...notes])}`);
    assert.ok(c().processes.some((p) => p.logs.some((l) => l.includes('"msg":"fetching package '))), "a host logged fetching its package");

    for (let i = 0; i < 4; i++) {
      assert.deepEqual((({ lib, code }) => ({ lib, code }))(await answer(c(), "/a")), { lib: "1.0.0", code: "A1" });
      assert.deepEqual((({ lib, code }) => ({ lib, code }))(await answer(c(), "/b")), { lib: "2.0.0", code: "B1" });
    }
    const report = await status();
    for (const name of ["a", "b"]) {
      const d = report.deployments.find((x) => x.name === name);
      const rec = await record(name);
      assert.ok(rec.runtimeEnv);
      assert.deepEqual(d?.runtimeEnv, rec.runtimeEnv, `status --json shows ${name}'s package`);
      assert.match(d?.version ?? "", new RegExp(`^auto-${rec.runtimeEnv.hash.slice(0, 8)}-`));
    }
    const table = await c().cli(["status"]);
    assert.match(table.stdout, /PACKAGE/);
    assert.ok(table.stdout.includes((await record("a")).runtimeEnv?.hash.slice(0, 12) ?? "none"), table.stdout);
    for (const [id, dirs] of hostDirs) assert.deepEqual(await listTree(dirs.app), [], `${id}'s app directory stays empty`);
    const runs = await npmRuns();
    assert.ok(runs.length >= 2 && runs.every((r) => / ci --omit=dev --ignore-scripts /.test(r)), JSON.stringify(runs));
    await assertInstalledOncePerHost();
  });

  it("rolls out an edited file to the new package with zero failed requests under load, reusing the installed dependencies", async () => {
    const before = await record("a");
    const load = startLoad(c().url("/a"), { concurrency: 4, method: "POST", body: "{}" });
    try {
      await waitFor("load to get answers", () => load.result.ok > 5, { timeoutMs: 10_000 });
      await writeFile(path.join(project, "a", "model.ts"), handler("A2"));
      const res = await deploy("a.yaml");
      assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
      assert.match(res.stdout, /^a: updated \(generation 2, rolling update\)$/m);
      await waitFor("answers of the new code", async () => (await answer(c(), "/a")).code === "A2", { timeoutMs: 10_000 });
    } finally {
      const result = await load.stop();
      assert.deepEqual([result.failures, result.errors], [[], []], describeLoad(result));
      assert.ok(result.versions.size >= 2, `answers from the old and the new version: ${describeLoad(result)}`);
    }
    const after = await record("a");
    assert.ok(after.runtimeEnv && before.runtimeEnv && after.runtimeEnv.hash !== before.runtimeEnv.hash, "a new package");
    assert.deepEqual(after.previousRuntimeEnv, before.runtimeEnv, "the previous package stays referenced");
    const d = await c().waitForReplicas("a", 2, 30_000);
    assert.ok(d.replicas.every((r) => r.codeVersion === after.codeVersion));
    assert.equal((await answer(c(), "/a")).lib, "1.0.0");
    // Same lockfile: a host that installed it for the old package does not install it again.
    await assertInstalledOncePerHost();
    const started = c().processes.flatMap((p) => entries(p, "replica process started")).filter((e) => e.deployment === "a");
    assert.ok(started.some((e) => e.prestarted === true), `a replica of a cached package started in a prestarted process: ${JSON.stringify(started)}`);
  });

  it("a host joining later serves a replica of the package with nothing copied to it", async () => {
    c().spawnHost(await hostSpec("h4", { resources: { late: 1 } }));
    await c().waitForHosts(4);
    const res = await deploy("late.yaml");
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, /\(already stored\)/, "the package was in Redis already");
    const d = await c().waitForReplicas("late", 1, 30_000);
    assert.equal(d.replicas[0]?.host, "h4");
    assert.deepEqual((({ lib, code }) => ({ lib, code }))(await answer(c(), "/late")), { lib: "1.0.0", code: "A2" });
    const h4 = hostDirs.get("h4");
    assert.ok(h4);
    assert.deepEqual(await listTree(h4.app), [], "h4's app directory stays empty");
    assert.deepEqual(await readdir(path.join(h4.cache, "packages")), [(await record("late")).runtimeEnv?.hash]);
  });

  it("a broken lockfile fails the rollout with npm's words in status; the old version keeps serving; a good deploy recovers", async () => {
    const lockfile = path.join(project, "b", "package-lock.json");
    const good = await readFile(lockfile, "utf8");
    const integrity = /"integrity": "sha512-([^"]+)"/.exec(good)?.[1];
    assert.ok(integrity, good);
    const before = await record("b");
    const load = startLoad(c().url("/b"), { concurrency: 2, method: "POST", body: "{}" });
    try {
      // The lockfile says the tarball has another content than it has.
      await writeFile(lockfile, good.replace(integrity, `AAAA${integrity.slice(4)}`));
      const res = await deploy("b.yaml");
      assert.equal(res.code, 1, res.stdout);
      assert.match(res.stderr, /rollout of 'b' failed: .*INSTALL_FAILED: npm ci --omit=dev/s);
      assert.match(res.stderr, /EINTEGRITY/);
      const b = (await status()).deployments.find((d) => d.name === "b");
      assert.equal(b?.status, "UNHEALTHY");
      assert.match(b?.message ?? "", /failed start\(s\) of this version: INSTALL_FAILED: npm ci .*exited with code \d+:\n(.|\n)*npm error code EINTEGRITY/);
      assert.deepEqual((({ lib, code }) => ({ lib, code }))(await answer(c(), "/b")), { lib: "2.0.0", code: "B1" });
      assert.equal((await answer(c(), "/b")).version, before.codeVersion, "the old version answers");
    } finally {
      const result = await load.stop();
      assert.deepEqual([result.failures, result.errors], [[], []], describeLoad(result));
    }
    await writeFile(lockfile, good);
    const fixed = await deploy("b.yaml");
    assert.equal(fixed.code, 0, `${fixed.stdout}\n${fixed.stderr}`);
    assert.equal((await record("b")).runtimeEnv?.hash, before.runtimeEnv?.hash, "the good contents are the first package again");
    assert.equal((await answer(c(), "/b")).lib, "2.0.0");
  });

  it("deploy refuses a symlink out of the directory and an over-limit package; the admin API refuses runtimeEnv", async () => {
    const packagesBefore = await c().redis.hkeys(c().keys.packages);
    await write(path.join(project, "evil", "model.ts"), handler("E"));
    await symlink(path.join(scratch, "npm-runs.log"), path.join(project, "evil", "secrets.log"));
    await write(path.join(project, "evil.yaml"), deployFile([{ name: "evil", dir: "evil" }]));
    const evil = await deploy("evil.yaml");
    assert.equal(evil.code, 1, evil.stdout);
    assert.match(evil.stderr, /^error PACKAGE_INVALID: evil: runtimeEnv\.workingDir: symlink 'secrets\.log' points outside /m);

    await write(path.join(project, "big", "model.ts"), handler("BIG"));
    await writeFile(path.join(project, "big", "weights.bin"), randomBytes(1024 * 1024));
    await write(path.join(project, "big.yaml"), deployFile([{ name: "big", dir: "big" }]));
    const big = await deploy("big.yaml", "--max-package-mib", "0.5");
    assert.equal(big.code, 1, big.stdout);
    assert.match(big.stderr, /^error PACKAGE_TOO_LARGE: big: runtimeEnv\.workingDir \S+\/big packs to [\d.]+ (KiB|MiB), over the limit of 512\.0 KiB/m);

    assert.deepEqual(await c().redis.hkeys(c().keys.packages), packagesBefore, "nothing uploaded");
    assert.deepEqual((await c().redis.hkeys(c().keys.deployments)).sort(), ["a", "b", "late"], "nothing deployed");

    const controller = c().processes.find((p) => p.name.startsWith("controller"));
    assert.ok(controller);
    const adminPort = await loggedPort(controller, "admin API listening");
    const put = await httpRequest(`http://127.0.0.1:${adminPort}/api/deployments`, {
      method: "PUT",
      body: JSON.stringify({ deployments: [{ name: "viaapi", import: "model.ts", runtimeEnv: { workingDir: "." } }] }),
    });
    assert.equal(put.status, 400, put.body);
    assert.match(put.body, /"code":"INVALID_SPEC".*viaapi: runtimeEnv is not accepted by the admin API, because its workingDir must be packed and uploaded by a client/);
  });

  it("a crafted archive with ../ entries written straight into Redis is refused by the host, which writes nothing outside its cache", async () => {
    const data = craftArchive([
      { path: "model.js", content: "module.exports = () => 'pwned';\n" },
      { path: "../escaped.txt", content: "outside\n" },
    ]);
    const hash = createHash("sha256").update(data).digest("hex");
    const keys = c().keys;
    await c()
      .redis.multi()
      .hset(keys.packageChunks(hash), "0", data)
      .hset(keys.packages, hash, JSON.stringify({ bytes: data.length, chunks: 1, chunkBytes: data.length, storedAt: Date.now() }))
      .hset(keys.packagesTouched, hash, String(Date.now()))
      .exec();
    const spec = parseDeploymentSpec({ name: "crafted", import: "model.js", actorOptions: { numCpus: 0.25 }, runtimeEnv: { workingDir: "." } });
    await applyDeployments(c().redis, keys, [spec], Date.now(), { packages: new Map([["crafted", { hash, bytes: data.length }]]) });
    const d = await waitFor(
      "crafted to be UNHEALTHY",
      async () => {
        const view = await c().deployment("crafted");
        return view?.status === "UNHEALTHY" ? view : undefined;
      },
      { timeoutMs: 30_000, describe: () => c().deployment("crafted") },
    );
    assert.match(d.message, /PACKAGE_INVALID: package entry '\.\.\/escaped\.txt' is refused: its path contains '\.\.'/);
    // Resolved against any directory the unpack could have used, `../escaped.txt` lands in the scratch tree (caches are there), or next to it.
    assert.deepEqual((await listTree(scratch)).filter((f) => f.endsWith("escaped.txt")), [], "nothing unpacked outside the cache");
    for (const dir of [path.dirname(scratch), process.cwd()]) assert.equal((await readdir(dir)).includes("escaped.txt"), false, `no escaped.txt in ${dir}`);
    for (const [id, dirs] of hostDirs) {
      assert.equal((await readdir(path.join(dirs.cache, "packages")).catch(() => [] as string[])).includes(hash), false, `${id} keeps no refused package`);
    }
    // Nothing of the others was disturbed.
    assert.equal((await answer(c(), "/a")).code, "A2");
  });
});
