/**
 * Redis's own counters over a window: commands processed and bytes sent
 * (`INFO stats`: total_commands_processed, total_net_output_bytes). The
 * benchmark's own INFO calls are taken out.
 */
import type { Redis } from "ioredis";

export interface Counters {
  commands: number;
  /** used_cpu_user + used_cpu_sys, seconds. */
  cpuS: number;
  netOutBytes: number;
  at: number;
  /** Bytes of this INFO reply, which the next snapshot's counters include. */
  replyBytes: number;
  /** Calls so far by command (commands run by scripts included). */
  calls: Map<string, number>;
}

export interface Rates {
  seconds: number;
  cmdsPerS: number;
  netOutBytesPerS: number;
  /** Redis's CPU use (user + system) as a percentage of one core. */
  cpuPct: number;
  /** Calls per second of the busiest commands, busiest first. */
  topCommands: Record<string, number>;
}

export async function counters(redis: Redis): Promise<Counters> {
  const text = `${(await redis.call("INFO", "stats")) as string}\n${(await redis.call("INFO", "cpu")) as string}`;
  const stats = (await redis.call("INFO", "commandstats")) as string;
  const calls = new Map<string, number>();
  for (const m of stats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(text)?.[1] ?? NaN);
  const cpu = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? NaN);
  return { commands: field("total_commands_processed"), cpuS: cpu("used_cpu_user") + cpu("used_cpu_sys"), netOutBytes: field("total_net_output_bytes"), at: performance.now(), replyBytes: Buffer.byteLength(text) + Buffer.byteLength(stats) + 24, calls };
}

export function ratesBetween(before: Counters, after: Counters): Rates {
  const seconds = (after.at - before.at) / 1000;
  return {
    seconds,
    // The INFOs that took `after` are counted only once they have run; the three that took `before` are in `after`.
    cmdsPerS: (after.commands - before.commands - 3) / seconds,
    netOutBytesPerS: (after.netOutBytes - before.netOutBytes - before.replyBytes) / seconds,
    cpuPct: ((after.cpuS - before.cpuS) / seconds) * 100,
    topCommands: topCommands(before.calls, after.calls, seconds),
  };
}

const TOP_COMMANDS = 12;

function topCommands(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>, seconds: number): Record<string, number> {
  const rates = [...after].map(([name, n]) => [name, (n - (before.get(name) ?? 0)) / seconds] as const).filter(([name, r]) => r > 0 && name !== "info");
  rates.sort((a, b) => b[1] - a[1]);
  return Object.fromEntries(rates.slice(0, TOP_COMMANDS).map(([name, r]) => [name, Math.round(r * 10) / 10]));
}

/** The q-quantile (0..1) of the values, by nearest rank; NaN when there are none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
