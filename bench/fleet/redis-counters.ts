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
}

export interface Rates {
  seconds: number;
  cmdsPerS: number;
  netOutBytesPerS: number;
  /** Redis's CPU use (user + system) as a percentage of one core. */
  cpuPct: number;
}

export async function counters(redis: Redis): Promise<Counters> {
  const text = `${(await redis.call("INFO", "stats")) as string}\n${(await redis.call("INFO", "cpu")) as string}`;
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(text)?.[1] ?? NaN);
  const cpu = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(text)?.[1] ?? NaN);
  return { commands: field("total_commands_processed"), cpuS: cpu("used_cpu_user") + cpu("used_cpu_sys"), netOutBytes: field("total_net_output_bytes"), at: performance.now(), replyBytes: Buffer.byteLength(text) + 16 };
}

export function ratesBetween(before: Counters, after: Counters): Rates {
  const seconds = (after.at - before.at) / 1000;
  return {
    seconds,
    // The INFOs that took `after` are counted only once they have run; the two that took `before` are in `after`.
    cmdsPerS: (after.commands - before.commands - 2) / seconds,
    netOutBytesPerS: (after.netOutBytes - before.netOutBytes - before.replyBytes) / seconds,
    cpuPct: ((after.cpuS - before.cpuS) / seconds) * 100,
  };
}

/** The q-quantile (0..1) of the values, by nearest rank; NaN when there are none. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
