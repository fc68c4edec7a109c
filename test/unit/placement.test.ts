import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { place, type PlacementRequest } from "../../src/controller/placement.js";
import { describeResources, freeResources, sumResources, type HostCapacity, type PlacedReplica } from "../../src/shared/resources.js";
import type { ResourceSet } from "../../src/shared/records.js";
import { mulberry32 } from "../helpers/prng.js";

const EPS = 1e-9;

function host(id: string, cpu: number, gpus = 0, extra: ResourceSet = {}, schedulable = true): HostCapacity {
  return { id, total: { CPU: cpu, GPU: gpus, ...extra }, gpuDevices: gpus, schedulable };
}

function requests(n: number, resources: ResourceSet, deployment = "app"): PlacementRequest[] {
  return Array.from({ length: n }, (_, i) => ({ id: `r${i}`, deployment, resources }));
}

function perHost(placed: Array<{ host: string }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const p of placed) counts[p.host] = (counts[p.host] ?? 0) + 1;
  return counts;
}

describe("place", () => {
  it("never over-commits CPU and says why the rest is pending", () => {
    const result = place([host("a", 2), host("b", 2)], [], requests(5, { CPU: 1 }));
    assert.equal(result.placed.length, 4);
    assert.deepEqual(perHost(result.placed), { a: 2, b: 2 });
    assert.deepEqual(result.pending, [{ id: "r4", reason: "needs 1 CPU, no host has 1 free" }]);
  });

  it("spreads replicas of one deployment across hosts", () => {
    const result = place([host("a", 8), host("b", 8)], [], requests(4, { CPU: 1 }));
    assert.deepEqual(perHost(result.placed), { a: 2, b: 2 });
    assert.deepEqual(result.pending, []);
  });

  it("spreads against existing replicas of the same deployment, not of others", () => {
    const existing: PlacedReplica[] = [
      { id: "x0", deployment: "app", host: "a", resources: { CPU: 1 }, gpuIds: [] },
      { id: "x1", deployment: "app", host: "a", resources: { CPU: 1 }, gpuIds: [] },
      { id: "y0", deployment: "other", host: "b", resources: { CPU: 1 }, gpuIds: [] },
    ];
    const result = place([host("a", 8), host("b", 8)], existing, requests(2, { CPU: 1 }));
    assert.deepEqual(perHost(result.placed), { b: 2 });
  });

  it("breaks ties by free CPU, then by host id whatever the input order", () => {
    const bigger = place([host("a", 4), host("b", 6)], [], requests(1, { CPU: 1 }));
    assert.equal(bigger.placed[0]?.host, "b");
    const tie = place([host("c", 4), host("b", 4), host("a", 4)], [], requests(1, { CPU: 1 }));
    assert.equal(tie.placed[0]?.host, "a");
  });

  it("packs fractional GPUs onto one device and reports the fraction that does not fit", () => {
    const result = place([host("a", 4, 1)], [], requests(3, { CPU: 0.1, GPU: 0.5 }));
    assert.deepEqual(result.placed, [
      { id: "r0", host: "a", gpuIds: [0] },
      { id: "r1", host: "a", gpuIds: [0] },
    ]);
    assert.deepEqual(result.pending, [{ id: "r2", reason: "needs 0.5 GPU, no host has 0.5 free" }]);
  });

  it("fills one device before starting the next", () => {
    const result = place([host("a", 8, 2)], [], requests(4, { CPU: 0.1, GPU: 0.5 }));
    assert.deepEqual(result.placed.map((p) => p.gpuIds[0]), [0, 0, 1, 1]);
  });

  it("prefers a host whose partly used device fits a fraction over spreading", () => {
    const existing: PlacedReplica[] = [{ id: "x", deployment: "app", host: "b", resources: { CPU: 0.1, GPU: 0.25 }, gpuIds: [1] }];
    const result = place([host("a", 8, 2), host("b", 8, 2)], existing, requests(2, { CPU: 0.1, GPU: 0.25 }));
    assert.deepEqual(result.placed, [
      { id: "r0", host: "b", gpuIds: [1] },
      { id: "r1", host: "b", gpuIds: [1] },
    ]);
  });

  it("gives whole devices to g >= 1 and the remainder to a partly used device", () => {
    const existing: PlacedReplica[] = [{ id: "x", deployment: "other", host: "a", resources: { GPU: 0.5 }, gpuIds: [2] }];
    const result = place([host("a", 8, 4)], existing, [
      { id: "two", deployment: "app", resources: { GPU: 2 } },
      { id: "one-and-half", deployment: "app", resources: { GPU: 1.5 } },
    ]);
    assert.deepEqual(result.placed, [
      { id: "two", host: "a", gpuIds: [0, 1] },
      { id: "one-and-half", host: "a", gpuIds: [2, 3] },
    ]);
  });

  it("charges every device of an existing g >= 1 replica in full when its remainder device is unknown", () => {
    const alone: PlacedReplica[] = [{ id: "x", deployment: "app", host: "a", resources: { GPU: 1.5 }, gpuIds: [0, 1] }];
    assert.deepEqual(place([host("a", 8, 2)], alone, requests(1, { GPU: 0.5 })).pending, [{ id: "r0", reason: "needs 0.5 GPU, no host has 0.5 free" }]);
    const shared: PlacedReplica[] = [...alone, { id: "y", deployment: "app", host: "a", resources: { GPU: 0.25 }, gpuIds: [1] }];
    assert.deepEqual(place([host("a", 8, 2)], shared, requests(1, { GPU: 0.25 })).placed, [{ id: "r0", host: "a", gpuIds: [1] }]);
  });

  it("respects custom resources; a host without the key has none", () => {
    const hosts = [host("a", 8), host("b", 8, 0, { memoryGiB: 4 })];
    const result = place(hosts, [], requests(3, { CPU: 1, memoryGiB: 2 }));
    assert.deepEqual(perHost(result.placed), { b: 2 });
    assert.deepEqual(result.pending, [{ id: "r2", reason: "needs 2 memoryGiB, no host has 2 free" }]);
  });

  it("never uses unschedulable hosts", () => {
    const result = place([host("a", 8, 0, {}, false), host("b", 2)], [], requests(3, { CPU: 1 }));
    assert.deepEqual(perHost(result.placed), { b: 2 });
    assert.equal(result.pending.length, 1);
    assert.deepEqual(place([host("a", 8, 0, {}, false)], [], requests(1, { CPU: 1 })).pending, [{ id: "r0", reason: "no live hosts" }]);
    assert.deepEqual(place([], [], requests(1, {})).pending, [{ id: "r0", reason: "no live hosts" }]);
  });

  it("counts existing replicas against capacity", () => {
    const existing: PlacedReplica[] = [{ id: "x", deployment: "other", host: "a", resources: { CPU: 3, GPU: 1, memoryGiB: 1 }, gpuIds: [0] }];
    const hosts = [host("a", 4, 2, { memoryGiB: 2 })];
    const result = place(hosts, existing, [
      { id: "cpu", deployment: "app", resources: { CPU: 2 } },
      { id: "gpu", deployment: "app", resources: { CPU: 1, GPU: 1 } },
      { id: "mem", deployment: "app", resources: { memoryGiB: 1.5 } },
    ]);
    assert.deepEqual(result.placed, [{ id: "gpu", host: "a", gpuIds: [1] }]);
    assert.deepEqual(result.pending.map((p) => p.id), ["cpu", "mem"]);
  });

  it("still uses a host whose CPU existing replicas over-commit, for a request that needs no CPU", () => {
    const existing: PlacedReplica[] = [{ id: "x", deployment: "other", host: "a", resources: { CPU: 6 }, gpuIds: [] }];
    const result = place([host("a", 4, 1), host("b", 8)], existing, requests(2, { GPU: 1 }));
    assert.deepEqual(result.placed, [{ id: "r0", host: "a", gpuIds: [0] }]);
    assert.deepEqual(result.pending, [{ id: "r1", reason: "needs 1 GPU, no host has 1 free" }]);
  });

  it("says when each resource fits somewhere but no host has them all", () => {
    const result = place([host("a", 4), host("b", 1, 1)], [], requests(1, { CPU: 2, GPU: 1 }));
    assert.deepEqual(result.pending, [{ id: "r0", reason: "needs 2 CPU and 1 GPU together, no host has them free" }]);
    const neither = place([host("a", 4), host("b", 1, 1)], [], requests(1, { CPU: 8, GPU: 2 }));
    assert.deepEqual(neither.pending, [{ id: "r0", reason: "needs 8 CPU, no host has 8 free; needs 2 GPU, no host has 2 free" }]);
  });

  it("tolerates float noise: three 0.1 CPU fit in 0.3, a fourth does not", () => {
    const result = place([host("a", 0.3)], [], requests(4, { CPU: 0.1 }));
    assert.equal(result.placed.length, 3);
    assert.deepEqual(result.pending, [{ id: "r3", reason: "needs 0.1 CPU, no host has 0.1 free" }]);
  });
});

