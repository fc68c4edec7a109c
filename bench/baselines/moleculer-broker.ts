/** The broker settings both Moleculer processes share: the Redis transporter, JSON, no logs, metrics or tracing. */
import type { BrokerOptions } from "moleculer";
import { env } from "./serve.js";

export function brokerOptions(nodeID: string): BrokerOptions {
  return {
    nodeID: `${nodeID}-${process.pid}`,
    // Channels are named MOL-<namespace>.…: a run of its own on a shared Redis.
    namespace: env("BENCH_MOLECULER_NAMESPACE"),
    transporter: env("REDIS_URL"),
    serializer: "JSON",
    logger: false,
    metrics: false,
    tracing: false,
  };
}
