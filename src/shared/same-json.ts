/**
 * Equality of JSON data (plain objects, arrays, strings, numbers, booleans,
 * null) as its JSON would compare once keys are sorted: key order does not
 * count, and a property set to undefined counts as absent. Walks both values
 * without building strings: the leader compares every deployment's decisions
 * with what it last wrote on every tick, and hosts every replica's status.
 */
export function sameJson(a: unknown, b: unknown, ignoreKey?: string): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let defined = 0;
  for (const key in x) {
    if (key === ignoreKey || x[key] === undefined) continue;
    defined++;
    if (!sameJson(x[key], y[key])) return false;
  }
  for (const key in y) if (key !== ignoreKey && y[key] !== undefined) defined--;
  return defined === 0;
}
