/** Shared bits of the baseline server processes: announce readiness on stdout as one JSON line, exit on SIGTERM. */
import http from "node:http";
import type { AddressInfo } from "node:net";

export function announce(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);
}

export function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

/** Runs `close` on SIGTERM/SIGINT and exits; a second signal exits at once. */
export function exitOnSignal(close: () => Promise<void>): void {
  let closing = false;
  const onSignal = (): void => {
    if (closing) process.exit(130);
    closing = true;
    close()
      .catch(() => undefined)
      .finally(() => process.exit(0));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
}

function writeJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Serves every request with `answer`'s value as JSON (500 with its message
 * when it rejects) on a free loopback port, announces "listening" with the
 * port, and on SIGTERM closes the server, then runs `close`.
 */
export async function serveJson(answer: (req: http.IncomingMessage) => unknown, close: () => Promise<void> = async () => undefined): Promise<void> {
  const server = http.createServer((req, res) => {
    new Promise((resolve) => resolve(answer(req))).then(
      (result: unknown) => writeJson(res, 200, result),
      (err: unknown) => writeJson(res, 500, { error: err instanceof Error ? err.message : String(err) }),
    );
  });
  server.keepAliveTimeout = 65_000;
  const port = await listen(server);
  announce("listening", { port });
  exitOnSignal(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await close();
  });
}
