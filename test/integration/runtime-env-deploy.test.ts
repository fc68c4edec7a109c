/**
 * Deploying with runtimeEnv against the real Redis: the client packs and uploads
 * before writing the record, the record carries the package, the package hash
 * drives versions, and every refusal comes before any upload.
 */
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { after, describe, it } from "node:test";
import { applyDeployments, getDeployment } from "../../src/client/deployment-store.js";
import { deployCommand, readDeployFile } from "../../src/cli/deploy-command.js";
import { FlotillaError } from "../../src/errors.js";
import { PackageStore } from "../../src/runtime-env/package-store.js";
import { Keys } from "../../src/shared/keys.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

describe("deploying a runtimeEnv", () => {
  const namespace = testNamespace("rtdeploy");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const store = new PackageStore(redis, keys);
  let scratch = "";
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** Writes a project and a deploy file beside it; returns the deploy file. */
  const setup = async (version?: string, extra = ""): Promise<string> => {
    scratch ||= await mkdtemp(path.join(os.tmpdir(), "flotilla-rtdeploy-"));
    await mkdir(path.join(scratch, "summarizer"), { recursive: true });
    await writeFile(path.join(scratch, "summarizer", "model.ts"), "export class Summarizer { call() { return 1; } }\n");
    await writeFile(path.join(scratch, "summarizer", "run.log"), "noise");
    const file = path.join(scratch, "flotilla.yaml");
    await writeFile(
      file,
      `deployments:\n  - name: summarizer\n    import: model.ts#Summarizer\n${version ? `    version: "${version}"\n` : ""}    runtimeEnv:\n      workingDir: ./summarizer\n      excludes: ["*.log"]\n${extra}`,
    );
    return file;
  };
  const deploy = async (file: string, maxPackageMiB?: number): Promise<{ text: string; results: Awaited<ReturnType<typeof deployCommand>> }> => {
    const out = new PassThrough();
    let text = "";
    out.on("data", (b: Buffer) => (text += b.toString()));
    const specs = await readDeployFile(file);
    const results = await deployCommand(redis, keys, specs, { wait: false, timeoutS: 10, out: out as unknown as NodeJS.WriteStream, baseDir: path.dirname(file), ...(maxPackageMiB ? { maxPackageMiB } : {}) });
    return { text, results };
  };

  it("uploads the package relative to the deploy file, prints its hash and size, and records it", async () => {
    const file = await setup();
    // Run from elsewhere: workingDir is relative to the deploy file, not the cwd.
    const { text, results } = await deploy(file);
    const record = await getDeployment(redis, keys, "summarizer");
    assert.ok(record?.runtimeEnv, "the record carries the package");
    assert.match(text, new RegExp(`summarizer: package sha256:${record.runtimeEnv.hash} \\d+ B, 1 entry from .*summarizer \\(uploaded\\)`));
    assert.deepEqual(results[0]?.runtimeEnv, record.runtimeEnv);
    assert.equal((await store.download(record.runtimeEnv.hash, record.runtimeEnv.bytes)).length, record.runtimeEnv.bytes);
    assert.match(record.codeVersion, new RegExp(`^auto-${record.runtimeEnv.hash.slice(0, 8)}-`));

    // Unversioned: the same code is a new version again (every deploy is), a changed file a new package too.
    const again = await deploy(file);
    assert.match(again.text, /\(already stored\)/);
    assert.equal(again.results[0]?.rollout, true);
    await writeFile(path.join(scratch, "summarizer", "model.ts"), "export class Summarizer { call() { return 2; } }\n");
    const changed = await deploy(file);
    assert.equal(changed.results[0]?.rollout, true);
    assert.notEqual((await getDeployment(redis, keys, "summarizer"))?.runtimeEnv?.hash, record.runtimeEnv.hash);
  });

  it("with an explicit version: unchanged code is a no-op; changed code is a no-op that warns and keeps the version's package", async () => {
    const file = await setup("1");
    const first = await deploy(file);
    const record = await getDeployment(redis, keys, "summarizer");
    assert.equal(first.results[0]?.rollout, true, "auto → 1 is a new version");
    const same = await deploy(file);
    assert.equal(same.results[0]?.outcome, "unchanged");
    assert.equal(same.results[0]?.warning, undefined);
    assert.doesNotMatch(same.text, /warning/);

    await writeFile(path.join(scratch, "summarizer", "model.ts"), "export class Summarizer { call() { return 3; } }\n");
    const changed = await deploy(file);
    assert.equal(changed.results[0]?.outcome, "unchanged");
    assert.match(changed.text, /warning: summarizer: code changed but version did not: version '1' keeps running package [0-9a-f]{12}/);
    const after = await getDeployment(redis, keys, "summarizer");
    assert.deepEqual(after, record, "the record is untouched");

    // A userConfig change with new code: applied in place, still on the version's package, still a warning.
    const withConfig = await deploy(await setup("1", "    userConfig: { a: 1 }\n"));
    await writeFile(path.join(scratch, "summarizer", "model.ts"), "export class Summarizer { call() { return 4; } }\n");
    const configAndCode = await deploy(path.join(scratch, "flotilla.yaml"));
    assert.equal(withConfig.results[0]?.rollout, false);
    assert.ok(configAndCode.results[0]?.warning);
    assert.equal((await getDeployment(redis, keys, "summarizer"))?.runtimeEnv?.hash, record?.runtimeEnv?.hash);

    const bumpedFile = await setup("2");
    await writeFile(path.join(scratch, "summarizer", "model.ts"), "export class Summarizer { call() { return 5; } }\n");
    const bumped = await deploy(bumpedFile);
    assert.equal(bumped.results[0]?.rollout, true);
    assert.notEqual((await getDeployment(redis, keys, "summarizer"))?.runtimeEnv?.hash, record?.runtimeEnv?.hash);
  });

  it("refuses an oversized package, a symlink out and an import outside the package before uploading anything", async () => {
    const isolated = new Keys(`${namespace}-refused`);
    const isolatedStore = new PackageStore(redis, isolated);
    try {
      const file = await setup();
      const { randomBytes } = await import("node:crypto");
      await writeFile(path.join(scratch, "summarizer", "weights.bin"), randomBytes(200 * 1024));
      const specs = await readDeployFile(file);
      const run = (extra: Partial<Parameters<typeof deployCommand>[3]> = {}) =>
        deployCommand(redis, isolated, specs, { wait: false, timeoutS: 10, out: new PassThrough() as unknown as NodeJS.WriteStream, baseDir: path.dirname(file), ...extra });
      await assert.rejects(run({ maxPackageMiB: 0.1 }), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_TOO_LARGE" && /^summarizer: .* packs to 200\.\d KiB, over the limit of 102\.4 KiB/.test(err.message));
      await rm(path.join(scratch, "summarizer", "weights.bin"));

      await symlink("/etc/hostname", path.join(scratch, "summarizer", "host.txt"));
      await assert.rejects(run(), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_INVALID" && /symlink 'host\.txt' points outside/.test(err.message));
      await rm(path.join(scratch, "summarizer", "host.txt"));

      const missing = [parseDeploymentSpec({ name: "m", import: "run.log.ts", runtimeEnv: { workingDir: path.join(scratch, "summarizer") } })];
      await assert.rejects(
        deployCommand(redis, isolated, missing, { wait: false, timeoutS: 10, out: new PassThrough() as unknown as NodeJS.WriteStream, baseDir: "/" }),
        /m\.import: 'run\.log\.ts' is not a file in the package/,
      );
      assert.deepEqual(await isolatedStore.list(), [], "nothing was uploaded");
      assert.equal(await redis.hlen(isolated.deployments), 0, "nothing was deployed");
    } finally {
      await cleanupNamespace(`${namespace}-refused`);
    }
  });

  it("refuses a runtimeEnv spec applied without its package (e.g. through the admin API)", async () => {
    const spec = parseDeploymentSpec({ name: "bare", import: "m.ts", runtimeEnv: { workingDir: "." } });
    await assert.rejects(applyDeployments(redis, keys, [spec]), (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_SPEC" && /bare: runtimeEnv needs its workingDir packed and uploaded first/.test(err.message));
  });
});
