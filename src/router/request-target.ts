/**
 * A request's path and query, as `new URL(target, base)` reads them. Most
 * targets are plain (`/hello`, `/items/7?x=1&y=2`): their path needs no
 * normalising and their query no decoding, so they are read as they are,
 * without building a URL; anything else goes through URL.
 */
import { FlotillaError } from "../errors.js";

export interface RequestTarget {
  pathname: string;
  query: Record<string, string | string[]>;
  /** Only for targets that needed one: callers that want the URL itself build it with `toUrl`. */
  url?: URL;
}

/**
 * Characters that a path and a query keep as they are in a URL (RFC 3986
 * unreserved and sub-delims, ":" "@" "/"). Excluded and read through URL: "%"
 * (decoding), "\\" (a slash there), "#", spaces, quotes and non-ASCII
 * (percent-encoded by URL), "?" in the query.
 */
const PLAIN = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") PLAIN[c.charCodeAt(0)] = 1;

const SLASH = 47;
const QUESTION = 63;
const DOT = 46;

/** The request target read; throws INVALID_REQUEST (400) for bad percent-encoding. */
export function parseTarget(raw: string): RequestTarget {
  const plain = plainTarget(raw);
  if (plain) return plain;
  const url = parseUrl(raw);
  return { pathname: url.pathname, query: queryObject(url.searchParams), url };
}

/** The URL of a target, for the few routes that want one. */
export function toUrl(target: RequestTarget, raw: string): URL {
  return target.url ?? parseUrl(raw);
}

function plainTarget(raw: string): RequestTarget | undefined {
  // "//x" is a host to URL; a "." or ".." segment is normalised away.
  if (raw.charCodeAt(0) !== SLASH || raw.charCodeAt(1) === SLASH) return undefined;
  let queryAt = -1;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === QUESTION && queryAt < 0) {
      queryAt = i;
      continue;
    }
    if (c >= 128 || PLAIN[c] !== 1) return undefined;
    if (queryAt < 0 && c === DOT && raw.charCodeAt(i - 1) === SLASH) return undefined;
  }
  if (queryAt < 0) return { pathname: raw, query: {} };
  return { pathname: raw.slice(0, queryAt), query: plainQuery(raw, queryAt + 1) };
}

/** application/x-www-form-urlencoded without "%": pairs split on "&" and the first "=", "+" read as a space. */
function plainQuery(raw: string, from: number): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let start = from;
  while (start <= raw.length) {
    let end = raw.indexOf("&", start);
    if (end < 0) end = raw.length;
    if (end > start) {
      const pair = raw.slice(start, end);
      const eq = pair.indexOf("=");
      const key = (eq < 0 ? pair : pair.slice(0, eq)).replaceAll("+", " ");
      const value = eq < 0 ? "" : pair.slice(eq + 1).replaceAll("+", " ");
      add(out, key, value);
    }
    start = end + 1;
  }
  return out;
}

function add(out: Record<string, string | string[]>, key: string, value: string): void {
  const prev = Object.hasOwn(out, key) ? out[key] : undefined;
  if (prev === undefined) out[key] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[key] = [prev, value];
}

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw, "http://router");
    decodeURIComponent(url.pathname);
    decodeURIComponent(url.search);
  } catch {
    throw new FlotillaError("INVALID_REQUEST", `the request URL is not valid (bad percent-encoding?): ${raw.slice(0, 200)}`);
  }
  return url;
}

export function queryObject(params: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of params) add(out, k, v);
  return out;
}
