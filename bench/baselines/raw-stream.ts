/** The streaming cell's baseline: a bare node:http server writing 1,000 small chunks (chunked), one write each. */
import http from "node:http";
import type { AddressInfo } from "node:net";

const server = http.createServer((req, res) => {
  const n = Number(new URL(req.url ?? "/", "http://x").searchParams.get("n") ?? 1000);
  res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
  let i = 0;
  // One chunk per turn, as a generator yielding through an event loop would.
  const next = (): void => {
    if (i >= n) {
      res.end();
      return;
    }
    res.write(`tok${i++} `);
    setImmediate(next);
  };
  next();
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ event: "listening", port: (server.address() as AddressInfo).port })}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
