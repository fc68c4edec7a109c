import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mulberry32 } from "../helpers/prng.js";
import {
  maxUnavailable,
  minServing,
  planRollout,
  type PlannerReplica,
  type ReplicaPhase,
  type RolloutDecision,
} from "../../src/controller/rollout-planner.js";

const OLD = "v1";
const NEW = "v2";

function replica(id: string, phase: ReplicaPhase, codeVersion = NEW, inflight = 0, createdAt = 0): PlannerReplica {
  return { id, codeVersion, phase, inflight, createdAt };
}

function count(replicas: readonly PlannerReplica[], pred: (r: PlannerReplica) => boolean): number {
  return replicas.filter(pred).length;
}

const serving = (r: PlannerReplica): boolean => r.phase === "serving";
const live = (r: PlannerReplica): boolean => r.phase !== "draining";

describe("maxUnavailable and minServing", () => {
  it("allow 20% unavailable, at least 1, and keep at least 1 serving", () => {
    const table: [number, number, number][] = [
      [0, 1, 0],
      [1, 1, 1],
      [2, 1, 1],
      [4, 1, 3],
      [5, 1, 4],
      [9, 1, 8],
      [10, 2, 8],
      [11, 2, 9],
      [50, 10, 40],
    ];
    for (const [target, unavailable, floor] of table) {
      assert.equal(maxUnavailable(target), unavailable, `maxUnavailable(${target})`);
      assert.equal(minServing(target), floor, `minServing(${target})`);
    }
  });
});

