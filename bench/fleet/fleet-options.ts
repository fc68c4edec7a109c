/** The fleet simulation's command-line options, checked once. */
import { parseArgs } from "node:util";

export interface FleetOptions {
  /** Simulated hosts. @default 100 */
  hosts: number;
  /** Deployments. @default 100 */
  deployments: number;
  /** Replicas per deployment. @default 10 */
  replicas: number;
  /** Length of the steady-state window (s). @default 20 */
  steadyS: number;
  /** Quiet time after a convergence, before the next window (s). @default 5 */
  settleS: number;
  /** A deploy or a rollout not converged after this long is reported as such and the run goes on (s). @default 240 */
  convergeTimeoutS: number;
  /** Simulated replica start-up (ms). @default 250 */
  startMs: number;
  /** Simulated replica drain (ms). @default 100 */
  drainMs: number;
  /** Where the JSON results go. @default bench-results/fleet.json */
  out: string;
}

const INTEGER_OPTIONS = ["hosts", "deployments", "replicas", "steady-s", "settle-s", "converge-timeout-s", "start-ms", "drain-ms"] as const;

export function parseFleetOptions(argv: readonly string[]): FleetOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      hosts: { type: "string", default: "100" },
      deployments: { type: "string", default: "100" },
      replicas: { type: "string", default: "10" },
      "steady-s": { type: "string", default: "20" },
      "settle-s": { type: "string", default: "5" },
      "converge-timeout-s": { type: "string", default: "240" },
      "start-ms": { type: "string", default: "250" },
      "drain-ms": { type: "string", default: "100" },
      out: { type: "string", default: "bench-results/fleet.json" },
    },
    strict: true,
  });
  const n: Record<string, number> = {};
  for (const name of INTEGER_OPTIONS) {
    const raw = values[name] as string;
    const value = Number(raw);
    const min = name.endsWith("-ms") || name === "settle-s" ? 0 : 1;
    if (!Number.isInteger(value) || value < min || value > 1_000_000) throw new Error(`--${name}: '${raw}' is not an integer of at least ${min}`);
    n[name] = value;
  }
  return {
    hosts: n.hosts!,
    deployments: n.deployments!,
    replicas: n.replicas!,
    steadyS: n["steady-s"]!,
    settleS: n["settle-s"]!,
    convergeTimeoutS: n["converge-timeout-s"]!,
    startMs: n["start-ms"]!,
    drainMs: n["drain-ms"]!,
    out: values.out as string,
  };
}
