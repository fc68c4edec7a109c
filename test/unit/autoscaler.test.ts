/**
 * Simulation tests for the autoscaling policy: a simulated clock stepping by
 * metricsIntervalS, traffic arriving at a queue, replicas that start after a
 * delay, and the policy deciding the replica target each tick.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { z } from "zod";
import { autoscalingConfigSchema, type AutoscalingConfig } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";
import {
  MAX_SAMPLES,
  autoscale,
  initialAutoscalerState,
  restoreAutoscalerState,
  type AutoscaleDecision,
  type AutoscaleInput,
  type AutoscaleOutput,
  type AutoscalerState,
} from "../../src/autoscaler/policy.js";

type ConfigInput = z.input<typeof autoscalingConfigSchema>;

function config(input: ConfigInput): AutoscalingConfig {
  return autoscalingConfigSchema.parse(input);
}

function poisson(mean: number, rng: () => number): number {
  if (mean <= 0) return 0;
  if (mean > 30) {
    const gauss = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
    return Math.max(0, Math.round(mean + Math.sqrt(mean) * gauss));
  }
  const limit = Math.exp(-mean);
  let n = 0;
  for (let p = rng(); p > limit; p *= rng()) n++;
  return n;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** One policy call on a frozen state, so any mutation of the input throws. */
function tick(state: AutoscalerState, input: AutoscaleInput): AutoscaleOutput {
  return autoscale(deepFreeze(state), deepFreeze(input));
}

// ---------------------------------------------------------------------------
// The simulator

interface SimOptions {
  config: AutoscalingConfig;
  durationS: number;
  /** Open loop: requests per second arriving at time t (s). */
  rate?: (t: number) => number;
  /** Closed loop: this many clients, each sending its next request when the last one answers. */
  clients?: number;
  serviceS: number;
  /** Requests one ready replica runs at once. */
  concurrency: number;
  /** Seconds from the target rising to the new replica being ready. */
  startupS: number;
  /** Poisson arrivals from this seed; fluid (exact) arrivals without one. */
  seed?: number;
  /** Simulation steps per metrics interval. @default 10 */
  substeps?: number;
  /** Replace the state by its JSON round-trip before this step. */
  roundTripAtStep?: number;
}

interface SimTick {
  t: number;
  demand: number;
  ready: number;
  target: number;
  desired: number;
  spike: boolean;
  decision?: AutoscaleDecision;
}

interface SimResult {
  ticks: SimTick[];
  decisions: AutoscaleDecision[];
  final: number;
}

const EPS = 1e-9;

function simulate(opts: SimOptions): SimResult {
  const { config: cfg, serviceS, concurrency, startupS } = opts;
  const dt = cfg.metricsIntervalS;
  const substeps = opts.substeps ?? 10;
  const sub = dt / substeps;
  const rng = opts.seed === undefined ? undefined : mulberry32(opts.seed);
  let state = initialAutoscalerState();
  let target = cfg.initialReplicas;
  let replicaReadyAt: number[] = Array.from({ length: target }, () => 0);
  let queue = opts.clients ?? 0;
  let inService = 0;
  let cohorts: Array<{ finish: number; n: number }> = [];
  const readyAt = (t: number): number => replicaReadyAt.filter((r) => r <= t + EPS).length;
  const ticks: SimTick[] = [];
  const decisions: AutoscaleDecision[] = [];
  const steps = Math.round(opts.durationS / dt);

  for (let step = 1; step <= steps; step++) {
    for (let k = 1; k <= substeps; k++) {
      const t = ((step - 1) * substeps + k) * sub;
      const done = cohorts.filter((c) => c.finish <= t + EPS);
      cohorts = cohorts.filter((c) => c.finish > t + EPS);
      for (const c of done) {
        inService -= c.n;
        if (opts.clients !== undefined) queue += c.n;
      }
      if (opts.rate) {
        const mean = opts.rate(t) * sub;
        queue += rng ? poisson(mean, rng) : mean;
      }
      const free = Math.max(0, readyAt(t) * concurrency - inService);
      const start = Math.min(queue, free);
      if (start > 0) {
        cohorts.push({ finish: t + serviceS, n: start });
        queue -= start;
        inService += start;
      }
    }
    const t = step * dt;
    if (step === opts.roundTripAtStep) state = JSON.parse(JSON.stringify(state)) as AutoscalerState;
    const demand = queue + inService;
    const ready = readyAt(t);
    const out = tick(state, { config: cfg, now: Math.round(t * 1000), demand, currentTarget: target, readyReplicas: ready });
    state = out.state;
    if (out.target > target) {
      for (let i = target; i < out.target; i++) replicaReadyAt.push(t + startupS);
    } else if (out.target < target) {
      // Replicas still starting go first, then the newest.
      replicaReadyAt = replicaReadyAt.sort((a, b) => a - b).slice(0, out.target);
    }
    target = out.target;
    if (out.decision) decisions.push(out.decision);
    ticks.push({ t, demand, ready, target, desired: out.desired, spike: state.spike !== null, ...(out.decision ? { decision: out.decision } : {}) });
  }
  return { ticks, decisions, final: target };
}

