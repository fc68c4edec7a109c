/**
 * The autoscaler's memory of recent demand: a time-ordered list of samples,
 * trimmed to the look-back window and bounded in size. When the window would
 * hold more than MAX_SAMPLES samples, neighbouring samples share a bucket
 * (sum and count), so averages stay exact while the list stays small enough to
 * store in Redis as JSON.
 */

/** The most buckets a window keeps, whatever the look-back period and sampling interval. */
export const MAX_SAMPLES = 256;

/** One bucket of demand samples: `sum` over `count` samples, the latest taken at `at` (ms). */
export interface DemandSample {
  at: number;
  sum: number;
  count: number;
}

/** Adds a sample taken at `now` and drops those older than `lookBackMs`; returns a new list. */
export function recordSample(samples: ReadonlyArray<DemandSample>, now: number, demand: number, lookBackMs: number): DemandSample[] {
  const bucketMs = lookBackMs / MAX_SAMPLES;
  const kept = samples.filter((s) => s.at > now - lookBackMs && s.at <= now);
  const last = kept[kept.length - 1];
  if (last !== undefined && Math.floor(last.at / bucketMs) === Math.floor(now / bucketMs)) {
    kept[kept.length - 1] = { at: now, sum: last.sum + demand, count: last.count + 1 };
  } else {
    kept.push({ at: now, sum: demand, count: 1 });
  }
  // Buckets made under an earlier, finer configuration can outnumber the cap.
  return kept.length > MAX_SAMPLES ? kept.slice(kept.length - MAX_SAMPLES) : kept;
}

/** Mean demand over the samples taken in (now - windowMs, now]; 0 when there are none. */
export function windowAverage(samples: ReadonlyArray<DemandSample>, now: number, windowMs: number): number {
  let sum = 0;
  let count = 0;
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = samples[i];
    if (s === undefined || s.at <= now - windowMs) break;
    sum += s.sum;
    count += s.count;
  }
  return count === 0 ? 0 : sum / count;
}
