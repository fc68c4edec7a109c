/**
 * The front of the `moleculer` baseline: node:http, each request a
 * `broker.call("hello.hello")` to the service on another process over the
 * Redis transporter, answered as JSON. Params are the query string, as an API
 * gateway would pass them. Env: REDIS_URL, BENCH_MOLECULER_NAMESPACE.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "./moleculer-broker.js";
import { serveJson } from "./serve.js";

const broker = new ServiceBroker({ ...brokerOptions("bench-front"), requestTimeout: 30_000 });
await broker.start();
await broker.waitForServices(["hello"], 30_000);

await serveJson(
  (req) => broker.call("hello.hello", Object.fromEntries(new URL(req.url ?? "/", "http://front").searchParams)),
  () => broker.stop(),
);
