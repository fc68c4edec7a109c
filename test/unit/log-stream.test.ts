/** The log stream's entries, their terminal form, `--since` and the credential blanking of collected lines. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseSince } from "../../src/client/log-reader.js";
import { FlotillaError } from "../../src/errors.js";
import { formatLogLine, logFields, parseLogEntry } from "../../src/shared/log-stream.js";
import { redactLine } from "../../src/shared/logger.js";
import { lineSplitter } from "../../src/host/output-lines.js";

const AT = Date.UTC(2025, 0, 2, 3, 4, 5, 6);

describe("log entries", () => {
  it("round-trips through the stream's fields", () => {
    const line = { at: AT, host: "h1", replica: "app-1", stream: "err" as const, line: "boom" };
    assert.deepEqual(parseLogEntry("1-0", logFields(line)), { id: "1-0", ...line });
  });

  it("prints time, replica, host and stream, and a runtime JSON line as LEVEL msg {fields}", () => {
    const base = { id: "1-0", at: AT, host: "h1", replica: "app-1", stream: "out" as const };
    assert.equal(formatLogLine({ ...base, line: "hello" }), "2025-01-02T03:04:05.006Z app-1 h1 out hello");
    const json = JSON.stringify({ level: 30, time: AT, pid: 9, name: "replica", deployment: "app", replica: "app-1", msg: "replica running", ms: 12 });
    assert.equal(formatLogLine({ ...base, stream: "err", line: json }), '2025-01-02T03:04:05.006Z app-1 h1 err INFO replica running {"ms":12}');
    assert.equal(formatLogLine({ ...base, line: "{not json" }), "2025-01-02T03:04:05.006Z app-1 h1 out {not json");
  });
});

describe("parseSince", () => {
  it("takes durations back from now, dates and epoch milliseconds", () => {
    const now = AT;
    assert.equal(parseSince("10m", now), now - 600_000);
    assert.equal(parseSince("1.5h", now), now - 5_400_000);
    assert.equal(parseSince("30s", now), now - 30_000);
    assert.equal(parseSince("2d", now), now - 172_800_000);
    assert.equal(parseSince("2025-01-02T03:04:05.006Z", now), AT);
    assert.equal(parseSince(String(AT), now), AT);
    assert.throws(() => parseSince("soon", now), (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_REQUEST" && err.message.includes("since"));
  });
});

describe("collected lines", () => {
  it("never carry passwords in URLs or Authorization values", () => {
    assert.equal(redactLine("to redis://user:secret@host:6379/0 now"), "to redis://user:***@host:6379/0 now");
    assert.equal(redactLine("rediss://:pw@h and redis://pw@h:1"), "rediss://:***@h and redis://***@h:1");
    assert.equal(redactLine('{"headers":{"authorization":"Bearer a\\"b","x":1}}'), '{"headers":{"authorization":"[redacted]","x":1}}');
    assert.equal(redactLine("Authorization: Bearer abc.def more"), "Authorization: [redacted] more");
    assert.equal(redactLine("authorization=Basic Zm9v; x"), "authorization=[redacted]; x");
    assert.equal(redactLine("http://example.com/a@b plain"), "http://example.com/a@b plain");
  });

  it("are split on newlines across chunks, without empty lines, and cut when very long", () => {
    const lines: string[] = [];
    const split = lineSplitter((l) => lines.push(l));
    split(Buffer.from("one\r\ntw"));
    split(Buffer.from("o\n\nthree"));
    split(Buffer.from("\n"));
    split(Buffer.from("x".repeat(20_000)));
    assert.deepEqual(lines.slice(0, 3), ["one", "two", "three"]);
    assert.equal(lines.length, 4);
    assert.ok(lines[3]!.endsWith("… [cut]") && lines[3]!.length < 17_000);
  });
});
