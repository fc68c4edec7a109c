/**
 * A router asks itself for its health once it listens: Node compiles a
 * function when it first runs, so the first request a process serves also
 * pays for compiling the HTTP server's accept, parse and answer code. Paying
 * it at start keeps that out of the first user's request (an async request's
 * 202 is meant to come at once).
 */
import http from "node:http";

/** How long start-up waits for its own answer. */
const WARM_UP_TIMEOUT_MS = 1000;

/** The address a client on this machine reaches a server bound to `bind` at. */
function loopback(bind: string): string {
  if (bind === "0.0.0.0" || bind === "") return "127.0.0.1";
  if (bind === "::") return "::1";
  return bind;
}

/** GET `path` from the server at `bind`:`port` once; resolves when answered or failed, never rejects. */
export function warmUp(bind: string, port: number, path: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = http.get({ host: loopback(bind), port, path, agent: false, timeout: WARM_UP_TIMEOUT_MS }, (res) => {
      res.resume();
      res.once("end", () => resolve());
      res.once("error", () => resolve());
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve());
    req.once("close", () => resolve());
  });
}