describe("planRollout: scaling", () => {
  it("scales 1 → 10 by starting 9 at once", () => {
    const d = planRollout({ target: 10, codeVersion: NEW, canStart: true, replicas: [replica("a", "serving")] });
    assert.deepEqual(d, { start: 9, drain: [], rollingUpdate: false });
  });

  it("starts nothing during back-off", () => {
    const d = planRollout({ target: 10, codeVersion: NEW, canStart: false, replicas: [replica("a", "serving")] });
    assert.deepEqual(d, { start: 0, drain: [], rollingUpdate: false });
  });

  it("scales 10 → 1 by draining pending, starting, then the fewest inflight (newest first on ties)", () => {
    const replicas = [
      replica("s-busy", "serving", NEW, 9, 1),
      replica("s-idle-old", "serving", NEW, 0, 1),
      replica("s-idle-new", "serving", NEW, 0, 5),
      replica("s-3", "serving", NEW, 3, 1),
      replica("s-5", "serving", NEW, 5, 1),
      replica("s-2", "serving", NEW, 2, 1),
      replica("st-1", "starting", NEW, 0, 7),
      replica("st-2", "starting", NEW, 0, 8),
      replica("p-1", "pending", NEW, 0, 9),
      replica("p-2", "pending", NEW, 0, 10),
      replica("gone", "draining", NEW, 4, 1),
    ];
    const d = planRollout({ target: 1, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, {
      start: 0,
      drain: ["p-2", "p-1", "st-2", "st-1", "s-idle-new", "s-idle-old", "s-2", "s-3", "s-5"],
      rollingUpdate: false,
    });
  });

  it("never drains more than needed and never drains a draining replica again", () => {
    const replicas = [
      replica("a", "serving"),
      replica("b", "serving"),
      replica("c", "draining"),
      replica("d", "pending"),
    ];
    assert.deepEqual(planRollout({ target: 2, codeVersion: NEW, canStart: true, replicas }).drain, ["d"]);
    assert.deepEqual(planRollout({ target: 3, codeVersion: NEW, canStart: true, replicas }).drain, []);
  });

  it("drains everything for target 0, pending and starting first", () => {
    const replicas = [
      replica("o", "serving", OLD, 3),
      replica("n", "serving", NEW, 1),
      replica("st", "starting"),
      replica("p", "pending", OLD),
      replica("dr", "draining"),
    ];
    const d = planRollout({ target: 0, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, { start: 0, drain: ["p", "st", "n", "o"], rollingUpdate: true });
  });

  it("gives the same decision for any order of the same replicas", () => {
    const replicas = [
      replica("a", "serving", OLD, 1, 1),
      replica("b", "serving", OLD, 1, 1),
      replica("c", "serving", NEW, 0, 2),
      replica("d", "starting", OLD, 0, 1),
      replica("e", "serving", OLD, 0, 1),
    ];
    const first = planRollout({ target: 3, codeVersion: NEW, canStart: true, replicas });
    const second = planRollout({ target: 3, codeVersion: NEW, canStart: true, replicas: [...replicas].reverse() });
    assert.deepEqual(second, first);
  });
});

/** A deterministic world for step-by-step cases: every transition takes exactly one step. */
function advance(replicas: PlannerReplica[], d: RolloutDecision, step: number): PlannerReplica[] {
  const next: PlannerReplica[] = [];
  for (const r of replicas) {
    if (r.phase === "draining") continue;
    const phase: ReplicaPhase = r.phase === "pending" ? "starting" : "serving";
    next.push({ ...r, phase });
  }
  let i = 0;
  applyDecision(next, d, () => replica(`new-${step}-${i++}`, "pending", NEW, 0, step));
  return next;
}

/** Marks drained replicas draining (each must exist and not drain already) and adds started ones. */
function applyDecision<R extends PlannerReplica>(replicas: R[], d: RolloutDecision, make: () => R): void {
  const drain = new Set(d.drain);
  assert.equal(drain.size, d.drain.length, `drained a replica twice: ${d.drain.join()}`);
  for (const r of replicas) {
    if (!drain.has(r.id)) continue;
    assert.notEqual(r.phase, "draining", `drained ${r.id} again`);
    r.phase = "draining";
    drain.delete(r.id);
  }
  assert.equal(drain.size, 0, `drained unknown replicas: ${[...drain].join()}`);
  for (let i = 0; i < d.start; i++) replicas.push(make());
}

describe("planRollout: rolling update", () => {
  it("surges a single replica: the old one drains only once the new one serves", () => {
    let replicas = [replica("old", "serving", OLD)];
    const plan = (): RolloutDecision => planRollout({ target: 1, codeVersion: NEW, canStart: true, replicas });

    assert.deepEqual(plan(), { start: 1, drain: [], rollingUpdate: true });
    replicas = advance(replicas, plan(), 1); // new: pending
    assert.deepEqual(plan(), { start: 0, drain: [], rollingUpdate: true });
    replicas = advance(replicas, plan(), 2); // new: starting
    assert.deepEqual(plan(), { start: 0, drain: [], rollingUpdate: true });
    replicas = advance(replicas, plan(), 3); // new: serving
    assert.deepEqual(plan(), { start: 0, drain: ["old"], rollingUpdate: true });
    replicas = advance(replicas, plan(), 4); // old: draining
    assert.equal(count(replicas, serving), 1);
    assert.deepEqual(plan(), { start: 0, drain: [], rollingUpdate: false });
  });

  it("keeps the old single replica when the new one fails and back-off forbids starts", () => {
    const d = planRollout({ target: 1, codeVersion: NEW, canStart: false, replicas: [replica("old", "serving", OLD)] });
    assert.deepEqual(d, { start: 0, drain: [], rollingUpdate: true });
  });

  it("rolls 10 replicas with at most 12 not draining and at least 8 serving", () => {
    let replicas = Array.from({ length: 10 }, (_, i) => replica(`old-${i}`, "serving", OLD, i));
    const first = planRollout({ target: 10, codeVersion: NEW, canStart: true, replicas });
    // Surge first: nothing old drains before a replacement serves.
    assert.deepEqual(first, { start: 2, drain: [], rollingUpdate: true });
    let step = 0;
    for (; step < 30; step++) {
      const d = planRollout({ target: 10, codeVersion: NEW, canStart: true, replicas });
      replicas = advance(replicas, d, step);
      assert.ok(count(replicas, live) <= 12, `step ${step}: ${count(replicas, live)} not draining`);
      assert.ok(count(replicas, serving) >= 8, `step ${step}: ${count(replicas, serving)} serving`);
      if (replicas.length === 10 && replicas.every((r) => r.codeVersion === NEW && serving(r))) break;
    }
    assert.ok(step < 30, "rollout did not finish");
  });

  it("keeps every old replica serving while the new version cannot start (failure back-off)", () => {
    const replicas = Array.from({ length: 3 }, (_, i) => replica(`old-${i}`, "serving", OLD, i));
    assert.deepEqual(planRollout({ target: 3, codeVersion: NEW, canStart: false, replicas }), { start: 0, drain: [], rollingUpdate: true });
  });

  it("uses the maxUnavailable budget to make room when replacements cannot be placed", () => {
    const replicas = [...Array.from({ length: 10 }, (_, i) => replica(`old-${i}`, "serving", OLD, i)), replica("n-p1", "pending", NEW), replica("n-p2", "pending", NEW)];
    const d = planRollout({ target: 10, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, { start: 0, drain: ["old-0", "old-1"], rollingUpdate: true });
  });

  it("drains old pending and starting replicas at once, then old serving ones by fewest inflight", () => {
    const replicas = [
      replica("o-busy", "serving", OLD, 8),
      replica("o-idle", "serving", OLD, 0),
      replica("o-mid", "serving", OLD, 4),
      replica("o-p", "pending", OLD),
      replica("o-st", "starting", OLD),
      replica("n-1", "serving", NEW, 0),
      replica("n-2", "serving", NEW, 0),
    ];
    // target 4: surge 1, floor 3. Idle olds go; 5 serving may lose 2; total 5 + 0 starts may lose 1.
    const d = planRollout({ target: 4, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, { start: 0, drain: ["o-p", "o-st", "o-idle"], rollingUpdate: true });
  });

  it("drains all remaining olds once new replicas alone reach target", () => {
    const replicas = [
      replica("o-1", "serving", OLD),
      replica("o-2", "serving", OLD),
      ...Array.from({ length: 5 }, (_, i) => replica(`n-${i}`, "serving", NEW)),
    ];
    const d = planRollout({ target: 5, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, { start: 0, drain: ["o-1", "o-2"], rollingUpdate: true });
  });

  it("drains extra new replicas when the target drops mid-rollout, keeping the serving floor", () => {
    const replicas = [
      replica("o-1", "serving", OLD, 1),
      replica("o-2", "serving", OLD, 2),
      replica("n-p", "pending", NEW),
      ...Array.from({ length: 4 }, (_, i) => replica(`n-${i}`, "serving", NEW, i)),
    ];
    const d = planRollout({ target: 3, codeVersion: NEW, canStart: true, replicas });
    assert.deepEqual(d, { start: 0, drain: ["n-p", "n-0", "o-1", "o-2"], rollingUpdate: true });
  });

  it("never lets old serving replicas drop below the floor while new ones keep failing", () => {
    const replicas = Array.from({ length: 8 }, (_, i) => replica(`o-${i}`, "serving", OLD));
    for (const canStart of [true, false]) {
      const d = planRollout({ target: 10, codeVersion: NEW, canStart, replicas });
      assert.deepEqual(d.drain, [], `canStart ${canStart}`);
      assert.equal(d.start, canStart ? 4 : 0);
    }
  });
});

interface SimReplica extends PlannerReplica {
  /** Step at which its next transition happens. */
  due: number;
}

/** "No transition scheduled" (a small integer keeps replica objects in V8's fast shape). */
const NEVER = 1e9;

function simReplica(id: string, phase: ReplicaPhase, codeVersion: string, createdAt: number, due: number): SimReplica {
  return { id, codeVersion, phase, inflight: 0, createdAt, due };
}

interface RunResult {
  permanent: boolean;
  targetChanged: boolean;
  /** Steps from the last target change until every replica ran the new version, or null. */
  finishedIn: number | null;
}

/**
 * One random rollout from a fully serving old deployment, asserting at every step that
 * serving never drops below the floor, surges stay bounded and back-off is respected.
 */
function simulateRollout(seed: number): RunResult {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const where = (step: number): string => `seed ${seed}, step ${step}`;

  let target = int(1, 50);
  const permanent = rnd() < 0.15; // the new version never starts, so the rollout cannot finish
  const failRate = permanent ? 1 : rnd() < 0.5 ? 0 : rnd() * 0.3;
  const changeAt = new Set<number>();
  if (rnd() < 0.35) changeAt.add(int(1, 25));
  if (rnd() < 0.1) changeAt.add(int(1, 25));
  const lastChange = Math.max(0, ...changeAt);
  const maxSteps = permanent ? int(20, 40) : 400;

  let replicas = Array.from({ length: target }, (_, i) => simReplica(`old-${i}`, "serving", OLD, 0, NEVER));
  let nextId = 0;
  let retryAt = 0;
  let floor = minServing(target); // what serving may never drop below
  let changedAt = 0;

  for (let step = 1; step <= maxSteps; step++) {
    // The world moves: launches progress or fail, drains finish, load shifts.
    const next: SimReplica[] = [];
    for (const r of replicas) {
      if (step >= r.due) {
        if (r.phase === "draining") continue;
        if (r.phase === "pending") {
          r.phase = "starting";
          r.due = step + int(1, 3);
        } else if (r.phase === "starting") {
          if (rnd() < failRate) {
            retryAt = step + int(1, 6); // the caller removes it and backs off
            continue;
          }
          r.phase = "serving";
          r.due = NEVER;
        }
      }
      if (r.phase === "serving") r.inflight = int(0, 9);
      next.push(r);
    }
    replicas = next;

    if (changeAt.has(step)) {
      // Permanent-failure runs only scale down: no version could serve a bigger target.
      const to = permanent ? int(1, target) : rnd() < 0.05 ? 0 : int(1, 50);
      floor = Math.min(floor, minServing(to));
      target = to;
      changedAt = step;
    }

    const canStart = step >= retryAt;
    const d = planRollout({ target, codeVersion: NEW, canStart, replicas });
    if (step % 4 === 0) {
      // Determinism: the same replicas in another order give the same decision.
      const shuffled = [...replicas];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = int(0, i);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      assert.deepEqual(planRollout({ target, codeVersion: NEW, canStart, replicas: shuffled }), d, where(step));
    }

    const hadOld = replicas.some((r) => live(r) && r.codeVersion !== NEW);
    assert.equal(d.rollingUpdate, hadOld, where(step));
    if (!canStart) assert.equal(d.start, 0, `${where(step)}: started during back-off`);
    if (!hadOld) {
      const extra = Math.max(0, count(replicas, live) - target);
      assert.equal(d.drain.length, extra, `${where(step)}: scaling drained more than needed`);
    }

    const oldServingIds = new Set(replicas.filter((r) => serving(r) && r.codeVersion !== NEW).map((r) => r.id));
    const drainedOldServing = d.drain.some((id) => oldServingIds.has(id));
    applyDecision(replicas, d, () => simReplica(`new-${nextId++}`, "pending", NEW, step, step + int(1, 3)));
    for (const r of replicas) if (r.phase === "draining" && r.due === NEVER) r.due = step + int(1, 4);

    const nowServing = count(replicas, serving);
    const nowLive = count(replicas, live);
    assert.ok(nowServing >= floor, `${where(step)}: ${nowServing} serving < floor ${floor} (target ${target})`);
    if (d.start > 0) {
      const bound = hadOld ? target + maxUnavailable(target) : target;
      assert.ok(nowLive <= bound, `${where(step)}: ${nowLive} not draining > ${bound} after starting`);
    }
    if (drainedOldServing && target > 0) {
      assert.ok(nowLive >= target, `${where(step)}: drained an old serving replica, leaving ${nowLive} < ${target}`);
    }
    if (permanent) {
      const oldServing = count(replicas, (r) => serving(r) && r.codeVersion === OLD);
      assert.equal(oldServing, nowServing, `${where(step)}: a failing version serves`);
      assert.ok(oldServing >= minServing(target), `${where(step)}: ${oldServing} old serving < ${minServing(target)}`);
    }
    // After a scale-up the floor rises to the new target's as replacements come up.
    floor = Math.min(minServing(target), Math.max(floor, nowServing));

    const done = replicas.length === target && replicas.every((r) => r.codeVersion === NEW && serving(r));
    if (done && step >= lastChange) return { permanent, targetChanged: lastChange > 0, finishedIn: step - changedAt };
  }
  if (permanent) {
    const oldServing = count(replicas, (r) => serving(r) && r.codeVersion === OLD);
    assert.ok(oldServing >= minServing(target), `seed ${seed}: ${oldServing} old serving < ${minServing(target)}`);
  }
  return { permanent, targetChanged: lastChange > 0, finishedIn: null };
}

describe("planRollout: simulated rollouts", () => {
  it("keeps the serving floor through 3,000 random rollouts and finishes every one that can", (t) => {
    const RUNS = 3000;
    const BOUND = 150; // steps after the last target change
    let finished = 0;
    let failing = 0;
    let slowest = 0;
    let changed = 0;
    for (let seed = 1; seed <= RUNS; seed++) {
      const { permanent, targetChanged, finishedIn } = simulateRollout(seed);
      if (targetChanged) changed++;
      if (permanent) {
        assert.equal(finishedIn, null, `seed ${seed}: a version that never starts finished rolling out`);
        failing++;
        continue;
      }
      assert.ok(finishedIn !== null, `seed ${seed}: rollout never finished`);
      assert.ok(finishedIn <= BOUND, `seed ${seed}: took ${finishedIn} steps`);
      slowest = Math.max(slowest, finishedIn);
      finished++;
    }
    assert.ok(failing > 200 && finished > 2000, `finished ${finished}, permanently failing ${failing}`);
    t.diagnostic(
      `${RUNS} simulated rollouts (${changed} with target changes): ${finished} finished ` +
        `(slowest ${slowest} steps after the last change), ${failing} never could and kept old replicas serving`,
    );
  });
});
