/** How a host copies its replicas' log lines to its own stderr. */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { replicaOutput } from "../../src/shared/logger.js";

const LINE = JSON.stringify({ level: 30, time: 1795656884969, pid: 4242, name: "replica", replica: "echo-1a2b3c4d", msg: "replica running", ms: 12 });

describe("replica log output on the host", () => {
  const saved = process.env.FLOTILLA_LOG_PRETTY;
  afterEach(() => {
    if (saved === undefined) delete process.env.FLOTILLA_LOG_PRETTY;
    else process.env.FLOTILLA_LOG_PRETTY = saved;
  });

  it("copies the bytes as they are when the host logs JSON", () => {
    process.env.FLOTILLA_LOG_PRETTY = "0";
    const out: Array<string | Buffer> = [];
    const write = replicaOutput((t) => out.push(t));
    const chunk = Buffer.from(`${LINE}\n{"level":40,"msg":"half`);
    write(chunk);
    assert.deepEqual(out, [chunk]);
  });

  it("pretty-prints JSON lines split across chunks when the host pretty-prints, and passes other lines through", () => {
    process.env.FLOTILLA_LOG_PRETTY = "1";
    let out = "";
    const write = replicaOutput((t) => (out += t.toString()));
    const text = `${LINE}\nTypeError: not JSON at all\n{not json either\n`;
    write(Buffer.from(text.slice(0, 40)));
    assert.equal(out, "", "nothing is written before a line is complete");
    write(Buffer.from(text.slice(40)));
    // eslint-disable-next-line no-control-regex
    const plain = out.replace(/\u001b\[[0-9;]*m/g, "");
    assert.match(plain, /INFO.*\(replica\/4242\).*replica running/);
    assert.match(plain, /ms: 12/);
    assert.doesNotMatch(plain, /"level":30/, "the JSON line is not copied raw");
    assert.match(plain, /^TypeError: not JSON at all$/m);
    assert.match(plain, /^\{not json either$/m);
  });
});
