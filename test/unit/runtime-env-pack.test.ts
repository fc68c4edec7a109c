/** runtimeEnv packing: deterministic bytes and hash, excludes, symlinks, the size limit. */
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { list } from "tar";
import { FlotillaError } from "../../src/errors.js";
import { packWorkingDir } from "../../src/runtime-env/pack.js";

interface Listed {
  path: string;
  type: string;
  mode: number | undefined;
  mtime: number | undefined;
  uid: number | undefined;
  uname: string | undefined;
  linkpath: string | undefined;
}

async function listArchive(data: Buffer): Promise<Listed[]> {
  const entries: Listed[] = [];
  const parser = list({
    onReadEntry: (e) => {
      entries.push({ path: e.path, type: e.type, mode: e.mode, mtime: e.mtime?.getTime(), uid: e.uid, uname: e.uname, linkpath: e.linkpath });
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on("end", resolve);
    parser.on("error", reject);
    parser.end(data);
  });
  return entries;
}

async function tree(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "flotilla-pack-"));
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return dir;
}

describe("runtimeEnv packing", () => {
  const dirs: string[] = [];
  const make = async (files: Record<string, string>): Promise<string> => {
    const dir = await tree(files);
    dirs.push(dir);
    return dir;
  };
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("packs the same tree to the same bytes and hash, whatever the mtimes, modes beyond x, and creation order", async () => {
    const files = { "model.ts": "export default () => 1;\n", "lib/util.ts": "export const x = 1;\n", "bin/run.sh": "#!/bin/sh\n", "data/a.json": "{}" };
    const a = await make(files);
    await chmod(path.join(a, "bin/run.sh"), 0o755);
    const first = await packWorkingDir(a);
    const again = await packWorkingDir(a);
    assert.equal(again.hash, first.hash);
    assert.ok(again.data.equals(first.data));

    await utimes(path.join(a, "model.ts"), new Date(), new Date(Date.now() + 60_000));
    await chmod(path.join(a, "lib/util.ts"), 0o600);
    const touched = await packWorkingDir(a);
    assert.equal(touched.hash, first.hash, "mtimes and read/write bits are not part of the package");

    // The same content written in another order, in another directory.
    const reversed = Object.fromEntries(Object.entries(files).reverse());
    const b = await make(reversed);
    await chmod(path.join(b, "bin/run.sh"), 0o700);
    assert.equal((await packWorkingDir(b)).hash, first.hash);

    await writeFile(path.join(a, "model.ts"), "export default () => 2;\n");
    assert.notEqual((await packWorkingDir(a)).hash, first.hash, "a changed file is a new hash");
  });

  it("stores sorted entries with fixed mtimes, 0644/0755 modes and no owner", async () => {
    const dir = await make({ "b.ts": "b", "a/z.ts": "z", "a/y.sh": "y" });
    await chmod(path.join(dir, "a/y.sh"), 0o744);
    await symlink("b.ts", path.join(dir, "link.ts"));
    const entries = await listArchive((await packWorkingDir(dir)).data);
    assert.deepEqual(entries.map((e) => e.path), ["a/", "a/y.sh", "a/z.ts", "b.ts", "link.ts"]);
    const byPath = new Map(entries.map((e) => [e.path, e]));
    assert.equal(byPath.get("a/y.sh")?.mode, 0o755);
    assert.equal(byPath.get("a/z.ts")?.mode, 0o644);
    assert.equal(byPath.get("a/")?.mode, 0o755);
    assert.equal(byPath.get("link.ts")?.type, "SymbolicLink");
    assert.equal(byPath.get("link.ts")?.linkpath, "b.ts");
    for (const e of entries) {
      assert.ok(e.mtime === undefined || e.mtime === 0, `${e.path} mtime ${e.mtime}`);
      assert.ok(!e.uid, `${e.path} uid`);
      assert.ok(!e.uname, `${e.path} uname`);
    }
  });

  it("leaves out node_modules and .git always, and the excludes gitignore-style", async () => {
    const dir = await make({
      "model.ts": "m",
      "node_modules/lib/index.js": "x",
      "sub/node_modules/other/index.js": "x",
      ".git/HEAD": "ref",
      "run.log": "log",
      "sub/deep.log": "log",
      "data/raw/big.bin": "raw",
      "data/keep.json": "{}",
    });
    const packed = await packWorkingDir(dir, { excludes: ["*.log", "data/raw/**"] });
    const paths = (await listArchive(packed.data)).map((e) => e.path);
    assert.deepEqual(paths, ["data/", "data/keep.json", "data/raw/", "model.ts", "sub/"]);
  });

  it("keeps a symlink inside as a link (an absolute target made relative) and refuses one that leaves, naming it", async () => {
    const dir = await make({ "lib/a.ts": "a", "model.ts": "m" });
    await symlink(path.join(dir, "lib/a.ts"), path.join(dir, "abs-inside.ts"));
    const entries = await listArchive((await packWorkingDir(dir)).data);
    assert.equal(entries.find((e) => e.path === "abs-inside.ts")?.linkpath, "lib/a.ts");

    await symlink("/etc/passwd", path.join(dir, "lib/passwd"));
    await assert.rejects(packWorkingDir(dir), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_INVALID" && /symlink 'lib\/passwd' points outside/.test(err.message));
    await rm(path.join(dir, "lib/passwd"));

    await symlink("../..", path.join(dir, "lib/up"));
    await assert.rejects(packWorkingDir(dir), (err: unknown) => err instanceof FlotillaError && /symlink 'lib\/up'/.test(err.message));
    await rm(path.join(dir, "lib/up"));

    const outside = await make({ "secret.txt": "s" });
    await symlink(outside, path.join(dir, "out"));
    await assert.rejects(packWorkingDir(dir), (err: unknown) => err instanceof FlotillaError && /symlink 'out'/.test(err.message));
    await assert.doesNotReject(packWorkingDir(dir, { excludes: ["out"] }), "an excluded link is not looked at");
    // Through another link: 'lib/via' names a path inside, but 'out' on the way leads outside.
    await symlink("../out/secret.txt", path.join(dir, "lib/via"));
    await assert.rejects(packWorkingDir(dir, { excludes: ["out"] }), (err: unknown) => err instanceof FlotillaError && /symlink 'lib\/via' points outside .*resolves to/.test(err.message));
  });

  it("refuses a package over the limit with its size and the limit, before returning anything to upload", async () => {
    const dir = await make({ "model.ts": "m" });
    const { randomBytes } = await import("node:crypto");
    await writeFile(path.join(dir, "weights.bin"), randomBytes(300 * 1024));
    await assert.rejects(packWorkingDir(dir, { maxBytes: 100 * 1024 }), (err: unknown) => {
      assert.ok(err instanceof FlotillaError);
      assert.equal(err.code, "PACKAGE_TOO_LARGE");
      assert.match(err.message, /packs to 300\.\d KiB, over the limit of 100\.0 KiB/);
      assert.ok(Number(err.details?.bytes) > 300 * 1024);
      return true;
    });
    assert.ok((await packWorkingDir(dir, { maxBytes: 1024 * 1024 })).bytes > 300 * 1024);
  });

  it("refuses a workingDir that does not exist, naming the field", async () => {
    await assert.rejects(packWorkingDir("/nonexistent/flotilla-dir"), (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_SPEC" && /runtimeEnv\.workingDir: cannot read/.test(err.message));
  });
});
