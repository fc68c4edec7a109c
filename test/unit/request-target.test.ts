import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { parseTarget } from "../../src/router/request-target.js";

/** What the router read before plain targets skipped URL: path and query as WHATWG URL gives them. */
function reference(raw: string): { pathname: string; query: Record<string, string | string[]> } | "invalid" {
  try {
    const url = new URL(raw, "http://router");
    decodeURIComponent(url.pathname);
    decodeURIComponent(url.search);
    const query: Record<string, string | string[]> = {};
    for (const [k, v] of url.searchParams) {
      const prev = Object.hasOwn(query, k) ? query[k] : undefined;
      if (prev === undefined) query[k] = v;
      else query[k] = Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    return { pathname: url.pathname, query };
  } catch {
    return "invalid";
  }
}

function read(raw: string): { pathname: string; query: Record<string, string | string[]> } | "invalid" {
  try {
    const { pathname, query } = parseTarget(raw);
    return { pathname, query };
  } catch (err) {
    assert.ok(err instanceof FlotillaError && err.code === "INVALID_REQUEST", `unexpected error for ${JSON.stringify(raw)}: ${String(err)}`);
    return "invalid";
  }
}

const same = (raw: string): void => assert.deepEqual(JSON.stringify(read(raw)), JSON.stringify(reference(raw)), `target ${JSON.stringify(raw)}`);

describe("request target", () => {
  it("reads plain targets as URL does", () => {
    for (const raw of ["/", "/hello", "/items/7?x=1&x=2&y=z", "/a//b/", "/a?", "/a?&&x&=v&x=", "/a?q=a+b&q=c=d", "/a?x=1?2", "/a:b@c/!$&'()*+,;=", "/~u/-_."]) same(raw);
  });

  it("reads everything else through URL, with the same result", () => {
    const tricky = ["//host/x", "/a/./b", "/a/../b", "/a/.b", "/.well-known/x", "/a%2Fb", "/caf%C3%A9", "/café", "/a b", "/a\\b", "/a#frag", "/a?x=%41", "/a?x=é", "/a?x=a b", "/a?'='", "*", "http://other/x?y=1", "/a?__proto__=1&constructor=2&toString=3", "/a?x=1#y=2", "/a|b", "/a^b", "/a`b", "/a{b}"];
    for (const raw of tricky) same(raw);
  });

  it("answers 400 to bad percent-encoding in the path or the query", () => {
    for (const raw of ["/echo/%E0%A4%A", "/a?x=%zz", "/a%"]) assert.equal(read(raw), "invalid", raw);
  });

  it("agrees with URL on random targets", () => {
    const alphabet = ["/", "/", "a", "b", "?", "&", "=", "+", ".", "%", "%2", "%41", "#", " ", "\\", "é", "'", "~", ":", "@", ";", "__proto__"];
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 5000; i++) {
      let raw = "/";
      const len = rand(12);
      for (let j = 0; j < len; j++) raw += alphabet[rand(alphabet.length)];
      same(raw);
    }
  });
});