describe("freeResources", () => {
  it("subtracts existing replicas per host, counting GPU by device", () => {
    const existing: PlacedReplica[] = [
      { id: "x", deployment: "app", host: "a", resources: { CPU: 0.1, GPU: 0.2, memoryGiB: 1 }, gpuIds: [0] },
      { id: "y", deployment: "app", host: "a", resources: { CPU: 0.2, GPU: 0.1 }, gpuIds: [0] },
      { id: "z", deployment: "app", host: "b", resources: { CPU: 1, GPU: 1.5 }, gpuIds: [0, 1] },
    ];
    const free = freeResources([host("a", 4, 1, { memoryGiB: 2 }), host("b", 2, 2)], existing);
    assert.deepEqual(free.get("a"), { CPU: 3.7, GPU: 0.7, memoryGiB: 1 });
    assert.deepEqual(free.get("b"), { CPU: 1, GPU: 0 });
  });
});

describe("describeResources and sumResources", () => {
  it("lists CPU, GPU, then the rest by name, without zeros", () => {
    assert.equal(describeResources({ memoryGiB: 2, zeta: 1, GPU: 0.5, CPU: 1, disk: 0 }), "1 CPU, 0.5 GPU, 2 memoryGiB, 1 zeta");
    assert.equal(describeResources({ CPU: 0.1 + 0.2 }), "0.3 CPU");
  });

  it("adds key by key", () => {
    assert.deepEqual(sumResources([{ CPU: 1, GPU: 0.5 }, { CPU: 2, memoryGiB: 4 }]), { CPU: 3, GPU: 0.5, memoryGiB: 4 });
  });
});

