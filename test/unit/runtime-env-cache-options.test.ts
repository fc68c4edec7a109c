/** Host cache options: the default cache directory and clear errors. */
import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { defaultCacheDir, parseRuntimeEnvCacheOptions } from "../../src/runtime-env/cache-options.js";
import { packageHashesOf } from "../../src/runtime-env/package-store.js";

describe("runtimeEnv cache options", () => {
  it("defaults the cache under XDG_CACHE_HOME, else ~/.cache", () => {
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/var/cache/me" }), "/var/cache/me/flotilla");
    assert.equal(defaultCacheDir({}), path.join(os.homedir(), ".cache", "flotilla"));
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "relative" }), path.join(os.homedir(), ".cache", "flotilla"), "a relative XDG_CACHE_HOME is ignored, as the spec says");
    const options = parseRuntimeEnvCacheOptions({ cacheDir: "rel/cache" });
    assert.equal(options.cacheDir, path.resolve("rel/cache"));
    assert.equal(options.cacheMaxGiB, 10);
    assert.ok(Object.isFrozen(options));
  });

  it("names the field that is wrong", () => {
    assert.throws(
      () => parseRuntimeEnvCacheOptions({ cacheMaxGiB: -1 }),
      (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_SPEC" && /cacheMaxGiB: Too small/.test(err.message),
    );
    assert.throws(() => parseRuntimeEnvCacheOptions({ cacheDirs: "/x" }), /unrecognized key.*cacheDirs|cacheDirs/i);
  });

  it("collects the hashes records reference", () => {
    assert.deepEqual([...packageHashesOf([{ runtimeEnv: { hash: "a" } }, {}, { runtimeEnv: { hash: "a" } }, { runtimeEnv: { hash: "b" } }])].sort(), ["a", "b"]);
  });
});
