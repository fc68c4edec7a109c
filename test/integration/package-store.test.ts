/** runtimeEnv packages in the real Redis: stored once per hash in chunks, verified on download, collected as garbage. */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { PackageStore, collectPackageGarbage } from "../../src/runtime-env/package-store.js";
import { Keys } from "../../src/shared/keys.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

const sha = (data: Buffer): string => createHash("sha256").update(data).digest("hex");

describe("package store", () => {
  const namespace = testNamespace("pkgstore");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const store = new PackageStore(redis, keys, 1000);
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("uploads a package once per hash, in chunks under the namespace's hash tag, and downloads it verified", async () => {
    const data = randomBytes(4500);
    const first = await store.upload(data);
    assert.deepEqual(first, { hash: sha(data), bytes: 4500, uploaded: true });
    assert.equal(await redis.hlen(keys.packageChunks(first.hash)), 5, "1000-byte chunks");
    assert.equal(await redis.pttl(keys.packageChunks(first.hash)), -1, "a complete package does not expire");
    assert.ok(keys.packageChunks(first.hash).startsWith(`{${namespace}}:`), "one hash tag with the index");
    const meta = await store.meta(first.hash);
    assert.deepEqual({ bytes: meta?.bytes, chunks: meta?.chunks, chunkBytes: meta?.chunkBytes }, { bytes: 4500, chunks: 5, chunkBytes: 1000 });

    // A second upload of the same bytes sends no chunk.
    await redis.hdel(keys.packageChunks(first.hash), "4");
    const again = await store.upload(data);
    assert.equal(again.uploaded, false);
    assert.equal(await redis.hlen(keys.packageChunks(first.hash)), 4, "nothing was rewritten");
    await redis.hset(keys.packageChunks(first.hash), "4", data.subarray(4000));

    assert.ok((await store.download(first.hash, 4500)).equals(data));
    assert.ok((await store.download(first.hash)).equals(data));
    const empty = await store.upload(Buffer.alloc(0));
    assert.equal((await store.download(empty.hash)).length, 0);
  });

  it("never treats a half upload as stored", async () => {
    const data = randomBytes(3000);
    const hash = sha(data);
    await redis.hset(keys.packageChunks(hash), "0", data.subarray(0, 1000));
    await assert.rejects(store.download(hash), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_FETCH_FAILED" && /not stored/.test(err.message));
    assert.equal((await store.upload(data)).uploaded, true, "the upload completes what was half there");
    assert.ok((await store.download(hash)).equals(data));
  });

  it("refuses a corrupted chunk, a missing chunk and a size that does not match the deployment", async () => {
    const data = randomBytes(2500);
    const { hash } = await store.upload(data);
    const chunk = Buffer.from(data.subarray(1000, 2000));
    chunk[10] = (chunk[10] ?? 0) ^ 0xff;
    await redis.hset(keys.packageChunks(hash), "1", chunk);
    await assert.rejects(store.download(hash), (err: unknown) => err instanceof FlotillaError && err.code === "PACKAGE_FETCH_FAILED" && new RegExp(`package ${hash}: the bytes stored hash to [0-9a-f]{64}: the package is corrupt`).test(err.message));
    await redis.hdel(keys.packageChunks(hash), "1");
    await assert.rejects(store.download(hash), /chunk 1 of 3 is missing/);
    await assert.rejects(store.download(hash, 99), /stored with 2500 bytes, the deployment says 99/);
    await assert.rejects(store.download("not-a-hash"), (err: unknown) => err instanceof FlotillaError && /is not a sha256/.test(err.message));
  });

  it("collects the packages no one references, sparing recently touched ones, and deletes on request", async () => {
    const gcKeys = new Keys(`${namespace}-gc`);
    const gcStore = new PackageStore(redis, gcKeys, 1000);
    try {
      const kept = await gcStore.upload(randomBytes(1500));
      const old = await gcStore.upload(randomBytes(1500));
      const recent = await gcStore.upload(randomBytes(1500));
      // Age two of them: their last touch an hour and a minute ago (Redis clock).
      const [seconds] = await redis.time();
      for (const h of [kept.hash, old.hash]) await redis.hset(gcKeys.packagesTouched, h, (Number(seconds) - 3660) * 1000);

      const deleted = await collectPackageGarbage(redis, gcKeys, new Set([kept.hash]));
      assert.deepEqual(deleted, [old.hash]);
      assert.deepEqual(await gcStore.list(), [kept.hash, recent.hash].sort());
      assert.equal(await redis.exists(gcKeys.packageChunks(old.hash)), 0, "its chunks are gone");
      await assert.rejects(gcStore.download(old.hash), /not stored/);

      assert.deepEqual(await gcStore.collectGarbage(new Set([kept.hash]), { graceMs: 0 }), [recent.hash]);
      assert.equal(await gcStore.delete(kept.hash), true);
      assert.equal(await gcStore.delete(kept.hash), false);
      assert.deepEqual(await gcStore.list(), []);
      assert.deepEqual(await redis.hkeys(gcKeys.packagesTouched), []);
    } finally {
      await cleanupNamespace(`${namespace}-gc`);
    }
  });
});
