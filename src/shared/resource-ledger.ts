/**
 * What every host has free: its declared capacity minus the resources and GPU
 * device shares of the replicas it holds, kept current as replicas are placed.
 * The placer decides with it; `flotilla status` shows what it says is free.
 *
 * Every GPU device holds 1.0. A request below 1 GPU takes a share of one device,
 * chosen by best fit so fractional replicas pack onto as few devices as
 * possible; a request of g >= 1 takes floor(g) wholly free devices plus the
 * remainder on one more device, again by best fit.
 */
import type { PendingReason, ResourceSet } from "./records.js";
import { EPS, orderedNames } from "./resources.js";

const CPU = 0;
const GPU = 1;
/** What gpuFit returns when the devices lack room. */
const NO_FIT = -2;

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

/** A replica that needs a host. */
export interface PlacementRequest { id: string; deployment: string; resources: ResourceSet }

/** Free capacity of every host after the existing replicas, for status display. GPU counts what the devices have free. */
export function freeResources(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[]): Map<string, ResourceSet> {
  const slots = slotsOf(hosts, existing, []);
  const out = new Map<string, ResourceSet>();
  for (const { host, free, devices } of new Ledger(hosts, existing, slots).hosts) {
    const set: ResourceSet = {};
    for (const [name, slot] of slots) {
      const value = slot === GPU ? Math.min(free[GPU]!, devices.reduce((sum, used) => sum + 1 - used, 0)) : free[slot]!;
      if (slot === CPU || slot === GPU || name in host.total || Math.abs(value) > EPS) set[name] = Math.round(value * 1e9) / 1e9 || 0;
    }
    out.set(host.id, set);
  }
  return out;
}

interface HostState {
  host: HostCapacity;
  /** Free amount per resource slot (see slotsOf). */
  free: Float64Array;
  /** Used share of each GPU device, 0..1. */
  devices: Float64Array;
}

/** The planner's working state: what each host has free, kept current as replicas are placed. */
export class Ledger {
  /** Sorted by id, so a lower index is a lower id. */
  readonly hosts: HostState[];
  /** Deployment → its replicas on each host. */
  private readonly counts = new Map<string, number[]>();
  /** Schedulable hosts, most free CPU first, then by id: the spread order, kept sorted as CPU is taken. */
  private readonly order: Int32Array;
  /** Free CPU in millionths, so float noise does not decide the order. */
  private readonly cpuRank: Float64Array;
  /** Schedulable hosts with a partly used GPU device, where fractional requests pack. */
  private readonly sharing = new Set<number>();