function firstTick(result: SimResult, pred: (t: SimTick) => boolean): SimTick {
  const found = result.ticks.find(pred);
  assert.ok(found, "expected a matching tick");
  return found;
}

/** Every decision that lowered the target while spike mode was on (before or after the tick). */
function downsInSpikeMode(result: SimResult): SimTick[] {
  return result.ticks.filter((t, i) => t.decision && t.decision.to < t.decision.from && (t.spike || result.ticks[i - 1]?.spike === true));
}

// ---------------------------------------------------------------------------
// Scenarios

describe("autoscaler simulations", () => {
  it("seed example: 50 concurrent clients of a 1 s handler reach 5 replicas", () => {
    const r = simulate({
      config: config({ minReplicas: 1, maxReplicas: 5, targetNumOngoingRequestsPerReplica: 10 }),
      durationS: 300,
      clients: 50,
      serviceS: 1,
      concurrency: 100,
      startupS: 5,
    });
    assert.equal(r.final, 5);
    assert.equal(firstTick(r, (t) => t.target === 5).t, 1, "a 5× overload is a spike, answered on the first tick");
    assert.deepEqual(
      r.decisions.map((d) => [d.from, d.to, d.rule]),
      [[1, 5, "spike"]],
    );
    assert.equal(r.decisions[0]?.reason, "spike: demand 50 > 2× capacity of 1 replica → 5 replicas");
  });

  it("step: follows a step in load after the upscale delay", () => {
    const r = simulate({
      config: config({ minReplicas: 1, maxReplicas: 10, targetNumOngoingRequestsPerReplica: 10 }),
      durationS: 400,
      rate: (t) => (t < 200 ? 15 : 35),
      serviceS: 1,
      concurrency: 100,
      startupS: 5,
    });
    assert.deepEqual(
      r.decisions.map((d) => [d.at, d.from, d.to, d.rule]),
      [
        [31_000, 1, 2, "scale"],
        [238_000, 2, 4, "scale"],
      ],
    );
    assert.equal(r.decisions[0]?.reason, "demand 15.0 over 30s, target 10/replica → 2 replicas (up after 30s)");
    // The 30 s average first exceeds 20 at t = 208 (8 samples of 35, 22 of 15): "up" holds from
    // there, and 30 s later the desired count of that moment (4, not 3) is applied.
    assert.equal(firstTick(r, (t) => t.t > 200 && t.desired > 2).t, 208);
    assert.equal(firstTick(r, (t) => t.t > 200 && t.desired === 4).t, 223);
    assert.equal(r.final, 4);
  });

  it("ramp: rises with a slow ramp and never scales down", () => {
    const r = simulate({
      config: config({ minReplicas: 1, maxReplicas: 10, targetNumOngoingRequestsPerReplica: 10 }),
      durationS: 1200,
      rate: (t) => Math.min(80, (t * 80) / 600),
      serviceS: 0.5,
      concurrency: 100,
      startupS: 5,
    });
    assert.equal(r.final, 4);
    assert.ok(r.decisions.length >= 3, "steps up as the ramp rises");
    for (const d of r.decisions) assert.ok(d.to > d.from, `unexpected down step ${d.from}→${d.to}`);
    assert.equal(r.decisions.at(-1)?.to, 4);
  });

  const spikeOptions = (roundTripAtStep?: number): SimOptions => ({
    config: config({ minReplicas: 1, maxReplicas: 20, initialReplicas: 2, targetNumOngoingRequestsPerReplica: 10, downscaleDelayS: 120 }),
    durationS: 1000,
    rate: (t) => (t > 300 && t <= 420 ? 150 : 15),
    serviceS: 1,
    concurrency: 10,
    startupS: 10,
    ...(roundTripAtStep === undefined ? {} : { roundTripAtStep }),
  });

  it("spike: reacts within one metrics interval and never scales down in spike mode", () => {
    const r = simulate(spikeOptions());
    assert.equal(r.decisions.filter((d) => d.at <= 300_000).length, 0, "steady at 2 before the spike");
    const first = r.decisions[0];
    assert.ok(first);
    assert.equal(first.at, 301_000);
    assert.equal(first.rule, "spike");
    assert.match(first.reason, /^spike: demand \d+(\.\d)? > 2× capacity of 2 replicas → \d+ replicas$/);
    assert.ok(Math.max(...r.ticks.map((t) => t.target)) >= 15);
    assert.deepEqual(downsInSpikeMode(r), []);
    const spikeOver = firstTick(r, (t) => t.t > 301 && !t.spike).t;
    const firstDown = r.decisions.find((d) => d.to < d.from);
    assert.ok(firstDown);
    assert.ok(firstDown.at >= (spikeOver + 120) * 1000, `down at ${firstDown.at} before spike end ${spikeOver}s + downscale delay`);
    assert.equal(r.final, 2);
  });

  it("decay: one step down, after the downscale delay", () => {
    const r = simulate({
      config: config({ minReplicas: 1, maxReplicas: 10, initialReplicas: 8, targetNumOngoingRequestsPerReplica: 10, downscaleDelayS: 60 }),
      durationS: 400,
      rate: (t) => (t <= 100 ? 80 : 20),
      serviceS: 1,
      concurrency: 100,
      startupS: 5,
    });
    assert.equal(r.decisions.length, 1);
    const d = r.decisions[0];
    assert.ok(d);
    assert.deepEqual([d.from, d.to, d.rule], [8, 2, "scale"]);
    // Down is wanted once 7 replicas would run at most 90% of target: avg <= 63, first at
    // t = 109 (9 samples of 20). It holds from there; 60 s later the desired count is 2.
    assert.equal(firstTick(r, (t) => t.t > 100 && t.desired < 8).t, 105);
    assert.equal(d.at, 169_000);
    assert.match(d.reason, /→ 2 replicas \(down after 60s\)$/);
  });

  it("noisy steady load: at most one change after settling, even on a boundary", () => {
    // Poisson arrivals; 48-50 requests/s sit on the 5|6 replica boundary, where a policy
    // without hysteresis goes up when the average pokes over 50 and back down later.
    const noisy = (rate: number, seed: number, initialReplicas: number): SimResult =>
      simulate({
        config: config({ minReplicas: 1, maxReplicas: 10, initialReplicas, targetNumOngoingRequestsPerReplica: 10 }),
        durationS: 3600,
        rate: () => rate,
        serviceS: 1,
        concurrency: 100,
        startupS: 5,
        substeps: 2,
        seed,
      });
    const summary = (r: SimResult): string => r.decisions.map((d) => `${d.at / 1000}s ${d.reason}`).join("; ");
    // Starting at the steady count: the whole hour counts.
    for (const [rate, seed] of [[48, 11], [49, 1], [50, 2], [38, 4], [20, 5], [45, 6]] as const) {
      const r = noisy(rate, seed, Math.ceil(rate / 10));
      assert.ok(r.decisions.length <= 1, `rate ${rate}, seed ${seed}: ${summary(r)}`);
      assert.ok(Math.abs(r.final - Math.ceil(rate / 10)) <= 1, `rate ${rate}, seed ${seed}: settled at ${r.final}`);
    }
    // Starting at 1 replica: a spike overshoot may take the downscale delay (600 s) to undo.
    for (const [rate, seed] of [[16, 9], [49, 7], [52, 4]] as const) {
      const r = noisy(rate, seed, 1);
      const late = r.decisions.filter((d) => d.at > 720_000);
      assert.ok(late.length <= 1, `rate ${rate}, seed ${seed}: ${summary(r)}`);
      assert.ok(Math.abs(r.final - Math.ceil(rate / 10)) <= 1, `rate ${rate}, seed ${seed}: settled at ${r.final}`);
    }
  });

  it("scale to zero after downscaleDelayS of no demand, and straight back from zero", () => {
    const r = simulate({
      config: config({ minReplicas: 0, maxReplicas: 5, targetNumOngoingRequestsPerReplica: 10, downscaleDelayS: 60 }),
      durationS: 600,
      rate: (t) => (t > 100 && t <= 200) || t > 500 ? 20 : 0,
      serviceS: 1,
      concurrency: 100,
      startupS: 3,
    });
    const start = firstTick(r, (t) => t.demand > 0);
    assert.equal(start.t, 101);
    assert.equal(start.decision?.rule, "cold-start", "initialReplicas 0: the first request scales up at once");
    assert.equal(start.target, 2);

    const quiet = firstTick(r, (t) => t.t > 200 && t.demand === 0);
    const zero = firstTick(r, (t) => t.t > 200 && t.target === 0);
    assert.equal(zero.t, quiet.t + 60);
    assert.equal(zero.decision?.rule, "idle");
    assert.equal(zero.decision?.reason, "idle: no demand for 60s → 0 replicas");

    const again = firstTick(r, (t) => t.t > 500 && t.demand > 0);
    assert.equal(again.t, 501);
    assert.equal(again.decision?.rule, "cold-start");
    assert.equal(again.target, 2);
    assert.equal(r.final, 2);
  });

  it("honours minReplicas and maxReplicas", () => {
    const busy = simulate({
      config: config({ minReplicas: 1, maxReplicas: 3, targetNumOngoingRequestsPerReplica: 2 }),
      durationS: 200,
      clients: 500,
      serviceS: 0.5,
      concurrency: 4,
      startupS: 2,
    });
    assert.equal(Math.max(...busy.ticks.map((t) => t.target)), 3);
    assert.equal(busy.final, 3);

    const idle = simulate({
      config: config({ minReplicas: 2, maxReplicas: 6, targetNumOngoingRequestsPerReplica: 2, downscaleDelayS: 5 }),
      durationS: 200,
      rate: () => 0,
      serviceS: 0.5,
      concurrency: 4,
      startupS: 2,
    });
    assert.deepEqual(idle.decisions, []);
    assert.ok(idle.ticks.every((t) => t.target === 2));
  });

  it("state survives a JSON round trip mid-simulation with identical results", () => {
    const straight = simulate(spikeOptions());
    for (const step of [1, 305, 330, 500]) {
      assert.deepEqual(simulate(spikeOptions(step)), straight, `round trip at step ${step}`);
    }
  });
});

