/**
 * Resource accounting shared by the placer (controller) and the status view
 * (client): host capacities, the replicas holding resources on them, what is
 * free per host, and how resources read as text. Pure.
 *
 * Every GPU device holds 1.0. A replica below 1 GPU holds a share of one
 * device; one of g >= 1 holds floor(g) whole devices plus the remainder on one
 * more device.
 */
import type { ResourceSet } from "./records.js";

/** Slack for float sums such as 0.1 + 0.2, so they neither fail a fit nor over-commit. */
export const EPS = 1e-9;
/** The slots of CPU and GPU in per-host free arrays (see slotsOf). */
export const CPU = 0;
export const GPU = 1;

export interface HostCapacity {
  id: string;
  /** Declared capacity (`CPU`, `GPU`, custom); a missing key is 0, except `GPU`, which defaults to gpuDevices. */
  total: ResourceSet;
  /** GPU devices, indices 0..gpuDevices-1. */
  gpuDevices: number;
  /** False when the host is dead or draining: nothing new is placed there. */
  schedulable: boolean;
}

/** A replica that already holds resources on a host. */
export interface PlacedReplica { id: string; deployment: string; host: string; resources: ResourceSet; gpuIds: number[] }

/** One host's free resources after the replicas it holds. */
export interface HostUsage {
  host: HostCapacity;
  /** Free amount per resource slot (see slotsOf). */
  free: Float64Array;
  /** Used share of each GPU device, 0..1. */
  devices: Float64Array;
}

/** Gives every resource name a slot in the per-host free arrays; CPU and GPU come first. */
export function slotsOf(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], more: ReadonlyArray<{ resources: ResourceSet }> = []): Map<string, number> {
  const slots = new Map([["CPU", CPU], ["GPU", GPU]]);
  const add = (set: ResourceSet): void => {
    for (const name in set) if (!slots.has(name)) slots.set(name, slots.size);
  };
  for (const h of hosts) add(h.total);
  for (const r of existing) add(r.resources);
  for (const r of more) add(r.resources);
  return slots;
}

/**
 * What each host has free after the existing replicas, hosts sorted by id. A replica on a host not listed
 * holds nothing; GPU ids outside a host's devices are ignored.
 */
export function hostUsage(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], slots: Map<string, number>): HostUsage[] {
  const usage = [...hosts]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((host) => {
      const free = new Float64Array(slots.size);
      for (const [name, slot] of slots) free[slot] = host.total[name] ?? 0;
      const devices = Math.max(0, Math.floor(host.gpuDevices));
      free[GPU] = Math.min(devices, host.total.GPU ?? devices);
      return { host, free, devices: new Float64Array(devices) };
    });
  const index = new Map(usage.map((s, i) => [s.host.id, i]));
  /** Per existing replica: its host's index, or -1 when that host is not here. */
  const at = new Int32Array(existing.length);
  /** The valid device ids of replicas holding GPU devices (most hold none). */
  const held = new Map<number, number[]>();
  const listings = usage.map((s) => new Int32Array(s.devices.length));
  existing.forEach((r, i) => {
    const h = index.get(r.host) ?? -1;
    at[i] = h;
    if (h < 0 || r.gpuIds.length === 0) return;
    const count = usage[h]!.devices.length;
    const ids = r.gpuIds.filter((d) => Number.isInteger(d) && d >= 0 && d < count);
    held.set(i, ids);
    for (const d of ids) listings[h]![d]! += 1;
  });
  existing.forEach((r, i) => {
    const h = at[i]!;
    if (h < 0) return;
    const { free, devices } = usage[h]!;
    for (const name in r.resources) free[slots.get(name)!]! -= r.resources[name]!;
    const ids = held.get(i);
    if (ids && ids.length > 0) chargeExisting(devices, listings[h]!, ids, r.resources.GPU ?? 0);
  });
  return usage;
}

/** Free capacity of every host after the existing replicas, for status display. GPU counts what the devices have free. */
export function freeResources(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[]): Map<string, ResourceSet> {
  const slots = slotsOf(hosts, existing);
  const out = new Map<string, ResourceSet>();
  for (const { host, free, devices } of hostUsage(hosts, existing, slots)) {
    const set: ResourceSet = {};
    for (const [name, slot] of slots) {
      const value = slot === GPU ? Math.min(free[GPU]!, devices.reduce((sum, used) => sum + 1 - used, 0)) : free[slot]!;
      if (slot === CPU || slot === GPU || name in host.total || Math.abs(value) > EPS) set[name] = Math.round(value * 1e9) / 1e9 || 0;
    }
    out.set(host.id, set);
  }
  return out;
}

/**
 * gpuIds alone do not say which device holds the remainder of a g >= 1 replica.
 * Its whole devices are its alone, so a device another replica also lists is
 * the remainder; when none is, every listed device is charged in full, which
 * can waste part of one device but never over-commits it.
 */
function chargeExisting(devices: Float64Array, listings: Int32Array, ids: number[], gpu: number): void {
  const { whole, rem } = splitGpu(gpu);
  if (whole === 0 && rem > 0 && ids.length > 0) devices[ids[0]!]! += rem;
  if (whole === 0) return;
  const partial = rem > 0 ? ids.find((d) => listings[d]! > 1) : undefined;
  for (const d of ids) devices[d]! += d === partial ? rem : 1;
}

/** A GPU amount as whole devices plus a remainder (all of it when below 1). */
export function splitGpu(gpu: number): { whole: number; rem: number } {
  const whole = Math.max(0, Math.floor(gpu + EPS));
  return { whole, rem: gpu - whole > EPS ? gpu - whole : 0 };
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

const RANK: Readonly<Record<string, number>> = { CPU: 0, GPU: 1 };

/** CPU, GPU, then the rest by name. */
export function orderedNames(r: ResourceSet): string[] {
  return Object.keys(r).sort((a, b) => (RANK[a] ?? 2) - (RANK[b] ?? 2) || (a < b ? -1 : a > b ? 1 : 0));
}

/** 0.5, 1, 2: no trailing zeros, and float noise such as 0.30000000000000004 rounded away. */
export function formatAmount(n: number): string {
  return String(Math.round(n * 1e6) / 1e6);
}
