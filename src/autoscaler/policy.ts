/**
 * The autoscaling policy: a pure function from (state, one demand sample, now)
 * to (new state, replica target, the decision that changed it). The controller
 * calls it every `metricsIntervalS` with demand = requests waiting in the
 * deployment's queue + requests being processed, stores the returned state in
 * Redis (it is plain JSON) and applies the target. No I/O, no clock.
 *
 * Rules, first match wins each tick:
 * 1. bounds: a target outside [minReplicas, maxReplicas] moves to the nearest bound at once;
 * 2. cold start: at 0 replicas any demand scales up at once;
 * 3. spike: short-window demand above 2 × ready capacity scales up at once, and
 *    blocks scaling down until demand stays under that line for lookBackPeriodS;
 * 4. idle: with minReplicas 0, demand 0 for downscaleDelayS scales to 0;
 * 5. scale: ceil(look-back average / target per replica), smoothed, applied once
 *    its direction has held for upscaleDelayS / downscaleDelayS. Down is only
 *    wanted when one replica fewer would run at most 90% of its target, so a
 *    load sitting on a boundary settles instead of see-sawing across it.
 */
import { z } from "zod";
import type { AutoscalingConfig } from "../spec/deployment-spec.js";
import { MAX_SAMPLES, recordSample, windowAverage, type DemandSample } from "./metrics-window.js";

export { MAX_SAMPLES, type DemandSample } from "./metrics-window.js";

/** Which rule made a decision. */
export type AutoscaleRule = "bounds" | "cold-start" | "spike" | "idle" | "scale";

/** A change of the replica target, with the reason shown to users. */
export interface AutoscaleDecision {
  at: number;
  from: number;
  to: number;
  rule: AutoscaleRule;
  reason: string;
}

/** A scaling direction the look-back rule wants, and since when (ms) it has wanted it without a break. */
export interface PendingDecision {
  direction: "up" | "down";
  since: number;
}

/** Spike mode: entered at `since`; `calmSince` is when demand last fell under the spike line (null while above it). */
export interface SpikeMode {
  since: number;
  calmSince: number | null;
}

/** Everything the policy remembers between ticks; plain JSON, bounded in size. */
export interface AutoscalerState {
  /** Shape version; restoreAutoscalerState discards state of another version. */
  v: 1;
  /** Demand samples within the look-back window, oldest first (at most MAX_SAMPLES). */
  samples: DemandSample[];
  pending: PendingDecision | null;
  spike: SpikeMode | null;
  /** When demand became 0 and has stayed 0 since; null while there is demand. */
  idleSince: number | null;
  lastDecision: AutoscaleDecision | null;
}

/** The inputs of one tick. */
export interface AutoscaleInput {
  config: AutoscalingConfig;
  /** Time of this sample (ms). */
  now: number;
  /** Requests queued + in flight at `now`. */
  demand: number;
  /** The replica target now in force. */
  currentTarget: number;
  /** Replicas actually running; pending and still-starting ones are not capacity (counted up to currentTarget). */
  readyReplicas: number;
}

/** The outcome of one tick. */
export interface AutoscaleOutput {
  state: AutoscalerState;
  /** The replica target to apply (equal to currentTarget when nothing changed). */
  target: number;
  /** Present only when target differs from currentTarget. */
  decision?: AutoscaleDecision;
  /** Mean demand over the look-back window. */
  avgDemand: number;
  /** What the look-back rule wants now, smoothed and within bounds, before its delay. */
  desired: number;
}

/** A fresh state: no samples, nothing pending, not in spike mode. */
export function initialAutoscalerState(): AutoscalerState {
  return { v: 1, samples: [], pending: null, spike: null, idleSince: null, lastDecision: null };
}

const EPSILON = 1e-9;
const SPIKE_FACTOR = 2;
/** Down is wanted only when the load fits in one replica fewer at this fraction of the target. */
const DOWNSCALE_HEADROOM = 0.9;

const nullableTime = z.number().finite().nullable();
const stateSchema = z.strictObject({
  v: z.literal(1),
  samples: z
    .array(z.strictObject({ at: z.number().finite(), sum: z.number().finite().nonnegative(), count: z.number().int().positive() }))
    .max(MAX_SAMPLES),
  pending: z.strictObject({ direction: z.enum(["up", "down"]), since: z.number().finite() }).nullable(),
  spike: z.strictObject({ since: z.number().finite(), calmSince: nullableTime }).nullable(),
  idleSince: nullableTime,
  lastDecision: z
    .strictObject({
      at: z.number().finite(),
      from: z.number().int().nonnegative(),
      to: z.number().int().nonnegative(),
      rule: z.enum(["bounds", "cold-start", "spike", "idle", "scale"]),
      reason: z.string(),
    })
    .nullable(),
});

/** Turns state read back from storage into a valid state, or a fresh one when it is unusable. */
export function restoreAutoscalerState(raw: unknown): AutoscalerState {
  const parsed = stateSchema.safeParse(raw);
  return parsed.success ? parsed.data : initialAutoscalerState();
}

