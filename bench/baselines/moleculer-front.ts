/**
 * The front of the `moleculer` baseline: node:http, each request a
 * `broker.call("hello.hello")` to the service on another process over the
 * Redis transporter, answered as JSON. Params are the query string, as an API
 * gateway would pass them. Env: REDIS_URL, BENCH_MOLECULER_NAMESPACE.
 */
import http from "node:http";
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "./moleculer-broker.js";
import { announce, exitOnSignal, listen } from "./serve.js";

const broker = new ServiceBroker({ ...brokerOptions("bench-front"), requestTimeout: 30_000 });
await broker.start();
await broker.waitForServices(["hello"], 30_000);

const server = http.createServer((req, res) => {
  const query = Object.fromEntries(new URL(req.url ?? "/", "http://front").searchParams);
  broker
    .call("hello.hello", query)
    .then((value: unknown) => {
      const body = JSON.stringify(value);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    })
    .catch((err: unknown) => {
      const body = JSON.stringify({ error: err instanceof Error ? err.message : String(err) });
      res.writeHead(500, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
});
server.keepAliveTimeout = 65_000;

const port = await listen(server);
announce("listening", { port });
exitOnSignal(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await broker.stop();
});
