/**
 * runtimeEnv packages in Redis, content-addressed by sha256: uploaded once per
 * hash in chunks, downloaded and verified by hosts, deleted by garbage
 * collection. Every key shares the namespace's control hash tag (keys.ts), so
 * completing an upload and collecting garbage are single scripts.
 *
 * An upload writes the chunks (with a TTL, so an abandoned one vanishes), then
 * in one script checks that all are there, makes them permanent and adds the
 * package to the index: a package in the index is whole, and a half upload is
 * never read.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { Keys } from "../shared/keys.js";

/** @default 1 MiB */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;
/** An incomplete upload's chunks expire this long after its last write. */
const PARTIAL_UPLOAD_TTL_MS = 60 * 60 * 1000;
/** Garbage collection spares a package touched (uploaded or asked for by a deploy) this recently. @default 1 hour */
export const DEFAULT_GC_GRACE_MS = 60 * 60 * 1000;

const SHA256 = /^[0-9a-f]{64}$/;

/** What the index holds for each stored package. */
export interface PackageMeta {
  bytes: number;
  chunks: number;
  chunkBytes: number;
  /** ms, Redis clock. */
  storedAt: number;
}

/**
 * KEYS[1] index, KEYS[2] touched. ARGV[1] hash.
 * Returns 1 and touches the package when it is stored whole, 0 otherwise.
 */
const TOUCH_IF_STORED = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[1], t[1] * 1000 + math.floor(t[2] / 1000))
return 1
`;

/**
 * KEYS[1] index, KEYS[2] touched, KEYS[3] chunks. ARGV[1] hash, ARGV[2] chunk count, ARGV[3] bytes, ARGV[4] chunk size.
 * Returns 1 once the package is in the index, 0 when chunks are missing (nothing is changed then).
 */
const COMPLETE_UPLOAD = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[2]) then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('PERSIST', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({bytes = tonumber(ARGV[3]), chunks = tonumber(ARGV[2]), chunkBytes = tonumber(ARGV[4]), storedAt = now}))
redis.call('HSET', KEYS[2], ARGV[1], now)
return 1
`;

/**
 * KEYS[1] index, KEYS[2] touched, KEYS[3] chunks. ARGV[1] hash, ARGV[2] grace ms (-1: delete whatever its age).
 * Deletes the package unless it was touched within the grace period. Returns 1 when deleted.
 */
const DELETE_PACKAGE = `
local grace = tonumber(ARGV[2])
if grace >= 0 then
  local touched = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
  local t = redis.call('TIME')
  if t[1] * 1000 + math.floor(t[2] / 1000) - touched < grace then return 0 end
end
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return existed
`;

export interface UploadResult {
  hash: string;
  bytes: number;
  /** False when the hash was already stored and nothing was sent. */
  uploaded: boolean;
}

function checkHash(hash: string): void {
  if (!SHA256.test(hash)) throw new FlotillaError("INVALID_SPEC", `runtimeEnv hash '${hash.slice(0, 80)}' is not a sha256 in lower-case hex`);
}