/** The test's own model of one host: what is used, independently of the planner. */
interface Model {
  host: HostCapacity;
  used: ResourceSet;
  devices: number[];
}

const KEYS = ["CPU", "GPU", "memoryGiB"];

function capacity(m: Model, key: string): number {
  if (key === "GPU") return Math.min(m.host.gpuDevices, m.host.total.GPU ?? m.host.gpuDevices);
  return m.host.total[key] ?? 0;
}

function gpuShape(gpu: number): { whole: number; rem: number } {
  const whole = Math.floor(gpu + EPS);
  return { whole, rem: gpu - whole > EPS ? gpu - whole : 0 };
}

/** Whether the resources fit on the host now, judged from the model alone. */
function fits(m: Model, resources: ResourceSet): boolean {
  for (const key of KEYS) if ((m.used[key] ?? 0) + (resources[key] ?? 0) > capacity(m, key) + EPS) return false;
  const { whole, rem } = gpuShape(resources.GPU ?? 0);
  const empty = m.devices.filter((u) => u <= EPS).length;
  if (rem === 0) return empty >= whole;
  const partlyUsedFits = m.devices.some((u) => u > EPS && u + rem <= 1 + EPS);
  return empty >= whole + (partlyUsedFits ? 0 : 1);
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)]!;
}

function randomCluster(rand: () => number) {
  const models: Model[] = Array.from({ length: rand() < 0.05 ? 0 : 1 + Math.floor(rand() * 6) }, (_, i) => {
    const gpus = Math.floor(rand() * 5);
    const total: ResourceSet = { CPU: Math.floor(rand() * 33) / 2 };
    if (rand() < 0.8) total.GPU = rand() < 0.9 ? gpus : Math.floor(rand() * 5);
    if (rand() < 0.3) total.memoryGiB = Math.floor(rand() * 17) / 2;
    return { host: { id: `h${i}`, total, gpuDevices: gpus, schedulable: rand() < 0.85 }, used: {}, devices: new Array<number>(gpus).fill(0) };
  });
  const randomResources = (gpuChoices: number[]): ResourceSet => {
    const r: ResourceSet = { CPU: Math.floor(rand() * 41) / 10 };
    if (rand() < 0.5) r.GPU = pick(rand, gpuChoices);
    if (rand() < 0.2) r.memoryGiB = Math.floor(rand() * 9) / 4;
    return r;
  };
  const existing: PlacedReplica[] = [];
  for (let i = 0; models.length > 0 && i < 8; i++) {
    const m = pick(rand, models);
    // Existing shares are below 1 or whole: gpuIds cannot say where the remainder of 1.5 sits (see the test above).
    const resources = randomResources([0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1, 2]);
    if (!fits(m, resources)) continue;
    const gpu = resources.GPU ?? 0;
    let gpuIds: number[] = [];
    if (gpu > 0 && gpu < 1) gpuIds = [pick(rand, m.devices.flatMap((u, d) => (u + gpu <= 1 + EPS ? [d] : [])))];
    else if (gpu >= 1) gpuIds = m.devices.flatMap((u, d) => (u <= EPS ? [d] : [])).slice(0, gpu);
    for (const d of gpuIds) m.devices[d]! += gpu < 1 ? gpu : 1;
    for (const key of KEYS) m.used[key] = (m.used[key] ?? 0) + (resources[key] ?? 0);
    existing.push({ id: `x${i}`, deployment: pick(rand, ["a", "b", "c"]), host: m.host.id, resources, gpuIds });
  }
  const reqs: PlacementRequest[] = Array.from({ length: Math.floor(rand() * 12) }, (_, i) => ({
    id: `r${i}`,
    deployment: pick(rand, ["a", "b", "c"]),
    resources: randomResources([0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1, 1.5, 2, 2.5, 3]),
  }));
  return { models, existing, reqs };
}

