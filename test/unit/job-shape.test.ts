/**
 * The replica's zod-free recognition of job data (job-shape.ts) against the
 * schema (job-data.ts): on thousands of seeded jobs, valid ones and ones
 * broken in one place, whatever the shape check accepts the schema accepts
 * too, as the same value. And the jobs requesters send take the shape path,
 * or replicas would load zod after all.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { queueJobShape, requestShape } from "../../src/actors/job-shape.js";
import { queueJobData, requestJobData } from "../../src/shared/job-data.js";
import { mulberry32 } from "../helpers/prng.js";

const SEED = 0x10b5;
const CASES = 20_000;

type Rng = () => number;
const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)] as T;

const UUIDS = ["0b6f6c1e-5d2a-4f7e-9a51-3f0c2d7e8a14", "0B6F6C1E-5D2A-4F7E-9A51-3F0C2D7E8A14", "00000000-0000-0000-0000-000000000000", "0b6f6c1e-5d2a-0f7e-9a51-3f0c2d7e8a14", "0b6f6c1e-5d2a-4f7e-7a51-3f0c2d7e8a14", "not-a-uuid", ""];
const ODD = [null, 0, 1.5, true, "", "x", [], ["a"], [1], {}, { a: "b" }, { a: 1 }, { a: ["b", "c"] }, { a: ["b", 2] }, { a: null }];

/** A job as a router or handle builds it. */
function validJob(rng: Rng): Record<string, unknown> {
  const address = {
    ...(rng() < 0.8 ? { replyTo: "ns:replies:{r1}" } : {}),
    ...(rng() < 0.8 ? { requestId: String(Math.floor(rng() * 1000)) } : {}),
    ...(rng() < 0.2 ? { asyncId: UUIDS[0] } : {}),
  };
  if (rng() < 0.4) return { kind: "call", ...(rng() < 0.9 ? { payload: pick(rng, ODD) } : {}), ...address };
  const http: Record<string, unknown> = { method: pick(rng, ["GET", "POST", ""]), path: pick(rng, ["/a", "/a/b", ""]) };
  if (rng() < 0.7) http.subPath = "/b";
  if (rng() < 0.7) http.query = pick(rng, [{}, { q: "1" }, { q: ["1", "2"] }]);
  if (rng() < 0.7) http.headers = pick(rng, [{}, { "content-type": "application/json" }]);
  if (rng() < 0.7) http.body = pick(rng, ["", '{"a":1}']);
  return { kind: "http", http, ...address };
}

/** A valid job with one field changed, removed or added. */
function brokenJob(rng: Rng): unknown {
  const job = validJob(rng);
  const target = job.kind === "http" && rng() < 0.6 ? (job.http as Record<string, unknown>) : job;
  const key = pick(rng, ["kind", "method", "path", "subPath", "query", "headers", "body", "replyTo", "requestId", "asyncId", "payload", "http", "extra"]);
  const r = rng();
  if (r < 0.3) delete target[key];
  else if (key === "asyncId") target[key] = pick(rng, UUIDS);
  else if (key === "kind") target[key] = pick(rng, ["batch", "HTTP", "call", "http", 1, null]);
  else target[key] = pick(rng, ODD);
  if (rng() < 0.05) return pick(rng, ODD);
  if (rng() < 0.05) return JSON.parse(`{"__proto__": {"kind": "call"}, "kind": ${JSON.stringify(job.kind ?? "call")}}`) as unknown;
  return job;
}

describe("job shape", () => {
  it("accepts only what the schema accepts, as the same value", () => {
    const rng = mulberry32(SEED);
    let shaped = 0;
    for (let i = 0; i < CASES; i++) {
      const data = i % 2 === 0 ? validJob(rng) : brokenJob(rng);
      const batch = rng() < 0.1;
      const job = batch ? { kind: "batch", requests: [data] } : data;
      const fast = queueJobShape(job);
      if (fast === undefined) continue;
      shaped++;
      const checked = queueJobData(job);
      assert.ok(checked.ok, `case ${i}: the shape check accepted what the schema refuses: ${JSON.stringify(job)}`);
      assert.deepStrictEqual(fast, checked.value, `case ${i}`);
      if (batch) {
        const one = requestShape(data);
        const schema = requestJobData(data);
        if (one !== undefined) {
          assert.ok(schema.ok, `case ${i}: batch request accepted by the shape check only: ${JSON.stringify(data)}`);
          assert.deepStrictEqual(one, schema.value, `case ${i}`);
        }
      }
    }
    assert.ok(shaped > CASES / 3, `the shape check took ${shaped} of ${CASES} cases`);
  });

  it("takes every job a requester builds without the schema", () => {
    const rng = mulberry32(SEED + 1);
    for (let i = 0; i < 2000; i++) {
      const job = validJob(rng);
      assert.notEqual(requestShape(job), undefined, `case ${i}: ${JSON.stringify(job)}`);
      assert.notEqual(queueJobShape({ kind: "batch", requests: [job, job] }), undefined);
    }
  });
});