// ---------------------------------------------------------------------------
// Exact timing, fed demand directly (lookBack = metricsInterval: average = sample)

interface Feed {
  cfg: AutoscalingConfig;
  target: number;
  ready: number;
  /** Demand at each tick (1 s apart, starting at t = 1 s). */
  demand: (t: number) => number;
  seconds: number;
  /** Ready replicas follow the target at once unless false. */
  followTarget?: boolean;
}

function feed(f: Feed): { outs: AutoscaleOutput[]; decisions: AutoscaleDecision[] } {
  let state = initialAutoscalerState();
  let target = f.target;
  let ready = f.ready;
  const outs: AutoscaleOutput[] = [];
  for (let t = 1; t <= f.seconds; t++) {
    const out = tick(state, { config: f.cfg, now: t * 1000, demand: f.demand(t), currentTarget: target, readyReplicas: ready });
    outs.push(out);
    state = out.state;
    target = out.target;
    if (f.followTarget !== false) ready = target;
  }
  return { outs, decisions: outs.flatMap((o) => (o.decision ? [o.decision] : [])) };
}

const exact = (extra: ConfigInput = {}): AutoscalingConfig =>
  config({ minReplicas: 1, maxReplicas: 10, targetNumOngoingRequestsPerReplica: 10, lookBackPeriodS: 1, metricsIntervalS: 1, ...extra });

