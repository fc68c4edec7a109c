/**
 * Resource sets as people read them, and why a replica waits for a host: the
 * one place a pending reason becomes text (the controller's status, the
 * assignment view of `flotilla status`).
 */
import type { PendingReason, ResourceSet } from "./records.js";

/** Slack for float sums such as 0.1 + 0.2, so they neither fail a fit nor over-commit. */
export const EPS = 1e-9;

const RANK: Readonly<Record<string, number>> = { CPU: 0, GPU: 1 };

/** CPU, GPU, then the rest by name. */
export function orderedNames(r: ResourceSet): string[] {
  return Object.keys(r).sort((a, b) => (RANK[a] ?? 2) - (RANK[b] ?? 2) || (a < b ? -1 : a > b ? 1 : 0));
}

/** 0.5, 1, 2: no trailing zeros, and float noise such as 0.30000000000000004 rounded away. */
export function formatAmount(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}

/** Resources as text: `1 CPU, 0.5 GPU, 2 memoryGiB` (CPU, GPU, then the rest by name; zeros left out). */
export function describeResources(r: ResourceSet): string {
  return orderedNames(r)
    .filter((name) => Math.abs(r[name]!) > EPS)
    .map((name) => `${formatAmount(r[name]!)} ${name}`)
    .join(", ");
}

/** The sum of resource sets, key by key. */
export function sumResources(list: readonly ResourceSet[]): ResourceSet {
  const sum: ResourceSet = {};
  for (const set of list) for (const [name, value] of Object.entries(set)) sum[name] = (sum[name] ?? 0) + value;
  return sum;
}

/** Why a replica waits, as a person reads it: `needs 1 GPU, no host has 1 free`. */
export function describePending(reason: PendingReason): string {
  if (reason.kind === "no-hosts") return "no live hosts";
  const amounts = orderedNames(reason.needs).map((name) => [name, formatAmount(reason.needs[name]!)] as const);
  if (reason.kind === "resources") return amounts.map(([name, n]) => `needs ${n} ${name}, no host has ${n} free`).join("; ");
  const list = amounts.map(([name, n]) => `${n} ${name}`);
  return `needs ${list.slice(0, -1).join(", ")}${list.length > 1 ? " and " : ""}${list.at(-1) ?? ""} together, no host has them free`;
}

/** True when both say the same (reasons are compared by what they say, not by key order). */
export function samePending(a: PendingReason | undefined, b: PendingReason | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return describePending(a) === describePending(b);
}
