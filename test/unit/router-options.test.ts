/**
 * Router options are validated once, with their defaults: what the Router gets
 * is complete, and a bad option is refused with its name and value.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { parseRouterOptions, ROUTER_DEFAULTS } from "../../src/router/router-options.js";

const BASE = { redisUrl: "redis://127.0.0.1:6379", namespace: "ns" };

function refused(input: Record<string, unknown>): string {
  try {
    parseRouterOptions({ ...BASE, ...input } as Parameters<typeof parseRouterOptions>[0]);
  } catch (err) {
    assert.ok(err instanceof FlotillaError && err.code === "INVALID_SPEC", String(err));
    return err.message;
  }
  assert.fail(`accepted ${JSON.stringify(input)}`);
}

describe("router options", () => {
  it("fills in every default, and no id or metrics port unless given", () => {
    const o = parseRouterOptions(BASE);
    assert.deepEqual(o, { ...BASE, ...ROUTER_DEFAULTS });
    assert.ok(Object.isFrozen(o));
    assert.equal(ROUTER_DEFAULTS.maxBodyBytes, 10 * 1024 * 1024);
  });

  it("keeps what is given", () => {
    const o = parseRouterOptions({ ...BASE, port: 0, bind: "127.0.0.1", requestTimeoutS: 0.5, maxBodyBytes: 0, id: "r-1", metricsPort: 9100 });
    assert.deepEqual(o, { ...BASE, port: 0, bind: "127.0.0.1", requestTimeoutS: 0.5, maxBodyBytes: 0, id: "r-1", metricsPort: 9100 });
  });

  it("refuses bad values, naming the option and the value", () => {
    assert.match(refused({ port: 70_000 }), /router option port: .*\(got 70000\)/);
    assert.match(refused({ port: 1.5 }), /router option port: .*1\.5/);
    assert.match(refused({ metricsPort: -1 }), /router option metricsPort: .*-1/);
    assert.match(refused({ requestTimeoutS: 0 }), /router option requestTimeoutS: .*\(got 0\)/);
    assert.match(refused({ maxBodyBytes: -5 }), /router option maxBodyBytes: .*-5/);
    assert.match(refused({ id: "a b" }), /router option id: router ids are .*"a b"/);
    assert.match(refused({ bind: "" }), /router option bind: /);
    assert.match(refused({ redisUrl: "" }), /router option redisUrl: /);
    assert.match(refused({ extra: 1 }), /router option extra: unknown option/);
  });
});
