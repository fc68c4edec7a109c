/**
 * A host preparing runtimeEnv packages from the real Redis: fetched once,
 * dependencies installed once per lockfile (npm ci, offline, from `file:`
 * tarballs made here), conflicting versions side by side, `flotilla` always
 * the runtime, failures with npm's words, LRU eviction.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { FlotillaError } from "../../src/errors.js";
import { RuntimeEnvCache } from "../../src/runtime-env/package-cache.js";
import { PackageStore } from "../../src/runtime-env/package-store.js";
import { packWorkingDir } from "../../src/runtime-env/pack.js";
import { prepareRuntimeEnv, type RuntimeEnvPhase, type RuntimeEnvRef } from "../../src/runtime-env/prepare.js";
import { runtimePackageRoot } from "../../src/runtime-env/runtime-root.js";
import { Keys } from "../../src/shared/keys.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

const run = promisify(execFile);
const offline = { ...process.env, npm_config_offline: "true", npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

async function write(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

/** A tiny library tarball made with npm pack. */
async function libTarball(scratch: string, name: string, version: string): Promise<string> {
  const dir = path.join(scratch, `src-${name}-${version}`);
  await write(path.join(dir, "package.json"), JSON.stringify({ name, version, main: "index.js" }));
  await write(path.join(dir, "index.js"), `module.exports = { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} };\n`);
  const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: dir, env: offline });
  return path.join(scratch, stdout.trim().split("\n").pop() ?? "");
}

/** A project directory whose lockfile pins `deps` (name → tarball), vendored inside it. */
async function project(dir: string, deps: Record<string, string>, model = "module.exports = () => 1;\n"): Promise<string> {
  await mkdir(path.join(dir, "vendor"), { recursive: true });
  const dependencies: Record<string, string> = {};
  for (const [name, tarball] of Object.entries(deps)) {
    await writeFile(path.join(dir, "vendor", path.basename(tarball)), await readFile(tarball));
    dependencies[name] = `file:vendor/${path.basename(tarball)}`;
  }
  await write(path.join(dir, "package.json"), JSON.stringify({ name: path.basename(dir), version: "1.0.0", private: true, dependencies }));
  await write(path.join(dir, "model.js"), model);
  await run("npm", ["install", "--package-lock-only", "--ignore-scripts"], { cwd: dir, env: offline });
  return dir;
}

