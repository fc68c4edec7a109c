/** The benchmark's settings, from the environment, checked once. */
export interface BenchConfig {
  /** BENCH_DURATION_S: seconds per cell. @default 10 */
  durationS: number;
  /**
   * BENCH_ROUNDS: each cell runs as this many slices of ⌈durationS / rounds⌉
   * seconds, the targets taking turns, so that a slow spell of the machine
   * falls on every target alike. 1: each target's cell in one piece. @default 3
   */
  rounds: number;
  /** Seconds per slice: ⌈durationS / rounds⌉. */
  sliceS: number;
  /** BENCH_WARMUP_S: load per target at each connection count before its slices. @default 3 */
  warmupS: number;
  /** BENCH_IDLE_S: seconds of idle Redis traffic sampled per Redis-backed target. @default 2 */
  idleS: number;
  /** BENCH_CONNECTIONS: comma-separated. @default 1,16,64,256 */
  connections: number[];
  /** BENCH_TARGETS: comma-separated subset of raw-http, bullmq-naive, moleculer, flotilla, batching, streaming. @default all six */
  targets: string[];
  /** BENCH_LOAD_ONLY=1: only the load cells; no start-up, memory or controller-tick figures. @default false */
  loadOnly: boolean;
  /** BENCH_MAX_S: the whole run is aborted (and cleaned up) after this long. @default derived from the above */
  maxS: number;
}

/** `batching` and `streaming` are cells of their own (bench/batching.ts, bench/streaming.ts), at fixed connection counts. */
export const TARGET_NAMES = ["raw-http", "bullmq-naive", "moleculer", "flotilla", "batching", "streaming"] as const;

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got '${raw}'`);
  return n;
}

export function readConfig(): BenchConfig {
  const durationS = positive("BENCH_DURATION_S", 10);
  const connections = (process.env.BENCH_CONNECTIONS ?? "1,16,64,256").split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`BENCH_CONNECTIONS: '${s}' is not a connection count`);
    return n;
  });
  const targets = (process.env.BENCH_TARGETS ?? TARGET_NAMES.join(",")).split(",").map((s) => s.trim());
  for (const t of targets) {
    if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`BENCH_TARGETS: unknown target '${t}' (known: ${TARGET_NAMES.join(", ")})`);
  }
  const warmupS = positive("BENCH_WARMUP_S", 3);
  const idleS = positive("BENCH_IDLE_S", 2);
  const rounds = positive("BENCH_ROUNDS", 3);
  if (!Number.isInteger(rounds)) throw new Error(`BENCH_ROUNDS must be a whole number, got '${process.env.BENCH_ROUNDS}'`);
  const sliceS = Math.ceil(durationS / rounds);
  const perTargetS = 60 + idleS + connections.length * (warmupS + 1 + rounds * (sliceS + 5));
  const loadOnly = process.env.BENCH_LOAD_ONLY === "1";
  return { durationS, rounds, sliceS, warmupS, idleS, connections, targets, loadOnly, maxS: positive("BENCH_MAX_S", 120 + targets.length * perTargetS) };
}
