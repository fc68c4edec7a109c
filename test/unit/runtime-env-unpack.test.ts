/** Unpacking a fetched package refuses every entry that could reach outside its directory, naming it. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { packWorkingDir } from "../../src/runtime-env/pack.js";
import { checkArchive, unpackArchive } from "../../src/runtime-env/unpack.js";
import { craftArchive, type CraftedEntry } from "../helpers/tar-craft.js";

describe("runtimeEnv unpacking", () => {
  let scratch = "";
  const fresh = async (): Promise<string> => {
    scratch ||= await mkdtemp(path.join(os.tmpdir(), "flotilla-unpack-"));
    return path.join(scratch, `t-${Math.random().toString(16).slice(2)}`);
  };
  after(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("unpacks what the packer made: files with their modes, directories, links inside", async () => {
    const src = await fresh();
    await mkdir(path.join(src, "lib/empty"), { recursive: true });
    await writeFile(path.join(src, "model.ts"), "export default 1;\n");
    await writeFile(path.join(src, "lib/run.sh"), "#!/bin/sh\n", { mode: 0o755 });
    const { symlink } = await import("node:fs/promises");
    await symlink("../model.ts", path.join(src, "lib/model-link.ts"));
    const packed = await packWorkingDir(src);
    const out = await fresh();
    assert.equal(await unpackArchive(packed.data, out), 5);
    assert.equal(await readFile(path.join(out, "model.ts"), "utf8"), "export default 1;\n");
    assert.equal((await lstat(path.join(out, "lib/run.sh"))).mode & 0o777, 0o755);
    assert.equal((await lstat(path.join(out, "model.ts"))).mode & 0o777, 0o644);
    assert.ok((await lstat(path.join(out, "lib/empty"))).isDirectory());
    assert.equal(await readlink(path.join(out, "lib/model-link.ts")), "../model.ts");
  });

  const hostile: Array<[string, CraftedEntry[], RegExp]> = [
    ["a '../' path", [{ path: "ok.ts", content: "x" }, { path: "../x", content: "evil" }], /entry '\.\.\/x' is refused: its path contains '\.\.'/],
    ["a '..' inside a path", [{ path: "a/../../x", content: "evil" }], /entry 'a\/\.\.\/\.\.\/x' is refused: its path contains '\.\.'/],
    ["an absolute path", [{ path: "/tmp/flotilla-evil", content: "evil" }], /entry '\/tmp\/flotilla-evil' is refused: it is an absolute path/],
    ["a symlink to /etc", [{ path: "etc", type: "SymbolicLink", linkpath: "/etc" }], /entry 'etc' is refused: it links to the absolute path \/etc/],
    ["a relative symlink out", [{ path: "a/up", type: "SymbolicLink", linkpath: "../../.." }], /entry 'a\/up' is refused: it links to \.\.\/\.\.\/\.\., outside the package/],
    ["a write through a link", [{ path: "d", type: "SymbolicLink", linkpath: "sub" }, { path: "d/x", content: "x" }], /entry 'd\/x' is refused: it would be written through the symlink 'd'/],
    ["a fifo", [{ path: "pipe", type: "FIFO" }], /entry 'pipe' is refused: it is a FIFO entry/],
    ["a character device", [{ path: "null", type: "CharacterDevice" }], /entry 'null' is refused: it is a CharacterDevice entry/],
    ["a block device", [{ path: "disk", type: "BlockDevice" }], /entry 'disk' is refused: it is a BlockDevice entry/],
    ["a hard link", [{ path: "a", content: "x" }, { path: "b", type: "Link", linkpath: "/etc/passwd" }], /entry 'b' is refused: it is a hard link/],
    ["a path twice", [{ path: "a", content: "x" }, { path: "a", type: "SymbolicLink", linkpath: "b" }], /entry 'a' is refused: the archive holds this path twice/],
  ];
  for (const [what, entries, message] of hostile) {
    it(`refuses ${what} before writing anything`, async () => {
      const data = craftArchive(entries);
      await assert.rejects(checkArchive(data), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_INVALID" && message.test(err.message));
      const out = await fresh();
      await assert.rejects(unpackArchive(data, out), message);
      assert.equal(existsSync(out), false, "nothing was created");
      assert.equal(existsSync("/tmp/flotilla-evil"), false);
      assert.equal(existsSync(path.join(scratch, "x")), false);
    });
  }

  it("refuses a link chain that leaves after unpacking, though each link alone looks inside", async () => {
    // 'l' is the package root (inside); 'x' is l/.., which is lexically 'd1' but really the parent of the package.
    const data = craftArchive([
      { path: "d1/", type: "Directory" },
      { path: "d1/l", type: "SymbolicLink", linkpath: ".." },
      { path: "x", type: "SymbolicLink", linkpath: "d1/l/.." },
    ]);
    await assert.rejects(unpackArchive(data, await fresh()), (err: unknown) => err instanceof FlotillaError && /entry 'x' is refused: it links to d1\/l\/\.\., which resolves to .*outside the package/.test(err.message));
  });

  it("refuses what is not a gzipped tar, and an archive that unpacks too large", async () => {
    await assert.rejects(checkArchive(Buffer.from("not an archive")), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_INVALID");
    const data = craftArchive([{ path: "a", content: "x".repeat(600) }, { path: "b", content: "y".repeat(600) }]);
    await assert.rejects(checkArchive(data, { maxUnpackedBytes: 1000 }), /entry 'b' is refused: the archive unpacks to more than 1000 bytes/);
  });
});