describe("autoscaler delays", () => {
  it("holds an up decision for upscaleDelayS and applies the desired count of that moment", () => {
    const { decisions, outs } = feed({
      cfg: exact({ upscaleDelayS: 30 }),
      target: 3,
      ready: 3,
      demand: (t) => (t <= 10 ? 25 : t < 30 ? 45 : 55),
      seconds: 60,
    });
    assert.equal(outs[10]?.desired, 5, "wants 5 from t = 11");
    assert.deepEqual(
      decisions.map((d) => [d.at, d.from, d.to]),
      [[41_000, 3, 6]],
    );
    assert.equal(decisions[0]?.reason, "demand 55.0 over 1s, target 10/replica → 6 replicas (up after 30s)");
  });

  it("restarts the timer when the direction vanishes", () => {
    const { decisions } = feed({
      cfg: exact({ upscaleDelayS: 30 }),
      target: 3,
      ready: 3,
      demand: (t) => (t === 25 ? 25 : 45),
      seconds: 70,
    });
    assert.deepEqual(
      decisions.map((d) => [d.at, d.to]),
      [[56_000, 5]],
    );
  });

  it("holds a down decision for downscaleDelayS", () => {
    const { decisions } = feed({
      cfg: exact({ downscaleDelayS: 60 }),
      target: 5,
      ready: 5,
      demand: (t) => (t <= 10 ? 45 : 15),
      seconds: 100,
    });
    assert.deepEqual(
      decisions.map((d) => [d.at, d.from, d.to]),
      [[71_000, 5, 2]],
    );
  });

  it("smooths each step and still moves at least one replica", () => {
    const half = feed({ cfg: exact({ upscaleDelayS: 0, upscaleSmoothingFactor: 0.5 }), target: 2, ready: 2, demand: () => 39, seconds: 3 });
    assert.deepEqual(
      half.decisions.map((d) => [d.from, d.to]),
      [[2, 3], [3, 4]],
    );
    const tiny = feed({ cfg: exact({ downscaleDelayS: 0, smoothingFactor: 0.1 }), target: 4, ready: 4, demand: () => 25, seconds: 2 });
    assert.deepEqual(
      tiny.decisions.map((d) => [d.from, d.to]),
      [[4, 3]],
    );
  });

  it("never scales down while spike mode lasts", () => {
    const { outs, decisions } = feed({
      cfg: exact({ lookBackPeriodS: 30, downscaleDelayS: 0 }),
      target: 2,
      ready: 2,
      demand: (t) => (t === 1 ? 100 : 5),
      seconds: 40,
      followTarget: false,
    });
    assert.deepEqual(
      decisions.map((d) => [d.at, d.from, d.to, d.rule]),
      [
        [1_000, 2, 10, "spike"],
        // Calm from t = 3 (3 s window: (100 + 5 + 5) / 3 < 2 × 2 × 10); spike mode ends 30 s later.
        [33_000, 10, 1, "scale"],
      ],
    );
    assert.notEqual(outs[31]?.state.spike, null);
    assert.equal(outs[32]?.state.spike, null);
  });

  it("scales from zero at once, whatever the upscale delay", () => {
    const { decisions } = feed({
      cfg: exact({ minReplicas: 0, initialReplicas: 0, upscaleDelayS: 300 }),
      target: 0,
      ready: 0,
      demand: (t) => (t < 5 ? 0 : 35),
      seconds: 6,
      followTarget: false,
    });
    assert.deepEqual(
      decisions.map((d) => [d.at, d.from, d.to, d.rule]),
      [[5_000, 0, 4, "cold-start"]],
    );
    assert.equal(decisions[0]?.reason, "cold start: demand 35 with 0 replicas → 4 replicas");
  });

  it("moves a target outside new bounds at once", () => {
    const out = tick(initialAutoscalerState(), { config: exact({ minReplicas: 2, maxReplicas: 5 }), now: 1000, demand: 0, currentTarget: 7, readyReplicas: 7 });
    assert.equal(out.target, 5);
    assert.equal(out.decision?.reason, "bounds: 7 replicas outside [2, 5] → 5 replicas");
  });

  it("restores stored state, and starts afresh from anything unusable", () => {
    const { outs } = feed({ cfg: exact({ lookBackPeriodS: 30 }), target: 2, ready: 2, demand: (t) => t, seconds: 40 });
    const state = outs.at(-1)?.state;
    assert.ok(state);
    assert.deepEqual(restoreAutoscalerState(JSON.parse(JSON.stringify(state))), state);
    for (const bad of [null, "x", {}, { ...state, v: 2 }, { ...state, samples: [{ at: 1, sum: -1, count: 1 }] }]) {
      assert.deepEqual(restoreAutoscalerState(bad), initialAutoscalerState());
    }
    assert.throws(() => tick(state, { config: exact(), now: 41_000, demand: Number.NaN, currentTarget: 2, readyReplicas: 2 }), RangeError);
  });
});