  /** `spread`: the deployments whose replicas per host are counted (those being placed). */
  constructor(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], slots: Map<string, number>, spread: ReadonlySet<string> = new Set()) {
    this.hosts = [...hosts]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((host) => {
        const free = new Float64Array(slots.size);
        for (const [name, slot] of slots) free[slot] = host.total[name] ?? 0;
        const devices = Math.max(0, Math.floor(host.gpuDevices));
        free[GPU] = Math.min(devices, host.total.GPU ?? devices);
        return { host, free, devices: new Float64Array(devices) };
      });
    const index = new Map(this.hosts.map((s, i) => [s.host.id, i]));
    /** Per existing replica: its host's index, or -1 when that host is not here. */
    const at = new Int32Array(existing.length);
    /** The valid device ids of replicas holding GPU devices (most hold none). */
    const held = new Map<number, number[]>();
    const listings = this.hosts.map((s) => new Int32Array(s.devices.length));
    existing.forEach((r, i) => {
      const h = index.get(r.host) ?? -1;
      at[i] = h;
      if (h < 0 || r.gpuIds.length === 0) return;
      const count = this.hosts[h]!.devices.length;
      const ids = r.gpuIds.filter((d) => Number.isInteger(d) && d >= 0 && d < count);
      held.set(i, ids);
      for (const d of ids) listings[h]![d]! += 1;
    });
    existing.forEach((r, i) => {
      const h = at[i]!;
      if (h < 0) return;
      const { free, devices } = this.hosts[h]!;
      for (const name in r.resources) free[slots.get(name)!]! -= r.resources[name]!;
      const ids = held.get(i);
      if (ids && ids.length > 0) chargeExisting(devices, listings[h]!, ids, r.resources.GPU ?? 0);
      // Spreading needs the counts of the deployments being placed only.
      if (spread.has(r.deployment)) this.countsOf(r.deployment)[h]! += 1;
    });
    this.cpuRank = Float64Array.from(this.hosts, (s) => Math.round(s.free[CPU]! * 1e6));
    this.order = Int32Array.from(this.hosts.flatMap((s, h) => (s.host.schedulable ? [h] : []))).sort((a, b) => (this.before(a, b) ? -1 : 1));
    for (const h of this.order) if (this.hosts[h]!.devices.some((u) => u > EPS && u < 1)) this.sharing.add(h);
  }

  /** Per host (a plain array: a typed array per deployment costs an off-heap allocation each). */
  countsOf(deployment: string): number[] {
    let counts = this.counts.get(deployment);
    if (!counts) this.counts.set(deployment, (counts = new Array<number>(this.hosts.length).fill(0)));
    return counts;
  }

  /** The host for a need, or -1: packing hosts first for a fraction of a GPU, then the spread order. */
  choose(need: Need, counts: number[]): number {
    let best = -1;
    if (need.whole === 0 && need.rem > 0) {
      for (const h of this.sharing) {
        const partial = fit(this.hosts[h]!, need);
        if (partial >= 0 && this.hosts[h]!.devices[partial]! > EPS && (best < 0 || this.spreadsBetter(h, best, counts))) best = h;
      }
      if (best >= 0) return best;
    }
    for (const h of this.order) {
      // Later hosts have no more CPU than this one, give or take the 1e-6 the order rounds to.
      if (need.cpu > 0 && this.hosts[h]!.free[CPU]! + 2e-6 < need.cpu) break;
      if (fit(this.hosts[h]!, need) === NO_FIT) continue;
      if (counts[h] === 0) return h;
      if (best < 0 || counts[h]! < counts[best]!) best = h;
    }
    return best;
  }

  /** Charges the need to host h and returns the GPU devices it got. */
  take(h: number, need: Need, counts: number[]): number[] {
    const { free, devices } = this.hosts[h]!;
    for (let i = 0; i < need.slots.length; i++) free[need.slots[i]!]! -= need.amounts[i]!;
    const partial = gpuFit(devices, need.whole, need.rem);
    const ids = partial >= 0 ? [partial] : [];
    for (let d = 0; d < devices.length && ids.length < need.whole + (partial >= 0 ? 1 : 0); d++) if (d !== partial && devices[d]! <= EPS) ids.push(d);
    for (const d of ids) devices[d]! += d === partial ? need.rem : 1;
    if (devices.some((u) => u > EPS && u < 1)) this.sharing.add(h);
    else this.sharing.delete(h);
    counts[h]! += 1;
    const from = this.seek(h, 0);
    this.cpuRank[h] = Math.round(free[CPU]! * 1e6);
    const to = this.seek(h, from + 1);
    this.order.copyWithin(from, from + 1, to);
    this.order[to - 1] = h;
    return ids.sort((a, b) => a - b);
  }

  /** Names the resource no host has enough of on its own, or else says the combination is what does not fit. */
  whyNot(need: Need): PendingReason {
    if (this.order.length === 0) return { kind: "no-hosts" };
    const short: ResourceSet = {};
    need.names.forEach((name, i) => {
      const [slot, amount] = [need.slots[i]!, need.amounts[i]!];
      const { whole, rem } = slot === GPU ? split(amount) : { whole: 0, rem: 0 };
      const fits = this.order.some((h) => this.hosts[h]!.free[slot]! + EPS >= amount && gpuFit(this.hosts[h]!.devices, whole, rem) !== NO_FIT);
      if (!fits) short[name] = amount;
    });
    if (Object.keys(short).length > 0) return { kind: "resources", needs: short };
    return { kind: "combination", needs: Object.fromEntries(need.names.map((name, i) => [name, need.amounts[i]!])) };
  }

  /** Spread order: more free CPU first, then lower id. */
  private before(a: number, b: number): boolean {
    return this.cpuRank[a]! > this.cpuRank[b]! || (this.cpuRank[a] === this.cpuRank[b] && a < b);
  }

  /** The first position from `lo` whose host does not come before h (binary search). */
  private seek(h: number, lo: number): number {
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.before(this.order[mid]!, h)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private spreadsBetter(a: number, b: number, counts: number[]): boolean {
    return counts[a]! < counts[b]! || (counts[a] === counts[b] && this.before(a, b));
  }
}

