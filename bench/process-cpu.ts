/**
 * CPU time of a target's own processes over a cell, from /proc/<pid>/stat
 * (utime + stime, in clock ticks of 10 ms on Linux), per completed request:
 * where a request's CPU goes (front, worker, replica) beside Redis's share.
 * Also their write system calls (/proc/<pid>/io syscw; each socket write is
 * one, and on a virtual machine each costs tens of µs).
 */
import { readFileSync } from "node:fs";

/** USER_HZ: Linux reports utime/stime in 1/100 s whatever the kernel's HZ. */
const TICK_US = 10_000;

/** utime + stime of `pid` in µs, or undefined when it is gone. */
export function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return undefined;
  }
}

/** Write system calls `pid` made so far, or undefined when unreadable. */
export function processWrites(pid: number): number | undefined {
  try {
    const n = /^syscw:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"))?.[1];
    return n === undefined ? undefined : Number(n);
  } catch {
    return undefined;
  }
}

export type CpuSnapshot = Map<string, { pid: number; us: number; writes: number | undefined }>;

export function cpuSnapshot(pids: Record<string, number | undefined>): CpuSnapshot {
  const out: CpuSnapshot = new Map();
  for (const [name, pid] of Object.entries(pids)) {
    const us = pid === undefined ? undefined : processCpuUs(pid);
    if (pid !== undefined && us !== undefined) out.set(name, { pid, us, writes: processWrites(pid) });
  }
  return out;
}

export interface ProcessCost {
  cpuUs: number;
  writes?: number;
}

/** CPU µs and write calls of each process between two snapshots (present in both, same pid); deltas of slices add up (addCpuDeltas). */
export type CpuDelta = Map<string, { us: number; writes: number | undefined }>;

export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): CpuDelta {
  const out: CpuDelta = new Map();
  for (const [name, b] of before) {
    const a = after.get(name);
    if (!a || a.pid !== b.pid) continue;
    out.set(name, { us: a.us - b.us, writes: a.writes !== undefined && b.writes !== undefined ? a.writes - b.writes : undefined });
  }
  return out;
}

/** Sums slices' deltas; a process missing from one slice (restarted, gone) is left out, as it would be from one long cell. */
export function addCpuDeltas(deltas: readonly CpuDelta[]): CpuDelta {
  const out: CpuDelta = new Map();
  const [first, ...rest] = deltas;
  for (const [name, d] of first ?? []) {
    if (!rest.every((other) => other.has(name))) continue;
    let us = d.us;
    let writes = d.writes;
    for (const other of rest) {
      const o = other.get(name) as { us: number; writes: number | undefined };
      us += o.us;
      writes = writes === undefined || o.writes === undefined ? undefined : writes + o.writes;
    }
    out.set(name, { us, writes });
  }
  return out;
}

/** CPU µs and write calls per request of each process in `delta`. */
export function cpuCostOf(delta: CpuDelta, requests: number): Record<string, ProcessCost> {
  const out: Record<string, ProcessCost> = {};
  if (requests <= 0) return out;
  const per = (d: number, digits: number): number => Math.round((d / requests) * 10 ** digits) / 10 ** digits;
  for (const [name, d] of delta) {
    out[name] = { cpuUs: per(d.us, 1) };
    if (d.writes !== undefined) out[name].writes = per(d.writes, 2);
  }
  return out;
}