/** The rule, applied naively: packing for a GPU fraction, then fewest of the deployment, most free CPU, lowest id. */
function preferred(fitting: Model[], r: PlacementRequest, counts: Map<string, number>): Model {
  const gpu = r.resources.GPU ?? 0;
  const packs = (m: Model) => (gpu > 0 && gpu < 1 && m.devices.some((u) => u > EPS && u + gpu <= 1 + EPS) ? 0 : 1);
  const count = (m: Model) => counts.get(`${r.deployment}@${m.host.id}`) ?? 0;
  // Free CPU in millionths: hosts that differ only by float noise tie, and the lower id wins.
  const cpu = (m: Model) => Math.round((m.host.total.CPU! - (m.used.CPU ?? 0)) * 1e6);
  const sorted = [...fitting].sort((a, b) => packs(a) - packs(b) || count(a) - count(b) || cpu(b) - cpu(a) || (a.host.id < b.host.id ? -1 : 1));
  return sorted[0]!;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

describe("place, on random clusters", () => {
  it("never over-commits, answers every request once, follows the host preference and leaves pending only what fits nowhere", () => {
    for (let seed = 1; seed <= 2000; seed++) {
      const { models, existing, reqs } = randomCluster(mulberry32(seed));
      const hosts = deepFreeze(models.map((m) => m.host));
      const result = place(hosts, deepFreeze(existing), deepFreeze(reqs));
      const at = `seed ${seed}`;
      assert.deepEqual(place(hosts, existing, reqs), result, `${at}: not deterministic`);

      const answered = [...result.placed.map((p) => p.id), ...result.pending.map((p) => p.id)].sort();
      assert.deepEqual(answered, reqs.map((r) => r.id).sort(), `${at}: every request is placed or pending exactly once`);
      const placed = new Map(result.placed.map((p) => [p.id, p]));
      const live = models.filter((m) => m.host.schedulable);

      const counts = new Map<string, number>();
      for (const x of existing) counts.set(`${x.deployment}@${x.host}`, (counts.get(`${x.deployment}@${x.host}`) ?? 0) + 1);

      // Replay in request order on the model, so each request is judged on what was free at its turn.
      for (const r of reqs) {
        const p = placed.get(r.id);
        const fitting = live.filter((m) => fits(m, r.resources));
        if (!p) {
          assert.equal(fitting.length, 0, `${at}: ${r.id} is pending but fits`);
          const reason = result.pending.find((q) => q.id === r.id)?.reason;
          assert.match(reason ?? "", live.length === 0 ? /^no live hosts$/ : /^needs .*(free)$/, at);
          continue;
        }
        const m = models.find((x) => x.host.id === p.host);
        assert.ok(m?.host.schedulable, `${at}: ${r.id} on an unschedulable or unknown host`);
        assert.equal(p.host, preferred(fitting, r, counts).host.id, `${at}: ${r.id} on the wrong host`);
        counts.set(`${r.deployment}@${p.host}`, (counts.get(`${r.deployment}@${p.host}`) ?? 0) + 1);
        const { whole, rem } = gpuShape(r.resources.GPU ?? 0);
        assert.equal(p.gpuIds.length, whole + (rem > 0 ? 1 : 0), `${at}: ${r.id} gpuIds length`);
        assert.deepEqual(p.gpuIds, [...new Set(p.gpuIds)].sort((a, b) => a - b), `${at}: gpuIds unique and ascending`);
        assert.ok(p.gpuIds.every((d) => d >= 0 && d < m.devices.length), `${at}: gpuIds in range`);
        // The remainder goes on the fullest listed device it fits on; the others must have been wholly free.
        const partial = rem === 0 ? -1 : p.gpuIds.filter((d) => m.devices[d]! + rem <= 1 + EPS).reduce((best, d) => (best < 0 || m.devices[d]! > m.devices[best]! ? d : best), -1);
        assert.ok(rem === 0 || partial >= 0, `${at}: ${r.id} has no device with room for ${rem}`);
        for (const d of p.gpuIds) {
          if (d !== partial) assert.ok(m.devices[d]! <= EPS, `${at}: ${r.id} takes device ${d} whole but it is in use`);
          m.devices[d]! += d === partial ? rem : 1;
        }
        for (const key of KEYS) m.used[key] = (m.used[key] ?? 0) + (r.resources[key] ?? 0);
      }

      for (const m of models) {
        for (const key of KEYS) assert.ok((m.used[key] ?? 0) <= capacity(m, key) + EPS, `${at}: ${m.host.id} over-commits ${key}`);
        assert.ok(m.devices.every((u) => u <= 1 + EPS), `${at}: ${m.host.id} over-commits a GPU device: ${m.devices.join(", ")}`);
      }
    }
  });
});