/** Gives every resource name a slot in the per-host free arrays; CPU and GPU come first. */
export function slotsOf(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], requests: readonly PlacementRequest[]): Map<string, number> {
  const slots = new Map([["CPU", CPU], ["GPU", GPU]]);
  const add = (set: ResourceSet): void => {
    for (const name in set) if (!slots.has(name)) slots.set(name, slots.size);
  };
  for (const h of hosts) add(h.total);
  for (const r of existing) add(r.resources);
  for (const r of requests) add(r.resources);
  return slots;
}

/**
 * gpuIds alone do not say which device holds the remainder of a g >= 1 replica.
 * Its whole devices are its alone, so a device another replica also lists is
 * the remainder; when none is, every listed device is charged in full, which
 * can waste part of one device but never over-commits it.
 */
function chargeExisting(devices: Float64Array, listings: Int32Array, ids: number[], gpu: number): void {
  const { whole, rem } = split(gpu);
  if (whole === 0 && rem > 0 && ids.length > 0) devices[ids[0]!]! += rem;
  if (whole === 0) return;
  const partial = rem > 0 ? ids.find((d) => listings[d]! > 1) : undefined;
  for (const d of ids) devices[d]! += d === partial ? rem : 1;
}

/** A request's positive amounts, in display order, parsed once. */
export interface Need {
  names: string[];
  slots: number[];
  amounts: number[];
  cpu: number;
  /** The GPU need as whole devices plus a remainder (all of it when below 1). */
  whole: number;
  rem: number;
  /** Equal for equal needs. */
  key: string;
}

export function needOf(resources: ResourceSet, slots: Map<string, number>): Need {
  const need: Need = { names: [], slots: [], amounts: [], cpu: 0, ...split(resources.GPU ?? 0), key: "" };
  for (const name of orderedNames(resources)) {
    const amount = resources[name]!;
    if (!(amount > EPS)) continue;
    if (name === "CPU") need.cpu = amount;
    need.names.push(name);
    need.slots.push(slots.get(name)!);
    need.amounts.push(amount);
    need.key += `${name}=${amount};`;
  }
  return need;
}

export function sameResources(a: ResourceSet, b: ResourceSet): boolean {
  if (a === b) return true;
  let n = 0;
  for (const name in a) {
    if (a[name] !== b[name]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

function split(gpu: number): { whole: number; rem: number } {
  const whole = Math.max(0, Math.floor(gpu + EPS));
  return { whole, rem: gpu - whole > EPS ? gpu - whole : 0 };
}

/** NO_FIT, or the device that would take the GPU remainder (-1 when none does). */
function fit(host: HostState, need: Need): number {
  for (let i = 0; i < need.slots.length; i++) if (host.free[need.slots[i]!]! + EPS < need.amounts[i]!) return NO_FIT;
  return gpuFit(host.devices, need.whole, need.rem);
}

/** The remainder goes on the fullest device it fits on (best fit packs); whole devices must be entirely free. */
function gpuFit(devices: Float64Array, whole: number, rem: number): number {
  let partial = -1;
  for (let d = 0; rem > 0 && d < devices.length; d++) {
    const used = devices[d]!;
    if (used + rem <= 1 + EPS && (partial < 0 || used > devices[partial]! + EPS)) partial = d;
  }
  if (rem > 0 && partial < 0) return NO_FIT;
  let empty = 0;
  for (let d = 0; d < devices.length && empty < whole; d++) if (d !== partial && devices[d]! <= EPS) empty++;
  return empty < whole ? NO_FIT : partial;
}