// ---------------------------------------------------------------------------
// Invariants over long random runs

describe("autoscaler invariants", () => {
  it("keeps the target within bounds and the state small over thousands of random steps", () => {
    const rng = mulberry32(20240611);
    const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rng() * xs.length)] as T;
    const randomConfig = (): AutoscalingConfig => {
      const minReplicas = pick([0, 0, 1, 2, 3]);
      return config({
        minReplicas,
        maxReplicas: Math.max(1, minReplicas) + Math.floor(rng() * 15),
        targetNumOngoingRequestsPerReplica: pick([0.5, 1, 2, 5, 10, 25]),
        upscaleDelayS: pick([0, 0.5, 3, 30]),
        downscaleDelayS: pick([0, 1, 10, 60]),
        metricsIntervalS: pick([0.05, 0.25, 1, 5]),
        lookBackPeriodS: pick([0.1, 1, 5, 30, 600]),
        smoothingFactor: pick([0.1, 0.5, 1, 2]),
        ...(rng() < 0.3 ? { downscaleSmoothingFactor: pick([0.2, 1, 3]) } : {}),
      });
    };
    let steps = 0;
    let maxJson = 0;
    for (let run = 0; run < 100; run++) {
      let cfg = randomConfig();
      let state = initialAutoscalerState();
      let target = cfg.initialReplicas;
      let ready = target;
      let demand = rng() * 50;
      let now = 1_000_000;
      for (let i = 0; i < 300; i++, steps++) {
        const r = rng();
        if (r < 0.005) cfg = randomConfig();
        if (r < 0.01) now += rng() < 0.5 ? -5_000 : 3_600_000; // a clock step back, or a long silence
        now += Math.round(cfg.metricsIntervalS * 1000 * (0.9 + 0.2 * rng()));
        const d = rng();
        demand = d < 0.05 ? 0 : d < 0.08 ? demand * 10 + 50 : Math.max(0, demand + (rng() - 0.5) * 10);
        if (rng() < 0.2) demand = 0;
        ready = Math.max(0, Math.min(target + 1, ready + Math.floor(rng() * 3) - 1));

        const prev = state;
        const out = tick(state, { config: cfg, now, demand, currentTarget: target, readyReplicas: ready });
        const { minReplicas: min, maxReplicas: max } = cfg;
        assert.ok(Number.isInteger(out.target) && out.target >= min && out.target <= max, `target ${out.target} outside [${min}, ${max}]`);
        assert.equal(out.decision !== undefined, out.target !== target);
        if (out.decision) {
          assert.deepEqual([out.decision.from, out.decision.to, out.decision.at], [target, out.target, now]);
          assert.ok(out.decision.reason.length > 0);
          if (out.decision.to < out.decision.from && out.decision.rule !== "bounds") {
            assert.equal(out.state.spike, null, "scaled down in spike mode");
          }
          if (out.decision.rule === "scale") {
            const delayMs = (out.decision.to > target ? cfg.upscaleDelayS : cfg.downscaleDelayS) * 1000;
            const dir = out.decision.to > target ? "up" : "down";
            const held = prev.pending?.direction === dir ? now - prev.pending.since : 0;
            assert.ok(delayMs === 0 || held >= delayMs, `applied after ${held} ms, delay ${delayMs} ms`);
          }
        }
        assert.ok(out.state.samples.length <= MAX_SAMPLES);
        const json = JSON.stringify(out.state);
        maxJson = Math.max(maxJson, json.length);
        if (i % 25 === 0) assert.deepEqual(JSON.parse(json), out.state);
        state = out.state;
        target = out.target;
        ready = Math.min(ready, target + 1);
      }
    }
    assert.ok(steps >= 30_000);
    assert.ok(maxJson < 20_000, `state grew to ${maxJson} bytes`);
  });
});
