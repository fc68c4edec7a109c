/** The stream wire format: every kind of chunk survives encoding, and a stream's content type comes from its first chunk. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { settingsKey, settingsOf } from "../../src/actors/replica-config.js";
import { decodeEntry, encodeChunk, END_ENTRY, errorEntry, isStreamable, streamContentType } from "../../src/shared/stream-protocol.js";
import { response } from "../../src/shared/protocol.js";

describe("stream protocol", () => {
  it("round-trips strings (newlines and all), bytes and values", () => {
    assert.deepEqual(decodeEntry(encodeChunk("a\nb")), { kind: "text", text: "a\nb" });
    assert.deepEqual(decodeEntry(encodeChunk("")), { kind: "text", text: "" });
    assert.deepEqual(decodeEntry(encodeChunk(new Uint8Array([0, 255, 7]))), { kind: "bytes", bytes: Buffer.from([0, 255, 7]) });
    assert.deepEqual(decodeEntry(encodeChunk({ a: [1, "x"] })), { kind: "value", value: { a: [1, "x"] } });
    assert.deepEqual(decodeEntry(encodeChunk(42)), { kind: "value", value: 42 });
    assert.deepEqual(decodeEntry(encodeChunk(undefined)), { kind: "value", value: null });
    assert.deepEqual(decodeEntry(END_ENTRY), { kind: "end" });
    assert.deepEqual(decodeEntry(errorEntry("HANDLER_ERROR", "boom")), { kind: "error", code: "HANDLER_ERROR", message: "boom" });
  });

  it("encodes bytes of a view into a larger buffer as the view's bytes only", () => {
    const buffer = new Uint8Array([9, 1, 2, 9]);
    assert.deepEqual(decodeEntry(encodeChunk(buffer.subarray(1, 3))), { kind: "bytes", bytes: Buffer.from([1, 2]) });
  });

  it("takes the content type from the first chunk", () => {
    assert.match(streamContentType("x"), /^text\/plain/);
    assert.match(streamContentType(undefined), /^text\/plain/);
    assert.equal(streamContentType(new Uint8Array(1)), "application/octet-stream");
    assert.equal(streamContentType({ a: 1 }), "application/x-ndjson");
  });

  it("streams async iterables only", async () => {
    async function* gen() {
      yield 1;
    }
    assert.equal(isStreamable(gen()), true);
    assert.equal(isStreamable(response({ body: gen() }).body), true);
    assert.equal(isStreamable("text"), false);
    assert.equal(isStreamable([1, 2]), false);
    assert.equal(isStreamable({ a: 1 }), false);
    assert.equal(isStreamable(null), false);
  });

  it("takes streamTimeoutS in the spec and passes it to replicas without changing other settings' keys", () => {
    const plain = parseDeploymentSpec({ name: "s", import: "s.ts" });
    const capped = parseDeploymentSpec({ name: "s", import: "s.ts", streamTimeoutS: 30 });
    assert.equal(capped.streamTimeoutS, 30);
    assert.equal(settingsOf(capped).streamTimeoutS, 30);
    assert.notEqual(settingsKey(settingsOf(plain)), settingsKey(settingsOf(capped)));
    assert.equal(settingsKey(settingsOf(plain)), JSON.stringify([100, 20, null, 3, plain.healthCheckPeriodS, plain.healthCheckTimeoutS, plain.healthCheckFailureThreshold]));
    assert.throws(() => parseDeploymentSpec({ name: "s", import: "s.ts", streamTimeoutS: -1 }), /streamTimeoutS/);
  });
});
