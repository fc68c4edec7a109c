/**
 * The placer: decides which host each new replica goes to and which GPU
 * devices it gets, from host capacities and the replicas already placed. Pure
 * and deterministic: no I/O, the same input gives the same decisions.
 *
 * Every GPU device holds 1.0. A request below 1 GPU takes a share of one device,
 * chosen by best fit so fractional replicas pack onto as few devices as
 * possible; a request of g >= 1 takes floor(g) wholly free devices plus the
 * remainder on one more device, again by best fit.
 */
import type { ResourceSet } from "../shared/records.js";
import {
  CPU,
  EPS,
  formatAmount,
  GPU,
  hostUsage,
  orderedNames,
  slotsOf,
  splitGpu as split,
  type HostCapacity,
  type HostUsage as HostState,
  type PlacedReplica,
} from "../shared/resources.js";

export { describeResources, freeResources, sumResources, type HostCapacity, type PlacedReplica } from "../shared/resources.js";

/** What gpuFit returns when the devices lack room. */
const NO_FIT = -2;

/** A replica that needs a host. */
export interface PlacementRequest { id: string; deployment: string; resources: ResourceSet }

export interface PlacementResult {
  /** In request order; gpuIds ascending. */
  placed: Array<{ id: string; host: string; gpuIds: number[] }>;
  /** In request order, with a reason a person can act on. */
  pending: Array<{ id: string; reason: string }>;
}

/** Places requests in the given order, never over-committing any resource or GPU device. */
export function place(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], requests: readonly PlacementRequest[]): PlacementResult {
  const slots = slotsOf(hosts, existing, requests);
  const ledger = new Ledger(hosts, existing, slots, new Set(requests.map((r) => r.deployment)));
  // Capacity only shrinks during a call, so a need that fit nowhere keeps failing: remember why.
  const failed = new Map<string, string>();
  const result: PlacementResult = { placed: [], pending: [] };
  // Replicas of one deployment usually ask for the same resources: parse each need once.
  const needs = new Map<string, { resources: ResourceSet; need: Need }>();
  for (const request of requests) {
    let cached = needs.get(request.deployment);
    if (!cached || !sameResources(cached.resources, request.resources)) {
      cached = { resources: request.resources, need: needOf(request.resources, slots) };
      needs.set(request.deployment, cached);
    }
    const need = cached.need;
    const counts = ledger.countsOf(request.deployment);
    const h = failed.has(need.key) ? -1 : ledger.choose(need, counts);
    if (h < 0) {
      const reason = failed.get(need.key) ?? ledger.whyNot(need);
      failed.set(need.key, reason);
      result.pending.push({ id: request.id, reason });
    }
    else result.placed.push({ id: request.id, host: ledger.hosts[h]!.host.id, gpuIds: ledger.take(h, need, counts) });
  }
  return result;
}

/** The planner's working state: what each host has free, kept current as replicas are placed. */
class Ledger {
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
    this.hosts = hostUsage(hosts, existing, slots);
    if (spread.size > 0) {
      // Spreading needs the counts of the deployments being placed only.
      const index = new Map(this.hosts.map((s, i) => [s.host.id, i]));
      for (const r of existing) {
        const h = index.get(r.host);
        if (h !== undefined && spread.has(r.deployment)) this.countsOf(r.deployment)[h]! += 1;
      }
    }
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
  whyNot(need: Need): string {
    if (this.order.length === 0) return "no live hosts";
    const short = need.names.flatMap((name, i) => {
      const [slot, amount] = [need.slots[i]!, need.amounts[i]!];
      const { whole, rem } = slot === GPU ? split(amount) : { whole: 0, rem: 0 };
      const fits = this.order.some((h) => this.hosts[h]!.free[slot]! + EPS >= amount && gpuFit(this.hosts[h]!.devices, whole, rem) !== NO_FIT);
      return fits ? [] : [`needs ${formatAmount(amount)} ${name}, no host has ${formatAmount(amount)} free`];
    });
    if (short.length > 0) return short.join("; ");
    const list = need.names.map((name, i) => `${formatAmount(need.amounts[i]!)} ${name}`);
    return `needs ${list.slice(0, -1).join(", ")}${list.length > 1 ? " and " : ""}${list.at(-1) ?? ""} together, no host has them free`;
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

/** A request's positive amounts, in display order, parsed once. */
interface Need {
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

function needOf(resources: ResourceSet, slots: Map<string, number>): Need {
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

function sameResources(a: ResourceSet, b: ResourceSet): boolean {
  if (a === b) return true;
  let n = 0;
  for (const name in a) {
    if (a[name] !== b[name]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
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