export class PackageStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly chunkBytes = DEFAULT_CHUNK_BYTES,
  ) {}

  /** Stores `data` under its sha256 unless that hash is stored whole already (then it is only touched). */
  async upload(data: Buffer): Promise<UploadResult> {
    const hash = createHash("sha256").update(data).digest("hex");
    const keys = [this.keys.packages, this.keys.packagesTouched];
    if (Number(await this.redis.eval(TOUCH_IF_STORED, 2, ...keys, hash)) === 1) return { hash, bytes: data.length, uploaded: false };
    const chunkKey = this.keys.packageChunks(hash);
    const chunks = Math.max(1, Math.ceil(data.length / this.chunkBytes));
    // A few chunks per round trip bounds what one pipeline holds.
    for (let first = 0; first < chunks; first += 8) {
      const pipeline = this.redis.pipeline();
      for (let i = first; i < Math.min(first + 8, chunks); i++) pipeline.hset(chunkKey, String(i), data.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes));
      pipeline.pexpire(chunkKey, PARTIAL_UPLOAD_TTL_MS);
      const results = await pipeline.exec();
      const failed = results?.find(([err]) => err);
      if (failed?.[0]) throw failed[0];
    }
    const done = await this.redis.eval(COMPLETE_UPLOAD, 3, ...keys, chunkKey, hash, chunks, data.length, this.chunkBytes);
    if (Number(done) !== 1) throw new FlotillaError("INTERNAL", `upload of package ${hash} lost chunks before it completed (did its chunks expire?)`);
    return { hash, bytes: data.length, uploaded: true };
  }

  /** The index entry of a stored package, or undefined when it is not stored whole. */
  async meta(hash: string): Promise<PackageMeta | undefined> {
    checkHash(hash);
    const raw = await this.redis.hget(this.keys.packages, hash);
    return raw ? (JSON.parse(raw) as PackageMeta) : undefined;
  }

  /** Touches a stored package (a deploy that reuses it); false when it is not stored. */
  async touch(hash: string): Promise<boolean> {
    checkHash(hash);
    return Number(await this.redis.eval(TOUCH_IF_STORED, 2, this.keys.packages, this.keys.packagesTouched, hash)) === 1;
  }

  /** Downloads a package and checks its size and sha256; PACKAGE_FETCH_FAILED names what is wrong. */
  async download(hash: string, expectedBytes?: number): Promise<Buffer> {
    const fail = (why: string): never => {
      throw new FlotillaError("PACKAGE_FETCH_FAILED", `package ${hash}: ${why}`, { details: { hash } });
    };
    const meta = await this.meta(hash);
    if (!meta) return fail("not stored in Redis (never uploaded, or removed as garbage): deploy again to upload it");
    if (expectedBytes !== undefined && meta.bytes !== expectedBytes) fail(`stored with ${meta.bytes} bytes, the deployment says ${expectedBytes}`);
    const chunkKey = this.keys.packageChunks(hash);
    const parts: Buffer[] = [];
    for (let i = 0; i < meta.chunks; i++) {
      const part = await this.redis.hgetBuffer(chunkKey, String(i));
      if (!part) fail(`chunk ${i} of ${meta.chunks} is missing`);
      parts.push(part as Buffer);
    }
    const data = Buffer.concat(parts);
    if (data.length !== meta.bytes) fail(`holds ${data.length} bytes, its index says ${meta.bytes}`);
    const actual = createHash("sha256").update(data).digest("hex");
    if (actual !== hash) fail(`the bytes stored hash to ${actual}: the package is corrupt; deploy again to upload it`);
    return data;
  }

  /** Deletes a package whatever its age; true when it was stored. */
  async delete(hash: string): Promise<boolean> {
    checkHash(hash);
    return Number(await this.redis.eval(DELETE_PACKAGE, 3, this.keys.packages, this.keys.packagesTouched, this.keys.packageChunks(hash), hash, -1)) === 1;
  }

  /** Hashes of every package stored whole. */
  async list(): Promise<string[]> {
    return (await this.redis.hkeys(this.keys.packages)).sort();
  }

  /**
   * Deletes every stored package not in `referenced`, except those touched within
   * `graceMs` (a deploy uploads or touches its package before it writes the record
   * that references it). Returns the hashes deleted.
   */
  async collectGarbage(referenced: ReadonlySet<string>, options: { graceMs?: number } = {}): Promise<string[]> {
    const graceMs = Math.max(0, options.graceMs ?? DEFAULT_GC_GRACE_MS);
    const deleted: string[] = [];
    for (const hash of await this.list()) {
      if (referenced.has(hash) || !SHA256.test(hash)) continue;
      const removed = await this.redis.eval(DELETE_PACKAGE, 3, this.keys.packages, this.keys.packagesTouched, this.keys.packageChunks(hash), hash, graceMs);
      if (Number(removed) === 1) deleted.push(hash);
    }
    return deleted;
  }
}

/** Garbage collection for the controller: see PackageStore.collectGarbage. */
export function collectPackageGarbage(redis: Redis, keys: Keys, referenced: ReadonlySet<string>, options: { graceMs?: number } = {}): Promise<string[]> {
  return new PackageStore(redis, keys).collectGarbage(referenced, options);
}

/** The package hashes some records reference: a deployment's current package and the one its previous code ran (for a rollback). */
export function packageHashesOf(records: Iterable<{ runtimeEnv?: { hash: string } | undefined; previousRuntimeEnv?: { hash: string } | undefined }>): Set<string> {
  const hashes = new Set<string>();
  for (const record of records) {
    if (record.runtimeEnv) hashes.add(record.runtimeEnv.hash);
    if (record.previousRuntimeEnv) hashes.add(record.previousRuntimeEnv.hash);
  }
  return hashes;
}
