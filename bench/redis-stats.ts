/**
 * What a cell costs Redis, from two snapshots of `INFO commandstats cpu`
 * (a cell run in slices: the sum of its slices' deltas).
 *
 * - calls: the sum of `calls` over every command, which counts the commands a
 *   Lua script runs (BullMQ's EVALSHA) as well as the EVALSHA itself.
 * - usec: the sum of `usec` over every command. An EVALSHA's usec already
 *   includes the commands it ran, and those are counted again under their own
 *   names, so this double-counts script work; it is kept for reference only.
 * - cpuUs (the headline): the delta of used_cpu_user + used_cpu_sys, i.e. the
 *   CPU the whole redis-server process used, network I/O included. It is
 *   unambiguous, and it also includes the target's background work (heartbeats,
 *   BullMQ's stalled checks) during the cell.
 * - reads/writes: Redis's socket reads and writes (`total_reads_processed`,
 *   `total_writes_processed` of `INFO stats`). Each write is a TCP send, which
 *   costs Redis about as much CPU as a short script.
 * The benchmark's own INFO and CONFIG calls are left out.
 */
import type { Redis } from "ioredis";

export interface RedisSnapshot {
  commands: Map<string, { calls: number; usec: number }>;
  cpuS: number;
  reads: number;
  writes: number;
  at: number;
}

export interface RedisCost {
  calls: number;
  usec: number;
  /** EVAL/EVALSHA/FCALL calls: one per script run. */
  scriptCalls: number;
  cpuUs: number;
  elapsedS: number;
  /** Per completed request (undefined when no request completed). */
  perRequest?: { calls: number; usec: number; scriptCalls: number; cpuUs: number; reads: number; writes: number };
  /** The commands with most calls, per request when there were requests, else per second. */
  top: Array<{ command: string; calls: number }>;
}

const OWN_COMMANDS = /^(info|config\|.*)$/;
const SCRIPT_COMMANDS = /^(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro)$/;

export function parseInfo(text: string, at = Date.now()): RedisSnapshot {
  const commands = new Map<string, { calls: number; usec: number }>();
  let user = 0;
  let sys = 0;
  let reads = 0;
  let writes = 0;
  for (const line of text.split(/\r?\n/)) {
    const cmd = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (cmd) commands.set(cmd[1] as string, { calls: Number(cmd[2]), usec: Number(cmd[3]) });
    const cpu = /^used_cpu_(user|sys):([\d.]+)/.exec(line);
    if (cpu?.[1] === "user") user = Number(cpu[2]);
    if (cpu?.[1] === "sys") sys = Number(cpu[2]);
    const io = /^total_(reads|writes)_processed:(\d+)/.exec(line);
    if (io?.[1] === "reads") reads = Number(io[2]);
    if (io?.[1] === "writes") writes = Number(io[2]);
  }
  return { commands, cpuS: user + sys, reads, writes, at };
}

export async function snapshot(redis: Redis): Promise<RedisSnapshot> {
  return parseInfo((await redis.call("INFO", "commandstats", "cpu", "stats")) as string);
}

/** Zeroes the counters; only sent to a Redis the benchmark owns. */
export async function resetStats(redis: Redis): Promise<void> {
  await redis.call("CONFIG", "RESETSTAT");
}

/** What Redis did between two snapshots, the bench's own INFO left out; deltas of slices add up (addDeltas). */
export interface RedisDelta {
  commands: Map<string, { calls: number; usec: number }>;
  cpuS: number;
  reads: number;
  writes: number;
  elapsedS: number;
}

export function deltaBetween(before: RedisSnapshot, after: RedisSnapshot): RedisDelta {
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const [name, now] of after.commands) {
    if (OWN_COMMANDS.test(name)) continue;
    const then = before.commands.get(name) ?? { calls: 0, usec: 0 };
    const calls = Math.max(0, now.calls - then.calls);
    if (calls > 0) commands.set(name, { calls, usec: Math.max(0, now.usec - then.usec) });
  }
  return {
    commands,
    cpuS: Math.max(0, after.cpuS - before.cpuS),
    // The bench's own INFO: the second snapshot's read, the first one's reply.
    reads: Math.max(0, after.reads - before.reads - 1),
    writes: Math.max(0, after.writes - before.writes - 1),
    elapsedS: (after.at - before.at) / 1000,
  };
}

export function addDeltas(deltas: readonly RedisDelta[]): RedisDelta {
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const d of deltas) {
    for (const [name, c] of d.commands) {
      const sum = commands.get(name) ?? { calls: 0, usec: 0 };
      commands.set(name, { calls: sum.calls + c.calls, usec: sum.usec + c.usec });
    }
  }
  const sum = (pick: (d: RedisDelta) => number): number => deltas.reduce((n, d) => n + pick(d), 0);
  return { commands, cpuS: sum((d) => d.cpuS), reads: sum((d) => d.reads), writes: sum((d) => d.writes), elapsedS: sum((d) => d.elapsedS) };
}

export function costBetween(before: RedisSnapshot, after: RedisSnapshot, requests: number): RedisCost {
  return costOf(deltaBetween(before, after), requests);
}

export function costOf(delta: RedisDelta, requests: number): RedisCost {
  let calls = 0;
  let usec = 0;
  let scriptCalls = 0;
  const perCommand: Array<{ command: string; calls: number }> = [];
  for (const [name, c] of delta.commands) {
    calls += c.calls;
    usec += c.usec;
    if (SCRIPT_COMMANDS.test(name)) scriptCalls += c.calls;
    perCommand.push({ command: name, calls: c.calls });
  }
  const cpuUs = delta.cpuS * 1e6;
  const divisor = requests > 0 ? requests : Math.max(delta.elapsedS, 1e-3);
  const top = perCommand
    .sort((a, b) => b.calls - a.calls)
    .slice(0, 10)
    .map((c) => ({ command: c.command, calls: round(c.calls / divisor, 2) }));
  const cost: RedisCost = { calls, usec, scriptCalls, cpuUs: Math.round(cpuUs), elapsedS: round(delta.elapsedS, 3), top };
  if (requests > 0) {
    cost.perRequest = {
      calls: round(calls / requests, 2),
      usec: round(usec / requests, 2),
      scriptCalls: round(scriptCalls / requests, 2),
      cpuUs: round(cpuUs / requests, 2),
      reads: round(delta.reads / requests, 2),
      writes: round(delta.writes / requests, 2),
    };
  }
  return cost;
}

export function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