/** One tick of the policy. Pure: returns a new state and never mutates its arguments. */
export function autoscale(state: AutoscalerState, input: AutoscaleInput): AutoscaleOutput {
  const { config, now, demand, currentTarget: current, readyReplicas: ready } = input;
  assertInput(input);
  const perReplica = config.targetNumOngoingRequestsPerReplica;
  const lookBackMs = config.lookBackPeriodS * 1000;
  const panicMs = Math.max(config.metricsIntervalS, config.lookBackPeriodS / 10) * 1000;

  // A long silence (or a clock that went back) means nothing held continuously: start afresh.
  const lastAt = state.samples[state.samples.length - 1]?.at;
  const gapMs = Math.max(lookBackMs, 3 * config.metricsIntervalS * 1000);
  const base = lastAt !== undefined && (now < lastAt || now - lastAt > gapMs) ? { ...initialAutoscalerState(), lastDecision: state.lastDecision } : state;

  const samples = recordSample(base.samples, now, demand, lookBackMs);
  const avgDemand = windowAverage(samples, now, lookBackMs);
  const shortDemand = windowAverage(samples, now, panicMs);
  const idleSince = demand > 0 ? null : (base.idleSince ?? now);

  // Replicas above the target are on their way out; they are no capacity to count on.
  const capacity = Math.min(ready, current);
  const spikeLine = SPIKE_FACTOR * capacity * perReplica;
  const spiking = shortDemand > spikeLine;
  let spike = base.spike;
  if (spiking) spike = { since: spike?.since ?? now, calmSince: null };
  else if (spike !== null) {
    const calmSince = spike.calmSince ?? now;
    spike = now - calmSince >= lookBackMs ? null : { since: spike.since, calmSince };
  }

  const desired = current === 0 ? 0 : lookBackDesired(avgDemand, current, config);
  const next = { v: 1 as const, samples, pending: base.pending, spike, idleSince, lastDecision: base.lastDecision };
  const output = (target: number, pending: PendingDecision | null, rule?: AutoscaleRule, reason?: string): AutoscaleOutput => {
    if (rule === undefined || reason === undefined || target === current) {
      return { state: { ...next, pending }, target: current, avgDemand, desired };
    }
    const decision: AutoscaleDecision = { at: now, from: current, to: target, rule, reason };
    return { state: { ...next, pending: null, lastDecision: decision }, target, decision, avgDemand, desired };
  };

  const { minReplicas: min, maxReplicas: max } = config;
  if (current < min || current > max) {
    const to = clamp(current, min, max);
    return output(to, null, "bounds", `bounds: ${replicas(current)} outside [${min}, ${max}] → ${replicas(to)}`);
  }

  const spikeTarget = clamp(ceilDiv(shortDemand, perReplica), min, max);
  if (current === 0 && demand > 0) {
    const to = clamp(Math.max(1, ceilDiv(demand, perReplica), spikeTarget), min, max);
    return output(to, null, "cold-start", `cold start: demand ${fmt(demand)} with 0 replicas → ${replicas(to)}`);
  }
  if (spiking && spikeTarget > current) {
    return output(spikeTarget, null, "spike", `spike: demand ${fmt(shortDemand)} > ${SPIKE_FACTOR}× capacity of ${replicas(capacity)} → ${replicas(spikeTarget)}`);
  }

  const idleMs = idleSince === null ? 0 : now - idleSince;
  if (min === 0 && current > 0 && spike === null && idleSince !== null && idleMs >= config.downscaleDelayS * 1000) {
    return output(0, null, "idle", `idle: no demand for ${fmt(idleMs / 1000)}s → 0 replicas`);
  }

  const roomBelow = avgDemand <= DOWNSCALE_HEADROOM * perReplica * (current - 1);
  const direction: PendingDecision["direction"] | null = desired > current ? "up" : desired < current && roomBelow && spike === null ? "down" : null;
  if (direction === null) return output(current, null);
  const pending = base.pending?.direction === direction ? base.pending : { direction, since: now };
  const heldMs = now - pending.since;
  const delayS = direction === "up" ? config.upscaleDelayS : config.downscaleDelayS;
  if (heldMs < delayS * 1000) return output(current, pending);
  const reason = `demand ${avgDemand.toFixed(1)} over ${fmt(config.lookBackPeriodS)}s, target ${fmt(perReplica)}/replica → ${replicas(desired)} (${direction} after ${fmt(heldMs / 1000)}s)`;
  return output(desired, null, "scale", reason);
}

/**
 * ceil(avg / perReplica), with the step from `current` scaled by the smoothing
 * factor (at least 1 when any change is wanted), within bounds. Never 0: only
 * the idle rule scales to zero.
 */
function lookBackDesired(avgDemand: number, current: number, config: AutoscalingConfig): number {
  const wanted = ceilDiv(avgDemand, config.targetNumOngoingRequestsPerReplica) - current;
  let step = 0;
  if (wanted > 0) step = Math.max(1, Math.round(wanted * config.upscaleSmoothingFactor));
  else if (wanted < 0) step = -Math.max(1, Math.round(-wanted * config.downscaleSmoothingFactor));
  return clamp(current + step, Math.max(1, config.minReplicas), config.maxReplicas);
}

function assertInput(input: AutoscaleInput): void {
  const { now, demand, currentTarget, readyReplicas } = input;
  if (!Number.isFinite(now)) throw new RangeError(`autoscale: now must be a finite time in ms (got ${now})`);
  if (!Number.isFinite(demand) || demand < 0) throw new RangeError(`autoscale: demand must be a finite number >= 0 (got ${demand})`);
  if (!Number.isInteger(currentTarget) || currentTarget < 0) throw new RangeError(`autoscale: currentTarget must be an integer >= 0 (got ${currentTarget})`);
  if (!Number.isInteger(readyReplicas) || readyReplicas < 0) throw new RangeError(`autoscale: readyReplicas must be an integer >= 0 (got ${readyReplicas})`);
}

/** ceil(a / b), forgiving floating-point dust (50.000000001 / 10 is 5, not 6). */
function ceilDiv(a: number, b: number): number {
  return Math.max(0, Math.ceil(a / b - EPSILON));
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}

function replicas(n: number): string {
  return `${n} ${n === 1 ? "replica" : "replicas"}`;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
