/** Where a requester's reply socket listens and what a replica accepts as its registration (src/queue/reply-sockets.ts). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { parseRegistration, replySocketPlace, replySocketsEnabled } from "../../src/queue/reply-sockets.js";

describe("reply socket place", () => {
  it("listens on loopback when Redis is on loopback, and nowhere for TLS Redis or when turned off", () => {
    assert.deepEqual(replySocketPlace("redis://127.0.0.1:6379", {}), { bind: "127.0.0.1", advertise: "127.0.0.1" });
    assert.deepEqual(replySocketPlace("redis://localhost:6379/2", {}), { bind: "127.0.0.1", advertise: "127.0.0.1" });
    assert.equal(replySocketPlace("rediss://redis.example:6380", {}), undefined);
    assert.equal(replySocketPlace("rediss+cluster://a:1,b:2", {}), undefined);
    assert.equal(replySocketPlace("redis://127.0.0.1:6379", { FLOTILLA_REPLY_SOCKETS: "off" }), undefined);
    assert.equal(replySocketsEnabled({ FLOTILLA_REPLY_SOCKETS: "false" }), false);
    assert.equal(replySocketsEnabled({}), true);
  });

  it("advertises FLOTILLA_REPLY_HOST when set, listening on every interface", () => {
    assert.deepEqual(replySocketPlace("redis://redis:6379", { FLOTILLA_REPLY_HOST: "router-1" }), { bind: "0.0.0.0", advertise: "router-1" });
  });

  it("advertises an external address when Redis is elsewhere", () => {
    const place = replySocketPlace("redis://redis.internal:6379", {});
    assert.ok(place);
    assert.ok(place.advertise === "127.0.0.1" || !place.advertise.startsWith("127."), `an external IPv4 address, or loopback on a machine without one (${place.advertise})`);
  });

  it("accepts only a host, a port and a secret as a registration", () => {
    const secret = "A".repeat(32);
    assert.deepEqual(parseRegistration(`10.0.0.5:4000 ${secret}`), { host: "10.0.0.5", port: 4000, secret });
    assert.deepEqual(parseRegistration(`[fd00::1]:4000 ${secret}`), { host: "fd00::1", port: 4000, secret });
    assert.deepEqual(parseRegistration(`router-1.svc:80 ${secret}`), { host: "router-1.svc", port: 80, secret });
    for (const bad of [`10.0.0.5:0 ${secret}`, `10.0.0.5:70000 ${secret}`, "10.0.0.5:4000 short", `10.0.0.5 ${secret}`, `a b:1 ${secret}`, `10.0.0.5:4000 ${secret} extra`, ""]) {
      assert.equal(parseRegistration(bad), undefined, `refused: ${JSON.stringify(bad)}`);
    }
  });

  it("refuses a request client id a replica would not answer (one with ':'), before it connects anywhere", () => {
    for (const id of ["app:1", "a b", "{x}", ""]) {
      assert.throws(() => new RequestClient({ redisUrl: "redis://127.0.0.1:1", namespace: "n", id }), (err: Error & { code?: string }) => err.code === "INVALID_SPEC" && err.message.includes("request client id"), `id ${JSON.stringify(id)}`);
    }
  });
});
