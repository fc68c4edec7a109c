/** Upper bound: a plain node:http server answering {"ok":true} in-process, no Redis. */
import http from "node:http";
import { announce, exitOnSignal, listen } from "./serve.js";

const BODY = JSON.stringify({ ok: true });

const server = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;

const port = await listen(server);
announce("listening", { port });
exitOnSignal(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
