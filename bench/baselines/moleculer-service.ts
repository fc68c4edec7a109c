/**
 * The Moleculer service of the `moleculer` baseline: one action answering
 * {ok:true}, as bench/app/hello.ts does, on a broker of its own reached over
 * the Redis transporter. Env: REDIS_URL, BENCH_MOLECULER_NAMESPACE.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "./moleculer-broker.js";
import { announce, exitOnSignal } from "./serve.js";

const broker = new ServiceBroker(brokerOptions("bench-service"));
broker.createService({
  name: "hello",
  actions: {
    hello: () => ({ ok: true }),
  },
});
await broker.start();
announce("ready");
exitOnSignal(() => broker.stop());