describe("preparing runtime environments on a host", () => {
  const namespace = testNamespace("prepare");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const store = new PackageStore(redis, keys);
  let scratch = "";
  let npmLog = "";
  let npmWrapper = "";
  const refs = new Map<string, RuntimeEnvRef>();
  let cacheDir = "";
  const newCache = (extra: Record<string, unknown> = {}): RuntimeEnvCache => new RuntimeEnvCache({ cacheDir, npmCommand: npmWrapper, minIdleS: 0, ...extra });
  const npmRuns = async (): Promise<string[]> => (await readFile(npmLog, "utf8").catch(() => "")).split("\n").filter(Boolean);

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), "flotilla-prepare-"));
    cacheDir = path.join(scratch, "cache");
    npmLog = path.join(scratch, "npm-runs.log");
    npmWrapper = path.join(scratch, "npm-counting.sh");
    // Counts the installs; offline, so nothing reaches a registry.
    await writeFile(npmWrapper, `#!/bin/sh\necho "$*" >> '${npmLog}'\nnpm_config_offline=true exec npm "$@"\n`);
    await chmod(npmWrapper, 0o755);
    const v1 = await libTarball(scratch, "conflict-lib", "1.0.0");
    const v2 = await libTarball(scratch, "conflict-lib", "2.0.0");
    const fakeRuntime = await libTarball(scratch, "flotilla", "9.9.9");
    const dirs = {
      a: await project(path.join(scratch, "a"), { "conflict-lib": v1 }),
      b: await project(path.join(scratch, "b"), { "conflict-lib": v2, flotilla: fakeRuntime }),
      plain: path.join(scratch, "plain"),
    };
    await write(path.join(dirs.plain, "model.js"), "module.exports = () => 'plain';\n");
    // a2: a's lockfile, other code.
    const a2 = path.join(scratch, "a2");
    await run("cp", ["-r", dirs.a, a2]);
    await writeFile(path.join(a2, "model.js"), "module.exports = () => 2;\n");
    for (const [name, dir] of Object.entries({ ...dirs, a2 })) {
      const packed = await packWorkingDir(dir);
      await store.upload(packed.data);
      refs.set(name, { hash: packed.hash, bytes: packed.bytes });
    }
  });
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  const ref = (name: string): RuntimeEnvRef => {
    const r = refs.get(name);
    if (!r) throw new Error(`no package ${name}`);
    return r;
  };
  const load = (appDir: string, specifier: string): unknown => createRequire(path.join(appDir, "model.js"))(specifier);

  it("installs once per lockfile for concurrent prepares; conflicting versions each see their own; flotilla is the runtime", async () => {
    const cache = newCache();
    const phases = new Map<string, RuntimeEnvPhase[]>();
    const prepare = (name: string, i: number) => {
      const seen: RuntimeEnvPhase[] = [];
      phases.set(`${name}#${i}`, seen);
      return prepareRuntimeEnv(cache, store, ref(name), { onPhase: (p) => seen.push(p) });
    };
    const results = await Promise.all([prepare("a", 0), prepare("a", 1), prepare("a2", 0), prepare("b", 0), prepare("b", 1), prepare("plain", 0)]);
    const [a, a1, a2, b, , plain] = results;
    assert.ok(a && a1 && a2 && b && plain);
    assert.equal(a.appDir, a1.appDir);
    assert.notEqual(a.appDir, a2.appDir, "another hash, another directory");
    assert.equal(a.lockHash, a2.lockHash, "same lockfile, one deps set");
    assert.notEqual(a.lockHash, b.lockHash);
    assert.equal(plain.lockHash, null);
    assert.equal((await npmRuns()).length, 2, `one npm ci per lockfile: ${JSON.stringify(await npmRuns())}`);
    assert.match((await npmRuns())[0] ?? "", /^ci --omit=dev --ignore-scripts/);
    assert.deepEqual(phases.get("a#0"), ["fetching", "installing"]);
    assert.deepEqual(phases.get("plain#0"), ["fetching"]);

    assert.equal((load(a.appDir, "conflict-lib") as { version: string }).version, "1.0.0");
    assert.equal((load(a2.appDir, "conflict-lib") as { version: string }).version, "1.0.0");
    assert.equal((load(b.appDir, "conflict-lib") as { version: string }).version, "2.0.0");
    assert.equal(load(a2.appDir, "./model.js") instanceof Function, true);
    const runtimeManifest = await realpath(path.join(runtimePackageRoot(), "package.json"));
    for (const r of [a, b, plain]) {
      const resolved = createRequire(path.join(r.appDir, "model.js")).resolve("flotilla/package.json");
      assert.equal(await realpath(resolved), runtimeManifest, `flotilla from ${r.appDir} is this runtime (b's lockfile pins flotilla 9.9.9)`);
    }
  });

  it("reuses what another process sharing the cache made: no fetch, no install", async () => {
    const before = (await npmRuns()).length;
    const seen: RuntimeEnvPhase[] = [];
    const prepared = await prepareRuntimeEnv(newCache(), store, ref("b"), { onPhase: (p) => seen.push(p) });
    assert.deepEqual(seen, []);
    assert.equal((await npmRuns()).length, before);
    assert.equal((load(prepared.appDir, "conflict-lib") as { version: string }).version, "2.0.0");
  });

  it("two processes installing one new lockfile at once both end with the one result", async () => {
    const otherCache = path.join(scratch, "cache-race");
    const make = (): RuntimeEnvCache => new RuntimeEnvCache({ cacheDir: otherCache, npmCommand: npmWrapper });
    const [x, y] = await Promise.all([prepareRuntimeEnv(make(), store, ref("a")), prepareRuntimeEnv(make(), store, ref("a"))]);
    assert.equal(x.appDir, y.appDir);
    assert.equal((load(x.appDir, "conflict-lib") as { version: string }).version, "1.0.0");
    const { readdir } = await import("node:fs/promises");
    assert.deepEqual(await readdir(path.join(otherCache, "tmp")), [], "the loser's temporary directories are gone");
  });

  it("a failed install is INSTALL_FAILED with the tail of npm's output, and nothing half installed stays", async () => {
    const broken = path.join(scratch, "broken");
    await run("cp", ["-r", path.join(scratch, "b"), broken]);
    // package.json asks for what the lockfile does not hold: npm ci refuses.
    const manifest = JSON.parse(await readFile(path.join(broken, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    manifest.dependencies["left-pad"] = "^1.3.0";
    await writeFile(path.join(broken, "package.json"), JSON.stringify(manifest));
    const lock = JSON.parse(await readFile(path.join(broken, "package-lock.json"), "utf8")) as { name: string };
    lock.name = "broken";
    await writeFile(path.join(broken, "package-lock.json"), JSON.stringify(lock, null, 2));
    const repacked = await packWorkingDir(broken);
    await store.upload(repacked.data);
    const cache = newCache();
    await assert.rejects(prepareRuntimeEnv(cache, store, { hash: repacked.hash, bytes: repacked.bytes }), (err: unknown) => {
      assert.ok(err instanceof FlotillaError, String(err));
      assert.equal(err.code, "INSTALL_FAILED");
      assert.match(err.message, /^npm ci --omit=dev --ignore-scripts .* exited with code \d+:\n/);
      assert.match(err.message, /npm (ERR!|error)/);
      return true;
    });
    const { readdir } = await import("node:fs/promises");
    assert.deepEqual(await readdir(path.join(cacheDir, "tmp")), []);
  });

  it("a package that is not stored fails the fetch with PACKAGE_FETCH_FAILED", async () => {
    await assert.rejects(prepareRuntimeEnv(newCache(), store, { hash: "0".repeat(64), bytes: 10 }), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_FETCH_FAILED" && /not stored/.test(err.message));
  });

  it("evicts the least recently used packages and deps sets not in use, down to the limit", async () => {
    const cache = newCache({ cacheMaxGiB: 1 / 1024 ** 3 });
    const a = await prepareRuntimeEnv(cache, store, ref("a"));
    const b = await prepareRuntimeEnv(cache, store, ref("b"));
    const result = await cache.evict(new Set([ref("a").hash]));
    assert.ok(result.removed.includes(`packages/${ref("b").hash}`), JSON.stringify(result));
    assert.ok(result.removed.includes(`deps/${b.lockHash}`), JSON.stringify(result));
    assert.ok(!result.removed.includes(`deps/${a.lockHash}`), "the deps set of a package in use stays");
    assert.equal(cache.hasPackage(ref("b").hash), false);
    assert.equal(cache.hasPackage(ref("a").hash), true, "in use: kept");
    assert.equal((load(a.appDir, "conflict-lib") as { version: string }).version, "1.0.0", "its deps are kept too");

    const seen: RuntimeEnvPhase[] = [];
    const again = await prepareRuntimeEnv(cache, store, ref("b"), { onPhase: (p) => seen.push(p) });
    assert.deepEqual(seen, ["fetching", "installing"], "an evicted package is fetched and installed again");
    assert.equal((load(again.appDir, "conflict-lib") as { version: string }).version, "2.0.0");
  });
});
